/**
 * VHD (Virtual Hard Disk 1.0) footer codec, pure: the 512-byte big-endian
 * record at the end of every VHD (and, for dynamic disks, also at byte 0).
 * A fixed VHD is the raw disk followed by this footer; Azure takes only
 * fixed VHDs whose virtual size is a whole number of MiB.
 *
 * qemu-img writes a wall-clock timestamp and a random UUID into it; to make a
 * VHD reproducible, decode the footer, replace those two fields and encode it
 * again (the checksum is recomputed).
 */
import { UserError } from "../errors.js";

export const VHD_FOOTER_SIZE = 512;
export const VHD_COOKIE = "conectix";
/** Bit 1 of "features" is reserved and must always be set. */
export const VHD_FEATURES_RESERVED = 0x0000_0002;
export const VHD_FORMAT_VERSION = 0x0001_0000;
/** Data offset of a fixed disk (there are no dynamic headers). */
export const VHD_FIXED_DATA_OFFSET = 0xffff_ffff_ffff_ffffn;
/** VHD timestamps count seconds from 2000-01-01T00:00:00Z. */
export const VHD_EPOCH_UNIX = 946_684_800;

export const VHD_DISK_TYPES = { none: 0, fixed: 2, dynamic: 3, differencing: 4 } as const;

/** Field offsets. */
const F = {
  cookie: 0,
  features: 8,
  formatVersion: 12,
  dataOffset: 16,
  timestamp: 24,
  creatorApp: 28,
  creatorVersion: 32,
  creatorHostOs: 36,
  originalSize: 40,
  currentSize: 48,
  cylinders: 56,
  heads: 58,
  sectorsPerTrack: 59,
  diskType: 60,
  checksum: 64,
  uniqueId: 68,
  savedState: 84,
} as const;

export interface VhdFooter {
  features: number;
  formatVersion: number;
  dataOffset: bigint;
  /** Seconds since 2000-01-01T00:00:00Z. */
  timestamp: number;
  /** Four ASCII characters, e.g. "qem2" (qemu-img with force_size). */
  creatorApp: string;
  creatorVersion: number;
  /** Four ASCII characters, e.g. "Wi2k". */
  creatorHostOs: string;
  originalSize: bigint;
  currentSize: bigint;
  geometry: { cylinders: number; heads: number; sectorsPerTrack: number };
  diskType: number;
  /** Stored checksum (on decode); recomputed on encode. */
  checksum: number;
  /** Canonical lower-case UUID text, bytes in the order stored. */
  uniqueId: string;
  savedState: number;
}

export class VhdFooterError extends UserError {
  constructor(message: string) {
    super(message, { hint: "is this a VHD made by `qemu-img convert -O vpc`? `qemu-img info -f vpc FILE` gives a second opinion" });
    this.name = "VhdFooterError";
  }
}

/** Ones' complement of the byte sum of the footer, the checksum field counted as zero. */
export function vhdChecksum(footer: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < VHD_FOOTER_SIZE; i++) {
    if (i >= F.checksum && i < F.checksum + 4) continue;
    sum = (sum + footer[i]!) >>> 0;
  }
  return ~sum >>> 0;
}

