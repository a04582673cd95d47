import { describe, expect, it, beforeAll } from "vitest";
import { readFile, writeFile, rm, copyFile } from "node:fs/promises";
import { createHash, createPrivateKey } from "node:crypto";
import { INTOTO_PAYLOAD_TYPE, pae } from "../../src/formats/dsse.js";
import { signBytes } from "../../src/formats/signature.js";
import { join } from "node:path";
import { run } from "../../src/adapters/exec.js";
import { UserError } from "../../src/errors.js";
import { canonicalJson, MANIFEST_FILE } from "../../src/pipeline/manifest.js";
import { signOutput, PROVENANCE_FILE, PUBLIC_KEY_FILE, SIGNATURE_FILE } from "../../src/stages/release/sign.js";
import { SHA256SUMS_FILE } from "../../src/formats/sha256sums.js";
import { verifyOutput, type VerifyResult } from "../../src/services/verify.js";
import { generateKeys } from "../../src/services/keys.js";
import { copyTree, fixtureProvenance, flipByte, makeFixture, tempDir, TEST_KEY, TEST_PUB } from "./fixture.js";

let signed: string;
let otherPub: string;

/** A fresh copy of the signed fixture to tamper with. */
async function copy(): Promise<string> {
  const d = await tempDir("acl-tamper-");
  await copyTree(signed, d);
  return d;
}

async function failure(outDir: string, keyPath = TEST_PUB): Promise<UserError> {
  const e = await verifyOutput({ outDir, keyPath }).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, "verification should have failed").toBeInstanceOf(UserError);
  return e as UserError;
}

beforeAll(async () => {
  signed = await tempDir("acl-signed-");
  const manifest = await makeFixture(signed);
  await signOutput({ stagingDir: signed, manifest, privateKeyPath: TEST_KEY, provenance: fixtureProvenance(manifest) });
  otherPub = (await generateKeys({ outDir: await tempDir("acl-otherkey-") })).publicKey;
});

