/**
 * `acl keys generate` and `acl verify` through the built CLI (dist/ via
 * `tsc -p .`, then ./bin/acl), as a user runs them.
 */
import { describe, expect, it, beforeAll } from "vitest";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/exec.js";
import { signOutput } from "../../src/stages/release/sign.js";
import { fixtureProvenance, flipByte, makeFixture, REPO, tempDir } from "./fixture.js";

const ACL = join(REPO, "bin", "acl");

function acl(args: string[], opts: { umask?: string } = {}) {
  const argv = opts.umask ? ["sh", "-c", `umask ${opts.umask}; exec "$@"`, "sh", ACL, ...args] : [ACL, ...args];
  return run(argv, { cwd: REPO, okCodes: [0, 1, 2] });
}

/** True when every src/**\/*.ts has a dist/**\/*.js at least as new (then `tsc` would change nothing). */
async function distIsFresh(): Promise<boolean> {
  const files = await readdir(join(REPO, "src"), { recursive: true });
  for (const f of files.filter((x) => x.endsWith(".ts") && !x.endsWith(".d.ts"))) {
    const js = await stat(join(REPO, "dist", f.replace(/\.ts$/, ".js"))).catch(() => undefined);
    if (!js || js.mtimeMs < (await stat(join(REPO, "src", f))).mtimeMs) return false;
  }
  return true;
}

beforeAll(async () => {
  // test/setup/build.global.ts compiled the CLI before any test ran
  expect(await distIsFresh()).toBe(true);
}, 300_000);

describe("acl keys generate (CLI)", () => {
  it("writes a 0600 PKCS#8 private key and an SPKI public key, even under umask 000", async () => {
    const dir = join(await tempDir("acl-cli-keys-"), "keys");
    const r = await acl(["keys", "generate", "--out", dir, "--json"], { umask: "000" });
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out).toEqual({
      type: "ed25519",
      keyId: expect.stringMatching(/^[0-9a-f]{64}$/),
      privateKey: join(dir, "acl-signing.key"),
      publicKey: join(dir, "acl-signing.pub"),
    });
    expect((await stat(out.privateKey)).mode & 0o777).toBe(0o600);
    expect((await stat(out.publicKey)).mode & 0o777).toBe(0o644);
    expect(await readFile(out.privateKey, "utf8")).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(await readFile(out.publicKey, "utf8")).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    // openssl reads both and agrees on the key id (sha256 of the SPKI DER)
    const text = await run(["openssl", "pkey", "-in", out.privateKey, "-noout", "-text"]);
    expect(text.stdout).toContain("ED25519 Private-Key");
    const der = await run(["sh", "-c", 'openssl pkey -pubin -in "$1" -outform DER | sha256sum', "sh", out.publicKey]);
    expect(der.stdout.split(" ")[0]).toBe(out.keyId);
  });

  it("refuses to overwrite without --force and replaces the pair with it", async () => {
    const dir = await tempDir("acl-cli-keys-");
    const first = JSON.parse((await acl(["keys", "generate", "--out", dir, "--json"])).stdout);
    const before = await readFile(join(dir, "acl-signing.key"));
    const again = await acl(["keys", "generate", "--out", dir, "--json"]);
    expect(again.exitCode, again.stdout + again.stderr).toBe(1);
    const err = JSON.parse(again.stdout).error;
    expect(err.kind).toBe("UserError");
    expect(err.message).toContain(`refusing to overwrite ${join(dir, "acl-signing.key")}`);
    expect(err.hint).toContain("--force");
    expect((await readFile(join(dir, "acl-signing.key"))).equals(before)).toBe(true);
    const human = await acl(["keys", "generate", "--out", dir]);
    expect(human.exitCode).toBe(1);
    expect(human.stderr).toMatch(/^error: .*refusing to overwrite/m);
    expect(human.stderr).toMatch(/^hint: .*--force/m);
    const forced = await acl(["keys", "generate", "--out", dir, "--force", "--json"]);
    expect(forced.exitCode, forced.stderr).toBe(0);
    expect(JSON.parse(forced.stdout).keyId).not.toBe(first.keyId);
    expect((await stat(join(dir, "acl-signing.key"))).mode & 0o777).toBe(0o600);
  });

  it("--type rsa makes a 3072-bit RSA key", async () => {
    const dir = await tempDir("acl-cli-keys-");
    const r = await acl(["keys", "generate", "--out", dir, "--type", "rsa", "--json"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).type).toBe("rsa");
    const text = await run(["openssl", "pkey", "-in", join(dir, "acl-signing.key"), "-noout", "-text"]);
    expect(text.stdout).toContain("Private-Key: (3072 bit, 2 primes)");
    const bad = await acl(["keys", "generate", "--out", dir, "--type", "dsa"]);
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toContain("ed25519");
  });
});

