/**
 * The CLI's own surface: `acl --help` is a table of contents (every command
 * with a one-line summary), every command has a description and examples, and
 * output piped into a reader that stops early (`| head`) ends quietly.
 */
import { execa } from "execa";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { acl, REPO } from "../helpers/cli.js";

/** Command ids from the compiled command files: build, spec check, … */
async function commandIds(dir = join(REPO, "dist/commands"), prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...(await commandIds(join(dir, e.name), `${prefix}${e.name} `)));
    else if (e.name.endsWith(".js")) out.push(`${prefix}${e.name.replace(/\.js$/, "")}`);
  }
  return out.sort();
}

describe("help", () => {
  it("acl --help lists every command on one line with its summary", async () => {
    const ids = await commandIds();
    expect(ids.length).toBeGreaterThanOrEqual(10);
    const r = await acl(["--help"]);
    expect(r.exitCode).toBe(0);
    const section = r.stdout.slice(r.stdout.indexOf("\nCOMMANDS\n"));
    for (const id of ids) {
      const line = section.split("\n").find((l) => l.startsWith(`  ${id} `));
      expect(line, id).toBeDefined();
      // one line, no wrapped continuation
      const next = section.split("\n")[section.split("\n").indexOf(line!) + 1] ?? "";
      expect(next.startsWith("  ") && !/^ {2}\S/.test(next), `${id}: summary wraps`).toBe(false);
      expect(line!.slice(id.length + 2).trim().length, id).toBeGreaterThan(10);
    }
  });

  it("every command has a summary, a description and examples", async () => {
    for (const id of await commandIds()) {
      const r = await acl([...id.split(" "), "--help"]);
      expect(r.exitCode, id).toBe(0);
      expect(r.stdout, id).toMatch(/\nDESCRIPTION\n {2}\S/);
      expect(r.stdout, id).toMatch(/\nEXAMPLES\n {2}\$ acl /);
      expect(r.stdout.split("\n")[0]!.length, id).toBeGreaterThan(10);
    }
  });

  it("`acl spec docs | head -1`, `acl --help | head -1` and `acl aks plan --help | head -1` end quietly", async () => {
    for (const cmd of ["spec docs", "--help", "aks plan --help"]) {
      const r = await execa("sh", ["-c", `"${process.execPath}" "${join(REPO, "bin/run.js")}" ${cmd} | head -1`], { reject: false });
      expect(r.exitCode, cmd).toBe(0);
      expect(r.stderr, cmd).toBe("");
      expect(r.stdout.split("\n")).toHaveLength(1);
    }
  });
});
