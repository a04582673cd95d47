/**
 * ELF64 codec: the program interpreter (is a binary static?) and the GNU
 * property notes that say which x86-64 ISA level a binary needs.
 *
 * The linker records `GNU_PROPERTY_X86_ISA_1_NEEDED` in an
 * NT_GNU_PROPERTY_TYPE_0 note (owner "GNU") in `.note.gnu.property`, which a
 * linked file maps through a PT_NOTE (and PT_GNU_PROPERTY) segment with 8-byte
 * alignment on ELF64. glibc's loader refuses to run a file whose needed level
 * the CPU lacks.
 *
 * Pure codec: it reads through a `ByteSource` (a Buffer, or a reader the
 * caller backs with a file) and never throws on malformed input: anything it
 * cannot make sense of is "no note" (null).
 *
 * Only ELF64 little-endian files are read (x86-64); anything else is "no note".
 */

import { MICROARCHES, type Microarch } from "./microarch.js";

export const ELF_MAGIC = Uint8Array.of(0x7f, 0x45, 0x4c, 0x46);
export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const ELF64_EHDR_SIZE = 64;
export const ELF64_PHDR_SIZE = 56;
export const ELF64_SHDR_SIZE = 64;
export const PT_INTERP = 3;
export const PT_NOTE = 4;
export const PT_GNU_PROPERTY = 0x6474e553;
export const SHT_NOTE = 7;
export const NT_GNU_PROPERTY_TYPE_0 = 5;
export const GNU_NOTE_OWNER = "GNU";
export const GNU_PROPERTY_X86_ISA_1_NEEDED = 0xc0008002;
export const GNU_PROPERTY_X86_ISA_1_USED = 0xc0010002;
/** Note header: namesz, descsz, type (u32 each). */
const NOTE_HEADER_SIZE = 12;
/** Property header: pr_type, pr_datasz (u32 each). */
const PROPERTY_HEADER_SIZE = 8;
/** ELF64 property arrays are padded to 8 bytes. */
const ELF64_PROPERTY_ALIGN = 8;
/** More notes or properties than this in one file is garbage, not a binary. */
const MAX_ITEMS = 4096;
/** Largest note area we look at (real ones are tens of bytes). */
const MAX_NOTE_AREA = 1 << 20;
const MAX_HEADERS = 4096;


/** GNU_PROPERTY_X86_ISA_1_* bits; one per level, not cumulative. */
export const ISA_LEVEL_BITS: Readonly<Record<Microarch, number>> = {
  "x86-64": 0x1,
  "x86-64-v2": 0x2,
  "x86-64-v3": 0x4,
  "x86-64-v4": 0x8,
};

/** Random access to the bytes of one file. `read` may return fewer bytes at the end. */
export interface ByteSource {
  readonly size: number;
  read(offset: number, length: number): Uint8Array;
}

export function bufferSource(b: Uint8Array): ByteSource {
  return {
    size: b.length,
    read: (offset, length) => (offset >= b.length || offset < 0 ? new Uint8Array(0) : b.subarray(offset, Math.min(b.length, offset + length))),
  };
}

export interface ElfNote {
  name: string;
  type: number;
  desc: Uint8Array;
}

export interface GnuProperty {
  type: number;
  data: Uint8Array;
}

export interface IsaNote {
  /** Raw GNU_PROPERTY_X86_ISA_1_NEEDED bit mask (OR of all such properties found). */
  mask: number;
  /** Highest level whose bit is set; "x86-64" when no level bit is set. Unknown bits are ignored. */
  level: Microarch;
}

export function isaLevelFromMask(mask: number): Microarch {
  let level: Microarch = "x86-64";
  for (const l of MICROARCHES) if (mask & ISA_LEVEL_BITS[l]) level = l;
  return level;
}

/** Names of the level bits set in a mask, in readelf's order ("x86-64-baseline" is readelf's name for bit 0). */
export function isaMaskNames(mask: number): Microarch[] {
  return MICROARCHES.filter((l) => (mask & ISA_LEVEL_BITS[l]) !== 0);
}

/** True when the first bytes are the ELF magic. */
export function isElf(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x7f && head[1] === 0x45 && head[2] === 0x4c && head[3] === 0x46;
}

const align = (n: number, a: number): number => (a > 1 ? Math.ceil(n / a) * a : n);

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** A u64 field as a number, or -1 when it cannot be a file offset or size. */
function u64(v: DataView, off: number): number {
  const x = v.getBigUint64(off, true);
  return x > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(x);
}

/**
 * Split a note area into notes. `alignment` is the segment's or section's
 * alignment (4 or 8); 8-aligned areas pad name and desc to 8 bytes. Stops
 * quietly at the first note that does not fit.
 */
