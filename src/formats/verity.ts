/**
 * dm-verity metadata as written by cryptsetup (`veritysetup format`, hash
 * type 1): the 512-byte on-disk superblock and the hash tree.
 *
 * Pure codec: bytes in, bytes out, no I/O. The stage (src/stages/verity.ts)
 * reads the filesystem image, feeds the leaf digests to `computeTree` and
 * writes the result after the data.
 *
 * Layout (cryptsetup lib/verity/verity.c and verity_hash.c):
 *   superblock at hash_offset, little-endian, 512 bytes:
 *     0 signature "verity\0\0" · 8 u32 version (1) · 12 u32 hash_type (1 = normal)
 *     16 uuid[16] · 32 algorithm[32] (NUL padded) · 64 u32 data_block_size
 *     68 u32 hash_block_size · 72 u64 data_blocks · 80 u16 salt_size · 82 pad[6]
 *     88 salt[256] · 344 pad[168]
 *   the tree starts at the first hash-block boundary after the superblock;
 *   levels are stored top first, leaves last; every level is a run of hash
 *   blocks, each holding `hashesPerBlock` digests, zero padded;
 *   digest = H(salt ‖ block) for hash type 1; root hash = H(salt ‖ top block).
 */
import { createHash, hash as oneShotHash } from "node:crypto";

export const VERITY_SIGNATURE = Buffer.from("verity\0\0", "latin1");
export const VERITY_SUPERBLOCK_SIZE = 512;
export const VERITY_SB_VERSION = 1;
/** Hash type 1 ("normal"): the salt is hashed before the block. Type 0 (Chrome OS) appends it. */
export const VERITY_HASH_TYPE_NORMAL = 1;
export const VERITY_MAX_SALT_SIZE = 256;
export const VERITY_DEFAULT_BLOCK_SIZE = 4096;
/** cryptsetup refuses more levels than this. */
export const VERITY_MAX_LEVELS = 63;
export const SHA256_DIGEST_SIZE = 32;
export const VERITY_ALGORITHM = "sha256";

/** Field offsets inside the superblock. */
export const SB = {
  signature: 0,
  version: 8,
  hashType: 12,
  uuid: 16,
  algorithm: 32,
  algorithmSize: 32,
  dataBlockSize: 64,
  hashBlockSize: 68,
  dataBlocks: 72,
  saltSize: 80,
  salt: 88,
} as const;

/** A /usr slot's verity parameters as the manifest, the update payload and `acl inspect` carry them (hex strings). */
export interface VerityParams {
  rootHash: string;
  salt: string;
  hashOffset: number;
  dataBlocks: number;
  dataBlockSize: number;
  hashBlockSize: number;
  algorithm: string;
  hashType: number;
  uuid: string;
}

export interface VeritySuperblock {
  version: number;
  hashType: number;
  /** Canonical lower-case 8-4-4-4-12 form. */
  uuid: string;
  algorithm: string;
  dataBlockSize: number;
  hashBlockSize: number;
  dataBlocks: bigint;
  salt: Buffer;
}

/** A malformed verity superblock or an impossible parameter. */
export class VerityFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "VerityFormatError";
  }
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function uuidToBytes(uuid: string): Buffer {
  if (!UUID_RE.test(uuid)) throw new VerityFormatError(`not a UUID: '${uuid}' (expected 8-4-4-4-12 hex digits)`);
  return Buffer.from(uuid.replace(/-/g, ""), "hex");
}

