import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import {
  GNU_PROPERTY_X86_ISA_1_NEEDED,
  GNU_PROPERTY_X86_ISA_1_USED,
  NT_GNU_PROPERTY_TYPE_0,
  PT_NOTE,
  SHT_NOTE,
  bufferSource,
  encodeGnuPropertyNote,
  isElf,
  isaLevelFromMask,
  isaMaskNames,
  parseGnuProperties,
  parseNotes,
  readElfNotes,
  readIsaNeeded,
  u32Property,
} from "../../src/formats/elf.js";

/** GNU_PROPERTY_X86_FEATURE_1_AND (IBT, SHSTK), as ld writes for -z ibt -z shstk. */
const X86_FEATURE_1_AND = 0xc0000002;

/**
 * `.note.gnu.property` of a program linked here with `gcc -Wl,-z,x86-64-v3`
 * (GNU ld 2.40), from `readelf -x .note.gnu.property`: one property,
 * ISA needed = baseline | v3 = 5.
 */
const LD_V3_NOTE = "04000000" + "10000000" + "05000000" + "474e5500" + "028000c0" + "04000000" + "05000000" + "00000000";
/** Same, linked with -z x86-64-v2 -z ibt -z shstk: a feature property, then ISA needed = 3. */
const LD_CET_V2_NOTE =
  "04000000" + "20000000" + "05000000" + "474e5500" + "020000c0" + "04000000" + "03000000" + "00000000" + "028000c0" + "04000000" + "03000000" + "00000000";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

interface Area {
  bytes: Uint8Array;
  align: number;
}

/**
 * A minimal ELF64 LE file: header, then either program headers (PT_NOTE per
 * area) or section headers (SHT_NOTE per area, plus the null section), then
 * the note areas.
 */
function miniElf(areas: Area[], via: "segments" | "sections" = "segments", opts: { cls?: number; data?: number } = {}): Buffer {
  const headerSize = 64;
  const entSize = via === "segments" ? 56 : 64;
  const count = via === "segments" ? areas.length : areas.length + 1;
  let off = headerSize + count * entSize;
  off = Math.ceil(off / 8) * 8;
  const placed = areas.map((a) => {
    const at = off;
    off = Math.ceil((off + a.bytes.length) / 8) * 8;
    return at;
  });
  const b = Buffer.alloc(off);
  b.set([0x7f, 0x45, 0x4c, 0x46, opts.cls ?? 2, opts.data ?? 1, 1], 0);
  b.writeUInt16LE(2, 16); // ET_EXEC
  b.writeUInt16LE(62, 18); // EM_X86_64
  b.writeUInt32LE(1, 20);
  b.writeUInt16LE(headerSize, 52);
  if (via === "segments") {
    b.writeBigUInt64LE(BigInt(headerSize), 32);
    b.writeUInt16LE(56, 54);
    b.writeUInt16LE(areas.length, 56);
    b.writeUInt16LE(64, 58);
    areas.forEach((a, i) => {
      const o = headerSize + i * 56;
      b.writeUInt32LE(PT_NOTE, o);
      b.writeUInt32LE(4, o + 4); // PF_R
      b.writeBigUInt64LE(BigInt(placed[i]!), o + 8);
      b.writeBigUInt64LE(BigInt(placed[i]!), o + 16);
      b.writeBigUInt64LE(BigInt(placed[i]!), o + 24);
      b.writeBigUInt64LE(BigInt(a.bytes.length), o + 32);
      b.writeBigUInt64LE(BigInt(a.bytes.length), o + 40);
      b.writeBigUInt64LE(BigInt(a.align), o + 48);
    });
  } else {
    b.writeBigUInt64LE(BigInt(headerSize), 40);
    b.writeUInt16LE(56, 54);
    b.writeUInt16LE(64, 58);
    b.writeUInt16LE(count, 60);
    areas.forEach((a, i) => {
      const o = headerSize + (i + 1) * 64;
      b.writeUInt32LE(SHT_NOTE, o + 4);
      b.writeBigUInt64LE(BigInt(placed[i]!), o + 24);
      b.writeBigUInt64LE(BigInt(a.bytes.length), o + 32);
      b.writeBigUInt64LE(BigInt(a.align), o + 48);
    });
  }
  areas.forEach((a, i) => b.set(a.bytes, placed[i]!));
  return b;
}

