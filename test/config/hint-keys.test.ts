/**
 * Every spec key a message or hint names is a real key of the schema. acl's
 * messages name spec keys in three ways, which this test finds in every string
 * of src/: a quoted path ('partitions.esp', 'sources[].ref', 'files[0].mode'),
 * a table and key ("[policy] allow_setuid"), a table with its keys
 * ("an [aks] section (os_sku, …)"), and array tables ("[[groups]]").
 */
import { readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { ImageSpecSchema } from "../../src/config/spec-schema.js";
import { tsFiles } from "../helpers/ts-files.js";

const SRC = join(import.meta.dirname, "../../src");
type Def = { _zod: { def: Record<string, unknown> & { type: string } } };


/** The schemas a value at `path` may have (unions: every member). */
function at(schema: Def, path: readonly (string | number)[]): Def[] {
  const unwrap = (s: Def): Def[] => {
    const d = s._zod.def;
    if (["default", "optional", "nullable", "prefault"].includes(d.type)) return unwrap(d.innerType as Def);
    if (d.type === "pipe") return unwrap(d.in as Def);
    if (d.type === "union") return (d.options as Def[]).flatMap(unwrap);
    return [s];
  };
  let cur = unwrap(schema);
  for (const seg of path) {
    cur = cur.flatMap((s) => {
      const d = s._zod.def;
      if (typeof seg === "number") return d.type === "array" ? unwrap(d.element as Def) : [];
      const shape = d.type === "object" ? (d.shape as Record<string, Def>) : undefined;
      return shape?.[seg] ? unwrap(shape[seg]!) : [];
    });
  }
  return cur;
}

/** "sources[].ref" -> ["sources", 0, "ref"]; undefined when a part is not a plain key. */
function parsePath(p: string): (string | number)[] | undefined {
  const out: (string | number)[] = [];
  for (const part of p.split(".")) {
    const m = /^([a-z_]+)((?:\[\d*\])*)$/.exec(part);
    if (!m) return undefined;
    out.push(m[1]!);
    for (const _ of m[2]!.matchAll(/\[\d*\]/g)) out.push(0);
  }
  return out;
}

const TOP = Object.keys((ImageSpecSchema as unknown as Def)._zod.def.shape as object);
const isKey = (p: (string | number)[]) => at(ImageSpecSchema as unknown as Def, p).length > 0;

interface Ref {
  file: string;
  text: string;
  path: (string | number)[];
}

/** Spec-key references in one file's source text (template placeholders inside brackets count as an index). */
function references(file: string, text: string): Ref[] {
  const src = text.replace(/\[\$\{[^}]*\}\]/g, "[0]");
  const refs: Ref[] = [];
  for (const m of src.matchAll(/'([a-z_]+(?:\[\d*\])*(?:\.[a-z_]+(?:\[\d*\])*)*)'/g)) {
    const path = parsePath(m[1]!);
    if (path && TOP.includes(String(path[0]))) refs.push({ file, text: m[0], path });
  }
  for (const m of src.matchAll(/\[([a-z_]+)\] section \(([^)]*)\)/g)) {
    for (const k of m[2]!.split(",").map((x) => x.trim())) refs.push({ file, text: `${m[0]}: ${k}`, path: [m[1]!, k] });
  }
  for (const m of src.matchAll(/(?<!\[)\[([a-z_]+)\] (?!section\b)([a-z_]+)\b/g)) refs.push({ file, text: m[0], path: [m[1]!, m[2]!] });
  for (const m of src.matchAll(/\[\[([a-z_]+)\]\]/g)) refs.push({ file, text: m[0], path: [m[1]!] });
  return refs;
}

describe("spec keys in messages and hints", () => {
  it("finds the references this test relies on", async () => {
    const all = (await Promise.all((await tsFiles(SRC)).map(async (f) => references(relative(SRC, f), await readFile(f, "utf8"))))).flat();
    const texts = all.map((r) => r.text);
    for (const t of ["'partitions.usr'", "'microarch'", "[policy] allow_setuid", "[[groups]]", "'sources[].ref'", "'kernel.package'"]) {
      expect(texts.some((x) => x.startsWith(t)), t).toBe(true);
    }
    expect(texts.some((x) => x.includes("[aks] section") && x.endsWith("os_sku"))).toBe(true);
  });

  it("name keys that exist in the schema", async () => {
    const bad: string[] = [];
    for (const f of await tsFiles(SRC)) {
      for (const r of references(relative(SRC, f), await readFile(f, "utf8"))) if (!isKey(r.path)) bad.push(`${r.file}: ${r.text}`);
    }
    expect(bad).toEqual([]);
  });

  it("the checker refuses keys that do not exist", () => {
    const refs = references("x.ts", `hint: "set 'partitions.espMiB' or [aks] section (osSku) or [signing] secret or 'sources[0].nope'"`);
    expect(refs.filter((r) => !isKey(r.path)).map((r) => r.text)).toEqual([
      "'sources[0].nope'",
      "[aks] section (osSku): osSku",
      "[signing] secret",
    ]);
    // 'partitions.espMiB' is not a plain lower-case key path: an old-style name the test also refuses
    expect(parsePath("partitions.espMiB")).toBeUndefined();
  });

  it("no message uses the old names (disk.espMiB, the spec's disk … size, camelCase [aks] keys)", async () => {
    const bad: string[] = [];
    for (const f of await tsFiles(SRC)) {
      const text = await readFile(f, "utf8");
      for (const m of text.matchAll(/disk\.\$\{key\}|disk\.(esp|usr|oem|root)MiB|the spec's disk|\[aks\][^"`]*(osSku|nodeImageVersion|minKubernetesVersion)/g)) bad.push(`${relative(SRC, f)}: ${m[0]}`);
    }
    expect(bad).toEqual([]);
  });
});