function uuidText(b: Uint8Array): string {
  const h = Buffer.from(b).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function uuidBytes(s: string): Buffer {
  if (!/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(s))
    throw new VhdFooterError(`unique id '${s}' is not a UUID`);
  return Buffer.from(s.replace(/-/g, ""), "hex");
}

/** Decode a 512-byte footer; `verifyChecksum` (default true) rejects a footer whose checksum is wrong. */
export function decodeVhdFooter(bytes: Uint8Array, opts: { verifyChecksum?: boolean } = {}): VhdFooter {
  if (bytes.length !== VHD_FOOTER_SIZE) throw new VhdFooterError(`a VHD footer is ${VHD_FOOTER_SIZE} bytes, got ${bytes.length}`);
  const b = Buffer.from(bytes);
  const cookie = b.toString("latin1", F.cookie, F.cookie + 8);
  if (cookie !== VHD_COOKIE) throw new VhdFooterError(`no VHD footer: cookie is ${JSON.stringify(cookie)}, not "conectix"`);
  const checksum = b.readUInt32BE(F.checksum);
  const computed = vhdChecksum(b);
  if ((opts.verifyChecksum ?? true) && checksum !== computed)
    throw new VhdFooterError(`VHD footer checksum 0x${checksum.toString(16)} does not match the computed 0x${computed.toString(16)}`);
  return {
    features: b.readUInt32BE(F.features),
    formatVersion: b.readUInt32BE(F.formatVersion),
    dataOffset: b.readBigUInt64BE(F.dataOffset),
    timestamp: b.readUInt32BE(F.timestamp),
    creatorApp: b.toString("latin1", F.creatorApp, F.creatorApp + 4),
    creatorVersion: b.readUInt32BE(F.creatorVersion),
    creatorHostOs: b.toString("latin1", F.creatorHostOs, F.creatorHostOs + 4),
    originalSize: b.readBigUInt64BE(F.originalSize),
    currentSize: b.readBigUInt64BE(F.currentSize),
    geometry: {
      cylinders: b.readUInt16BE(F.cylinders),
      heads: b[F.heads]!,
      sectorsPerTrack: b[F.sectorsPerTrack]!,
    },
    diskType: b.readUInt32BE(F.diskType),
    checksum,
    uniqueId: uuidText(b.subarray(F.uniqueId, F.uniqueId + 16)),
    savedState: b[F.savedState]!,
  };
}

/** Encode a footer; the checksum is computed (the `checksum` field is ignored). */
export function encodeVhdFooter(f: VhdFooter): Buffer {
  const b = Buffer.alloc(VHD_FOOTER_SIZE);
  for (const [name, v] of [["creatorApp", f.creatorApp], ["creatorHostOs", f.creatorHostOs]] as const)
    if (Buffer.byteLength(v, "latin1") !== 4) throw new VhdFooterError(`${name} must be 4 characters, got ${JSON.stringify(v)}`);
  if (!Number.isInteger(f.timestamp) || f.timestamp < 0 || f.timestamp > 0xffff_ffff)
    throw new VhdFooterError(`timestamp ${f.timestamp} does not fit 32 bits`);
  b.write(VHD_COOKIE, F.cookie, "latin1");
  b.writeUInt32BE(f.features >>> 0, F.features);
  b.writeUInt32BE(f.formatVersion >>> 0, F.formatVersion);
  b.writeBigUInt64BE(f.dataOffset, F.dataOffset);
  b.writeUInt32BE(f.timestamp, F.timestamp);
  b.write(f.creatorApp, F.creatorApp, "latin1");
  b.writeUInt32BE(f.creatorVersion >>> 0, F.creatorVersion);
  b.write(f.creatorHostOs, F.creatorHostOs, "latin1");
  b.writeBigUInt64BE(f.originalSize, F.originalSize);
  b.writeBigUInt64BE(f.currentSize, F.currentSize);
  b.writeUInt16BE(f.geometry.cylinders, F.cylinders);
  b[F.heads] = f.geometry.heads;
  b[F.sectorsPerTrack] = f.geometry.sectorsPerTrack;
  b.writeUInt32BE(f.diskType >>> 0, F.diskType);
  uuidBytes(f.uniqueId).copy(b, F.uniqueId);
  b[F.savedState] = f.savedState;
  b.writeUInt32BE(vhdChecksum(b), F.checksum);
  return b;
}

/** Unix seconds -> VHD seconds (clamped at the VHD epoch). */
export function vhdTimestamp(unixSeconds: number): number {
  return Math.max(0, Math.floor(unixSeconds) - VHD_EPOCH_UNIX);
}

/**
 * Make a footer deterministic: same fields, timestamp and UUID replaced,
 * checksum recomputed. Only fixed disks (type 2) are accepted: a dynamic
 * VHD also copies its footer to byte 0 and would need both rewritten.
 */
export function withDeterministicFooter(footer: Uint8Array, opts: { unixSeconds: number; uniqueId: string }): Buffer {
  const f = decodeVhdFooter(footer);
  if (f.diskType !== VHD_DISK_TYPES.fixed) throw new VhdFooterError(`VHD disk type is ${f.diskType}, not 2 (fixed)`);
  return encodeVhdFooter({ ...f, timestamp: vhdTimestamp(opts.unixSeconds), uniqueId: opts.uniqueId });
}