export function parseNotes(area: Uint8Array, alignment: number): ElfNote[] {
  const a = alignment === 8 ? 8 : 4;
  const v = dv(area);
  const notes: ElfNote[] = [];
  let off = 0;
  while (off + NOTE_HEADER_SIZE <= area.length && notes.length < MAX_ITEMS) {
    const namesz = v.getUint32(off, true);
    const descsz = v.getUint32(off + 4, true);
    const type = v.getUint32(off + 8, true);
    const nameOff = off + NOTE_HEADER_SIZE;
    const descOff = align(nameOff + namesz, a);
    const end = descOff + descsz;
    if (namesz > area.length || descsz > area.length || end > area.length) break;
    let nameBytes = area.subarray(nameOff, nameOff + namesz);
    const nul = nameBytes.indexOf(0);
    if (nul >= 0) nameBytes = nameBytes.subarray(0, nul);
    const name = Buffer.from(nameBytes.buffer, nameBytes.byteOffset, nameBytes.byteLength).toString("latin1");
    notes.push({ name, type, desc: area.subarray(descOff, end) });
    off = align(end, a);
  }
  return notes;
}

/** Split an NT_GNU_PROPERTY_TYPE_0 descriptor (ELF64: 8-byte padded entries) into properties. */
export function parseGnuProperties(desc: Uint8Array): GnuProperty[] {
  const v = dv(desc);
  const props: GnuProperty[] = [];
  let off = 0;
  while (off + PROPERTY_HEADER_SIZE <= desc.length && props.length < MAX_ITEMS) {
    const type = v.getUint32(off, true);
    const size = v.getUint32(off + 4, true);
    const dataOff = off + PROPERTY_HEADER_SIZE;
    if (size > desc.length - dataOff) break;
    props.push({ type, data: desc.subarray(dataOff, dataOff + size) });
    off = align(dataOff + size, ELF64_PROPERTY_ALIGN);
  }
  return props;
}

/** The ISA-needed mask carried by a list of notes, or null when none carries one. */
export function isaMaskFromNotes(notes: readonly ElfNote[]): number | null {
  let mask: number | null = null;
  for (const n of notes) {
    if (n.name !== GNU_NOTE_OWNER || n.type !== NT_GNU_PROPERTY_TYPE_0) continue;
    for (const p of parseGnuProperties(n.desc)) {
      if (p.type === GNU_PROPERTY_X86_ISA_1_NEEDED && p.data.length >= 4) {
        mask = ((mask ?? 0) | dv(p.data).getUint32(0, true)) >>> 0;
      }
    }
  }
  return mask;
}

interface Region {
  offset: number;
  size: number;
  align: number;
}

function readRegion(src: ByteSource, r: Region): Uint8Array | null {
  if (r.offset < 0 || r.size <= 0 || r.size > MAX_NOTE_AREA || r.offset + r.size > src.size) return null;
  const b = src.read(r.offset, r.size);
  return b.length === r.size ? b : null;
}

/** Note areas named by the program headers (PT_NOTE), then by the section headers (SHT_NOTE). */
function noteRegions(src: ByteSource, eh: DataView): { segments: Region[]; sections: () => Region[] } {
  const phoff = u64(eh, 32);
  const shoff = u64(eh, 40);
  const phentsize = eh.getUint16(54, true);
  const phnum = eh.getUint16(56, true);
  const shentsize = eh.getUint16(58, true);
  const shnum = eh.getUint16(60, true);
  const segments: Region[] = [];
  const tableFits = (off: number, n: number, entsize: number): boolean =>
    off > 0 && n > 0 && n <= MAX_HEADERS && n * entsize <= MAX_NOTE_AREA && off + n * entsize <= src.size;
  if (phentsize >= ELF64_PHDR_SIZE && tableFits(phoff, phnum, phentsize)) {
    const table = src.read(phoff, phnum * phentsize);
    const v = dv(table);
    for (let i = 0; i < phnum && (i + 1) * phentsize <= table.length; i++) {
      const o = i * phentsize;
      if (v.getUint32(o, true) !== PT_NOTE) continue;
      segments.push({ offset: u64(v, o + 8), size: u64(v, o + 32), align: u64(v, o + 48) });
    }
  }
  const sections = (): Region[] => {
    const out: Region[] = [];
    if (shentsize < ELF64_SHDR_SIZE || !tableFits(shoff, shnum, shentsize)) return out;
    const table = src.read(shoff, shnum * shentsize);
    const v = dv(table);
    for (let i = 0; i < shnum && (i + 1) * shentsize <= table.length; i++) {
      const o = i * shentsize;
      if (v.getUint32(o + 4, true) !== SHT_NOTE) continue;
      out.push({ offset: u64(v, o + 24), size: u64(v, o + 32), align: u64(v, o + 48) });
    }
    return out;
  };
  return { segments, sections };
}

