/**
 * Minimal PE/COFF header access for reproducible EFI binaries: objcopy stamps
 * the current time into the COFF header of the UKIs it writes; we replace it
 * with SOURCE_DATE_EPOCH and recompute the optional header's checksum.
 */
export const PE_SIGNATURE = 0x00004550; // "PE\0\0"
/** e_lfanew: offset of the PE signature, stored at 0x3c of the DOS header. */
export const DOS_LFANEW_OFFSET = 0x3c;
/** TimeDateStamp: 4 bytes after the machine (2) and section count (2) fields. */
export const COFF_TIMESTAMP_OFFSET = 8;
/** The COFF header is 20 bytes; the optional header's CheckSum is at +64 in it. */
export const OPTIONAL_HEADER_OFFSET = 4 + 20;
export const OPTIONAL_CHECKSUM_OFFSET = 64;

export class PeFormatError extends Error {}

function peOffset(b: Uint8Array): number {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length < 0x40 || b[0] !== 0x4d || b[1] !== 0x5a) throw new PeFormatError("not a PE file (no MZ header)");
  const pe = v.getUint32(DOS_LFANEW_OFFSET, true);
  if (pe + OPTIONAL_HEADER_OFFSET + OPTIONAL_CHECKSUM_OFFSET + 4 > b.length || v.getUint32(pe, true) !== PE_SIGNATURE) {
    throw new PeFormatError("not a PE file (no PE signature)");
  }
  return pe;
}

/** The PE checksum (as IMAGEHLP's CheckSumMappedFile computes it), with the checksum field taken as zero. */
export function peChecksum(b: Uint8Array): number {
  const pe = peOffset(b);
  const at = pe + OPTIONAL_HEADER_OFFSET + OPTIONAL_CHECKSUM_OFFSET;
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) {
    if (i === at || i === at + 2) continue;
    const w = b[i]! | ((i + 1 < b.length ? b[i + 1]! : 0) << 8);
    sum += w;
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  sum = (sum & 0xffff) + (sum >>> 16);
  return (sum + b.length) >>> 0;
}

export function readPeTimestamp(b: Uint8Array): number {
  const pe = peOffset(b);
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(pe + COFF_TIMESTAMP_OFFSET, true);
}

/**
 * Return a copy with TimeDateStamp set to `epoch` and, when the image carries
 * a checksum (non-zero), the checksum recomputed.
 */
export function withPeTimestamp(bytes: Uint8Array, epoch: number): Buffer {
  const b = Buffer.from(bytes);
  const pe = peOffset(b);
  b.writeUInt32LE(epoch >>> 0, pe + COFF_TIMESTAMP_OFFSET);
  const at = pe + OPTIONAL_HEADER_OFFSET + OPTIONAL_CHECKSUM_OFFSET;
  if (b.readUInt32LE(at) !== 0) b.writeUInt32LE(peChecksum(b), at);
  return b;
}

export interface PeSection {
  name: string;
  virtualAddress: number;
  virtualSize: number;
  rawOffset: number;
  rawSize: number;
}

/** The section table (names up to 8 bytes, as objcopy writes them for .osrel, .cmdline, .linux, .initrd). */
export function peSections(b: Uint8Array): PeSection[] {
  const pe = peOffset(b);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const count = v.getUint16(pe + 6, true);
  const optSize = v.getUint16(pe + 20, true);
  const table = pe + OPTIONAL_HEADER_OFFSET + optSize;
  if (table + count * 40 > b.length) throw new PeFormatError(`PE section table (${count} sections) runs past the end of the file`);
  const out: PeSection[] = [];
  for (let i = 0; i < count; i++) {
    const o = table + i * 40;
    let end = 0;
    while (end < 8 && b[o + end] !== 0) end++;
    out.push({
      name: Buffer.from(b.subarray(o, o + end)).toString("latin1"),
      virtualSize: v.getUint32(o + 8, true),
      virtualAddress: v.getUint32(o + 12, true),
      rawSize: v.getUint32(o + 16, true),
      rawOffset: v.getUint32(o + 20, true),
    });
  }
  return out;
}

/** A section's content (its virtual size, or the raw size when smaller), undefined when absent. */
export function peSectionData(b: Uint8Array, name: string): Buffer | undefined {
  const s = peSections(b).find((x) => x.name === name);
  if (!s) return undefined;
  const len = Math.min(s.virtualSize || s.rawSize, s.rawSize);
  if (s.rawOffset + len > b.length) throw new PeFormatError(`PE section ${name} runs past the end of the file`);
  return Buffer.from(b.subarray(s.rawOffset, s.rawOffset + len));
}

/** Optional header magic of PE32+ (x86-64 EFI binaries); PE32 is 0x10b. */
export const PE32PLUS_MAGIC = 0x20b;
/** Data directory 4 (IMAGE_DIRECTORY_ENTRY_SECURITY): the Authenticode certificate table. */
const SECURITY_DIRECTORY = 4;

/**
 * The Authenticode certificate table (a file offset and size, as data
 * directory 4 holds them), or undefined for an unsigned image. sbsign
 * appends the table after the last section and fills this entry.
 */
export function peCertificateTable(b: Uint8Array): { offset: number; size: number } | undefined {
  const pe = peOffset(b);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const opt = pe + OPTIONAL_HEADER_OFFSET;
  const magic = v.getUint16(opt, true);
  const dirs = opt + (magic === PE32PLUS_MAGIC ? 112 : magic === 0x10b ? 96 : -1);
  if (dirs < opt) throw new PeFormatError(`unknown optional header magic 0x${magic.toString(16)}`);
  const count = v.getUint32(dirs - 4, true); // NumberOfRvaAndSizes
  if (count <= SECURITY_DIRECTORY) return undefined;
  const at = dirs + SECURITY_DIRECTORY * 8;
  if (at + 8 > b.length) throw new PeFormatError("PE data directories run past the end of the file");
  const offset = v.getUint32(at, true);
  const size = v.getUint32(at + 4, true);
  if (size === 0) return undefined;
  if (offset + size > b.length) throw new PeFormatError(`the certificate table (${size} bytes at ${offset}) runs past the end of the file`);
  return { offset, size };
}
