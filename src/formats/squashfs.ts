/**
 * squashfs 4.0 superblock codec (read side): `struct squashfs_super_block`
 * (squashfs-tools squashfs_fs.h), 96 little-endian bytes at the start of the
 * image. `bytesUsed` is what the filesystem spans; mksquashfs pads the file
 * to 4 KiB after it.
 */
export const SQUASHFS_MAGIC = 0x73717368; // "hsqs"
export const SQUASHFS_SUPER_SIZE = 96;

/** Compression ids (squashfs_fs.h). */
export const SQUASHFS_COMPRESSION: Readonly<Record<number, string>> = { 1: "gzip", 2: "lzma", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd" };

export interface SquashfsSuperblock {
  inodes: number;
  mkfsTime: number;
  blockSize: number;
  fragments: number;
  compression: string;
  flags: number;
  major: number;
  minor: number;
  bytesUsed: bigint;
}

export class SquashfsFormatError extends Error {}

export function isSquashfsSuperblock(b: Uint8Array): boolean {
  return b.length >= 4 && new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true) === SQUASHFS_MAGIC;
}

export function decodeSquashfsSuperblock(b: Uint8Array): SquashfsSuperblock {
  if (b.length < SQUASHFS_SUPER_SIZE) throw new SquashfsFormatError(`squashfs superblock needs ${SQUASHFS_SUPER_SIZE} bytes, got ${b.length}`);
  if (!isSquashfsSuperblock(b)) throw new SquashfsFormatError("not a squashfs superblock (bad magic)");
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const major = v.getUint16(28, true);
  const minor = v.getUint16(30, true);
  if (major !== 4) throw new SquashfsFormatError(`squashfs ${major}.${minor} is not supported (4.0 is)`);
  const blockSize = v.getUint32(12, true);
  const blockLog = v.getUint16(22, true);
  if (blockLog > 20 || blockSize !== 2 ** blockLog) throw new SquashfsFormatError(`block size ${blockSize} does not match block_log ${blockLog}`);
  const comp = v.getUint16(20, true);
  return {
    inodes: v.getUint32(4, true),
    mkfsTime: v.getUint32(8, true),
    blockSize,
    fragments: v.getUint32(16, true),
    compression: SQUASHFS_COMPRESSION[comp] ?? `unknown (${comp})`,
    flags: v.getUint16(24, true),
    major,
    minor,
    bytesUsed: v.getBigUint64(40, true),
  };
}
