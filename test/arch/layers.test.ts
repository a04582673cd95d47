/**
 * Keeps the layering honest: which src/ folders may import what (read from
 * the table in docs/ARCHITECTURE.md, so the two cannot disagree), and no
 * import cycle between files anywhere.
 */
import { readFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { tsFiles } from "../helpers/ts-files.js";

const REPO = join(import.meta.dirname, "../..");
const SRC = join(REPO, "src");


interface Import {
  file: string;
  spec: string;
}

const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

async function imports(): Promise<Import[]> {
  const out: Import[] = [];
  for (const f of await tsFiles(SRC)) {
    const text = await readFile(f, "utf8");
    for (const m of text.matchAll(IMPORT_RE)) out.push({ file: relative(SRC, f), spec: (m[1] ?? m[2])! });
  }
  return out;
}

/** src/-relative path of a relative import's target, as a .ts file. */
const resolveTarget = (i: Import) => relative(SRC, join(SRC, dirname(i.file), i.spec)).replace(/\.js$/, ".ts");
const layer = (file: string) => file.split("/")[0]!;

/** The layer table of docs/ARCHITECTURE.md: folder -> folders it may import. */
async function layerTable(): Promise<Map<string, string[]>> {
  const doc = await readFile(join(REPO, "docs/ARCHITECTURE.md"), "utf8");
  const section = doc.slice(doc.indexOf("## Layers"), doc.indexOf("\n## ", doc.indexOf("## Layers") + 3));
  const table = new Map<string, string[]>();
  for (const line of section.split("\n")) {
    const cells = line.split("|").map((c) => c.trim());
    if (cells.length < 5 || !/^`[^`]+`$/.test(cells[1]!)) continue;
    const names = (c: string) => [...c.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    table.set(names(cells[1]!)[0]!, names(cells[3]!));
  }
  return table;
}

describe("layering", () => {
  it("only src/adapters imports execa and dockerode", async () => {
    const bad = (await imports()).filter((i) => /^(execa|dockerode)$/.test(i.spec) && layer(i.file) !== "adapters");
    expect(bad).toEqual([]);
  });

  it("commands import no execa, dockerode or fs, and no stages directly", async () => {
    const bad = (await imports()).filter(
      (i) => layer(i.file) === "commands" && (/^(execa|dockerode|node:fs|node:fs\/promises|fs)$/.test(i.spec) || (i.spec.startsWith(".") && layer(resolveTarget(i)) === "stages")),
    );
    expect(bad).toEqual([]);
  });

  it("formats are pure: no fs, no child processes", async () => {
    const bad = (await imports()).filter((i) => layer(i.file) === "formats" && /^(node:)?(fs|fs\/promises|child_process)$/.test(i.spec));
    // the verity worker reads the file it hashes: it is the one I/O exception in formats/
    expect(bad.filter((b) => !b.file.endsWith("verity-worker.ts"))).toEqual([]);
  });

  it("every src/ folder is in the table of docs/ARCHITECTURE.md, and the table names no other", async () => {
    const table = await layerTable();
    const folders = [...new Set((await tsFiles(SRC)).map((f) => layer(relative(SRC, f))))].sort();
    expect([...table.keys()].sort()).toEqual(folders);
  });

  it("imports follow the table of docs/ARCHITECTURE.md", async () => {
    const table = await layerTable();
    const bad = (await imports())
      .filter((i) => i.spec.startsWith("."))
      .filter((i) => {
        const from = layer(i.file);
        const to = layer(resolveTarget(i));
        return from !== to && !(table.get(from) ?? []).includes(to);
      })
      .map((i) => `${i.file} -> ${i.spec}`);
    expect(bad).toEqual([]);
  });

  it("has no import cycle between files (type-only imports included)", async () => {
    const graph = new Map<string, string[]>();
    for (const i of await imports()) {
      if (!i.spec.startsWith(".")) continue;
      graph.set(i.file, [...(graph.get(i.file) ?? []), resolveTarget(i)]);
    }
    expect(findCycles(graph)).toEqual([]);
  });

  it("the cycle finder finds a cycle", () => {
    const g = new Map([["a.ts", ["b.ts"]], ["b.ts", ["c.ts"]], ["c.ts", ["a.ts"]], ["d.ts", ["a.ts"]]]);
    expect(findCycles(g)).toEqual(["a.ts -> b.ts -> c.ts -> a.ts"]);
  });
});

/** Each cycle once, as "a -> b -> a", found by depth-first search. */
function findCycles(graph: Map<string, string[]>): string[] {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const cycles: string[] = [];
  const visit = (n: string) => {
    state.set(n, "open");
    stack.push(n);
    for (const m of [...new Set(graph.get(n) ?? [])].sort()) {
      if (state.get(m) === "open") cycles.push([...stack.slice(stack.indexOf(m)), m].join(" -> "));
      else if (!state.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, "done");
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n);
  return cycles;
}
