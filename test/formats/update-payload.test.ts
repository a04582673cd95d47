import { execa } from "execa";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { signBytes } from "../../src/formats/signature.js";
import {
  decodeSignatureBlock,
  decodeUpdateHeader,
  encodeSignatureBlock,
  encodeUpdateHeader,
  layoutSections,
  UPDATE_ALIGN,
} from "../../src/formats/update-payload.js";

const base = {
  name: "minimal",
  version: "1.2.3",
  microarch: "x86-64-v3",
  filesystem: "erofs",
  verity: { rootHash: "cd".repeat(32), salt: "ef".repeat(32), hashOffset: 4096, dataBlocks: 1, dataBlockSize: 4096, hashBlockSize: 4096, algorithm: "sha256", hashType: 1, uuid: "00000000-0000-8000-8000-000000000000" },
};
const sections = [
  { name: "uki-A" as const, size: 5000, sha256: "a1".repeat(32) },
  { name: "uki-B" as const, size: 5000, sha256: "b2".repeat(32) },
  { name: "usr" as const, size: 8192, sha256: "ab".repeat(32) },
];

describe("update payload format 2", () => {
  it("has golden leading bytes, aligned sections and the signature offset after the last one", () => {
    const { header, meta } = encodeUpdateHeader(base, sections);
    expect(header.length).toBe(UPDATE_ALIGN);
    expect(header.subarray(0, 8).toString("latin1")).toBe("ACLUPD\0\x02");
    const len = header.readUInt32BE(8);
    expect(header.subarray(12, 12 + len).toString()).toMatch(/^\{"filesystem":"erofs","format":2,"microarch":"x86-64-v3","name":"minimal","sections":\[\{"name":"uki-A","offset":4096,/);
    expect(header.subarray(12 + len).every((x) => x === 0)).toBe(true);
    expect(meta.sections.map((s) => s.offset)).toEqual([4096, 12288, 20480]);
    expect(meta.signatureOffset).toBe(28672);
    expect(layoutSections(4096, sections).signatureOffset).toBe(28672);
  });

  it("round-trips, with minVersion, and is deterministic regardless of key order", () => {
    const { header, meta } = encodeUpdateHeader({ ...base, minVersion: "1.0.0" }, sections);
    const d = decodeUpdateHeader(header);
    expect(d.meta).toEqual(meta);
    expect(d.dataOffset).toBe(header.length);
    const shuffled = JSON.parse(JSON.stringify({ verity: base.verity, filesystem: base.filesystem, microarch: base.microarch, version: base.version, name: base.name, minVersion: "1.0.0" }));
    expect(encodeUpdateHeader(shuffled, sections).header.equals(header)).toBe(true);
  });

  it("refuses garbage with a message naming what is wrong", () => {
    const { header } = encodeUpdateHeader(base, sections);
    expect(() => decodeUpdateHeader(Buffer.from("CrAU0000000000"))).toThrow(/bad magic/);
    expect(() => decodeUpdateHeader(header.subarray(0, 20))).toThrow(/truncated/);
    const v1 = Buffer.from(header);
    v1[7] = 1;
    expect(() => decodeUpdateHeader(v1)).toThrow(/format 1 is not supported/);
    const padded = Buffer.from(header);
    padded[4000] = 1;
    expect(() => decodeUpdateHeader(padded)).toThrow(/padding is not zero/);
    const huge = Buffer.from(header);
    huge.writeUInt32BE(0x7fffffff, 8);
    expect(() => decodeUpdateHeader(huge)).toThrow(/claims/);
    const noUsr = encodeUpdateHeader(base, sections.slice(0, 2)).header;
    expect(() => decodeUpdateHeader(noUsr)).toThrow(/section 'usr' is missing/);
  });

  it("signature block round-trips and must fill the rest of the file exactly", () => {
    const sig = { algorithm: "ed25519", keyId: "00".repeat(32), signature: Buffer.alloc(64, 7).toString("base64") };
    const b = encodeSignatureBlock(sig);
    expect(b.subarray(0, 8).toString("latin1")).toBe("ACLSIG\0\x01");
    expect(decodeSignatureBlock(b)).toEqual(sig);
    expect(() => decodeSignatureBlock(Buffer.concat([b, Buffer.from("x")]))).toThrow(/wrong length/);
    expect(() => decodeSignatureBlock(Buffer.alloc(0))).toThrow(/not signed/);
  });

  it("the header signature verifies with openssl (Ed25519 over the raw header bytes)", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const d = mkdtempSync(join(tmpdir(), "acl-payload-sig-"));
    const { header } = encodeUpdateHeader(base, sections);
    writeFileSync(join(d, "header"), header);
    writeFileSync(join(d, "sig"), signBytes(privateKey, header));
    writeFileSync(join(d, "pub.pem"), publicKey.export({ format: "pem", type: "spki" }));
    const r = await execa("openssl", ["pkeyutl", "-verify", "-pubin", "-inkey", join(d, "pub.pem"), "-rawin", "-in", join(d, "header"), "-sigfile", join(d, "sig")], { reject: false });
    expect(r.stdout + r.stderr).toMatch(/Signature Verified Successfully/);
  });
});
