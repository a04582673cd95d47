import { describe, expect, it, beforeAll } from "vitest";
import { readFile, writeFile, mkdir, readdir, copyFile, rm } from "node:fs/promises";
import { createHash, createPublicKey } from "node:crypto";
import { join } from "node:path";
import { run } from "../../src/adapters/exec.js";
import { BugError, UserError } from "../../src/errors.js";
import { canonicalJson, MANIFEST_FILE, Artifact } from "../../src/pipeline/manifest.js";
import { signOutput, SIGN_FILES, PROVENANCE_FILE, SIGNATURE_FILE, PUBLIC_KEY_FILE } from "../../src/stages/release/sign.js";
import { decodeSha256Sums, SHA256SUMS_FILE } from "../../src/formats/sha256sums.js";
import { envelopeFromJson, INTOTO_PAYLOAD_TYPE, pae } from "../../src/formats/dsse.js";
import { keyId } from "../../src/formats/signature.js";
import { fixtureProvenance, flipByte, GOLDEN, makeFixture, tempDir, TEST_KEY, TEST_PUB } from "./fixture.js";

async function signFixture(dir: string, key = TEST_KEY) {
  const manifest = await makeFixture(dir);
  const extra = await signOutput({ stagingDir: dir, manifest, privateKeyPath: key, provenance: fixtureProvenance(manifest) });
  return { manifest, extra };
}

async function requireOpenssl(): Promise<void> {
  // fails loudly (UserError naming the package) when openssl is missing
  await run(["openssl", "version"]);
}

