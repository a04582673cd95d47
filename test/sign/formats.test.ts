import { describe, expect, it } from "vitest";
import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/exec.js";
import { decodeBase64Either, DsseDecodeError, envelopeFromJson, envelopeToJson, INTOTO_PAYLOAD_TYPE, pae, parsePae } from "../../src/formats/dsse.js";
import { comparePaths, decodeSha256Sums, encodeSha256Sums, Sha256SumsError } from "../../src/formats/sha256sums.js";
import { keyId, keyTypeOf, signBytes, verifyBytes } from "../../src/formats/signature.js";
import { debPurl, ociDigest } from "../../src/formats/provenance.js";
import { tempDir, TEST_KEY, TEST_PUB } from "./fixture.js";

// RFC 8032 section 7.1, TEST 1 (also key "A" of the DSSE test vectors)
const RFC8032_T1_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const RFC8032_T1_SIG_EMPTY =
  "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

describe("DSSE PAE", () => {
  it("matches the DSSE protocol's example byte for byte", () => {
    expect(pae("http://example.com/HelloWorld", Buffer.from("hello world")).toString("latin1")).toBe(
      "DSSEv1 29 http://example.com/HelloWorld 11 hello world",
    );
  });

  it("matches golden hex for an in-toto payload, an empty body, and a non-ASCII type (length in bytes)", () => {
    const body = Buffer.from('{"_type":"https://in-toto.io/Statement/v1"}');
    expect(pae(INTOTO_PAYLOAD_TYPE, body).toString("hex")).toBe(
      "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203433207b225f74797065223a2268747470733a2f2f696e2d746f746f2e696f2f53746174656d656e742f7631227d",
    );
    expect(pae(INTOTO_PAYLOAD_TYPE, Buffer.alloc(0)).toString("hex")).toBe(
      "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203020",
    );
    expect(pae("application/vnd.exämple+json", Buffer.from("x")).toString("latin1")).toBe(
      "DSSEv1 29 application/vnd.ex\xc3\xa4mple+json 1 x",
    );
  });

  it("the Ed25519 signature of that PAE with the RFC 8032 TEST 1 key is the published vector", async () => {
    const key = createPrivateKey(await readFile(TEST_KEY));
    const body = Buffer.from('{"_type":"https://in-toto.io/Statement/v1"}');
    expect(signBytes(key, pae(INTOTO_PAYLOAD_TYPE, body)).toString("base64")).toBe(
      "2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nqyJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA==",
    );
  });

  it("parsePae inverts pae and rejects inconsistent lengths", () => {
    const b = pae("t/x", Buffer.from("a b 3 c"));
    expect(parsePae(b)).toEqual({ payloadType: "t/x", body: Buffer.from("a b 3 c") });
    expect(() => parsePae(Buffer.from("DSSEv1 3 t/x 8 a b 3 c"))).toThrow(DsseDecodeError);
    expect(() => parsePae(Buffer.from("DSSEv1 03 t/x 7 a b 3 c"))).toThrow(/leading zeros/);
    expect(() => parsePae(Buffer.from("DSSEv2 3 t/x 1 a"))).toThrow(/not a DSSEv1/);
  });
});

describe("DSSE envelope", () => {
  it("round-trips and accepts URL-safe base64 as verifiers must", () => {
    const env = { payloadType: INTOTO_PAYLOAD_TYPE, payload: Buffer.from([0xfb, 0xff, 0xbf, 0x3e, 0x3f]), signatures: [{ keyid: "k", sig: Buffer.from([0xff, 0xfe]) }] };
    const json = envelopeToJson(env);
    expect(json).toEqual({ payload: "+/+/Pj8=", payloadType: INTOTO_PAYLOAD_TYPE, signatures: [{ keyid: "k", sig: "//4=" }] });
    expect(envelopeFromJson(json)).toEqual(env);
    expect(envelopeFromJson({ ...json, payload: "-_-_Pj8=" }).payload).toEqual(env.payload);
    expect(envelopeToJson({ ...env, signatures: [{ sig: Buffer.from("s") }] }).signatures).toEqual([{ sig: "cw==" }]);
  });

  it("names the bad field of a malformed envelope", () => {
    expect(() => envelopeFromJson([])).toThrow(/not a JSON object/);
    expect(() => envelopeFromJson({ payload: "", signatures: [] })).toThrow(/payloadType/);
    expect(() => envelopeFromJson({ payloadType: "t", payload: "", signatures: [{}] })).toThrow(/signatures\[0\]\.sig/);
    expect(() => decodeBase64Either("a%b", "x")).toThrow(/x is not base64/);
  });
});

