/**
 * GUID Partition Table codec (UEFI 2.x, chapter 5), pure: bytes in / bytes out.
 *
 * Layout of a disk of N logical sectors (sector size 512 or 4096):
 *   LBA 0            protective MBR (first 512 bytes of the sector)
 *   LBA 1            primary header
 *   LBA 2 ..         primary partition entry array (entryCount x 128 bytes)
 *   ... partitions between firstUsableLba and lastUsableLba ...
 *   LBA N-1-E .. N-2 backup entry array (E = entry-array sectors)
 *   LBA N-1          backup header
 * CRC32s are computed with their own field zeroed. GUIDs are stored
 * mixed-endian (first three fields little-endian, the rest as-is).
 *
 * Also the A/B slot attributes Flatcar and ChromeOS keep in the upper half of
 * the 64-bit attribute field, and the GRUB "gptprio" choice between slots.
 */
import { UserError } from "../errors.js";
import { crc32 } from "./crc32.js";

export const GPT_SIGNATURE = "EFI PART";
export const GPT_REVISION = 0x0001_0000;
export const GPT_HEADER_SIZE = 92;
export const GPT_ENTRY_SIZE = 128;
export const GPT_DEFAULT_ENTRY_COUNT = 128;
export const GPT_NAME_UNITS = 36;

export const MBR_SIZE = 512;
export const MBR_PARTITION_OFFSET = 446;
export const MBR_SIGNATURE_OFFSET = 510;
export const MBR_PROTECTIVE_TYPE = 0xee;

/** Header field offsets. */
const H = {
  signature: 0,
  revision: 8,
  headerSize: 12,
  headerCrc: 16,
  reserved: 20,
  myLba: 24,
  alternateLba: 32,
  firstUsableLba: 40,
  lastUsableLba: 48,
  diskGuid: 56,
  entryLba: 72,
  entryCount: 80,
  entrySize: 84,
  entryArrayCrc: 88,
} as const;

/** Entry field offsets. */
const E = { typeGuid: 0, partGuid: 16, firstLba: 32, lastLba: 40, attributes: 48, name: 56 } as const;

export type SectorSize = 512 | 4096;
export const SECTOR_SIZES: readonly SectorSize[] = [512, 4096];

export const ZERO_GUID = "00000000-0000-0000-0000-000000000000";

/** Well-known partition type GUIDs (upper case, as sgdisk prints them). */
export const TYPE_GUIDS = {
  efiSystem: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
  biosBoot: "21686148-6449-6E6F-744E-656564454649",
  /** CoreOS/Flatcar /usr: the A/B slots. */
  coreosUsr: "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6",
  /** CoreOS/Flatcar root that grows to fill the disk on first boot. */
  coreosResize: "3884DD41-8582-4404-B9A8-E9B84F2DF50E",
  coreosReserved: "C95DC21A-DF0E-4340-8D7B-26CBFA9A03E0",
  linuxFilesystem: "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
  dpsUsrVerityX86_64: "77FF5F63-E7B6-4633-ACF4-1565B864C0E6",
  dpsRootX86_64: "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
} as const;

export const TYPE_NAMES: Readonly<Record<string, string>> = {
  [TYPE_GUIDS.efiSystem]: "EFI system partition",
  [TYPE_GUIDS.biosBoot]: "BIOS boot partition",
  [TYPE_GUIDS.coreosUsr]: "CoreOS /usr (A/B slot)",
  [TYPE_GUIDS.coreosResize]: "CoreOS resizable root",
  [TYPE_GUIDS.coreosReserved]: "CoreOS reserved",
  [TYPE_GUIDS.linuxFilesystem]: "Linux filesystem",
  [TYPE_GUIDS.dpsUsrVerityX86_64]: "Linux /usr verity (x86-64)",
  [TYPE_GUIDS.dpsRootX86_64]: "Linux root (x86-64)",
};