export function uuidFromBytes(b: Uint8Array): string {
  const h = Buffer.from(b.subarray(0, 16)).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Block sizes cryptsetup accepts: a power of two from 512 bytes to 512 KiB. */
export function isValidBlockSize(n: number): boolean {
  return Number.isInteger(n) && n >= 512 && n <= 512 * 1024 && (n & (n - 1)) === 0;
}

export function encodeSuperblock(sb: VeritySuperblock): Buffer {
  if (sb.salt.length > VERITY_MAX_SALT_SIZE) {
    throw new VerityFormatError(`salt is ${sb.salt.length} bytes; at most ${VERITY_MAX_SALT_SIZE} fit in the superblock`);
  }
  const alg = Buffer.from(sb.algorithm, "latin1");
  if (alg.length === 0 || alg.length > SB.algorithmSize) {
    throw new VerityFormatError(`hash algorithm name '${sb.algorithm}' must be 1-${SB.algorithmSize} bytes`);
  }
  if (!isValidBlockSize(sb.dataBlockSize) || !isValidBlockSize(sb.hashBlockSize)) {
    throw new VerityFormatError(`block sizes must be powers of two from 512 to 524288 (got ${sb.dataBlockSize}/${sb.hashBlockSize})`);
  }
  if (sb.dataBlocks < 0n || sb.dataBlocks >= 1n << 64n) throw new VerityFormatError(`data block count out of range: ${sb.dataBlocks}`);
  const b = Buffer.alloc(VERITY_SUPERBLOCK_SIZE);
  VERITY_SIGNATURE.copy(b, SB.signature);
  b.writeUInt32LE(sb.version, SB.version);
  b.writeUInt32LE(sb.hashType, SB.hashType);
  uuidToBytes(sb.uuid).copy(b, SB.uuid);
  alg.copy(b, SB.algorithm);
  b.writeUInt32LE(sb.dataBlockSize, SB.dataBlockSize);
  b.writeUInt32LE(sb.hashBlockSize, SB.hashBlockSize);
  b.writeBigUInt64LE(sb.dataBlocks, SB.dataBlocks);
  b.writeUInt16LE(sb.salt.length, SB.saltSize);
  sb.salt.copy(b, SB.salt);
  return b;
}

/** Decode and check a superblock the way cryptsetup does when it opens one. */
export function decodeSuperblock(bytes: Uint8Array): VeritySuperblock {
  if (bytes.length < VERITY_SUPERBLOCK_SIZE) {
    throw new VerityFormatError(`verity superblock needs ${VERITY_SUPERBLOCK_SIZE} bytes, got ${bytes.length}`);
  }
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, VERITY_SUPERBLOCK_SIZE);
  if (!b.subarray(SB.signature, SB.signature + 8).equals(VERITY_SIGNATURE)) {
    throw new VerityFormatError("no verity superblock here (signature is not \"verity\\0\\0\")");
  }
  const version = b.readUInt32LE(SB.version);
  if (version !== VERITY_SB_VERSION) throw new VerityFormatError(`unsupported verity superblock version ${version}`);
  const hashType = b.readUInt32LE(SB.hashType);
  if (hashType > VERITY_HASH_TYPE_NORMAL) throw new VerityFormatError(`unsupported verity hash type ${hashType}`);
  const dataBlockSize = b.readUInt32LE(SB.dataBlockSize);
  const hashBlockSize = b.readUInt32LE(SB.hashBlockSize);
  if (!isValidBlockSize(dataBlockSize) || !isValidBlockSize(hashBlockSize)) {
    throw new VerityFormatError(`unsupported verity block sizes ${dataBlockSize}/${hashBlockSize}`);
  }
  const saltSize = b.readUInt16LE(SB.saltSize);
  if (saltSize > VERITY_MAX_SALT_SIZE) throw new VerityFormatError(`verity superblock corrupted: salt size ${saltSize}`);
  const algRaw = b.subarray(SB.algorithm, SB.algorithm + SB.algorithmSize);
  const nul = algRaw.indexOf(0);
  const algorithm = algRaw.subarray(0, nul < 0 ? algRaw.length : nul).toString("latin1");
  return {
    version,
    hashType,
    uuid: uuidFromBytes(b.subarray(SB.uuid, SB.uuid + 16)),
    algorithm,
    dataBlockSize,
    hashBlockSize,
    dataBlocks: b.readBigUInt64LE(SB.dataBlocks),
    salt: Buffer.from(b.subarray(SB.salt, SB.salt + saltSize)),
  };
}

export interface TreeLayout {
  /** Number of hash levels (0 when there is a single data block: the root is that block's digest). */
  levels: number;
  hashesPerBlock: number;
  /** Blocks per level; index 0 = the leaf level (digests of data blocks). */
  levelBlocks: number[];
  /** First block of each level, counted from the start of the tree (top level at 0). */
  levelStart: number[];
  /** Hash blocks in the whole tree (superblock excluded). */
  totalBlocks: number;
}

function floorLog2(n: number): number {
  return n >= 1 ? 31 - Math.clz32(n) : 0;
}

