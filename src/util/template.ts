/**
 * The template step for files that run elsewhere (initramfs /init, the
 * guest's boot check, units): `@KEY@` placeholders in a real file are
 * replaced by values that are checked first, so the result never needs
 * quoting. A placeholder without a value, or a value that is not safe to
 * put inside single quotes in shell, is a bug in acl, not a user error.
 */
const PLACEHOLDER = /@([A-Z][A-Z0-9_]*)@/g;
/** Characters a value may hold: no quote, no backslash, no `$`, no newline. */
export const SAFE_VALUE = /^[A-Za-z0-9 ._+\-/:=,@]*$/;

export class TemplateError extends Error {}

/** Names of the placeholders in a template, sorted and unique. */
export function placeholders(template: string): string[] {
  return [...new Set([...template.matchAll(PLACEHOLDER)].map((m) => m[1]!))].sort();
}

/**
 * Fill in every `@KEY@`. Every placeholder needs a value, every value must be
 * used and match SAFE_VALUE.
 */
export function renderTemplate(template: string, values: Readonly<Record<string, string>>, name = "template"): string {
  const used = new Set<string>();
  const out = template.replace(PLACEHOLDER, (_, key: string) => {
    const v = values[key];
    if (v === undefined) throw new TemplateError(`${name}: no value for @${key}@`);
    if (!SAFE_VALUE.test(v)) throw new TemplateError(`${name}: unsafe value for @${key}@: ${JSON.stringify(v)}`);
    used.add(key);
    return v;
  });
  const unused = Object.keys(values).filter((k) => !used.has(k));
  if (unused.length) throw new TemplateError(`${name}: values without a placeholder: ${unused.sort().join(", ")}`);
  return out;
}