describe("acl verify (service)", () => {
  it("accepts a signed output and lists every check", async () => {
    const r: VerifyResult = await verifyOutput({ outDir: signed, keyPath: TEST_PUB });
    expect(r.ok).toBe(true);
    expect(r.keyType).toBe("ed25519");
    expect(r.keyId).toBe("06e3fd8fda29bb60ab59557de61edb0aecdb231134be30e75b455f8e1b792fa9");
    expect(r.artifacts).toBe(4);
    expect(r.bytes).toBe(128 * 1024 + 40 * 1024 + 7 + 44);
    expect(r.checks.map((c) => c.name)).toEqual([
      "sha256sums-signature",
      "sha256sums-format",
      "manifest-digest",
      "manifest-schema",
      "coverage",
      "artifact:disk.raw",
      "artifact:empty.txt",
      "artifact:sbom/packages.spdx.json",
      "artifact:usr.erofs",
      "provenance-signature",
      "provenance-statement",
      "provenance-subjects",
      "public-key",
    ]);
    expect(r.checks.every((c) => c.ok)).toBe(true);
  });

  for (const [file, offset] of [
    ["disk.raw", 0],
    ["disk.raw", -1],
    ["usr.erofs", 40 * 1024 + 3],
    ["sbom/packages.spdx.json", 5],
  ] as const) {
    it(`fails on a flipped byte in ${file} at ${offset}`, async () => {
      const d = await copy();
      await flipByte(join(d, file), offset);
      const e = await failure(d);
      expect(e.message).toContain(`artifact:${file}: ${file} was modified: sha256`);
      expect(e.message).toMatch(/\(1 of 13 checks\)/);
      expect(e.file).toBe(join(d, file));
      expect(e.hint).toMatch(/changed after signing/);
    });
  }

  it("fails on a file that grew (size and sha256 named)", async () => {
    const d = await copy();
    await writeFile(join(d, "empty.txt"), "x");
    const e = await failure(d);
    expect(e.message).toContain("empty.txt was modified: size 1, expected 0, sha256");
  });

  it("fails on a missing artifact", async () => {
    const d = await copy();
    await rm(join(d, "usr.erofs"));
    const e = await failure(d);
    expect(e.message).toContain("artifact:usr.erofs: usr.erofs is missing");
  });

  it("fails on an altered manifest (valid JSON, valid schema, one field changed)", async () => {
    const d = await copy();
    const m = JSON.parse(await readFile(join(d, MANIFEST_FILE), "utf8"));
    m.version = "1.2.4";
    await writeFile(join(d, MANIFEST_FILE), canonicalJson(m));
    const e = await failure(d);
    expect(e.message).toMatch(/manifest-digest: manifest\.json was altered: sha256 [0-9a-f]{64}, signed 231afb25/);
    expect(e.message).not.toContain("artifact:");
  });

  it("fails on a manifest that lists a different digest for an artifact and a flipped byte in manifest.json", async () => {
    const d = await copy();
    const m = JSON.parse(await readFile(join(d, MANIFEST_FILE), "utf8"));
    m.artifacts[0].sha256 = "0".repeat(64);
    await writeFile(join(d, MANIFEST_FILE), canonicalJson(m));
    const e = await failure(d);
    expect(e.message).toContain("manifest-digest");
    expect(e.message).toContain(`coverage: disk.raw: manifest sha256 ${"0".repeat(64)} != SHA256SUMS`);
    const d2 = await copy();
    await flipByte(join(d2, MANIFEST_FILE), 10);
    const e2 = await failure(d2);
    expect(e2.message).toContain("manifest-digest");
  });

  it("fails with the wrong key, naming the key that did sign", async () => {
    const e = await failure(signed, otherPub);
    expect(e.message).toContain("sha256sums-signature: SHA256SUMS.sig does not verify with key");
    expect(e.message).toContain("provenance-signature: none of the 1 DSSE signature(s) verifies");
    expect(e.message).toContain("public-key: acl-signing.pub has key id 06e3fd8f");
    expect(e.hint).toContain("the output was signed by key 06e3fd8fda29bb60ab59557de61edb0aecdb231134be30e75b455f8e1b792fa9");
  });

  it("fails on an unsigned output folder", async () => {
    const d = await tempDir("acl-unsigned-");
    await makeFixture(d);
    const e = await failure(d);
    expect(e.message).toContain("is not signed: SHA256SUMS and SHA256SUMS.sig missing");
    expect(e.hint).toContain("--sign-key");
    const d2 = await copy();
    await rm(join(d2, SIGNATURE_FILE));
    expect((await failure(d2)).message).toContain("is not signed: SHA256SUMS.sig missing");
  });

  it("fails when SHA256SUMS is edited to match a tampered artifact", async () => {
    const d = await copy();
    await writeFile(join(d, "empty.txt"), "evil\n");
    const sums = (await readFile(join(d, SHA256SUMS_FILE), "utf8")).replace(
      /e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  empty\.txt/,
      `${createHash("sha256").update("evil\n").digest("hex")}  empty.txt`,
    );
    await writeFile(join(d, SHA256SUMS_FILE), sums);
    const e = await failure(d);
    expect(e.message).toContain("sha256sums-signature");
    expect(e.message).toContain("provenance-subjects: empty.txt: subject sha256");
    // the edited list matches the file's sha256; only the manifest's size still catches it
    expect(e.message).toContain("artifact:empty.txt: empty.txt was modified: size 5, expected 0\n");
  });

  it("fails on an extra SHA256SUMS line not in the manifest, and on a tampered provenance payload", async () => {
    const d = await copy();
    await writeFile(join(d, "extra.bin"), "x");
    await writeFile(join(d, SHA256SUMS_FILE), (await readFile(join(d, SHA256SUMS_FILE), "utf8")) + `2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881  extra.bin\n`);
    const e = await failure(d);
    expect(e.message).toContain("coverage: extra.bin is in SHA256SUMS but not in the manifest");

    const d2 = await copy();
    const env = JSON.parse(await readFile(join(d2, PROVENANCE_FILE), "utf8"));
    const st = JSON.parse(Buffer.from(env.payload, "base64").toString("utf8"));
    st.predicate.runDetails.builder.id = "https://evil.invalid/";
    env.payload = Buffer.from(JSON.stringify(st)).toString("base64");
    await writeFile(join(d2, PROVENANCE_FILE), JSON.stringify(env));
    const e2 = await failure(d2);
    expect(e2.message).toContain("provenance-signature: none of the 1 DSSE signature(s) verifies");
    expect(e2.message).toMatch(/\(1 of 13 checks\)/);
  });

  it("fails on a provenance envelope that is missing, not JSON, or validly signed but wrong", async () => {
    const d = await copy();
    await rm(join(d, PROVENANCE_FILE));
    expect((await failure(d)).message).toContain("provenance-signature: provenance.intoto.json is missing");
    await writeFile(join(d, PROVENANCE_FILE), "[]");
    expect((await failure(d)).message).toContain("provenance.intoto.json is not a DSSE envelope: envelope is not a JSON object");

    // re-signed with the right key, so only the content checks can catch these
    const key = createPrivateKey(await readFile(TEST_KEY));
    const resign = async (edit: (st: Record<string, any>) => void) => {
      const env = JSON.parse(await readFile(join(signed, PROVENANCE_FILE), "utf8"));
      const st = JSON.parse(Buffer.from(env.payload, "base64").toString("utf8"));
      edit(st);
      const payload = Buffer.from(JSON.stringify(st));
      env.payload = payload.toString("base64");
      env.signatures[0].sig = signBytes(key, pae(INTOTO_PAYLOAD_TYPE, payload)).toString("base64");
      await writeFile(join(d, PROVENANCE_FILE), JSON.stringify(env));
      return failure(d);
    };
    const e1 = await resign((st) => (st.predicateType = "https://slsa.dev/provenance/v0.2"));
    expect(e1.message).toContain("provenance-statement: provenance.intoto.json: predicateType is 'https://slsa.dev/provenance/v0.2'");
    expect(e1.message).toMatch(/\(1 of 12 checks\)/);
    const e2 = await resign((st) => (st.subject = st.subject.filter((x: { name: string }) => x.name !== "disk.raw")));
    expect(e2.message).toContain("provenance-subjects: disk.raw is not a subject");
    const e3 = await resign((st) => st.subject.push({ name: "other.bin", digest: { sha256: "0".repeat(64) } }));
    expect(e3.message).toContain("provenance-subjects: subject other.bin is not in SHA256SUMS");
    const e4 = await resign((st) => delete st.subject);
    expect(e4.message).toContain("provenance-subjects: the statement has no subject list");
  });

  it("fails on a missing or swapped acl-signing.pub even when signatures are good", async () => {
    const d = await copy();
    await copyFile(otherPub, join(d, PUBLIC_KEY_FILE));
    expect((await failure(d)).message).toContain("public-key: acl-signing.pub has key id");
    await rm(join(d, PUBLIC_KEY_FILE));
    expect((await failure(d)).message).toContain("public-key: acl-signing.pub is missing");
  });

  it("accepts an output whose SHA256SUMS.sig was made by openssl (real tool output)", async () => {
    const d = await copy();
    await run(["openssl", "pkeyutl", "-sign", "-inkey", TEST_KEY, "-rawin", "-in", join(d, SHA256SUMS_FILE), "-out", join(d, SIGNATURE_FILE)]);
    const r = await verifyOutput({ outDir: d, keyPath: TEST_PUB });
    expect(r.checks.find((c) => c.name === "sha256sums-signature")!.ok).toBe(true);
  });

  it("verifies an RSA-signed output and rejects it with the Ed25519 key", async () => {
    const keys = await generateKeys({ outDir: await tempDir("acl-rsakeys-"), type: "rsa" });
    const d = await tempDir("acl-rsa-out-");
    const manifest = await makeFixture(d);
    await signOutput({ stagingDir: d, manifest, privateKeyPath: keys.privateKey, provenance: fixtureProvenance(manifest) });
    const r = await verifyOutput({ outDir: d, keyPath: keys.publicKey });
    expect(r.keyType).toBe("rsa");
    expect((await failure(d, TEST_PUB)).message).toContain("sha256sums-signature");
  });

  it("refuses a private key as --key, a missing key, and a folder that does not exist", async () => {
    const e = await verifyOutput({ outDir: signed, keyPath: TEST_KEY }).catch((x) => x);
    expect(e).toBeInstanceOf(UserError);
    expect(e.message).toContain("is a private key");
    const e2 = await verifyOutput({ outDir: signed, keyPath: join(signed, "nope.pub") }).catch((x) => x);
    expect(e2.message).toContain("cannot read public key");
    const e3 = await verifyOutput({ outDir: join(signed, "nope"), keyPath: TEST_PUB }).catch((x) => x);
    expect(e3.message).toContain("is not a folder");
  });

  it("handles a garbage SHA256SUMS and a manifest that is not JSON without crashing", async () => {
    const d = await copy();
    await writeFile(join(d, SHA256SUMS_FILE), "garbage\n");
    await writeFile(join(d, MANIFEST_FILE), "{not json");
    const e = await failure(d);
    expect(e.message).toContain("sha256sums-format: line 1");
    expect(e.message).toContain("manifest-schema: not valid JSON");
  });
});