describe("signOutput", () => {
  let dir: string;
  let extra: Artifact[];
  beforeAll(async () => {
    dir = await tempDir();
    ({ extra } = await signFixture(dir));
  });

  it("writes the four sign files and returns them as manifest artifacts", async () => {
    expect(extra.map((a) => a.path)).toEqual(["SHA256SUMS", "SHA256SUMS.sig", "acl-signing.pub", "provenance.intoto.json"]);
    expect(extra.map((a) => a.kind)).toEqual(["checksums", "signature", "public-key", "provenance"]);
    for (const a of extra) {
      expect(() => Artifact.parse(a)).not.toThrow();
      const b = await readFile(join(dir, a.path));
      expect(a.size).toBe(b.length);
      expect(a.sha256).toBe(createHash("sha256").update(b).digest("hex"));
    }
    expect([...SIGN_FILES].sort()).toEqual(extra.map((a) => a.path));
  });

  it("matches the golden files byte for byte", async () => {
    const update = process.env.ACL_UPDATE_GOLDEN === "1";
    if (update) await mkdir(GOLDEN, { recursive: true });
    for (const f of SIGN_FILES) {
      const got = await readFile(join(dir, f));
      if (update) await writeFile(join(GOLDEN, f), got);
      expect(got.equals(await readFile(join(GOLDEN, f))), f).toBe(true);
    }
  });

  it("lists every artifact and manifest.json, sorted, in sha256sum format that `sha256sum -c` accepts", async () => {
    const sums = decodeSha256Sums(await readFile(join(dir, SHA256SUMS_FILE)));
    expect(sums.map((e) => e.path)).toEqual(["disk.raw", "empty.txt", "manifest.json", "sbom/packages.spdx.json", "usr.erofs"]);
    const r = await run(["sha256sum", "--strict", "-c", SHA256SUMS_FILE], { cwd: dir });
    expect(r.stdout.trim().split("\n").sort()).toEqual(sums.map((e) => `${e.path}: OK`).sort());
  });

  it("SHA256SUMS.sig verifies with `openssl pkeyutl -verify -rawin` (Ed25519)", async () => {
    await requireOpenssl();
    expect((await readFile(join(dir, SIGNATURE_FILE))).length).toBe(64);
    const r = await run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", TEST_PUB, "-rawin", "-in", join(dir, SHA256SUMS_FILE), "-sigfile", join(dir, SIGNATURE_FILE)]);
    expect(r.stdout).toContain("Signature Verified Successfully");
    // and openssl rejects it for a one-byte change of SHA256SUMS
    const bad = join(dir, "..", `${dir.split("/").pop()}-bad-sums`);
    const sums = await readFile(join(dir, SHA256SUMS_FILE));
    sums[0] = sums[0] === 0x30 ? 0x31 : 0x30;
    await writeFile(bad, sums);
    const r2 = await run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", TEST_PUB, "-rawin", "-in", bad, "-sigfile", join(dir, SIGNATURE_FILE)], { okCodes: [1] });
    expect(r2.exitCode).toBe(1);
    expect(r2.stdout + r2.stderr).toContain("Signature Verification Failure");
  });

  it("the DSSE signature verifies with openssl over the PAE, and the statement is SLSA provenance v1", async () => {
    await requireOpenssl();
    const env = envelopeFromJson(JSON.parse(await readFile(join(dir, PROVENANCE_FILE), "utf8")));
    expect(env.payloadType).toBe(INTOTO_PAYLOAD_TYPE);
    expect(env.signatures).toHaveLength(1);
    expect(env.signatures[0]!.keyid).toBe(keyId(createPublicKey(await readFile(TEST_PUB))));
    const paeFile = join(dir, "..", `${dir.split("/").pop()}.pae`);
    const sigFile = `${paeFile}.sig`;
    await writeFile(paeFile, pae(env.payloadType, env.payload));
    await writeFile(sigFile, env.signatures[0]!.sig);
    const r = await run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", TEST_PUB, "-rawin", "-in", paeFile, "-sigfile", sigFile]);
    expect(r.stdout).toContain("Signature Verified Successfully");

    const st = JSON.parse(env.payload.toString("utf8"));
    expect(st._type).toBe("https://in-toto.io/Statement/v1");
    expect(st.predicateType).toBe("https://slsa.dev/provenance/v1");
    const sums = decodeSha256Sums(await readFile(join(dir, SHA256SUMS_FILE)));
    expect(st.subject).toEqual(sums.map((e) => ({ name: e.path, digest: { sha256: e.sha256 } })));
    const bd = st.predicate.buildDefinition;
    expect(bd.externalParameters.spec).toEqual({ path: "images/fixture.toml", digest: { sha256: createHash("sha256").update("name = 'fixture'\n").digest("hex") } });
    expect(bd.resolvedDependencies.map((d: { uri?: string; name?: string }) => d.uri ?? d.name)).toEqual([
      "pkg:deb/debian/bash@5.2.15-2%2Bb7?arch=amd64",
      "pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?arch=amd64",
      "pkg:deb/debian/systemd@252.38-1~deb12u1?arch=amd64",
      "pkg:deb/debian/tzdata@1%3A2025b-0%2Bdeb12u1?arch=all",
      "docker.io/library/busybox:1.36",
      "overlay/extra.tar",
    ]);
    expect(bd.resolvedDependencies[4].digest).toEqual({ sha256: "12".repeat(32) });
    expect(st.predicate.runDetails.builder).toEqual({
      id: "https://example.invalid/acl/builder@v0.1.0",
      version: { acl: "0.1.0", "mkfs.erofs": "mkfs.erofs 1.5", veritysetup: "veritysetup 2.6.1" },
    });
    expect(st.predicate.runDetails.metadata).toEqual({ startedOn: "2026-01-01T00:00:00.000Z", finishedOn: "2026-01-01T00:00:00.000Z" });
  });

  it("ships the public key and never the private key", async () => {
    const pub = await readFile(join(dir, PUBLIC_KEY_FILE), "utf8");
    expect(pub).toBe(await readFile(TEST_PUB, "utf8"));
    const secretB64 = (await readFile(TEST_KEY, "utf8")).split("\n")[1]!;
    const seed = Buffer.from("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "hex");
    const files = await readdir(dir, { recursive: true, withFileTypes: true });
    for (const f of files.filter((e) => e.isFile())) {
      const b = await readFile(join(f.parentPath, f.name));
      expect(b.includes("PRIVATE KEY"), f.name).toBe(false);
      expect(b.includes(secretB64), f.name).toBe(false);
      expect(b.includes(seed), f.name).toBe(false);
    }
  });

  it("is reproducible: signing the same output twice gives identical bytes", async () => {
    const other = await tempDir();
    await signFixture(other);
    for (const f of [...SIGN_FILES, MANIFEST_FILE]) {
      expect((await readFile(join(other, f))).equals(await readFile(join(dir, f))), f).toBe(true);
    }
  });

  it("signs with an RSA key made by `openssl genpkey` (PKCS#1 v1.5 SHA-256, checked by openssl dgst)", async () => {
    await requireOpenssl();
    const keys = await tempDir("acl-rsa-");
    const key = join(keys, "rsa.key");
    const pub = join(keys, "rsa.pub");
    await run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key]);
    await run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub]);
    const out = await tempDir();
    await signFixture(out, key);
    expect((await readFile(join(out, SIGNATURE_FILE))).length).toBe(256);
    const r = await run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature", join(out, SIGNATURE_FILE), join(out, SHA256SUMS_FILE)]);
    expect(r.stdout).toContain("Verified OK");
    // deterministic for RSA too
    const again = await tempDir();
    await signFixture(again, key);
    for (const f of SIGN_FILES) expect((await readFile(join(again, f))).equals(await readFile(join(out, f))), f).toBe(true);
  });

  it("refuses a key inside the output folder, a public key, a missing key, and an unsupported key type", async () => {
    const out = await tempDir();
    const manifest = await makeFixture(out);
    const prov = fixtureProvenance(manifest);
    await copyFile(TEST_KEY, join(out, "inside.key"));
    await expect(signOutput({ stagingDir: out, manifest, privateKeyPath: join(out, "inside.key"), provenance: prov })).rejects.toThrow(/inside the output folder/);
    const e1 = await signOutput({ stagingDir: out, manifest, privateKeyPath: TEST_PUB, provenance: prov }).catch((e) => e);
    expect(e1).toBeInstanceOf(UserError);
    expect(e1.message).toContain("is not a PEM private key");
    expect(e1.hint).toContain("public key");
    const e2 = await signOutput({ stagingDir: out, manifest, privateKeyPath: join(out, "..", "acl-no-such-dir", "nope.key"), provenance: prov }).catch((e) => e);
    expect(e2).toBeInstanceOf(UserError);
    expect(e2.hint).toContain("acl keys generate");
    await requireOpenssl();
    const ec = join(await tempDir("acl-ec-"), "ec.key");
    await run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ec]);
    await expect(signOutput({ stagingDir: out, manifest, privateKeyPath: ec, provenance: prov })).rejects.toThrow(/unsupported key type 'ec'/);
  });

  it("is a bug (not a silent bad signature) when the manifest disagrees with the files or with manifest.json", async () => {
    const out = await tempDir();
    const manifest = await makeFixture(out);
    const prov = fixtureProvenance(manifest);
    const changed = { ...manifest, version: "9.9.9" };
    await expect(signOutput({ stagingDir: out, manifest: changed, privateKeyPath: TEST_KEY, provenance: prov })).rejects.toBeInstanceOf(BugError);
    await writeFile(join(out, "empty.txt"), "not the same bytes");
    await expect(signOutput({ stagingDir: out, manifest, privateKeyPath: TEST_KEY, provenance: prov })).rejects.toThrow(/empty\.txt is 18 bytes, the manifest says 0/);
    await writeFile(join(out, "empty.txt"), "");
    await flipByte(join(out, "usr.erofs"), 7);
    // same size: only a re-hash notices
    await expect(signOutput({ stagingDir: out, manifest, privateKeyPath: TEST_KEY, provenance: prov, rehash: true })).rejects.toThrow(
      /usr\.erofs has sha256 [0-9a-f]{64}, the manifest says/,
    );
    await rm(join(out, "disk.raw"));
    await expect(signOutput({ stagingDir: out, manifest, privateKeyPath: TEST_KEY, provenance: prov })).rejects.toThrow(/disk\.raw is missing/);
    const listed = { ...manifest, artifacts: [...manifest.artifacts, { path: "SHA256SUMS", kind: "checksums" as const, size: 0, sha256: "0".repeat(64) }] };
    await writeFile(join(out, MANIFEST_FILE), canonicalJson(listed));
    await expect(signOutput({ stagingDir: out, manifest: listed, privateKeyPath: TEST_KEY, provenance: prov })).rejects.toThrow(/a file the sign stage writes/);
    await expect(
      signOutput({ stagingDir: out, manifest, privateKeyPath: TEST_KEY, provenance: { ...prov, startedOn: "yesterday" } }),
    ).rejects.toThrow(/RFC 3339/);
  });
});
