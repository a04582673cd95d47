/**
 * Bad input through the real CLI: a clear message naming the file and key,
 * a non-zero exit, no stack trace, and nothing published (an existing good
 * output stays as it was).
 */
import { mkdir, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { acl } from "../helpers/cli.js";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "acl-bad-"));
  await mkdir(join(dir, "overlay"));
});

async function buildSpec(name: string, text: string | Buffer, extraArgs: string[] = []) {
  const spec = join(dir, `${name}.toml`);
  await writeFile(spec, text);
  const out = join(dir, "out", name);
  const r = await acl(["build", spec, "--out", out, ...extraArgs], { env: { ACL_CACHE_DIR: join(dir, "cache") } });
  return { ...r, out };
}

function expectCleanFailure(r: { exitCode: number; stderr: string }, ...patterns: RegExp[]) {
  expect(r.exitCode).not.toBe(0);
  expect(r.stderr).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/); // no stack trace
  expect(r.stderr).toMatch(/^error: /m);
  for (const p of patterns) expect(r.stderr).toMatch(p);
}

const good = `name = "t"\nversion = "1"\n[[sources]]\ntype = "dir"\npath = "overlay"\n`;

describe("acl build rejects bad input cleanly", () => {
  it("TOML syntax error: file, line and column", async () => {
    const r = await buildSpec("syntax", `name = "t"\nversion = "1\n`);
    expectCleanFailure(r, /syntax\.toml:2:\d+: TOML syntax error/);
    expect(await readdir(join(dir, "out")).catch(() => [])).not.toContain("syntax");
  });

  it("unknown key: path and nearest valid key", async () => {
    const r = await buildSpec("unknown", good + `[kernel]\npackge = "linux-image-amd64"\n`);
    expectCleanFailure(r, /unknown key 'kernel\.packge' \(did you mean 'kernel\.package'\?\)/, /hint: rename 'packge' to 'package'/);
  });

  it("wrong type", async () => {
    const r = await buildSpec("type", good.replace('version = "1"', "version = 1.5"));
    expectCleanFailure(r, /'version' must be a string, got number 1\.5/);
  });

  it("missing referenced file", async () => {
    const r = await buildSpec("missing", good.replace('"overlay"', '"no-such-folder"'));
    expectCleanFailure(r, /'sources\[0\]\.path' refers to no-such-folder, which is not a folder/);
  });

  it("file destination escaping the root", async () => {
    const r = await buildSpec("escape", good + `[[files]]\npath = "/etc/../../../root/.ssh/authorized_keys"\ncontent = "x"\n`);
    expectCleanFailure(r, /files\[0\]\.path/, /escape/);
  });

  it("empty and binary spec files", async () => {
    expectCleanFailure(await buildSpec("empty", ""), /empty\.toml is empty/);
    const bin = Buffer.alloc(2048, 0);
    bin.write("conectix", 0, "latin1");
    expectCleanFailure(await buildSpec("binary", bin), /binary\.toml is not a text file/);
  });

  it("--json puts the error on stdout as JSON", async () => {
    const spec = join(dir, "json.toml");
    await writeFile(spec, good.replace('name = "t"', 'name = "T!"'));
    const r = await acl(["build", spec, "--json"]);
    expect(r.exitCode).not.toBe(0);
    const j = JSON.parse(r.stdout) as { error: { kind: string; message: string; hint: string } };
    expect(j.error.kind).toBe("UserError");
    expect(j.error.message).toContain("'name'");
  });

  it("an unknown Debian package is named, and a good earlier output is kept intact", async () => {
    const out = join(dir, "out", "pkg");
    await mkdir(out, { recursive: true });
    await writeFile(join(out, "manifest.json"), '{"previous":"good build"}\n');
    const spec = `name = "pkg"\nversion = "1"\n[[sources]]\ntype = "debian"\nvariant = "extract"\npackages = ["busybox-static", "no-such-package-acl"]\n`;
    const r = await buildSpec("pkg", spec);
    expectCleanFailure(r, /'sources\[0\]\.packages' names a package that Debian bookworm does not have: no-such-package-acl/);
    expect(await readFile(join(out, "manifest.json"), "utf8")).toBe('{"previous":"good build"}\n');
    const leftovers = (await readdir(join(dir, "out"))).filter((f) => f.includes(".build-"));
    expect(leftovers).toEqual([]);
    // nor a half-built stage in the cache
    expect(await readdir(join(dir, "cache", "tmp")).catch(() => [])).toEqual([]);
  });
});
