/**
 * What authors write, made hostile: the shipped image specs (TOML) and
 * Butane configs (YAML) with bytes mutated and lines dropped, doubled or
 * given other values, and Butane documents of random structure. Each either
 * loads or gives an error acl reports as the user's (exit 1 with a message,
 * never "internal error"), in bounded time.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { dump } from "js-yaml";
import { describe, expect, it } from "vitest";
import { parseSpec } from "../../src/config/spec.js";
import { translateButaneFile } from "../../src/services/butane.js";
import { REPO } from "../helpers/cli.js";
import { budget, expectClearError, mutate, mutations, outcome, fuzzTime } from "./fuzz.js";

/** Values of every TOML and YAML kind, and the edges of each (a value for any key of a spec or config). */
const scalar = fc.oneof(
  fc.constantFrom('""', "0", "-1", "1e999", "nan", "inf", "true", "0o777", "0x10", "1979-05-27T07:32:00Z", "[]", "{}", "[[]]", '"../../etc/passwd"', '"/"', '"64MiB"', '"0MiB"', '"99999999TiB"', "9223372036854775807", '"\\u0000"'),
  fc.string({ maxLength: 20 }).map((s) => JSON.stringify(s)),
  fc.integer().map(String),
);

/** Line edits: drop one, double one, give one's value another. */
const lineEdits = (lines: number) =>
  fc.array(
    fc.oneof(
      fc.record({ op: fc.constant("drop" as const), line: fc.nat(lines - 1) }),
      fc.record({ op: fc.constant("double" as const), line: fc.nat(lines - 1) }),
      fc.record({ op: fc.constant("value" as const), line: fc.nat(lines - 1), value: scalar }),
    ),
    { minLength: 1, maxLength: 4 },
  );

function editLines(text: string, edits: readonly { op: "drop" | "double" | "value"; line: number; value?: string }[], sep: RegExp): string {
  const lines = text.split("\n");
  for (const e of edits) {
    const i = Math.min(e.line, lines.length - 1);
    if (i < 0) break;
    if (e.op === "drop") lines.splice(i, 1);
    else if (e.op === "double") lines.splice(i, 0, lines[i]!);
    else lines[i] = lines[i]!.replace(sep, (_m, key: string) => `${key}${e.value}`);
  }
  return lines.join("\n");
}

describe("found by fuzzing, kept as regressions", () => {
  it("an integer beyond 2^53 (TOML gives a BigInt) where a string belongs: named, not an internal error", async () => {
    const specPath = join(REPO, "images", "minimal.toml");
    const text = readFileSync(specPath, "utf8").replace(/^name = .*$/m, "name = 9223372036854775807");
    const r = await outcome(() => parseSpec(Buffer.from(text), specPath));
    expect(r.ok).toBe(false);
    expectClearError((r as { error: unknown }).error, "spec");
    expect(String((r as { error: Error }).error.message)).toMatch(/'name' must be a string, got the integer 9223372036854775807/);
  });
});

describe("author input made hostile", () => {
  for (const name of ["minimal", "container-host"]) {
    it(`the ${name} spec, mutated: loaded or refused clearly`, async () => {
      const specPath = join(REPO, "images", `${name}.toml`);
      const good = readFileSync(specPath);
      const lines = good.toString().split("\n").length;
      await fc.assert(
        fc.asyncProperty(fc.oneof(mutations(good.length, [], 4).map((ms) => mutate(good, ms)), lineEdits(lines).map((ed) => Buffer.from(editLines(good.toString(), ed, /^(\s*[\w.-]+\s*=\s*).*$/)))), async (bytes) => {
          const r = await outcome(() => parseSpec(bytes, specPath));
          if (!r.ok) expectClearError(r.error, `${name}.toml as:\n${bytes.toString()}`);
        }),
        budget(250),
      );
    }, fuzzTime(10 * 60_000));
  }

  for (const name of ["container-host.bu", "container-host-base.bu"]) {
    it(`the Butane config ${name}, mutated: translated or refused clearly`, async () => {
      const good = readFileSync(join(REPO, "butane", name));
      const lines = good.toString().split("\n").length;
      await fc.assert(
        fc.asyncProperty(fc.oneof(mutations(good.length, [], 4).map((ms) => mutate(good, ms)), lineEdits(lines).map((ed) => Buffer.from(editLines(good.toString(), ed, /^(\s*-?\s*[\w.-]+:\s*).*$/)))), async (bytes) => {
          const r = await outcome(() => translateButaneFile({ input: { text: bytes.toString(), name }, filesDir: join(REPO, "butane"), check: true }));
          if (!r.ok) expectClearError(r.error, `${name} as:\n${bytes.toString()}`);
        }),
        budget(250),
      );
    }, fuzzTime(10 * 60_000));
  }

  it("Butane documents of random structure under each variant: translated or refused clearly", async () => {
    const keys = fc.constantFrom("storage", "files", "path", "contents", "inline", "source", "mode", "systemd", "units", "name", "enabled", "passwd", "users", "ssh_authorized_keys", "links", "target", "directories", "filesystems", "device", "format", "wipe_filesystem", "ignition", "config", "merge", "local", "overwrite", "user", "group", "id", "dropins", "mask", "kernel_arguments", "should_exist", "luks", "trees");
    const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: "small" }, fc.string({ maxLength: 12 }), fc.integer(), fc.boolean(), fc.constant(null), fc.array(tie("v"), { maxLength: 3 }), fc.dictionary(keys, tie("v"), { maxKeys: 4 })),
    })).v;
    const doc = fc.record({
      variant: fc.constantFrom("flatcar", "fcos", "openshift", "acl", ""),
      version: fc.constantFrom("1.0.0", "1.1.0", "1.5.0", "2.0.0", "x"),
      body: fc.dictionary(keys, value, { maxKeys: 4 }),
    });
    await fc.assert(
      fc.asyncProperty(doc, async (d) => {
        const text = dump({ variant: d.variant, version: d.version, ...(d.body as object) });
        const r = await outcome(() => translateButaneFile({ input: { text, name: "random.bu" }, check: true }));
        if (!r.ok) expectClearError(r.error, `random.bu:\n${text}`);
      }),
      budget(300),
    );
  }, fuzzTime(10 * 60_000));
});
