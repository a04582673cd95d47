/**
 * Load an image spec: read the TOML file, parse it (syntax errors with line
 * and column), validate it with zod (unknown keys with the nearest valid key,
 * wrong types, missing files, paths escaping the root) and return a deeply
 * frozen model. Validation happens here, once, at the edge.
 */
import { fileURLToPath } from "node:url";
import TOML from "@iarna/toml";
import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { dirname, resolve, relative, isAbsolute } from "node:path";
import type { z } from "zod";
import { UserError, fsReason } from "../errors.js";
import { ImageSpecSchema, type ImageSpecData } from "./spec-schema.js";
import { keyLiterals } from "./toml-literals.js";

export interface ImageSpec extends ImageSpecData {
  /** Absolute path of the spec file. */
  readonly specPath: string;
  /** Folder relative paths in the spec are resolved against. */
  readonly specDir: string;
  /** sha256 of the spec file's bytes. */
  readonly specDigest: string;
}

export async function loadSpec(path: string): Promise<Readonly<ImageSpec>> {
  const specPath = resolve(path);
  let bytes: Buffer;
  try {
    const st = await stat(specPath);
    if (!st.isFile()) throw new UserError(`${path} is not a file`, { file: path, hint: "pass an image spec such as images/minimal.toml" });
    bytes = await readFile(specPath);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`cannot read image spec ${path}: ${fsReason(e)}`, {
      file: path,
      hint: "check the path; image specs live in images/*.toml",
    });
  }
  return parseSpec(bytes, specPath, path);
}

/** Parse and validate spec bytes. `displayPath` is how errors name the file. */
export async function parseSpec(bytes: Buffer, specPath: string, displayPath = specPath): Promise<Readonly<ImageSpec>> {
  const file = displayPath;
  if (bytes.length === 0 || bytes.toString("utf8").trim() === "") {
    throw new UserError(`${file} is empty`, { file, hint: "an image spec needs at least name, version and [[sources]]; see docs/spec.md" });
  }
  if (looksBinary(bytes)) {
    throw new UserError(`${file} is not a text file (it contains binary data)`, {
      file,
      hint: "pass a TOML image spec such as images/minimal.toml, not a disk image or archive",
    });
  }
  let raw: unknown;
  try {
    raw = TOML.parse(bytes.toString("utf8"));
  } catch (e) {
    const err = e as { line?: number; col?: number; message: string };
    const first = err.message.split("\n")[0]!.replace(/ at row \d+, col \d+, pos \d+:?$/, "");
    const line = (err.line ?? 0) + 1;
    const col = (err.col ?? 0) + 1;
    throw new UserError(`${file}:${line}:${col}: TOML syntax error: ${first}`, {
      file,
      hint: `fix the TOML at line ${line}, column ${col}`,
    });
  }
  raw = plainify(raw);
  const result = ImageSpecSchema.safeParse(raw);
  if (!result.success) throw specError(file, result.error.issues, raw);
  const data = result.data;
  checkModeLiterals(file, bytes.toString("utf8"), raw as { files?: { mode?: unknown }[] });
  const specDir = dirname(specPath);
  await checkReferences(file, specDir, data);
  checkCrossReferences(file, data);
  const spec: ImageSpec = {
    ...data,
    specPath,
    specDir,
    specDigest: createHash("sha256").update(bytes).digest("hex"),
  };
  return deepFreeze(spec);
}

/**
 * `mode = 644` parses as the decimal number 644 (mode 0o1204): refuse a mode
 * written as a decimal integer, naming what was probably meant. The k-th
 * `mode =` in the file is the k-th [[files]] entry with a mode (no other
 * table has a `mode` key; the schema has already refused unknown keys).
 */
function checkModeLiterals(file: string, text: string, raw: { files?: { mode?: unknown }[] }): void {
  const withMode = (raw.files ?? []).map((f, i) => ({ f, i })).filter(({ f }) => f && typeof f === "object" && "mode" in f);
  // only integers can be decimal; the text is scanned only when there is one
  if (!withMode.some(({ f }) => typeof f.mode === "number")) return;
  const lits = keyLiterals(text, "mode");
  withMode.forEach(({ f, i }, k) => {
    const lit = lits[k];
    if (typeof f.mode !== "number" || !lit || /^[+-]?0o/.test(lit.literal)) return;
    const digits = lit.literal.replace(/_/g, "");
    const guesses: string[] = [];
    if (/^[0-7]{3,4}$/.test(digits)) guesses.push(`0o${digits.replace(/^0(?=\d{3})/, "")}`);
    if (f.mode >= 0 && f.mode <= 0o777) guesses.push(`0o${f.mode.toString(8).padStart(3, "0")} (${f.mode} is 0o${f.mode.toString(8)})`);
    const meant = guesses.length ? `; did you mean ${guesses.join(" or ")}?` : "";
    throw new UserError(
      `${file}:${lit.line}:${lit.col}: 'files[${i}].mode' = ${lit.literal} is a decimal integer, which would be mode 0o${f.mode.toString(8)}${meant}`,
      { file, key: `files[${i}].mode`, hint: `write modes as a string ("0644") or as TOML octal (0o644)` },
    );
  });
}