/** Tree geometry, computed the way cryptsetup's hash_levels() does. */
export function treeLayout(dataBlocks: number, hashBlockSize = VERITY_DEFAULT_BLOCK_SIZE, digestSize = SHA256_DIGEST_SIZE): TreeLayout {
  if (!Number.isSafeInteger(dataBlocks) || dataBlocks < 1) throw new VerityFormatError(`data block count must be a positive integer (got ${dataBlocks})`);
  if (!isValidBlockSize(hashBlockSize)) throw new VerityFormatError(`hash block size ${hashBlockSize} is not a power of two from 512 to 524288`);
  const bits = floorLog2(Math.floor(hashBlockSize / digestSize));
  if (bits < 1) throw new VerityFormatError(`hash block size ${hashBlockSize} cannot hold two ${digestSize}-byte digests`);
  const hashesPerBlock = 2 ** bits;
  const levelBlocks: number[] = [];
  let n = dataBlocks;
  while (n > 1) {
    n = Math.ceil(n / hashesPerBlock);
    levelBlocks.push(n);
  }
  const levels = levelBlocks.length;
  if (levels > VERITY_MAX_LEVELS) throw new VerityFormatError(`verity tree would need ${levels} levels`);
  const levelStart = new Array<number>(levels).fill(0);
  let pos = 0;
  for (let i = levels - 1; i >= 0; i--) {
    levelStart[i] = pos;
    pos += levelBlocks[i]!;
  }
  return { levels, hashesPerBlock, levelBlocks, levelStart, totalBlocks: pos };
}

/** Byte offset of the first tree block, given the superblock's offset (= hash offset). */
export function treeOffset(hashOffset: number, hashBlockSize = VERITY_DEFAULT_BLOCK_SIZE): number {
  return Math.ceil((hashOffset + VERITY_SUPERBLOCK_SIZE) / hashBlockSize) * hashBlockSize;
}

/** Digest of one block under hash type 1: sha256(salt ‖ block). */
export function blockDigest(salt: Uint8Array, block: Uint8Array): Buffer {
  return createHash(VERITY_ALGORITHM).update(salt).update(block).digest();
}

/**
 * Where the tree's single top block lies, relative to the start of the data
 * (with one data block and no hash levels, that block itself), so a reader can
 * recompute the root hash from a stored image without reading the rest.
 */
export function topBlockRange(sb: Pick<VeritySuperblock, "dataBlocks" | "dataBlockSize" | "hashBlockSize">, hashOffset: number): { offset: number; length: number } {
  const layout = treeLayout(Number(sb.dataBlocks), sb.hashBlockSize);
  return layout.levels === 0 ? { offset: 0, length: sb.dataBlockSize } : { offset: treeOffset(hashOffset, sb.hashBlockSize), length: sb.hashBlockSize };
}

/**
 * The superblock at `hashOffset` of a /usr image and the root hash its top
 * block gives, through `read` (bytes of the image at an offset: a disk slot,
 * a payload section). Throws VerityFormatError when no valid superblock is
 * there; the caller words that for its user.
 */
export async function readVerityRoot(read: (offset: number, length: number) => Promise<Uint8Array>, hashOffset: number): Promise<{ sb: VeritySuperblock; top: { offset: number; length: number }; root: Buffer }> {
  const sb = decodeSuperblock(await read(hashOffset, VERITY_SUPERBLOCK_SIZE));
  const top = topBlockRange(sb, hashOffset);
  return { sb, top, root: rootDigest(sb, await read(top.offset, top.length)) };
}

/** The root hash from the top block: salt first for hash type 1 (what acl and cryptsetup write), salt last for type 0. */
export function rootDigest(sb: Pick<VeritySuperblock, "hashType" | "algorithm" | "salt">, top: Uint8Array): Buffer {
  return sb.hashType === 1 ? blockDigest(sb.salt, top) : createHash(sb.algorithm).update(top).update(sb.salt).digest();
}

/**
 * Hash consecutive blocks of `data` (its length a multiple of blockSize) into
 * `out` at `outOffset`, 32 bytes per block. One scratch buffer holds
 * salt ‖ block so each digest is a single one-shot hash call.
 */