describe("SHA256SUMS", () => {
  const a = "a".repeat(64);
  const b = "b".repeat(64);

  it("encodes golden bytes: sorted by UTF-8 bytes, two spaces, newline-terminated", () => {
    const out = encodeSha256Sums([
      { path: "b.txt", sha256: b },
      { path: "Z/é.bin", sha256: a },
      { path: "a.txt", sha256: a },
    ]);
    expect(out.toString("utf8")).toBe(`${a}  Z/é.bin\n${a}  a.txt\n${b}  b.txt\n`);
    expect(comparePaths("Z", "a")).toBeLessThan(0);
    expect(comparePaths("\u{1F600}", "\uFFFF")).toBeGreaterThan(0); // byte order, not UTF-16 order
    expect(encodeSha256Sums([]).length).toBe(0);
  });

  it("refuses names coreutils would escape, unsafe paths, duplicates and bad digests", () => {
    expect(() => encodeSha256Sums([{ path: "a\nb", sha256: a }])).toThrow(Sha256SumsError);
    expect(() => encodeSha256Sums([{ path: "a\\b", sha256: a }])).toThrow(/backslash/);
    expect(() => encodeSha256Sums([{ path: "../x", sha256: a }])).toThrow(/'\.\.'/);
    expect(() => encodeSha256Sums([{ path: "/etc/passwd", sha256: a }])).toThrow(/absolute/);
    expect(() => encodeSha256Sums([{ path: "x", sha256: a }, { path: "x", sha256: b }])).toThrow(/twice/);
    expect(() => encodeSha256Sums([{ path: "x", sha256: "A".repeat(64) }])).toThrow(/lowercase/);
  });

  it("parses what GNU sha256sum writes, in text and binary mode", async () => {
    const dir = await tempDir("acl-sums-");
    await mkdir(join(dir, "sub dir"), { recursive: true });
    await writeFile(join(dir, "one"), "1\n");
    await writeFile(join(dir, "sub dir", "two words.txt"), "");
    const text = await run(["sha256sum", "one", "sub dir/two words.txt"], { cwd: dir });
    const bin = await run(["sha256sum", "--binary", "one"], { cwd: dir });
    expect(decodeSha256Sums(Buffer.from(text.stdout))).toEqual([
      { path: "one", sha256: "4355a46b19d348dc2f57c046f8ef63d4538ebb936000f3c9ee954a27460dd865" },
      { path: "sub dir/two words.txt", sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    ]);
    expect(bin.stdout).toContain(" *one");
    expect(decodeSha256Sums(Buffer.from(bin.stdout))).toEqual([{ path: "one", sha256: "4355a46b19d348dc2f57c046f8ef63d4538ebb936000f3c9ee954a27460dd865" }]);
  });

  it("rejects malformed lists, naming the line", () => {
    expect(() => decodeSha256Sums(Buffer.from(`${a}  x`))).toThrow(/not terminated/);
    expect(() => decodeSha256Sums(Buffer.from(`${a}  x\nnonsense\n`))).toThrow(/line 2/);
    expect(() => decodeSha256Sums(Buffer.from(`\\${a}  x\\ny\n`))).toThrow(/escaped/);
    expect(() => decodeSha256Sums(Buffer.from(`${a}  ../../etc/shadow\n`))).toThrow(/line 1/);
    expect(() => decodeSha256Sums(Buffer.from(`${a}  x\n${b}  x\n`))).toThrow(/twice/);
    expect(decodeSha256Sums(Buffer.from(`${"A".repeat(64)}  x\n`))[0]!.sha256).toBe(a);
  });
});

describe("signature primitives", () => {
  it("reproduce RFC 8032 TEST 1 (public key and signature of the empty message)", async () => {
    const key = createPrivateKey(await readFile(TEST_KEY));
    const pub = createPublicKey(await readFile(TEST_PUB));
    expect(pub.export({ format: "jwk" }).x).toBe(Buffer.from(RFC8032_T1_PUBLIC, "hex").toString("base64url"));
    expect(signBytes(key, Buffer.alloc(0)).toString("hex")).toBe(RFC8032_T1_SIG_EMPTY);
    expect(verifyBytes(pub, Buffer.alloc(0), Buffer.from(RFC8032_T1_SIG_EMPTY, "hex"))).toBe(true);
    expect(verifyBytes(pub, Buffer.from([0]), Buffer.from(RFC8032_T1_SIG_EMPTY, "hex"))).toBe(false);
    expect(verifyBytes(pub, Buffer.alloc(0), Buffer.from("short"))).toBe(false);
  });

  it("key id equals sha256 of the SPKI DER as openssl prints it", async () => {
    const der = await run(["sh", "-c", 'openssl pkey -pubin -in "$1" -outform DER | sha256sum', "sh", TEST_PUB]);
    const pub = createPublicKey(await readFile(TEST_PUB));
    expect(keyId(pub)).toBe(der.stdout.split(" ")[0]);
    expect(keyId(createPrivateKey(await readFile(TEST_KEY)))).toBe(keyId(pub));
  });

  it("verifies a signature made by `openssl pkeyutl -sign -rawin`", async () => {
    const dir = await tempDir("acl-ossl-");
    await writeFile(join(dir, "msg"), "signed by openssl\n");
    await run(["openssl", "pkeyutl", "-sign", "-inkey", TEST_KEY, "-rawin", "-in", join(dir, "msg"), "-out", join(dir, "sig")]);
    const pub = createPublicKey(await readFile(TEST_PUB));
    expect(verifyBytes(pub, await readFile(join(dir, "msg")), await readFile(join(dir, "sig")))).toBe(true);
  });

  it("accepts ed25519 and RSA >= 2048 bits, rejects small RSA and other types", () => {
    expect(keyTypeOf(generateKeyPairSync("ed25519").publicKey)).toBe("ed25519");
    expect(keyTypeOf(generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey)).toBe("rsa");
    expect(() => keyTypeOf(generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey)).toThrow(/at least 2048/);
    expect(() => keyTypeOf(generateKeyPairSync("ed448").publicKey)).toThrow(/unsupported key type 'ed448'/);
  });
});

describe("provenance helpers", () => {
  it("makes Debian package URLs with percent-encoded versions", () => {
    expect(debPurl("tzdata", "1:2025b-0+deb12u1", "all")).toBe("pkg:deb/debian/tzdata@1%3A2025b-0%2Bdeb12u1?arch=all");
    expect(debPurl("libstdc++6", "12.2.0-14", "amd64")).toBe("pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64");
  });
  it("splits OCI digests", () => {
    expect(ociDigest("sha256:" + "AB".repeat(32))).toEqual({ sha256: "ab".repeat(32) });
    expect(ociDigest("latest")).toBeUndefined();
  });
});