export interface GptPartition {
  /** 1-based index in the entry array (what the kernel calls the partition number). */
  number: number;
  typeGuid: string;
  partGuid: string;
  firstLba: bigint;
  lastLba: bigint;
  attributes: bigint;
  name: string;
}

export interface GptTable {
  diskGuid: string;
  partitions: GptPartition[];
  /** Entries in the array (default 128). */
  entryCount?: number;
  /**
   * Usable range; default: everything between the entry arrays. Tools differ
   * (fdisk on 4096-byte sectors starts at LBA 256), so a decoded table keeps
   * its own range and encodes back byte for byte.
   */
  firstUsableLba?: bigint;
  lastUsableLba?: bigint;
}

export interface EncodedGpt {
  /** Protective MBR + primary header + entry array: write at byte 0. */
  primary: Buffer;
  /** Backup entry array + backup header: write at `backupOffset`. */
  backup: Buffer;
  backupOffset: bigint;
  firstUsableLba: bigint;
  lastUsableLba: bigint;
}

export interface DecodedGpt extends GptTable {
  sectorSize: SectorSize;
  diskSizeBytes: bigint;
  entryCount: number;
  firstUsableLba: bigint;
  lastUsableLba: bigint;
  /** Which header the table was read from ("backup" when the primary is damaged). */
  source: "primary" | "backup";
  /** Damage found but survived (a bad backup, a stale MBR); empty for a clean disk. */
  problems: string[];
}

/** A GPT that cannot be encoded or decoded; the message names the field. */
export class GptError extends UserError {
  constructor(message: string, hint?: string) {
    super(message, { hint: hint ?? "check the disk image; `sgdisk -v DISK` gives a second opinion" });
    this.name = "GptError";
  }
}

// ---------------------------------------------------------------- GUIDs

const GUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export function isGuid(s: string): boolean {
  return GUID_RE.test(s);
}

/** Canonical text GUID -> 16 bytes, mixed-endian as GPT stores it. */
export function guidToBytes(guid: string): Buffer {
  if (!GUID_RE.test(guid)) throw new GptError(`'${guid}' is not a GUID (want XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)`);
  const hex = guid.replace(/-/g, "");
  const b = Buffer.from(hex, "hex");
  // fields 1-3 are little-endian on disk
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  return b;
}