/** A 4-byte aligned note of another owner, like .note.gnu.build-id. */
function buildIdNote(): Uint8Array {
  const id = createHash("sha1").update("x").digest();
  const b = Buffer.alloc(12 + 4 + id.length);
  b.writeUInt32LE(4, 0);
  b.writeUInt32LE(id.length, 4);
  b.writeUInt32LE(3, 8); // NT_GNU_BUILD_ID
  b.write("GNU\0", 12, "latin1");
  id.copy(b, 16);
  return b;
}

describe("GNU property note codec", () => {
  it("encodes the note ld writes for -z x86-64-v3 byte for byte", () => {
    const note = encodeGnuPropertyNote([u32Property(GNU_PROPERTY_X86_ISA_1_NEEDED, 5)]);
    expect(hex(note)).toBe(LD_V3_NOTE);
    const two = encodeGnuPropertyNote([u32Property(X86_FEATURE_1_AND, 3), u32Property(GNU_PROPERTY_X86_ISA_1_NEEDED, 3)]);
    expect(hex(two)).toBe(LD_CET_V2_NOTE);
  });

  it("parses ld's notes: owner, type, 8-byte padded properties", () => {
    const notes = parseNotes(Buffer.from(LD_CET_V2_NOTE, "hex"), 8);
    expect(notes).toHaveLength(1);
    expect(notes[0]!.name).toBe("GNU");
    expect(notes[0]!.type).toBe(NT_GNU_PROPERTY_TYPE_0);
    const props = parseGnuProperties(notes[0]!.desc);
    expect(props.map((p) => [p.type, hex(p.data)])).toEqual([
      [X86_FEATURE_1_AND, "03000000"],
      [GNU_PROPERTY_X86_ISA_1_NEEDED, "03000000"],
    ]);
  });

  it("maps masks to levels: bits are per level, the highest set wins", () => {
    expect(isaLevelFromMask(1)).toBe("x86-64");
    expect(isaLevelFromMask(0)).toBe("x86-64");
    expect(isaLevelFromMask(3)).toBe("x86-64-v2");
    expect(isaLevelFromMask(5)).toBe("x86-64-v3");
    expect(isaLevelFromMask(4)).toBe("x86-64-v3");
    expect(isaLevelFromMask(9)).toBe("x86-64-v4");
    expect(isaLevelFromMask(0x10 | 2)).toBe("x86-64-v2");
    expect(isaMaskNames(5)).toEqual(["x86-64", "x86-64-v3"]);
  });
});

describe("readIsaNeeded on hand-built ELF files", () => {
  const v3 = { bytes: Buffer.from(LD_V3_NOTE, "hex"), align: 8 };

  it("reads the level from a PT_NOTE segment", () => {
    expect(readIsaNeeded(miniElf([v3]))).toEqual({ mask: 5, level: "x86-64-v3" });
    expect(readIsaNeeded(bufferSource(miniElf([v3])))).toEqual({ mask: 5, level: "x86-64-v3" });
  });

  it("reads it from SHT_NOTE sections when there are no program headers (object files)", () => {
    const f = miniElf([{ bytes: buildIdNote(), align: 4 }, v3], "sections");
    expect(readIsaNeeded(f)).toEqual({ mask: 5, level: "x86-64-v3" });
    expect(readElfNotes(f).map((n) => [n.name, n.type])).toEqual([["GNU", 3], ["GNU", 5]]);
  });

  it("finds the property among other notes, segments and properties", () => {
    const note = encodeGnuPropertyNote([
      u32Property(X86_FEATURE_1_AND, 3),
      u32Property(GNU_PROPERTY_X86_ISA_1_USED, 0xf),
      u32Property(GNU_PROPERTY_X86_ISA_1_NEEDED, 0x9),
    ]);
    const f = miniElf([{ bytes: buildIdNote(), align: 4 }, { bytes: note, align: 8 }]);
    expect(readIsaNeeded(f)).toEqual({ mask: 9, level: "x86-64-v4" });
    // Several notes in one 8-aligned segment, with an odd-sized property before ours.
    const odd = { type: 0xc0000099, data: Uint8Array.of(1, 2, 3, 4, 5) };
    const packed = Buffer.concat([encodeGnuPropertyNote([odd]), encodeGnuPropertyNote([u32Property(GNU_PROPERTY_X86_ISA_1_NEEDED, 2)])]);
    expect(readIsaNeeded(miniElf([{ bytes: packed, align: 8 }]))).toEqual({ mask: 2, level: "x86-64-v2" });
  });

  it("ignores ISA_1_USED, other owners and other note types", () => {
    const used = encodeGnuPropertyNote([u32Property(GNU_PROPERTY_X86_ISA_1_USED, 8)]);
    expect(readIsaNeeded(miniElf([{ bytes: used, align: 8 }]))).toBeNull();
    const other = Buffer.from(LD_V3_NOTE, "hex");
    other.write("XYZ", 12, "latin1");
    expect(readIsaNeeded(miniElf([{ bytes: other, align: 8 }]))).toBeNull();
    const wrongType = Buffer.from(LD_V3_NOTE, "hex");
    wrongType.writeUInt32LE(4, 8);
    expect(readIsaNeeded(miniElf([{ bytes: wrongType, align: 8 }]))).toBeNull();
    expect(readIsaNeeded(miniElf([{ bytes: buildIdNote(), align: 4 }]))).toBeNull();
    expect(readIsaNeeded(miniElf([]))).toBeNull();
  });

  it("returns null for ELF32 and big-endian files", () => {
    expect(readIsaNeeded(miniElf([v3], "segments", { cls: 1 }))).toBeNull();
    expect(readIsaNeeded(miniElf([v3], "segments", { data: 2 }))).toBeNull();
  });
});

