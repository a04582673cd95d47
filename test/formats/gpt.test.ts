/**
 * GPT codec, pure tests: golden bytes (fixtures written by sgdisk and fdisk,
 * see test/fixtures/gpt/make-fixtures.sh, with the important fields checked
 * by hand below), round trips, validation errors and the A/B slot API.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { crc32 } from "../../src/formats/crc32.js";
import {
  bytesToGuid,
  chooseSlot,
  decodeGpt,
  encodeGpt,
  formatAttributes,
  getSlotState,
  GptError,
  guidToBytes,
  setSlotState,
  TYPE_GUIDS,
  type GptPartition,
  type GptTable,
} from "../../src/formats/gpt.js";

const fx = (name: string) => readFileSync(new URL(`../fixtures/gpt/${name}`, import.meta.url));
const MiB = 1024 * 1024;

/** The table make-fixtures.sh asks sgdisk for (LBAs as sgdisk -p printed them). */
const SGDISK_TABLE: GptTable = {
  diskGuid: "5A3C0B52-92A4-4D5D-8E0F-6E2C1F0D9A11",
  partitions: [
    { number: 1, typeGuid: TYPE_GUIDS.efiSystem, partGuid: "0C5C2E2A-7F0B-4C3E-9A39-2B8F1E3D4C5A", firstLba: 2048n, lastLba: 6143n, attributes: 0n, name: "EFI-SYSTEM" },
    { number: 3, typeGuid: TYPE_GUIDS.coreosUsr, partGuid: "7130C94A-213A-4E5A-8E26-6CCE9662F132", firstLba: 6144n, lastLba: 10239n, attributes: 0x0101_0000_0000_0000n, name: "USR-A" },
    { number: 4, typeGuid: TYPE_GUIDS.coreosUsr, partGuid: "E03DD35C-7C2D-4A47-B3FE-27F15780A57C", firstLba: 10240n, lastLba: 12287n, attributes: 0x1012_0000_0000_0000n, name: "USR-B" },
    { number: 9, typeGuid: TYPE_GUIDS.coreosResize, partGuid: "9B1F4E0C-3D2A-4B6E-8C7F-1A2B3C4D5E6F", firstLba: 12288n, lastLba: 16350n, attributes: 0n, name: "ROOT" },
  ],
};

function wholeDisk(head: Buffer, tail: Buffer, size: number): Buffer {
  const d = Buffer.alloc(size);
  head.copy(d, 0);
  tail.copy(d, size - tail.length);
  return d;
}