/** 16 mixed-endian bytes -> upper-case canonical GUID. */
export function bytesToGuid(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new GptError(`a GUID is 16 bytes, got ${bytes.length}`);
  const b = Buffer.from(bytes);
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  const h = b.toString("hex").toUpperCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ---------------------------------------------------------------- geometry

function entrySectors(entryCount: number, sectorSize: number): bigint {
  return BigInt(Math.ceil((entryCount * GPT_ENTRY_SIZE) / sectorSize));
}

/** Usable LBA range of a disk with this size, sector size and entry count. */
export function usableRange(
  diskSizeBytes: bigint | number,
  sectorSize: SectorSize = 512,
  entryCount = GPT_DEFAULT_ENTRY_COUNT,
): { firstUsableLba: bigint; lastUsableLba: bigint; sectors: bigint } {
  const size = BigInt(diskSizeBytes);
  const ss = BigInt(sectorSize);
  const sectors = size / ss;
  const es = entrySectors(entryCount, sectorSize);
  return { firstUsableLba: 2n + es, lastUsableLba: sectors - 2n - es, sectors };
}

/** Cylinder/head/sector of an LBA for the MBR (255 heads, 63 sectors), 0xFFFFFF beyond 1023 cylinders. */
function chs(lba: bigint): [number, number, number] {
  const heads = 255n;
  const spt = 63n;
  const c = lba / (heads * spt);
  if (c > 1023n) return [0xff, 0xff, 0xff];
  const rem = lba % (heads * spt);
  const h = Number(rem / spt);
  const s = Number((rem % spt) + 1n);
  const cyl = Number(c);
  return [h, s | ((cyl >> 8) << 6), cyl & 0xff];
}

// ---------------------------------------------------------------- encode

function validateTable(table: GptTable, first: bigint, last: bigint, entryCount: number): void {
  if (!isGuid(table.diskGuid)) throw new GptError(`disk GUID '${table.diskGuid}' is not a GUID`);
  const seen = new Set<number>();
  const sorted = [...table.partitions].sort((a, b) => (a.firstLba < b.firstLba ? -1 : a.firstLba > b.firstLba ? 1 : 0));
  for (const p of table.partitions) {
    const where = `partition ${p.number}${p.name ? ` (${p.name})` : ""}`;
    if (!Number.isInteger(p.number) || p.number < 1 || p.number > entryCount)
      throw new GptError(`${where}: number must be 1..${entryCount}`);
    if (seen.has(p.number)) throw new GptError(`${where}: number used twice`);
    seen.add(p.number);
    if (!isGuid(p.typeGuid) || p.typeGuid === ZERO_GUID) throw new GptError(`${where}: type GUID '${p.typeGuid}' is not a non-zero GUID`);
    if (!isGuid(p.partGuid)) throw new GptError(`${where}: unique GUID '${p.partGuid}' is not a GUID`);
    if (p.firstLba < first || p.lastLba > last || p.firstLba > p.lastLba)
      throw new GptError(`${where}: LBAs ${p.firstLba}..${p.lastLba} are outside the usable range ${first}..${last}`, "make the disk larger or the partition smaller");
    if (p.attributes < 0n || p.attributes >= 1n << 64n) throw new GptError(`${where}: attributes do not fit 64 bits`);
    if (nameUnits(p.name) > GPT_NAME_UNITS) throw new GptError(`${where}: name is longer than ${GPT_NAME_UNITS} UTF-16 units`);
  }
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (b.firstLba <= a.lastLba) throw new GptError(`partitions ${a.number} and ${b.number} overlap (LBA ${b.firstLba} <= ${a.lastLba})`);
  }
}

function nameUnits(name: string): number {
  return Buffer.byteLength(name, "utf16le") / 2;
}

function encodeEntries(table: GptTable, entryCount: number, sectorSize: number): Buffer {
  const bytes = Buffer.alloc(Number(entrySectors(entryCount, sectorSize)) * sectorSize);
  for (const p of table.partitions) {
    const o = (p.number - 1) * GPT_ENTRY_SIZE;
    guidToBytes(p.typeGuid).copy(bytes, o + E.typeGuid);
    guidToBytes(p.partGuid).copy(bytes, o + E.partGuid);
    bytes.writeBigUInt64LE(p.firstLba, o + E.firstLba);
    bytes.writeBigUInt64LE(p.lastLba, o + E.lastLba);
    bytes.writeBigUInt64LE(p.attributes, o + E.attributes);
    bytes.write(p.name, o + E.name, GPT_NAME_UNITS * 2, "utf16le");
  }
  return bytes;
}

function encodeHeader(
  sectorSize: number,
  f: { myLba: bigint; alternateLba: bigint; first: bigint; last: bigint; diskGuid: string; entryLba: bigint; entryCount: number; entryCrc: number },
): Buffer {
  const h = Buffer.alloc(sectorSize);
  h.write(GPT_SIGNATURE, H.signature, "latin1");
  h.writeUInt32LE(GPT_REVISION, H.revision);
  h.writeUInt32LE(GPT_HEADER_SIZE, H.headerSize);
  h.writeBigUInt64LE(f.myLba, H.myLba);
  h.writeBigUInt64LE(f.alternateLba, H.alternateLba);
  h.writeBigUInt64LE(f.first, H.firstUsableLba);
  h.writeBigUInt64LE(f.last, H.lastUsableLba);
  guidToBytes(f.diskGuid).copy(h, H.diskGuid);
  h.writeBigUInt64LE(f.entryLba, H.entryLba);
  h.writeUInt32LE(f.entryCount, H.entryCount);
  h.writeUInt32LE(GPT_ENTRY_SIZE, H.entrySize);
  h.writeUInt32LE(f.entryCrc, H.entryArrayCrc);
  h.writeUInt32LE(crc32(h.subarray(0, GPT_HEADER_SIZE)), H.headerCrc);
  return h;
}

