/**
 * Canonical JSON for reproducible files: object keys sorted, `undefined`
 * members dropped, arrays kept in order.
 */
export function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") {
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(v as object).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) o[k] = sortKeys(x);
    }
    return o;
  }
  return v;
}

/** Sorted keys, 2-space indent, trailing newline. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value), null, 2) + "\n";
}

/** Sorted keys on one line, no trailing newline (for headers and signatures). */
export function compactCanonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}