describe("crc32", () => {
  it("gives the standard check value and continues over chunks", () => {
    expect(crc32(Buffer.from("123456789"))).toBe(0xcbf43926);
    expect(crc32(Buffer.from("6789"), crc32(Buffer.from("12345")))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
  });
});

describe("GUIDs", () => {
  it("store the first three fields little-endian, the rest as written", () => {
    // the EFI system partition type as it appears on every disk
    expect(guidToBytes(TYPE_GUIDS.efiSystem).toString("hex")).toBe("28732ac11ff8d211ba4b00a0c93ec93b");
    expect(bytesToGuid(Buffer.from("28732ac11ff8d211ba4b00a0c93ec93b", "hex"))).toBe(TYPE_GUIDS.efiSystem);
    expect(bytesToGuid(guidToBytes("7130c94a-213a-4e5a-8e26-6cce9662f132"))).toBe("7130C94A-213A-4E5A-8E26-6CCE9662F132");
  });
  it("rejects text that is not a GUID", () => {
    expect(() => guidToBytes("7130c94a-213a-4e5a-8e26")).toThrow(/not a GUID/);
  });
});

describe("golden bytes: sgdisk, 512-byte sectors", () => {
  const head = fx("sgdisk-512.head.bin");
  const tail = fx("sgdisk-512.tail.bin");

  it("has the fields the UEFI spec puts at these offsets (checked by hand)", () => {
    // protective MBR: status 0, CHS start 0/0/2, type 0xEE, CHS end of LBA 16383 on a 255-head,
    // 63-sector geometry (16383 = 1*16065 + 5*63 + 3: C1 H5 S4 -> bytes 05 04 01), start LBA 1, 16383 sectors
    expect(head.subarray(446, 462).toString("hex")).toBe("00000200" + "ee" + "050401" + "01000000" + "ff3f0000");
    expect(head.readUInt16BE(510)).toBe(0x55aa);
    // primary header
    expect(head.toString("latin1", 512, 520)).toBe("EFI PART");
    expect(head.readUInt32LE(512 + 8)).toBe(0x00010000);
    expect(head.readUInt32LE(512 + 12)).toBe(92);
    expect(head.readUInt32LE(512 + 16)).toBe(0x8cd9ce0c); // header CRC
    expect(head.readBigUInt64LE(512 + 24)).toBe(1n); // my LBA
    expect(head.readBigUInt64LE(512 + 32)).toBe(16383n); // backup LBA
    expect(head.readBigUInt64LE(512 + 40)).toBe(34n);
    expect(head.readBigUInt64LE(512 + 48)).toBe(16350n);
    expect(head.subarray(512 + 56, 512 + 72).toString("hex")).toBe("520b3c5aa4925d4d8e0f6e2c1f0d9a11");
    expect(head.readBigUInt64LE(512 + 72)).toBe(2n);
    expect(head.readUInt32LE(512 + 80)).toBe(128);
    expect(head.readUInt32LE(512 + 84)).toBe(128);
    expect(head.readUInt32LE(512 + 88)).toBe(0x5d01f10b); // entry array CRC
    // CRCs are over the bytes with their own field zeroed
    const h = Buffer.from(head.subarray(512, 512 + 92));
    h.writeUInt32LE(0, 16);
    expect(crc32(h)).toBe(0x8cd9ce0c);
    expect(crc32(head.subarray(1024, 1024 + 128 * 128))).toBe(0x5d01f10b);
    // entry 3 (index 2): USR-A, attributes 0x0101000000000000 = priority 1 + successful, name in UTF-16LE
    const e3 = 1024 + 2 * 128;
    expect(head.subarray(e3, e3 + 16).toString("hex")).toBe("f4f5fb5d4828ac4baa5e0d9a20b745a6");
    expect(head.readBigUInt64LE(e3 + 32)).toBe(6144n);
    expect(head.readBigUInt64LE(e3 + 40)).toBe(10239n);
    expect(head.subarray(e3 + 48, e3 + 56).toString("hex")).toBe("0000000000000101");
    expect(head.subarray(e3 + 56, e3 + 68).toString("hex")).toBe("5500530052002d0041000000");
    // backup header in the last sector: my LBA and alternate swapped, entries right before it
    const b = tail.subarray(tail.length - 512);
    expect(b.toString("latin1", 0, 8)).toBe("EFI PART");
    expect(b.readBigUInt64LE(24)).toBe(16383n);
    expect(b.readBigUInt64LE(32)).toBe(1n);
    expect(b.readBigUInt64LE(72)).toBe(16351n);
    expect(tail.subarray(0, 128 * 128).equals(head.subarray(1024, 1024 + 128 * 128))).toBe(true);
  });

  it("decodes to the table sgdisk was asked for", () => {
    const d = decodeGpt({ head, tail, diskSizeBytes: 8 * MiB });
    expect(d.diskGuid).toBe(SGDISK_TABLE.diskGuid);
    expect(d.partitions).toEqual(SGDISK_TABLE.partitions);
    expect(d).toMatchObject({ sectorSize: 512, entryCount: 128, firstUsableLba: 34n, lastUsableLba: 16350n, source: "primary", problems: [] });
    expect(getSlotState(d.partitions[2]!.attributes)).toEqual({ priority: 2, tries: 1, successful: false });
  });

  it("encodes the same table to sgdisk's bytes exactly", () => {
    const e = encodeGpt(SGDISK_TABLE, 8 * MiB, 512);
    expect(e.primary.equals(head)).toBe(true);
    expect(e.backup.equals(tail)).toBe(true);
    expect(e.backupOffset).toBe(BigInt(8 * MiB - tail.length));
  });

  it("reads a whole disk the same as head + tail", () => {
    const disk = wholeDisk(head, tail, 8 * MiB);
    expect(decodeGpt(disk)).toEqual(decodeGpt({ head, tail, diskSizeBytes: 8 * MiB }));
  });
});

describe("golden bytes: fdisk, 4096-byte sectors", () => {
  const head = fx("fdisk-4096.head.bin");
  const tail = fx("fdisk-4096.tail.bin");
  const size = 16 * MiB;

  it("decodes: header at byte 4096, 4 entry sectors, fdisk's own usable range", () => {
    expect(head.toString("latin1", 4096, 4104)).toBe("EFI PART");
    const d = decodeGpt({ head, tail, diskSizeBytes: size });
    expect(d.sectorSize).toBe(4096);
    expect(d.diskGuid).toBe("0A1B2C3D-4E5F-4061-8273-94A5B6C7D8E9");
    expect(d.firstUsableLba).toBe(256n); // fdisk aligns the first usable LBA; the minimum would be 6
    expect(d.lastUsableLba).toBe(4090n); // 4096 sectors - 1 header - 4 entry sectors - 1
    expect(d.partitions).toEqual([
      { number: 1, typeGuid: TYPE_GUIDS.efiSystem, partGuid: "3E0F1A2B-4C5D-4E6F-8A9B-0C1D2E3F4A5B", firstLba: 256n, lastLba: 767n, attributes: 0n, name: "EFI-SYSTEM" },
      { number: 2, typeGuid: TYPE_GUIDS.coreosUsr, partGuid: "7130C94A-213A-4E5A-8E26-6CCE9662F132", firstLba: 768n, lastLba: 1791n, attributes: 0x0101_0000_0000_0000n, name: "USR-A" },
    ]);
  });

  it("round-trips byte for byte, except the MBR's CHS end that fdisk leaves at 0xFFFFFF", () => {
    const d = decodeGpt({ head, tail, diskSizeBytes: size });
    const e = encodeGpt(d, size, 4096);
    expect(e.primary.subarray(4096).equals(head.subarray(4096))).toBe(true);
    expect(e.backup.equals(tail)).toBe(true);
    expect(head.subarray(446 + 5, 446 + 8).toString("hex")).toBe("ffffff");
    // we write the CHS of LBA 4095 like sgdisk does: 4095 = 0*16065 + 65*63 + 0 -> C0 H65 S1
    expect(e.primary.subarray(446 + 5, 446 + 8).toString("hex")).toBe("410100");
    const mask = (b: Buffer) => Buffer.concat([b.subarray(0, 451), b.subarray(454, 4096)]);
    expect(mask(e.primary).equals(mask(head))).toBe(true);
  });
});

describe("encode", () => {
  const base: GptTable = {
    diskGuid: "11111111-2222-4333-8444-555555555555",
    partitions: [{ number: 1, typeGuid: TYPE_GUIDS.linuxFilesystem, partGuid: "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE", firstLba: 2048n, lastLba: 4095n, attributes: 0n, name: "data" }],
  };
  it("puts the backup entries and header in the last 33 sectors", () => {
    const e = encodeGpt(base, 4 * MiB);
    expect(e.primary.length).toBe(34 * 512);
    expect(e.backup.length).toBe(33 * 512);
    expect(e.backupOffset).toBe(BigInt(4 * MiB - 33 * 512));
    expect(e.firstUsableLba).toBe(34n);
    expect(e.lastUsableLba).toBe(8192n - 34n);
  });
  it("stores names as UTF-16LE, up to 36 units", () => {
    const t = { ...base, partitions: [{ ...base.partitions[0]!, name: "Ünïcode-slot-ß" }] };
    expect(decodeGpt(wholeDiskFrom(t, 4 * MiB)).partitions[0]!.name).toBe("Ünïcode-slot-ß");
    const long = { ...base, partitions: [{ ...base.partitions[0]!, name: "x".repeat(37) }] };
    expect(() => encodeGpt(long, 4 * MiB)).toThrow(/longer than 36/);
  });
  it("keeps all 64 attribute bits", () => {
    const t = { ...base, partitions: [{ ...base.partitions[0]!, attributes: 0x9101_0000_0000_0005n }] };
    expect(decodeGpt(wholeDiskFrom(t, 4 * MiB)).partitions[0]!.attributes).toBe(0x9101_0000_0000_0005n);
  });
  it("rejects overlaps, partitions outside the usable range, bad numbers and odd disk sizes", () => {
    const p = base.partitions[0]!;
    expect(() => encodeGpt({ ...base, partitions: [p, { ...p, number: 2, firstLba: 4000n, lastLba: 5000n }] }, 4 * MiB)).toThrow(/overlap/);
    expect(() => encodeGpt({ ...base, partitions: [{ ...p, lastLba: 8191n }] }, 4 * MiB)).toThrow(/outside the usable range/);
    expect(() => encodeGpt({ ...base, partitions: [{ ...p, firstLba: 10n }] }, 4 * MiB)).toThrow(/outside the usable range/);
    expect(() => encodeGpt({ ...base, partitions: [{ ...p, number: 129 }] }, 4 * MiB)).toThrow(/1\.\.128/);
    expect(() => encodeGpt({ ...base, partitions: [p, { ...p, firstLba: 5000n, lastLba: 5001n }] }, 4 * MiB)).toThrow(/used twice/);
    expect(() => encodeGpt(base, 4 * MiB + 100)).toThrow(GptError);
    expect(() => encodeGpt(base, 4 * MiB, 1024 as 512)).toThrow(/sector size/);
  });
});

function wholeDiskFrom(t: GptTable, size: number, ss: 512 | 4096 = 512): Buffer {
  const e = encodeGpt(t, size, ss);
  const d = Buffer.alloc(size);
  e.primary.copy(d, 0);
  e.backup.copy(d, Number(e.backupOffset));
  return d;
}

describe("decode validation", () => {
  const disk = () => wholeDisk(fx("sgdisk-512.head.bin"), fx("sgdisk-512.tail.bin"), 8 * MiB);

  it("falls back to the backup when the primary header is damaged, and says so", () => {
    const d = disk();
    d[512 + 60] ^= 0xff; // a byte of the disk GUID
    const r = decodeGpt(d);
    expect(r.source).toBe("backup");
    expect(r.problems[0]).toMatch(/primary GPT header: CRC32 0x[0-9a-f]{8} does not match/);
    expect(r.partitions).toEqual(SGDISK_TABLE.partitions);
  });
  it("reports a damaged backup entry array but reads the primary", () => {
    const d = disk();
    d[8 * MiB - 33 * 512 + 56] ^= 1; // first name byte of backup entry 1
    const r = decodeGpt(d);
    expect(r.source).toBe("primary");
    expect(r.problems.join("\n")).toMatch(/backup GPT entry array: CRC32/);
  });
  it("throws naming both copies when neither is valid", () => {
    const d = disk();
    d[1024 + 56] ^= 1; // primary entry array
    d[8 * MiB - 512 + 60] ^= 1; // backup header
    expect(() => decodeGpt(d)).toThrow(/primary GPT entry array: CRC32.*backup is damaged too.*backup GPT header: CRC32/s);
  });
  it("throws on a disk without a GPT", () => {
    expect(() => decodeGpt(Buffer.alloc(1 * MiB))).toThrow(/no GPT found/);
  });
  it("notes a missing protective MBR and a moved backup", () => {
    const d = disk();
    d.fill(0, 446, 462);
    expect(decodeGpt(d).problems).toContain("MBR has no protective (0xEE) partition (a hybrid or stale MBR?)");
    const grown = Buffer.concat([d, Buffer.alloc(MiB)]);
    expect(decodeGpt(grown).problems.join("\n")).toMatch(/resized/);
  });
  it("says which bytes are missing when head and tail are too short", () => {
    const head = fx("sgdisk-512.head.bin").subarray(0, 2048);
    expect(() => decodeGpt({ head, tail: Buffer.alloc(0), diskSizeBytes: 8 * MiB })).toThrow(/neither in the head/);
  });
});

describe("A/B slot attributes", () => {
  it("reads priority (48-51), tries (52-55) and successful (56)", () => {
    expect(getSlotState(0x0101_0000_0000_0000n)).toEqual({ priority: 1, tries: 0, successful: true });
    expect(getSlotState(0x0012_0000_0000_0000n)).toEqual({ priority: 2, tries: 1, successful: false });
    expect(getSlotState(0x00ff_0000_0000_0000n)).toEqual({ priority: 15, tries: 15, successful: false });
    expect(getSlotState(0n)).toEqual({ priority: 0, tries: 0, successful: false });
  });
  it("sets the slot bits and keeps the others (read-only 60, no-auto 63, low bits)", () => {
    expect(setSlotState(0n, { priority: 1, tries: 0, successful: true })).toBe(0x0101_0000_0000_0000n);
    expect(formatAttributes(setSlotState(0x9000_0000_0000_0001n, { priority: 2, tries: 1, successful: false }))).toBe("9012000000000001");
    expect(setSlotState(0x01ff_0000_0000_0000n, { priority: 0, tries: 0, successful: false })).toBe(0n);
    expect(() => setSlotState(0n, { priority: 16, tries: 0, successful: false })).toThrow(/priority 16/);
    expect(() => setSlotState(0n, { priority: 1, tries: -1, successful: false })).toThrow(/tries -1/);
  });

  const usr = (number: number, s: { priority: number; tries: number; successful: boolean }): GptPartition => ({
    number,
    typeGuid: TYPE_GUIDS.coreosUsr,
    partGuid: "00000000-0000-4000-8000-00000000000" + number,
    firstLba: BigInt(number * 1000),
    lastLba: BigInt(number * 1000 + 999),
    attributes: setSlotState(0n, s),
    name: `USR-${number}`,
  });

  it("boots USR-A on a fresh disk without touching the table", () => {
    const c = chooseSlot([usr(3, { priority: 1, tries: 0, successful: true }), usr(4, { priority: 0, tries: 0, successful: false })]);
    expect(c?.partition.number).toBe(3);
    expect(c?.decrementTries).toBe(false);
    expect(c?.nextAttributes).toBe(0x0101_0000_0000_0000n);
  });
  it("tries a freshly updated slot once, using up its try", () => {
    const c = chooseSlot([usr(3, { priority: 1, tries: 0, successful: true }), usr(4, { priority: 2, tries: 1, successful: false })]);
    expect(c?.partition.number).toBe(4);
    expect(c?.decrementTries).toBe(true);
    expect(getSlotState(c!.nextAttributes)).toEqual({ priority: 2, tries: 0, successful: false });
  });
  it("rolls back when the new slot used its try without being marked successful", () => {
    const c = chooseSlot([usr(3, { priority: 1, tries: 0, successful: true }), usr(4, { priority: 2, tries: 0, successful: false })]);
    expect(c?.partition.number).toBe(3);
  });
  it("breaks ties by the lower partition number, never boots priority 0, ignores other types", () => {
    const tie = chooseSlot([usr(4, { priority: 2, tries: 0, successful: true }), usr(3, { priority: 2, tries: 0, successful: true })]);
    expect(tie?.partition.number).toBe(3);
    expect(chooseSlot([usr(3, { priority: 0, tries: 5, successful: true })])).toBeUndefined();
    const other = { ...usr(1, { priority: 15, tries: 0, successful: true }), typeGuid: TYPE_GUIDS.linuxFilesystem };
    expect(chooseSlot([other, usr(3, { priority: 1, tries: 0, successful: true })])?.partition.number).toBe(3);
    expect(chooseSlot([])).toBeUndefined();
  });
});