function encodeProtectiveMbr(sectors: bigint, sectorSize: number): Buffer {
  const m = Buffer.alloc(sectorSize);
  const o = MBR_PARTITION_OFFSET;
  const sizeInLba = sectors - 1n > 0xffff_ffffn ? 0xffff_ffffn : sectors - 1n;
  m[o + 0] = 0x00; // not bootable
  m[o + 1] = 0x00; // start CHS = 0/0/2, i.e. LBA 1
  m[o + 2] = 0x02;
  m[o + 3] = 0x00;
  m[o + 4] = MBR_PROTECTIVE_TYPE;
  const [h, s, c] = chs(sizeInLba);
  m[o + 5] = h;
  m[o + 6] = s;
  m[o + 7] = c;
  m.writeUInt32LE(1, o + 8);
  m.writeUInt32LE(Number(sizeInLba), o + 12);
  m[MBR_SIGNATURE_OFFSET] = 0x55;
  m[MBR_SIGNATURE_OFFSET + 1] = 0xaa;
  return m;
}

/**
 * Encode a table for a disk of `diskSizeBytes` (a whole number of sectors).
 * Entries keep their `number` as their slot in the array; the result is
 * byte-identical to what `sgdisk` writes for the same table.
 */
export function encodeGpt(table: GptTable, diskSizeBytes: bigint | number, sectorSize: SectorSize = 512): EncodedGpt {
  if (!SECTOR_SIZES.includes(sectorSize)) throw new GptError(`sector size ${sectorSize} is not supported (512 or 4096)`);
  const size = BigInt(diskSizeBytes);
  const ss = BigInt(sectorSize);
  if (size % ss !== 0n) throw new GptError(`disk size ${size} is not a multiple of the ${sectorSize}-byte sector`);
  const entryCount = table.entryCount ?? GPT_DEFAULT_ENTRY_COUNT;
  if (!Number.isInteger(entryCount) || entryCount < 1 || entryCount > 65536)
    throw new GptError(`entry count ${entryCount} is out of range (1-65536; 128 is usual)`);
  const es = entrySectors(entryCount, sectorSize);
  const range = usableRange(size, sectorSize, entryCount);
  const sectors = range.sectors;
  const first = table.firstUsableLba ?? range.firstUsableLba;
  const last = table.lastUsableLba ?? range.lastUsableLba;
  if (range.lastUsableLba < range.firstUsableLba) throw new GptError(`a ${size}-byte disk is too small for a GPT`);
  if (first < range.firstUsableLba || last > range.lastUsableLba || first > last)
    throw new GptError(`usable range ${first}..${last} overlaps the GPT structures (allowed ${range.firstUsableLba}..${range.lastUsableLba})`);
  validateTable(table, first, last, entryCount);

  const entries = encodeEntries(table, entryCount, sectorSize);
  const entryCrc = crc32(entries.subarray(0, entryCount * GPT_ENTRY_SIZE));
  const lastLba = sectors - 1n;
  const backupEntryLba = lastLba - es;
  const common = { first, last, diskGuid: table.diskGuid, entryCount, entryCrc };
  const primaryHeader = encodeHeader(sectorSize, { ...common, myLba: 1n, alternateLba: lastLba, entryLba: 2n });
  const backupHeader = encodeHeader(sectorSize, { ...common, myLba: lastLba, alternateLba: 1n, entryLba: backupEntryLba });
  return {
    primary: Buffer.concat([encodeProtectiveMbr(sectors, sectorSize), primaryHeader, entries]),
    backup: Buffer.concat([entries, backupHeader]),
    backupOffset: backupEntryLba * ss,
    firstUsableLba: first,
    lastUsableLba: last,
  };
}