/** All notes of an ELF64 LE file (from its segments, or its sections when it has no note segment). */
export function readElfNotes(input: ByteSource | Uint8Array): ElfNote[] {
  try {
    const src = input instanceof Uint8Array ? bufferSource(input) : input;
    const head = src.read(0, ELF64_EHDR_SIZE);
    if (head.length < ELF64_EHDR_SIZE || !isElf(head) || head[4] !== ELFCLASS64 || head[5] !== ELFDATA2LSB) return [];
    const { segments, sections } = noteRegions(src, dv(head));
    const fromRegions = (regions: Region[]): ElfNote[] =>
      regions.flatMap((r) => {
        const area = readRegion(src, r);
        return area ? parseNotes(area, r.align) : [];
      });
    const notes = fromRegions(segments);
    return notes.length ? notes : fromRegions(sections());
  } catch {
    return [];
  }
}

/**
 * The x86 ISA level an ELF64 LE file needs, from its GNU property note, or
 * null when it has none (or is not such a file, or is malformed).
 */
export function readIsaNeeded(input: ByteSource | Uint8Array): IsaNote | null {
  try {
    const src = input instanceof Uint8Array ? bufferSource(input) : input;
    const head = src.read(0, ELF64_EHDR_SIZE);
    if (head.length < ELF64_EHDR_SIZE || !isElf(head) || head[4] !== ELFCLASS64 || head[5] !== ELFDATA2LSB) return null;
    const { segments, sections } = noteRegions(src, dv(head));
    const maskOf = (regions: Region[]): number | null => {
      let mask: number | null = null;
      for (const r of regions) {
        const area = readRegion(src, r);
        const m = area ? isaMaskFromNotes(parseNotes(area, r.align)) : null;
        if (m !== null) mask = ((mask ?? 0) | m) >>> 0;
      }
      return mask;
    };
    const mask = maskOf(segments) ?? maskOf(sections());
    return mask === null ? null : { mask, level: isaLevelFromMask(mask) };
  } catch {
    return null;
  }
}

/**
 * Encode an NT_GNU_PROPERTY_TYPE_0 note as the linker lays it out in ELF64
 * (8-byte alignment): for building test inputs and for documentation.
 */
export function encodeGnuPropertyNote(props: readonly GnuProperty[]): Uint8Array {
  const descLen = props.reduce((n, p) => n + align(PROPERTY_HEADER_SIZE + p.data.length, ELF64_PROPERTY_ALIGN), 0);
  const name = Uint8Array.of(0x47, 0x4e, 0x55, 0); // "GNU\0"
  const descOff = align(NOTE_HEADER_SIZE + name.length, 8);
  const out = new Uint8Array(align(descOff + descLen, 8));
  const v = dv(out);
  v.setUint32(0, name.length, true);
  v.setUint32(4, descLen, true);
  v.setUint32(8, NT_GNU_PROPERTY_TYPE_0, true);
  out.set(name, NOTE_HEADER_SIZE);
  let off = descOff;
  for (const p of props) {
    v.setUint32(off, p.type, true);
    v.setUint32(off + 4, p.data.length, true);
    out.set(p.data, off + PROPERTY_HEADER_SIZE);
    off += align(PROPERTY_HEADER_SIZE + p.data.length, ELF64_PROPERTY_ALIGN);
  }
  return out;
}

/** A u32 property payload (what ISA and feature properties carry). */
export function u32Property(type: number, value: number): GnuProperty {
  const data = new Uint8Array(4);
  dv(data).setUint32(0, value >>> 0, true);
  return { type, data };
}

/**
 * The program interpreter (PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2) of an
 * ELF64 LE file; null for a static binary (no PT_INTERP); undefined when the
 * bytes are not such a file or its program headers do not fit.
 */
export function elfInterpreter(input: ByteSource | Uint8Array): string | null | undefined {
  try {
    const src = input instanceof Uint8Array ? bufferSource(input) : input;
    const head = src.read(0, ELF64_EHDR_SIZE);
    if (head.length < ELF64_EHDR_SIZE || !isElf(head) || head[4] !== ELFCLASS64 || head[5] !== ELFDATA2LSB) return undefined;
    const eh = dv(head);
    const phoff = u64(eh, 32);
    const phentsize = eh.getUint16(54, true);
    const phnum = eh.getUint16(56, true);
    if (phnum === 0) return null;
    if (phentsize < ELF64_PHDR_SIZE || phoff <= 0 || phnum > MAX_HEADERS || phoff + phnum * phentsize > src.size) return undefined;
    const table = src.read(phoff, phnum * phentsize);
    const v = dv(table);
    for (let i = 0; i < phnum && (i + 1) * phentsize <= table.length; i++) {
      const o = i * phentsize;
      if (v.getUint32(o, true) !== PT_INTERP) continue;
      const at = u64(v, o + 8);
      const size = u64(v, o + 32);
      if (at < 0 || size <= 0 || size > 4096 || at + size > src.size) return undefined;
      const b = src.read(at, size);
      const nul = b.indexOf(0);
      return Buffer.from(b.buffer, b.byteOffset, nul >= 0 ? nul : b.length).toString("latin1");
    }
    return null;
  } catch {
    return undefined;
  }
}
