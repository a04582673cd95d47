import { describe, expect, it } from "vitest";
import { decodeUpdateHeader, encodeUpdateHeader, UPDATE_HEADER_ALIGN, type UpdateMetadata } from "../../src/formats/update-payload.js";

const meta: UpdateMetadata = {
  name: "minimal",
  version: "1.2.3",
  microarch: "x86-64-v3",
  filesystem: "erofs",
  size: 8192,
  sha256: "ab".repeat(32),
  verity: { rootHash: "cd".repeat(32), salt: "ef".repeat(32), hashOffset: 4096, dataBlocks: 1, dataBlockSize: 4096, hashBlockSize: 4096, algorithm: "sha256", hashType: 1, uuid: "00000000-0000-8000-8000-000000000000" },
};

describe("update payload header", () => {
  it("has golden leading bytes and is block aligned", () => {
    const h = encodeUpdateHeader(meta);
    expect(h.length % UPDATE_HEADER_ALIGN).toBe(0);
    expect(h.subarray(0, 8).toString("latin1")).toBe("ACLUPD\0\x01");
    const len = h.readUInt32BE(8);
    expect(h.subarray(12, 12 + len).toString()).toMatch(/^\{"filesystem":"erofs","microarch":"x86-64-v3","name":"minimal"/);
    expect(h.subarray(12 + len).every((x) => x === 0)).toBe(true);
  });
  it("round-trips and rejects garbage", () => {
    const h = encodeUpdateHeader(meta);
    const d = decodeUpdateHeader(h);
    expect(d.meta).toEqual(meta);
    expect(d.dataOffset).toBe(h.length);
    expect(() => decodeUpdateHeader(Buffer.from("CrAU0000000000"))).toThrow(/bad magic/);
    expect(() => decodeUpdateHeader(h.subarray(0, 20))).toThrow(/truncated/);
  });
  it("is deterministic regardless of key order", () => {
    const shuffled = JSON.parse(JSON.stringify({ verity: meta.verity, sha256: meta.sha256, size: meta.size, filesystem: meta.filesystem, microarch: meta.microarch, version: meta.version, name: meta.name }));
    expect(encodeUpdateHeader(shuffled).equals(encodeUpdateHeader(meta))).toBe(true);
  });
});
