import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  SB,
  VERITY_SUPERBLOCK_SIZE,
  VerityFormatError,
  blockDigest,
  computeTree,
  computeTreeFromData,
  decodeSuperblock,
  deriveSalt,
  deriveUuid,
  encodeSuperblock,
  hashBlocksInto,
  treeLayout,
  treeOffset,
} from "../../src/formats/verity.js";

const FIX = join(import.meta.dirname, "../fixtures/verity");
const golden = JSON.parse(readFileSync(join(FIX, "golden.json"), "utf8")) as {
  name: string;
  version: string;
  dataBlocks: number;
  hashOffset: number;
  salt: string;
  uuid: string;
  rootHash: string;
  hashBlocks: number;
  treeSha256: string;
};
const goldenSb = readFileSync(join(FIX, "golden-superblock.bin"));

/** The golden input, as described in golden.json. */
function goldenData(blocks: number): Buffer {
  const d = Buffer.alloc(blocks * 4096);
  for (let j = 0; j < d.length; j++) d[j] = (j * 31 + Math.floor(j / 4096)) & 0xff;
  return d;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

describe("verity superblock codec", () => {
  it("encodes the golden superblock byte for byte (made by veritysetup 2.6.1)", () => {
    const ours = encodeSuperblock({
      version: 1,
      hashType: 1,
      uuid: golden.uuid,
      algorithm: "sha256",
      dataBlockSize: 4096,
      hashBlockSize: 4096,
      dataBlocks: BigInt(golden.dataBlocks),
      salt: Buffer.from(golden.salt, "hex"),
    });
    expect(ours.length).toBe(VERITY_SUPERBLOCK_SIZE);
    expect(ours.toString("hex")).toBe(goldenSb.toString("hex"));
  });

  it("decodes veritysetup's superblock into the documented fields", () => {
    const sb = decodeSuperblock(goldenSb);
    expect(sb).toEqual({
      version: 1,
      hashType: 1,
      uuid: golden.uuid,
      algorithm: "sha256",
      dataBlockSize: 4096,
      hashBlockSize: 4096,
      dataBlocks: 130n,
      salt: Buffer.from(golden.salt, "hex"),
    });
    // Field offsets as laid out in cryptsetup's struct verity_sb.
    expect(goldenSb.subarray(0, 8).toString("latin1")).toBe("verity\0\0");
    expect(goldenSb.readBigUInt64LE(SB.dataBlocks)).toBe(130n);
    expect(goldenSb.readUInt16LE(SB.saltSize)).toBe(32);
    expect(goldenSb.subarray(SB.salt + 32).every((x) => x === 0)).toBe(true);
  });

  it("round-trips an odd salt length and a 64-bit block count", () => {
    const sb = {
      version: 1,
      hashType: 1,
      uuid: "00112233-4455-6677-8899-aabbccddeeff",
      algorithm: "sha256",
      dataBlockSize: 512,
      hashBlockSize: 1024,
      dataBlocks: (1n << 40n) + 7n,
      salt: Buffer.from("abcde"),
    };
    expect(decodeSuperblock(encodeSuperblock(sb))).toEqual(sb);
  });

  it("rejects bad signatures, versions, hash types, block and salt sizes", () => {
    const bad = (mutate: (b: Buffer) => void) => {
      const b = Buffer.from(goldenSb);
      mutate(b);
      return () => decodeSuperblock(b);
    };
    expect(bad((b) => (b[0] = 0x56))).toThrow(/signature/);
    expect(bad((b) => b.writeUInt32LE(2, SB.version))).toThrow(/version 2/);
    expect(bad((b) => b.writeUInt32LE(2, SB.hashType))).toThrow(/hash type 2/);
    expect(bad((b) => b.writeUInt32LE(3000, SB.dataBlockSize))).toThrow(/block sizes/);
    expect(bad((b) => b.writeUInt16LE(257, SB.saltSize))).toThrow(/salt size/);
    expect(() => decodeSuperblock(goldenSb.subarray(0, 100))).toThrow(VerityFormatError);
    const base = decodeSuperblock(goldenSb);
    expect(() => encodeSuperblock({ ...base, salt: Buffer.alloc(257) })).toThrow(/salt/);
    expect(() => encodeSuperblock({ ...base, uuid: "not-a-uuid" })).toThrow(/UUID/);
  });
});

describe("verity tree", () => {
  it("computes veritysetup's golden root hash and tree bytes", () => {
    const data = goldenData(golden.dataBlocks);
    const { tree, rootHash, layout } = computeTreeFromData(data, { salt: Buffer.from(golden.salt, "hex") });
    expect(rootHash.toString("hex")).toBe(golden.rootHash);
    expect(layout.totalBlocks).toBe(golden.hashBlocks);
    expect(sha256(tree)).toBe(golden.treeSha256);
  });

  it("lays levels out top first, leaves last, digests = sha256(salt || block)", () => {
    const salt = Buffer.from(golden.salt, "hex");
    const data = goldenData(130);
    const { tree, rootHash, layout } = computeTreeFromData(data, { salt });
    // 130 leaves -> 2 leaf blocks -> 1 top block.
    expect(layout).toEqual({ levels: 2, hashesPerBlock: 128, levelBlocks: [2, 1], levelStart: [1, 0], totalBlocks: 3 });
    const leaf0 = blockDigest(salt, data.subarray(0, 4096));
    expect(tree.subarray(4096, 4096 + 32).equals(leaf0)).toBe(true);
    const leaf129 = blockDigest(salt, data.subarray(129 * 4096));
    expect(tree.subarray(2 * 4096 + 32, 2 * 4096 + 64).equals(leaf129)).toBe(true);
    // The rest of the last leaf block is zero.
    expect(tree.subarray(2 * 4096 + 64).every((x) => x === 0)).toBe(true);
    // Top block holds the digests of the two leaf blocks; root = its digest.
    expect(tree.subarray(0, 32).equals(blockDigest(salt, tree.subarray(4096, 8192)))).toBe(true);
    expect(tree.subarray(32, 64).equals(blockDigest(salt, tree.subarray(8192, 12288)))).toBe(true);
    expect(rootHash.equals(blockDigest(salt, tree.subarray(0, 4096)))).toBe(true);
  });

  it("matches cryptsetup's level arithmetic at the boundaries", () => {
    expect(treeLayout(1)).toMatchObject({ levels: 0, totalBlocks: 0 });
    expect(treeLayout(2)).toMatchObject({ levels: 1, levelBlocks: [1], totalBlocks: 1 });
    expect(treeLayout(128)).toMatchObject({ levels: 1, levelBlocks: [1] });
    expect(treeLayout(129)).toMatchObject({ levels: 2, levelBlocks: [2, 1], levelStart: [1, 0] });
    expect(treeLayout(128 * 128)).toMatchObject({ levels: 2, levelBlocks: [128, 1] });
    expect(treeLayout(128 * 128 + 1)).toMatchObject({ levels: 3, levelBlocks: [129, 2, 1], levelStart: [3, 1, 0] });
    // 512 MiB of 4 KiB blocks: veritysetup reports 1033 hash blocks.
    expect(treeLayout(131072).totalBlocks).toBe(1033);
    expect(treeLayout(1000, 512).hashesPerBlock).toBe(16);
    expect(treeOffset(532480)).toBe(536576);
    expect(treeOffset(1024, 512)).toBe(1536);
    expect(() => treeLayout(0)).toThrow(VerityFormatError);
  });

  it("a single data block has no tree: the root is that block's digest", () => {
    const salt = Buffer.from("00ff", "hex");
    const block = Buffer.alloc(4096, 7);
    const r = computeTreeFromData(block, { salt });
    expect(r.tree.length).toBe(0);
    expect(r.rootHash.equals(blockDigest(salt, block))).toBe(true);
  });

  it("computeTree takes leaf digests and agrees with per-block hashing", () => {
    const salt = deriveSalt("x", "2");
    const data = goldenData(300);
    const leaves = Buffer.alloc(300 * 32);
    hashBlocksInto(data, 4096, salt, leaves);
    for (const i of [0, 17, 299]) expect(leaves.subarray(i * 32, i * 32 + 32).equals(blockDigest(salt, data.subarray(i * 4096, (i + 1) * 4096)))).toBe(true);
    const a = computeTree(leaves, { salt, dataBlocks: 300 });
    const b = computeTreeFromData(data, { salt });
    expect(a.tree.equals(b.tree)).toBe(true);
    expect(a.rootHash.equals(b.rootHash)).toBe(true);
    expect(() => computeTree(leaves.subarray(32), { salt, dataBlocks: 300 })).toThrow(/leaf digests/);
    expect(() => computeTreeFromData(data.subarray(1), { salt })).toThrow(/multiple/);
  });
});

describe("salt and uuid derivation", () => {
  it("salt = sha256(\"acl-verity-salt\\0\" + name + \"\\0\" + version)", () => {
    const s = deriveSalt("golden", "1");
    expect(s.length).toBe(32);
    expect(s.toString("hex")).toBe(golden.salt);
    expect(s.equals(createHash("sha256").update("acl-verity-salt\0golden\0" + "1").digest())).toBe(true);
    expect(deriveSalt("golden", "2").equals(s)).toBe(false);
    // The separator keeps ("ab","c") and ("a","bc") apart.
    expect(deriveSalt("ab", "c").equals(deriveSalt("a", "bc"))).toBe(false);
  });

  it("uuid is stable, name-derived, version 8 with the RFC variant", () => {
    const u = deriveUuid("golden", "1");
    expect(u).toBe(golden.uuid);
    expect(u).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(deriveUuid("golden", "1.1")).not.toBe(u);
  });
});
