/**
 * The error surface, through the real CLI: every failure is one small JSON
 * object on stdout with --json (usage errors included) and nothing else, or
 * `error:`/`hint:` lines on stderr in one style; exit 1 for the user's
 * problems, 2 for a wrong command line, 70 only for bugs.
 */
import { writeFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { errorReport, EXIT_BUG, ISSUE_TRACKER } from "../../src/errors.js";
import { oclifUsageError, reportFailure } from "../../src/lib/cli-errors.js";
import { acl } from "../helpers/cli.js";

/** The whole of stdout must be one JSON object with a small `error`. */
function jsonError(stdout: string): { kind: string; message: string; hint?: string; file?: string; key?: string; exitCode: number } {
  expect(stdout.length).toBeLessThan(1200);
  const j = JSON.parse(stdout) as { error: ReturnType<typeof jsonError> };
  expect(Object.keys(j)).toEqual(["error"]);
  return j.error;
}

describe("usage errors", () => {
  it("with --json: one small object on stdout, exit 2 (a missing argument, an unknown flag or command, a bad option value)", async () => {
    const cases: [string[], RegExp][] = [
      [["spec", "check", "--json"], /^missing required argument: SPEC, image spec \(TOML\)$/],
      [["build", "--json"], /^missing required argument: SPEC, image spec \(TOML\)$/],
      [["build", "images/minimal.toml", "--bogus", "--json"], /^nonexistent flag: --bogus$/],
      [["boot-test", "out/x", "--firmware", "bios", "--json"], /^expected --firmware=bios to be one of: uefi, direct$/],
      [["nosuch", "--json"], /^'nosuch' is not an acl command$/],
    ];
    for (const [argv, message] of cases) {
      const r = await acl(argv);
      expect(r.exitCode, argv.join(" ")).toBe(2);
      const e = jsonError(r.stdout);
      expect(e.kind).toBe("UsageError");
      expect(e.message, argv.join(" ")).toMatch(message);
      expect(e.exitCode).toBe(2);
      expect(e.hint).toMatch(/--help/);
      expect(r.stderr).not.toMatch(/›|Error:/);
    }
  });

  it("without --json: error: and hint: on stderr, nothing on stdout, no oclif style", async () => {
    const r = await acl(["spec", "check"]);
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe("");
    // (the helper strips the final newline, as execa does)
    expect(r.stderr).toBe("error: missing required argument: SPEC, image spec (TOML)\nhint: for example: acl spec check images/minimal.toml; see `acl spec check --help`");
    const u = await acl(["build", "--bogus"]);
    expect(u.stderr).toMatch(/^error: nonexistent flag: --bogus\nhint: .*acl build --help/);
    expect(u.stderr).not.toContain("›");
    const n = await acl(["nosuch"]);
    expect([n.exitCode, n.stderr]).toEqual([2, "error: 'nosuch' is not an acl command\nhint: see `acl --help`"]);
  });
});

describe("user errors", () => {
  it("a bad spec: exit 1, the file, the key and the fix, as JSON with --json", async () => {
    const dir = await mkdtemp(join(tmpdir(), "acl-cli-spec-"));
    const spec = join(dir, "s.toml");
    await writeFile(spec, `name = "t"\nversion = "1"\n[[sources]]\ntype = "dir"\npath = "."\n[partitions]\nesp = 64\n`);
    const r = await acl(["spec", "check", spec, "--json"]);
    expect(r.exitCode).toBe(1);
    const e = jsonError(r.stdout);
    expect(e).toMatchObject({ kind: "UserError", file: spec, key: "partitions.esp", exitCode: 1 });
    expect(e.message).toContain("'partitions.esp' is 64, a number without a unit");
    expect(e.hint).toBe('write esp = "64MiB" (or "64GiB"); units: B, KiB, MiB, GiB, TiB');
  });
});

describe("spec values `spec check` used to let through", () => {
  it("sizes without a unit, below a partition's minimum or not whole MiB, and decimal modes: exit 1 with the key and the fix", async () => {
    const dir = await mkdtemp(join(tmpdir(), "acl-cli-values-"));
    const head = `name = "t"\nversion = "1"\n[[sources]]\ntype = "dir"\npath = "."\n`;
    const cases: [string, string, RegExp, RegExp][] = [
      ["esp = 64", "partitions.esp", /'partitions\.esp' is 64, a number without a unit/, /esp = "64MiB"/],
      ['esp = "1B"', "partitions.esp", /'partitions\.esp' is "1B" \(1 byte\), not a whole number of MiB/, /aligned to 1 MiB/],
      ['root = "0MiB"', "partitions.root", /'partitions\.root' is 0 MiB; ROOT \(ext4 with a journal\) needs at least 8 MiB/, /root = "8MiB" or more/],
      ['usr = "1.5"', "partitions.usr", /'partitions\.usr' is "1\.5", which is not a size/, /add a unit/],
    ];
    for (const [line, key, message, hint] of cases) {
      const spec = join(dir, "s.toml");
      await writeFile(spec, `${head}[partitions]\n${line}\n`);
      const r = await acl(["spec", "check", spec]);
      expect(r.exitCode, line).toBe(1);
      expect(r.stderr, line).toMatch(message);
      expect(r.stderr, line).toMatch(new RegExp(`\nhint: .*${hint.source}`));
      const j = jsonError((await acl(["spec", "check", spec, "--json"])).stdout);
      expect(j.key, line).toBe(key);
    }
    const spec = join(dir, "mode.toml");
    await writeFile(spec, `${head}[[files]]\npath = "/etc/motd"\ncontent = "hi"\nmode = 644\n`);
    const r = await acl(["spec", "check", spec]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`error: ${spec}:9:8: 'files[0].mode' = 644 is a decimal integer, which would be mode 0o1204; did you mean 0o644?\nhint: write modes as a string ("0644") or as TOML octal (0o644)`);
  });
});

describe("bugs", () => {
  it("anything that is not a user's problem exits 70, says it is a bug and where to report it", () => {
    const r = errorReport(new TypeError("cannot read properties of undefined (reading 'x')"));
    expect(r.exitCode).toBe(EXIT_BUG);
    expect(r.kind).toBe("BugError");
    expect(r.message).toBe("internal error (a bug in acl): cannot read properties of undefined (reading 'x')");
    expect(r.hint).toContain(ISSUE_TRACKER);
    // a file-system error about a path is the user's, not a bug
    const enoent = Object.assign(new Error("ENOENT: no such file or directory, open '/x/y'"), { code: "ENOENT", path: "/x/y" });
    expect(errorReport(enoent)).toMatchObject({ kind: "UserError", message: "/x/y does not exist", file: "/x/y", exitCode: 1 });
    const full = Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    expect(errorReport(full)).toMatchObject({ kind: "UserError", message: "no space left on device", exitCode: 1 });
    expect(oclifUsageError(new Error("plain"))).toBeUndefined();
  });

  it("is printed in the same style (and as JSON with --json)", () => {
    const writes: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    const origOut = process.stdout.write.bind(process.stdout);
    process.stderr.write = ((s: string) => (writes.push(`err:${s}`), true)) as typeof process.stderr.write;
    process.stdout.write = ((s: string) => (writes.push(`out:${s}`), true)) as typeof process.stdout.write;
    let text: number;
    let json: number;
    try {
      text = reportFailure(new RangeError("boom"), false);
      json = reportFailure(new RangeError("boom"), true);
    } finally {
      process.stderr.write = orig;
      process.stdout.write = origOut;
    }
    expect([text, json]).toEqual([70, 70]);
    expect(writes[0]).toBe(`err:error: internal error (a bug in acl): boom\nhint: please report it at ${ISSUE_TRACKER} with the command you ran and its output with ACL_DEBUG=1 (which shows the stack trace)\n`);
    expect(JSON.parse(writes[1]!.slice(4))).toEqual({ error: { kind: "BugError", message: "internal error (a bug in acl): boom", hint: expect.stringContaining(ISSUE_TRACKER), exitCode: 70 } });
  });
});