// ---------------------------------------------------------------- decode

/** The whole disk, or its first and last bytes (each at least the MBR/header/entry sectors). */
export type GptInput = Uint8Array | { head: Uint8Array; tail: Uint8Array; diskSizeBytes: bigint | number };

class DiskReader {
  readonly size: bigint;
  private readonly input: GptInput;
  constructor(input: GptInput) {
    this.input = input;
    this.size = input instanceof Uint8Array ? BigInt(input.length) : BigInt(input.diskSizeBytes);
  }
  read(offset: bigint, length: number, what: string): Buffer {
    const end = offset + BigInt(length);
    if (offset < 0n || end > this.size) throw new GptError(`${what} at byte ${offset} lies outside the ${this.size}-byte disk`);
    if (this.input instanceof Uint8Array) return Buffer.from(this.input.subarray(Number(offset), Number(end)));
    const { head, tail } = this.input;
    if (end <= BigInt(head.length)) return Buffer.from(head.subarray(Number(offset), Number(end)));
    const tailStart = this.size - BigInt(tail.length);
    if (offset >= tailStart) return Buffer.from(tail.subarray(Number(offset - tailStart), Number(end - tailStart)));
    throw new GptError(`${what} at byte ${offset} is neither in the head (${head.length} bytes) nor the tail (${tail.length} bytes) given`);
  }
}

interface RawHeader {
  myLba: bigint;
  alternateLba: bigint;
  first: bigint;
  last: bigint;
  diskGuid: string;
  entryLba: bigint;
  entryCount: number;
  entrySize: number;
  entryCrc: number;
  entries: Buffer;
}

function readHeader(r: DiskReader, lba: bigint, sectorSize: number, which: string): RawHeader {
  const ss = BigInt(sectorSize);
  const h = r.read(lba * ss, sectorSize, `${which} GPT header`);
  if (h.toString("latin1", 0, 8) !== GPT_SIGNATURE) throw new GptError(`${which} GPT header at LBA ${lba}: no "EFI PART" signature`);
  const rev = h.readUInt32LE(H.revision);
  if (rev !== GPT_REVISION) throw new GptError(`${which} GPT header: revision 0x${rev.toString(16)} is not 0x00010000`);
  const hs = h.readUInt32LE(H.headerSize);
  if (hs < GPT_HEADER_SIZE || hs > sectorSize) throw new GptError(`${which} GPT header: header size ${hs} is out of range`);
  const stored = h.readUInt32LE(H.headerCrc);
  const copy = Buffer.from(h.subarray(0, hs));
  copy.writeUInt32LE(0, H.headerCrc);
  const actual = crc32(copy);
  if (stored !== actual)
    throw new GptError(`${which} GPT header: CRC32 0x${hex32(stored)} does not match the computed 0x${hex32(actual)}`);
  const myLba = h.readBigUInt64LE(H.myLba);
  if (myLba !== lba) throw new GptError(`${which} GPT header: MyLBA is ${myLba}, but it was read at LBA ${lba}`);
  const entryCount = h.readUInt32LE(H.entryCount);
  const entrySize = h.readUInt32LE(H.entrySize);
  if (entrySize < GPT_ENTRY_SIZE || entrySize % 8 !== 0 || entrySize > 4096)
    throw new GptError(`${which} GPT header: entry size ${entrySize} is not supported`);
  if (entryCount < 1 || entryCount > 65536) throw new GptError(`${which} GPT header: entry count ${entryCount} is out of range`);
  const entryLba = h.readBigUInt64LE(H.entryLba);
  const entries = r.read(entryLba * ss, entryCount * entrySize, `${which} GPT entry array`);
  const entryCrc = h.readUInt32LE(H.entryArrayCrc);
  const actualEntries = crc32(entries);
  if (entryCrc !== actualEntries)
    throw new GptError(`${which} GPT entry array: CRC32 0x${hex32(entryCrc)} does not match the computed 0x${hex32(actualEntries)}`);
  const first = h.readBigUInt64LE(H.firstUsableLba);
  const last = h.readBigUInt64LE(H.lastUsableLba);
  if (first > last) throw new GptError(`${which} GPT header: first usable LBA ${first} is after the last ${last}`);
  return {
    myLba,
    alternateLba: h.readBigUInt64LE(H.alternateLba),
    first,
    last,
    diskGuid: bytesToGuid(h.subarray(H.diskGuid, H.diskGuid + 16)),
    entryLba,
    entryCount,
    entrySize,
    entryCrc,
    entries,
  };
}