function looksBinary(b: Buffer): boolean {
  const head = b.subarray(0, 8192);
  if (head.includes(0)) return true;
  let bad = 0;
  for (const c of head) if (c < 9 || (c > 13 && c < 32)) bad++;
  return bad > head.length * 0.05;
}

/** @iarna/toml returns objects with a null prototype and Date-like values; make plain JSON-ish data. */
function plainify(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(plainify);
  if (v instanceof Date) return v.toISOString();
  if (v && typeof v === "object") {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = plainify(x);
    return o;
  }
  return v;
}

export function formatPath(path: readonly PropertyKey[]): string {
  let s = "";
  for (const p of path) {
    if (typeof p === "number") s += `[${p}]`;
    else s += s ? `.${String(p)}` : String(p);
  }
  return s || "(top level)";
}

function specError(file: string, issues: readonly z.core.$ZodIssue[], raw: unknown): UserError {
  const lines: string[] = [];
  let hint: string | undefined;
  for (const issue of issues.slice(0, 8)) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        const where = formatPath([...issue.path, key]);
        const valid = validKeysAt(issue.path, raw);
        const near = nearest(key, valid);
        lines.push(`unknown key '${where}'` + (near ? ` (did you mean '${formatPath([...issue.path, near])}'?)` : ""));
        hint ??= near
          ? `rename '${key}' to '${near}'`
          : `remove '${key}'; valid keys here: ${valid.join(", ")}`;
      }
    } else if (issue.code === "invalid_type") {
      const got = describeValue(getAt(raw, issue.path));
      const where = formatPath(issue.path);
      if (got === "missing") {
        lines.push(`missing required key '${where}' (expected ${issue.expected})`);
        hint ??= `add '${String(issue.path[issue.path.length - 1])}' to the spec; see docs/spec.md`;
      } else {
        lines.push(`'${where}' must be ${article(issue.expected)}, got ${got}`);
        hint ??= `change '${where}' to ${article(issue.expected)}; see docs/spec.md`;
      }
    } else if (issue.code === "invalid_union" && (issue as { discriminator?: string }).discriminator) {
      const where = formatPath(issue.path);
      const opts = ((issue as { options?: unknown[] }).options ?? []).map(String);
      lines.push(`'${where}' must be one of ${opts.join(", ")}, got ${describeValue(getAt(raw, issue.path))}`);
      hint ??= `set '${where}' to one of: ${opts.join(", ")}`;
    } else if (issue.code === "invalid_value") {
      const where = formatPath(issue.path);
      const vals = (issue as { values?: unknown[] }).values ?? [];
      lines.push(`'${where}' must be one of ${vals.map((v) => JSON.stringify(v)).join(", ")}, got ${describeValue(getAt(raw, issue.path))}`);
      hint ??= `use one of ${vals.map((v) => JSON.stringify(v)).join(", ")}`;
    } else {
      const where = formatPath(issue.path);
      lines.push(/^is /.test(issue.message) ? `'${where}' ${issue.message}` : `'${where}': ${issue.message}`);
      const custom = (issue as { params?: { hint?: string } }).params?.hint;
      if (custom) hint ??= custom;
    }
  }
  if (issues.length > 8) lines.push(`… and ${issues.length - 8} more problems`);
  const first = issues[0];
  const key = first ? formatPath(first.code === "unrecognized_keys" ? [...first.path, first.keys[0]!] : first.path) : undefined;
  return new UserError(`${file}: invalid image spec:\n  - ${lines.join("\n  - ")}`, { file, key, hint: hint ?? "see docs/spec.md for every key" });
}

function article(t: string): string {
  return /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`;
}

function describeValue(v: unknown): string {
  if (v === undefined) return "missing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "a table";
  if (typeof v === "string") return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)}`;
  // TOML integers beyond 2^53 come as BigInt, which JSON cannot write
  if (typeof v === "bigint") return `the integer ${v}`;
  return `${typeof v} ${String(v)}`;
}

function getAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = raw;
  for (const p of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

type AnySchema = { _zod: { def: Record<string, unknown> & { type: string } } };

/** Look through defaults, optionals and pipes, and pick the union member a value's `type` names. */
function unwrapSchema(x: AnySchema, v: unknown): AnySchema {
  for (;;) {
    const d = x._zod.def;
    if (d.type === "default" || d.type === "optional" || d.type === "nullable" || d.type === "prefault") x = d.innerType as AnySchema;
    else if (d.type === "pipe") x = d.in as AnySchema;
    else if (d.type === "union") {
      const opts = d.options as AnySchema[];
      const t = (v as { type?: unknown } | undefined)?.type;
      const hit = opts.find((o) => {
        const sh = (o._zod.def.shape as Record<string, AnySchema> | undefined)?.type;
        return sh && (sh._zod.def.values as unknown[] | undefined)?.includes(t);
      });
      x = hit ?? opts[0]!;
    } else return x;
  }
}

/** The keys the schema accepts at `path` (walking defaults, optionals, arrays, unions). */
export function validKeysAt(path: readonly PropertyKey[], raw: unknown): string[] {
  let s: AnySchema | undefined = ImageSpecSchema as unknown as AnySchema;
  let value: unknown = raw;
  for (const p of path) {
    s = unwrapSchema(s, value);
    const d = s._zod.def;
    if (d.type === "object") s = (d.shape as Record<string, AnySchema>)[String(p)];
    else if (d.type === "array") s = d.element as AnySchema;
    else return [];
    value = getAt(value, [p]);
    if (!s) return [];
  }
  s = unwrapSchema(s, value);
  return s._zod.def.type === "object" ? Object.keys(s._zod.def.shape as object) : [];
}

export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = levenshtein(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function levenshtein(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

/** Resolve a spec-relative path and make sure it stays inside the spec's folder tree or is absolute by intent. */
export function resolveSpecPath(specDir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(specDir, p);
}

/** A location the spec gives as a URL or a path: the local path it names (file:// URLs included), or none for http(s). */
export function specLocation(value: string): { path?: string; url?: string } {
  if (/^https?:\/\//i.test(value)) return { url: value };
  if (/^file:\/\//i.test(value)) return { path: fileURLToPath(value) };
  return { path: value };
}

/** Every path the spec names (fields marked `aclPath` in the schema), with its spec key. */
export function specReferences(data: ImageSpecData): { key: string; path: string; want: "file" | "dir" }[] {
  const out: { key: string; path: string; want: "file" | "dir" }[] = [];
  const visit = (schema: AnySchema, value: unknown, path: PropertyKey[]): void => {
    if (value === undefined || value === null) return;
    const meta = (schema as unknown as { meta?: () => { aclPath?: "file" | "dir" | "url-or-file" | "url-or-dir" } | undefined }).meta?.();
    if (meta?.aclPath && typeof value === "string") {
      // a location may be a URL: a remote one is read by the tool that uses it, a file:// one is checked here
      const where = meta.aclPath.startsWith("url-or-") ? specLocation(value) : { path: value };
      if (where.path !== undefined) out.push({ key: formatPath(path), path: where.path, want: meta.aclPath.endsWith("file") ? "file" : "dir" });
      return;
    }
    const s = unwrapSchema(schema, value);
    const d = s._zod.def;
    if (s !== schema) return visit(s, value, path);
    if (d.type === "object" && typeof value === "object") {
      for (const [k, sub] of Object.entries(d.shape as Record<string, AnySchema>)) visit(sub, (value as Record<string, unknown>)[k], [...path, k]);
    } else if (d.type === "array" && Array.isArray(value)) {
      value.forEach((v, i) => visit(d.element as AnySchema, v, [...path, i]));
    }
  };
  visit(ImageSpecSchema as unknown as AnySchema, data, []);
  return out;
}

async function checkReferences(file: string, specDir: string, data: ImageSpecData): Promise<void> {
  for (const r of specReferences(data)) {
    const abs = resolveSpecPath(specDir, r.path);
    let ok = false;
    try {
      const st = await stat(abs);
      ok = r.want === "file" ? st.isFile() : st.isDirectory();
    } catch {
      ok = false;
    }
    if (!ok) {
      throw new UserError(`${file}: '${r.key}' refers to ${r.path}, which is not ${r.want === "file" ? "a file" : "a folder"} (looked at ${relative(process.cwd(), abs) || abs})`, {
        file,
        key: r.key,
        hint: `create it, or fix '${r.key}' (relative paths are resolved from ${relative(process.cwd(), specDir) || "."})`,
      });
    }
  }
}

function checkCrossReferences(file: string, data: ImageSpecData): void {
  const fail = (key: string, msg: string, hint: string) => {
    throw new UserError(`${file}: '${key}' ${msg}`, { file, hint, key });
  };
  const groupNames = new Set(data.groups.map((g) => g.name));
  const seenPaths = new Map<string, number>();
  data.files.forEach((f, i) => {
    const norm = f.path.replace(/\/+/g, "/").replace(/\/$/, "");
    if (norm === "" || norm === "/") fail(`files[${i}].path`, "must name a file, not the root", "give a path such as /etc/motd");
    const prev = seenPaths.get(norm);
    if (prev !== undefined) fail(`files[${i}].path`, `${f.path} is also written by files[${prev}]`, "keep one entry per destination");
    seenPaths.set(norm, i);
  });
  const users = new Set<string>();
  data.users.forEach((u, i) => {
    if (users.has(u.name)) fail(`users[${i}].name`, `${u.name} is defined twice`, "keep one entry per user");
    users.add(u.name);
    for (const g of u.groups) {
      if (!groupNames.has(g) && !["root", "sudo", "adm", "wheel", "docker", "systemd-journal", "users"].includes(g)) {
        fail(`users[${i}].groups`, `names group '${g}', which is not defined in [[groups]]`, `add a [[groups]] entry named '${g}'`);
      }
    }
  });
  if (data.init === "busybox" && data.systemd.enable.length > 0) {
    fail("systemd.enable", 'is set but init is "busybox"', "remove [systemd] enable, or set init = \"systemd\"");
  }
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object" && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}