describe("garbage never throws", () => {
  const good = miniElf([{ bytes: Buffer.from(LD_V3_NOTE, "hex"), align: 8 }]);

  it("non-ELF and truncated inputs are 'no note'", () => {
    expect(isElf(Buffer.from("#!/bin/sh\n"))).toBe(false);
    expect(readIsaNeeded(Buffer.from("#!/bin/sh\necho hi\n"))).toBeNull();
    expect(readIsaNeeded(new Uint8Array(0))).toBeNull();
    expect(readIsaNeeded(Uint8Array.of(0x7f, 0x45, 0x4c, 0x46))).toBeNull();
    for (let n = 0; n < good.length; n += 7) expect(() => readIsaNeeded(good.subarray(0, n))).not.toThrow();
    // Cut inside the note: the property is gone, so no note.
    expect(readIsaNeeded(good.subarray(0, good.length - 12))).toBeNull();
  });

  it("corrupt sizes, offsets and counts are 'no note'", () => {
    const at = 64; // the PT_NOTE program header
    const cases: ((b: Buffer) => void)[] = [
      (b) => b.writeBigUInt64LE(0xffffffffffffffffn, 32), // e_phoff
      (b) => b.writeUInt16LE(0xffff, 56), // e_phnum
      (b) => b.writeUInt16LE(8, 54), // e_phentsize too small
      (b) => b.writeBigUInt64LE(0xfffffffffn, at + 8), // p_offset beyond the file
      (b) => b.writeBigUInt64LE(1n << 40n, at + 32), // p_filesz huge
      (b) => b.writeUInt32LE(0xffffffff, 120), // namesz
      (b) => b.writeUInt32LE(0xfffffff0, 124), // descsz
      (b) => b.writeUInt32LE(0xffffff00, 120 + 20), // pr_datasz
    ];
    for (const mutate of cases) {
      const b = Buffer.from(good);
      mutate(b);
      expect(() => readIsaNeeded(b)).not.toThrow();
      expect(readIsaNeeded(b)).toBeNull();
    }
    // A property with a short payload is skipped, not read past.
    const short = encodeGnuPropertyNote([{ type: GNU_PROPERTY_X86_ISA_1_NEEDED, data: Uint8Array.of(4, 0) }]);
    expect(readIsaNeeded(miniElf([{ bytes: short, align: 8 }]))).toBeNull();
  });

  it("survives random bytes behind an ELF64 header", () => {
    let seed = createHash("sha256").update("garbage").digest();
    for (let i = 0; i < 300; i++) {
      seed = createHash("sha256").update(seed).digest();
      const junk = Buffer.concat(Array.from({ length: 16 }, (_, k) => createHash("sha256").update(seed).update(String(k)).digest()));
      junk.set([0x7f, 0x45, 0x4c, 0x46, 2, 1], 0);
      // Keep the tables small and in range half of the time so the parsers see real-looking junk.
      if (i % 2) {
        junk.writeBigUInt64LE(64n, 32);
        junk.writeUInt16LE(56, 54);
        junk.writeUInt16LE(1 + (i % 5), 56);
        junk.writeUInt32LE(PT_NOTE, 64);
      }
      expect(() => readIsaNeeded(junk)).not.toThrow();
      expect(() => readElfNotes(junk)).not.toThrow();
      expect(() => parseNotes(junk, 8)).not.toThrow();
      expect(() => parseGnuProperties(junk)).not.toThrow();
    }
  });
});