function decodeEntries(raw: RawHeader): GptPartition[] {
  const out: GptPartition[] = [];
  for (let i = 0; i < raw.entryCount; i++) {
    const e = raw.entries.subarray(i * raw.entrySize, i * raw.entrySize + GPT_ENTRY_SIZE);
    const typeGuid = bytesToGuid(e.subarray(E.typeGuid, E.typeGuid + 16));
    if (typeGuid === ZERO_GUID) continue;
    const nameBytes = e.subarray(E.name, E.name + GPT_NAME_UNITS * 2);
    let end = 0;
    while (end < nameBytes.length && (nameBytes[end] !== 0 || nameBytes[end + 1] !== 0)) end += 2;
    const p: GptPartition = {
      number: i + 1,
      typeGuid,
      partGuid: bytesToGuid(e.subarray(E.partGuid, E.partGuid + 16)),
      firstLba: e.readBigUInt64LE(E.firstLba),
      lastLba: e.readBigUInt64LE(E.lastLba),
      attributes: e.readBigUInt64LE(E.attributes),
      name: nameBytes.toString("utf16le", 0, end),
    };
    if (p.firstLba > p.lastLba || p.firstLba < raw.first || p.lastLba > raw.last)
      throw new GptError(`GPT partition ${p.number} (${p.name}): LBAs ${p.firstLba}..${p.lastLba} are outside the usable range ${raw.first}..${raw.last}`);
    out.push(p);
  }
  const sorted = [...out].sort((a, b) => (a.firstLba < b.firstLba ? -1 : 1));
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i]!.firstLba <= sorted[i - 1]!.lastLba)
      throw new GptError(`GPT partitions ${sorted[i - 1]!.number} and ${sorted[i]!.number} overlap`);
  return out;
}

function detectSectorSize(r: DiskReader): SectorSize {
  for (const ss of SECTOR_SIZES) {
    try {
      if (r.read(BigInt(ss), 8, "GPT signature").toString("latin1") === GPT_SIGNATURE) return ss;
    } catch {
      // too small for this sector size
    }
  }
  // primary damaged: look for a backup header in the last sector
  for (const ss of SECTOR_SIZES) {
    try {
      if (r.read(r.size - BigInt(ss), 8, "GPT signature").toString("latin1") === GPT_SIGNATURE) return ss;
    } catch {
      // ignore
    }
  }
  throw new GptError('no GPT found: no "EFI PART" signature at LBA 1 or the last LBA (tried 512- and 4096-byte sectors)', "is this a whole-disk image (not a partition) in raw form?");
}

/**
 * Decode and validate a GPT. The primary header is preferred; when it is
 * damaged the backup is used and the damage is listed in `problems`. Throws
 * a GptError naming the field when neither copy is valid.
 */
