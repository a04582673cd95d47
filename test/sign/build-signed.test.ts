/**
 * Integration: the whole path a user takes. `acl keys generate`, then
 * `acl build images/minimal.toml --sign-key`, then `acl verify` on the
 * published folder (GB-sized disks, hashed by streaming), cross-checked with
 * openssl and sha256sum; then one flipped byte in the VHD must fail it.
 */
import { open, readdir, readFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { run } from "../../src/adapters/exec.js";
import { parseManifest, type Manifest } from "../../src/pipeline/manifest.js";
import { decodeSha256Sums } from "../../src/formats/sha256sums.js";
import { acl } from "../helpers/cli.js";

const SDE = "1700000000";
let tmp: string;
let out: string;
let keys: { privateKey: string; publicKey: string; keyId: string };
let manifest: Manifest;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "acl-signed-build-"));
  const k = await acl(["keys", "generate", "--out", join(tmp, "keys"), "--json"]);
  expect(k.exitCode, k.stderr).toBe(0);
  keys = JSON.parse(k.stdout);
  out = join(tmp, "out");
  const b = await acl(["build", "images/minimal.toml", "--out", out, "--sign-key", keys.privateKey, "--json"], { env: { SOURCE_DATE_EPOCH: SDE } });
  expect(b.exitCode, b.stderr.slice(-3000)).toBe(0);
  expect(JSON.parse(b.stdout).signed).toBe(true);
  manifest = parseManifest(JSON.parse(await readFile(join(out, "manifest.json"), "utf8")));
}, 30 * 60_000);

describe("acl build --sign-key, then acl verify", () => {
  it("publishes exactly the manifest's artifacts, manifest.json and the four sign files", async () => {
    const files = (await readdir(out, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(out.length + 1));
    const expected = [...manifest.artifacts.map((a) => a.path), "manifest.json", "SHA256SUMS", "SHA256SUMS.sig", "provenance.intoto.json", "acl-signing.pub"];
    expect(files.sort()).toEqual(expected.sort());
    expect(manifest.artifacts.map((a) => a.kind)).toEqual(expect.arrayContaining(["disk-raw", "disk-qcow2", "disk-vhd"]));
    expect(await readFile(join(out, "acl-signing.pub"), "utf8")).toBe(await readFile(keys.publicKey, "utf8"));
  });

  it("signs a list that sha256sum and openssl accept", async () => {
    const sums = decodeSha256Sums(await readFile(join(out, "SHA256SUMS")));
    expect(sums.map((e) => e.path).sort()).toEqual([...manifest.artifacts.map((a) => a.path), "manifest.json"].sort());
    const c = await run(["sha256sum", "--strict", "-c", "SHA256SUMS"], { cwd: out });
    expect(c.stdout.trim().split("\n")).toHaveLength(sums.length);
    const v = await run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", keys.publicKey, "-rawin", "-in", join(out, "SHA256SUMS"), "-sigfile", join(out, "SHA256SUMS.sig")]);
    expect(v.stdout).toContain("Signature Verified Successfully");
  }, 600_000);

  it("records the build's inputs, spec digest and SOURCE_DATE_EPOCH in the signed provenance", async () => {
    const env = JSON.parse(await readFile(join(out, "provenance.intoto.json"), "utf8"));
    const st = JSON.parse(Buffer.from(env.payload, "base64").toString("utf8"));
    expect(env.signatures[0].keyid).toBe(keys.keyId);
    expect(st.predicate.buildDefinition.externalParameters.spec.digest.sha256).toBe(manifest.specDigest);
    const { packages, images, archives } = manifest.inputs;
    expect(st.predicate.buildDefinition.resolvedDependencies).toHaveLength(packages.length + images.length + archives.length);
    expect(st.predicate.runDetails.builder.version).toEqual(manifest.tools);
    const t = new Date(Number(SDE) * 1000).toISOString();
    expect(st.predicate.runDetails.metadata).toEqual({ startedOn: t, finishedOn: t });
  });

  it("acl verify passes, then fails naming disk.vhd after one flipped byte", async () => {
    const ok = await acl(["verify", out, "--key", keys.publicKey, "--json"]);
    expect(ok.exitCode, ok.stdout + ok.stderr.slice(-2000)).toBe(0);
    const r = JSON.parse(ok.stdout);
    expect(r.artifacts).toBe(manifest.artifacts.length);
    expect(r.bytes).toBe(manifest.artifacts.reduce((s, a) => s + a.size, 0));
    expect(r.checks.every((c: { ok: boolean }) => c.ok)).toBe(true);

    const vhd = manifest.artifacts.find((a) => a.kind === "disk-vhd")!;
    const fh = await open(join(out, vhd.path), "r+");
    try {
      const b = Buffer.alloc(1);
      const at = Math.floor(vhd.size / 2);
      await fh.read(b, 0, 1, at);
      b[0] = b[0]! ^ 0x80;
      await fh.write(b, 0, 1, at);
    } finally {
      await fh.close();
    }
    const bad = await acl(["verify", out, "--key", keys.publicKey, "--json"]);
    expect(bad.exitCode).toBe(1);
    const err = JSON.parse(bad.stdout).error;
    expect(err.message).toContain(`artifact:${vhd.path}: ${vhd.path} was modified: sha256`);
    expect(err.message).toMatch(/\(1 of \d+ checks\)/);
  }, 900_000);
});
