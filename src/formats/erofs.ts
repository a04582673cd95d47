/**
 * erofs superblock codec (read side): enough of `struct erofs_super_block`
 * (erofs-utils include/erofs_fs.h) to tell an erofs image from anything else
 * and how many bytes it spans. Little-endian; the superblock sits 1024 bytes
 * into the image.
 */
export const EROFS_SUPER_OFFSET = 1024;
export const EROFS_SUPER_MAGIC = 0xe0f5e1e2;
/** Bytes of the fixed part of the superblock. */
export const EROFS_SUPER_SIZE = 128;

const OFF = {
  magic: 0,
  checksum: 4,
  featureCompat: 8,
  blkszbits: 12,
  rootNid: 14,
  inos: 16,
  buildTime: 24,
  blocks: 36,
  uuid: 48,
  volumeName: 64,
  featureIncompat: 80,
} as const;

export interface ErofsSuperblock {
  blockSize: number;
  /** Blocks the filesystem spans (`Filesystem blocks` in dump.erofs -s). */
  blocks: number;
  /** blocks × blockSize. */
  sizeBytes: number;
  inodes: bigint;
  buildTime: bigint;
  uuid: string;
  volumeName: string;
  featureCompat: number;
  featureIncompat: number;
}

export class ErofsFormatError extends Error {}

function uuidString(b: Uint8Array): string {
  const h = Buffer.from(b).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** True when `sb` (the bytes at EROFS_SUPER_OFFSET) start with the erofs magic. */
export function isErofsSuperblock(sb: Uint8Array): boolean {
  return sb.length >= 4 && new DataView(sb.buffer, sb.byteOffset, 4).getUint32(0, true) === EROFS_SUPER_MAGIC;
}

/** Decode the superblock from the bytes at EROFS_SUPER_OFFSET (at least EROFS_SUPER_SIZE of them). */
export function decodeErofsSuperblock(sb: Uint8Array): ErofsSuperblock {
  if (sb.length < EROFS_SUPER_SIZE) throw new ErofsFormatError(`erofs superblock needs ${EROFS_SUPER_SIZE} bytes, got ${sb.length}`);
  if (!isErofsSuperblock(sb)) throw new ErofsFormatError("not an erofs superblock (bad magic)");
  const v = new DataView(sb.buffer, sb.byteOffset, sb.byteLength);
  const bits = v.getUint8(OFF.blkszbits);
  if (bits < 9 || bits > 16) throw new ErofsFormatError(`erofs block size 2^${bits} is out of range`);
  const blockSize = 2 ** bits;
  const blocks = v.getUint32(OFF.blocks, true);
  const name = sb.subarray(OFF.volumeName, OFF.volumeName + 16);
  const nul = name.indexOf(0);
  return {
    blockSize,
    blocks,
    sizeBytes: blocks * blockSize,
    inodes: v.getBigUint64(OFF.inos, true),
    buildTime: v.getBigUint64(OFF.buildTime, true),
    uuid: uuidString(sb.subarray(OFF.uuid, OFF.uuid + 16)),
    volumeName: Buffer.from(name.subarray(0, nul >= 0 ? nul : 16)).toString("latin1"),
    featureCompat: v.getUint32(OFF.featureCompat, true),
    featureIncompat: v.getUint32(OFF.featureIncompat, true),
  };
}