export function decodeGpt(input: GptInput, opts: { sectorSize?: SectorSize } = {}): DecodedGpt {
  const r = new DiskReader(input);
  const sectorSize = opts.sectorSize ?? detectSectorSize(r);
  const ss = BigInt(sectorSize);
  if (r.size % ss !== 0n) throw new GptError(`disk size ${r.size} is not a multiple of the ${sectorSize}-byte sector`);
  const lastLba = r.size / ss - 1n;
  const problems: string[] = [];

  let primary: RawHeader | undefined;
  let backup: RawHeader | undefined;
  let primaryErr: string | undefined;
  try {
    primary = readHeader(r, 1n, sectorSize, "primary");
  } catch (e) {
    primaryErr = (e as Error).message;
  }
  const backupLba = primary ? primary.alternateLba : lastLba;
  try {
    backup = readHeader(r, backupLba, sectorSize, "backup");
  } catch (e) {
    problems.push((e as Error).message);
  }
  const chosen = primary ?? backup;
  if (!chosen) throw new GptError(`${primaryErr}; the backup is damaged too (${problems[0]})`);
  if (primaryErr) problems.unshift(primaryErr);
  if (primary && primary.alternateLba !== lastLba)
    problems.push(`primary header points to its backup at LBA ${primary.alternateLba}, but the disk's last LBA is ${lastLba} (the disk was resized?)`);
  if (primary && backup) {
    if (primary.diskGuid !== backup.diskGuid) problems.push("primary and backup headers carry different disk GUIDs");
    if (primary.entryCrc !== backup.entryCrc) problems.push("primary and backup entry arrays differ");
    if (primary.first !== backup.first || primary.last !== backup.last) problems.push("primary and backup headers disagree on the usable range");
  }
  const mbr = r.read(0n, MBR_SIZE, "protective MBR");
  if (mbr[MBR_SIGNATURE_OFFSET] !== 0x55 || mbr[MBR_SIGNATURE_OFFSET + 1] !== 0xaa) problems.push("protective MBR: no 0x55AA signature");
  else if (![0, 1, 2, 3].some((i) => mbr[MBR_PARTITION_OFFSET + i * 16 + 4] === MBR_PROTECTIVE_TYPE))
    problems.push("MBR has no protective (0xEE) partition (a hybrid or stale MBR?)");

  return {
    diskGuid: chosen.diskGuid,
    partitions: decodeEntries(chosen),
    entryCount: chosen.entryCount,
    sectorSize,
    diskSizeBytes: r.size,
    firstUsableLba: chosen.first,
    lastUsableLba: chosen.last,
    source: primary ? "primary" : "backup",
    problems,
  };
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, "0");
}

// ---------------------------------------------------------------- A/B slots

export const SLOT_PRIORITY_SHIFT = 48n;
export const SLOT_TRIES_SHIFT = 52n;
export const SLOT_SUCCESSFUL_BIT = 56n;
const NIBBLE = 0xfn;

export interface SlotState {
  /** 0-15; 0 never boots. */
  priority: number;
  /** 0-15 boot attempts left. */
  tries: number;
  successful: boolean;
}

export function getSlotState(attributes: bigint): SlotState {
  return {
    priority: Number((attributes >> SLOT_PRIORITY_SHIFT) & NIBBLE),
    tries: Number((attributes >> SLOT_TRIES_SHIFT) & NIBBLE),
    successful: ((attributes >> SLOT_SUCCESSFUL_BIT) & 1n) === 1n,
  };
}

/** Replace the slot bits (48-56) of `attributes`, keeping every other bit. */
export function setSlotState(attributes: bigint, state: SlotState): bigint {
  for (const [k, v] of [["priority", state.priority], ["tries", state.tries]] as const)
    if (!Number.isInteger(v) || v < 0 || v > 15) throw new GptError(`slot ${k} ${v} is out of range (0-15)`);
  const mask = (NIBBLE << SLOT_PRIORITY_SHIFT) | (NIBBLE << SLOT_TRIES_SHIFT) | (1n << SLOT_SUCCESSFUL_BIT);
  return (
    (attributes & ~mask & ((1n << 64n) - 1n)) |
    (BigInt(state.priority) << SLOT_PRIORITY_SHIFT) |
    (BigInt(state.tries) << SLOT_TRIES_SHIFT) |
    (state.successful ? 1n << SLOT_SUCCESSFUL_BIT : 0n)
  );
}

/** 64-bit attributes as sgdisk prints them: 16 hex digits, upper case. */
export function formatAttributes(attributes: bigint): string {
  return attributes.toString(16).toUpperCase().padStart(16, "0");
}