describe("acl verify (CLI)", () => {
  let out: string;
  let keys: { privateKey: string; publicKey: string; keyId: string };
  beforeAll(async () => {
    keys = JSON.parse((await acl(["keys", "generate", "--out", await tempDir("acl-cli-k-"), "--json"])).stdout);
    out = await tempDir("acl-cli-out-");
    const manifest = await makeFixture(out);
    await signOutput({ stagingDir: out, manifest, privateKeyPath: keys.privateKey, provenance: fixtureProvenance(manifest) });
  });

  it("exits 0 with every check in --json", async () => {
    const r = await acl(["verify", out, "--key", keys.publicKey, "--json"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res).toMatchObject({ ok: true, outDir: out, keyId: keys.keyId, keyType: "ed25519", name: "fixture", version: "1.2.3", artifacts: 4 });
    expect(res.checks).toHaveLength(13);
    expect(res.checks.every((c: { ok: boolean }) => c.ok)).toBe(true);
    // progress goes to stderr as JSON events, never into the result
    expect(r.stderr).toContain('"event":"stage-start"');
  });

  it("prints one line per check for humans", async () => {
    const r = await acl(["verify", out, "--key", keys.publicKey]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok {2}sha256sums-signature/m);
    expect(r.stdout).toMatch(/^ok {2}artifact:disk\.raw/m);
    expect(r.stdout).toMatch(/^verified fixture 1\.2\.3: 4 artifacts/m);
  });

  it("exits 1 naming the file for a flipped byte, and for the wrong key", async () => {
    const tampered = await tempDir("acl-cli-bad-");
    const manifest = await makeFixture(tampered);
    await signOutput({ stagingDir: tampered, manifest, privateKeyPath: keys.privateKey, provenance: fixtureProvenance(manifest) });
    await flipByte(join(tampered, "usr.erofs"), 100);
    const r = await acl(["verify", tampered, "--key", keys.publicKey, "--json"]);
    expect(r.exitCode).toBe(1);
    const err = JSON.parse(r.stdout).error;
    expect(err.kind).toBe("UserError");
    expect(err.message).toContain("artifact:usr.erofs: usr.erofs was modified");
    expect(err.file).toBe(join(tampered, "usr.erofs"));

    const other = JSON.parse((await acl(["keys", "generate", "--out", await tempDir("acl-cli-k2-"), "--json"])).stdout);
    const w = await acl(["verify", out, "--key", other.publicKey]);
    expect(w.exitCode).toBe(1);
    expect(w.stdout).toBe("");
    expect(w.stderr).toContain("SHA256SUMS.sig does not verify with key");
    expect(w.stderr).toContain(`hint: the output was signed by key ${keys.keyId}`);
  });

  it("exits 1 for an unsigned folder and requires --key", async () => {
    const plain = await tempDir("acl-cli-plain-");
    await makeFixture(plain);
    const r = await acl(["verify", plain, "--key", keys.publicKey, "--json"]);
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stdout).error.message).toContain("is not signed");
    const nokey = await acl(["verify", plain]);
    expect(nokey.exitCode).not.toBe(0);
    expect(nokey.exitCode).toBe(2);
    expect(nokey.stderr).toContain("Missing required flag key");
  });
});