export function hashBlocksInto(data: Uint8Array, blockSize: number, salt: Uint8Array, out: Uint8Array, outOffset = 0): void {
  if (data.length % blockSize !== 0) throw new VerityFormatError(`data length ${data.length} is not a multiple of the block size ${blockSize}`);
  const count = data.length / blockSize;
  const scratch = Buffer.allocUnsafe(salt.length + blockSize);
  scratch.set(salt, 0);
  const dst = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < count; i++) {
    scratch.set(data.subarray(i * blockSize, (i + 1) * blockSize), salt.length);
    // A "binary" (latin1) string result is cheaper than a Buffer (no ArrayBuffer per digest for the GC).
    dst.write(oneShotHash(VERITY_ALGORITHM, scratch, "binary"), outOffset + i * SHA256_DIGEST_SIZE, SHA256_DIGEST_SIZE, "binary");
  }
}

export interface TreeOptions {
  salt: Uint8Array;
  dataBlocks: number;
  hashBlockSize?: number;
}

export interface ComputedTree {
  /** The hash area after the superblock: all levels, top first, leaves last. */
  tree: Buffer;
  rootHash: Buffer;
  layout: TreeLayout;
}

/**
 * Build the tree from the leaf digests (sha256(salt ‖ data block) for each
 * data block, concatenated in block order).
 */
export function computeTree(leafDigests: Uint8Array, opts: TreeOptions): ComputedTree {
  const hbs = opts.hashBlockSize ?? VERITY_DEFAULT_BLOCK_SIZE;
  const layout = treeLayout(opts.dataBlocks, hbs);
  if (leafDigests.length !== opts.dataBlocks * SHA256_DIGEST_SIZE) {
    throw new VerityFormatError(`expected ${opts.dataBlocks * SHA256_DIGEST_SIZE} bytes of leaf digests, got ${leafDigests.length}`);
  }
  if (layout.levels === 0) {
    return { tree: Buffer.alloc(0), rootHash: Buffer.from(leafDigests), layout };
  }
  const tree = Buffer.alloc(layout.totalBlocks * hbs);
  // Block sizes are powers of two, so a hash block holds exactly hashesPerBlock
  // 32-byte digests and a level is its digests laid end to end, zero padded.
  let digests: Uint8Array = leafDigests;
  for (let level = 0; level < layout.levels; level++) {
    const start = layout.levelStart[level]! * hbs;
    const blocks = layout.levelBlocks[level]!;
    tree.set(digests, start);
    const next = Buffer.alloc(blocks * SHA256_DIGEST_SIZE);
    hashBlocksInto(tree.subarray(start, start + blocks * hbs), hbs, opts.salt, next);
    digests = next;
  }
  // The top level has one block; its digest is the root hash.
  return { tree, rootHash: Buffer.from(digests), layout };
}

/** Convenience for small inputs held in memory: leaves and tree in one call. */
export function computeTreeFromData(data: Uint8Array, opts: { salt: Uint8Array; dataBlockSize?: number; hashBlockSize?: number }): ComputedTree {
  const dbs = opts.dataBlockSize ?? VERITY_DEFAULT_BLOCK_SIZE;
  if (data.length === 0 || data.length % dbs !== 0) {
    throw new VerityFormatError(`data length ${data.length} must be a positive multiple of the data block size ${dbs}`);
  }
  const dataBlocks = data.length / dbs;
  const leaves = Buffer.alloc(dataBlocks * SHA256_DIGEST_SIZE);
  hashBlocksInto(data, dbs, opts.salt, leaves);
  return computeTree(leaves, { salt: opts.salt, dataBlocks, hashBlockSize: opts.hashBlockSize });
}

/** Salt for an image: sha256("acl-verity-salt\0" + name + "\0" + version), 32 bytes. */
export function deriveSalt(name: string, version: string): Buffer {
  return createHash("sha256").update(`acl-verity-salt\0${name}\0${version}`, "utf8").digest();
}

/**
 * Verity superblock UUID for an image: the first 16 bytes of
 * sha256("acl-verity-uuid\0" + name + "\0" + version), marked as an RFC 9562
 * version 8 (custom, name-derived) UUID with the RFC variant bits.
 */
export function deriveUuid(name: string, version: string): string {
  const h = createHash("sha256").update(`acl-verity-uuid\0${name}\0${version}`, "utf8").digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  return uuidFromBytes(h.subarray(0, 16));
}
