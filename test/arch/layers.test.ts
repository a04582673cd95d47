/** Keeps the layering honest: which src/ folders may import what. */
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = join(import.meta.dirname, "../../src");

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await files(p)));
    else if (e.name.endsWith(".ts")) out.push(p);
  }
  return out.sort();
}

async function imports(): Promise<{ file: string; spec: string }[]> {
  const out: { file: string; spec: string }[] = [];
  for (const f of await files(SRC)) {
    const text = await readFile(f, "utf8");
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^;]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g)) {
      out.push({ file: relative(SRC, f), spec: (m[1] ?? m[2])! });
    }
  }
  return out;
}

const layer = (file: string) => file.split("/")[0]!;
const target = (file: string, spec: string) => (spec.startsWith(".") ? relative(SRC, join(SRC, file, "..", spec)).split("/")[0]! : spec);

describe("layering", () => {
  it("only src/adapters imports execa and dockerode", async () => {
    const bad = (await imports()).filter((i) => /^(execa|dockerode)$/.test(i.spec) && layer(i.file) !== "adapters");
    expect(bad).toEqual([]);
  });

  it("commands import no execa, dockerode or fs, and no stages directly", async () => {
    const bad = (await imports()).filter(
      (i) => layer(i.file) === "commands" && (/^(execa|dockerode|node:fs|node:fs\/promises|fs)$/.test(i.spec) || target(i.file, i.spec) === "stages"),
    );
    expect(bad).toEqual([]);
  });

  it("formats are pure: no fs, no child processes, no higher layers", async () => {
    const bad = (await imports()).filter(
      (i) =>
        layer(i.file) === "formats" &&
        (/^(node:)?(fs|fs\/promises|child_process)$/.test(i.spec) || ["stages", "services", "commands", "adapters", "pipeline"].includes(target(i.file, i.spec))),
    );
    // the verity worker reads the file it hashes: it is the one I/O exception in formats/
    expect(bad.filter((b) => !b.file.endsWith("verity-worker.ts"))).toEqual([]);
  });

  it("dependencies point downward only", async () => {
    const order = ["commands", "lib", "services", "stages", "pipeline", "config", "adapters", "formats", "output", "errors.ts"];
    const allowed: Record<string, string[]> = {
      commands: ["lib", "services", "output", "errors.ts", "config", "pipeline"],
      lib: ["output", "errors.ts", "adapters"],
      services: ["stages", "pipeline", "config", "adapters", "formats", "output", "errors.ts"],
      stages: ["stages", "pipeline", "config", "adapters", "formats", "output", "errors.ts"],
      pipeline: ["pipeline", "formats", "errors.ts"],
      config: ["config", "errors.ts"],
      adapters: ["adapters", "errors.ts", "formats", "output"],
      formats: ["formats", "errors.ts"],
      output: ["output"],
    };
    const bad = (await imports())
      .filter((i) => i.spec.startsWith("."))
      .filter((i) => {
        const from = layer(i.file);
        const to = target(i.file, i.spec);
        return from !== to && order.includes(to) && !(allowed[from] ?? []).includes(to);
      })
      .map((i) => `${i.file} -> ${i.spec}`);
    expect(bad).toEqual([]);
  });
});