export interface SlotChoice<P> {
  partition: P;
  /** The winner is on trial (tries > 0): decrement and write the table back before booting it. */
  decrementTries: boolean;
  /** Its attributes after that decrement (unchanged when decrementTries is false). */
  nextAttributes: bigint;
}

/**
 * GRUB gptprio's choice: among /usr-type partitions that are eligible
 * (tries > 0 or successful), the highest priority wins; priority 0 never
 * boots; ties go to the lower partition number. Undefined when none qualifies.
 */
export function chooseSlot<P extends Pick<GptPartition, "number" | "typeGuid" | "attributes">>(
  partitions: readonly P[],
  usrType: string = TYPE_GUIDS.coreosUsr,
): SlotChoice<P> | undefined {
  let best: { p: P; s: SlotState } | undefined;
  for (const p of partitions) {
    if (p.typeGuid.toUpperCase() !== usrType.toUpperCase()) continue;
    const s = getSlotState(p.attributes);
    if (s.priority === 0 || !(s.tries > 0 || s.successful)) continue;
    if (!best || s.priority > best.s.priority || (s.priority === best.s.priority && p.number < best.p.number)) best = { p, s };
  }
  if (!best) return undefined;
  const decrementTries = best.s.tries > 0;
  return {
    partition: best.p,
    decrementTries,
    nextAttributes: decrementTries ? setSlotState(best.p.attributes, { ...best.s, tries: best.s.tries - 1 }) : best.p.attributes,
  };
}

// ---------------------------------------------------------------- in-place attribute changes

/** Bytes to write at `offset` on the disk. */
export interface DiskPatch {
  offset: bigint;
  bytes: Buffer;
}

/**
 * New attributes for some partitions, as the writes that make them: both entry
 * arrays and both headers (CRCs recomputed), every other byte of the table as
 * it was. Refuses a table whose copies are damaged or disagree: a disk that
 * needs repair is not the place to keep boot state.
 */
export function attributePatches(input: GptInput, changes: ReadonlyMap<number, bigint>, opts: { sectorSize?: SectorSize } = {}): DiskPatch[] {
  const decoded = decodeGpt(input, opts);
  if (decoded.problems.length) throw new GptError(`the GPT needs repair before slot attributes change: ${decoded.problems.join("; ")}`, "repair it with `sgdisk -e DISK` (or rebuild the disk), then try again");
  const r = new DiskReader(input);
  const ss = BigInt(decoded.sectorSize);
  const primary = readHeader(r, 1n, decoded.sectorSize, "primary");
  const backup = readHeader(r, primary.alternateLba, decoded.sectorSize, "backup");
  const entries = Buffer.from(primary.entries);
  for (const [number, attributes] of changes) {
    if (!decoded.partitions.some((p) => p.number === number)) throw new GptError(`partition ${number} does not exist`);
    if (attributes < 0n || attributes >= 1n << 64n) throw new GptError(`partition ${number}: attributes do not fit 64 bits`);
    entries.writeBigUInt64LE(attributes, (number - 1) * primary.entrySize + E.attributes);
  }
  const crc = crc32(entries);
  const patches: DiskPatch[] = [];
  for (const [h, which] of [[primary, "primary"], [backup, "backup"]] as const) {
    const sector = r.read(h.myLba * ss, decoded.sectorSize, `${which} GPT header`);
    sector.writeUInt32LE(crc, H.entryArrayCrc);
    sector.writeUInt32LE(0, H.headerCrc);
    const size = sector.readUInt32LE(H.headerSize);
    sector.writeUInt32LE(crc32(sector.subarray(0, size)), H.headerCrc);
    // entries first, header last: a header never points at entries it does not match for longer than one write
    patches.push({ offset: h.entryLba * ss, bytes: entries }, { offset: h.myLba * ss, bytes: sector });
  }
  return patches;
}
