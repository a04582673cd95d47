/**
 * In-place slot attribute changes (attributePatches): only the attribute
 * field and the CRCs change, both copies agree, and the real tools (cgpt,
 * sgdisk, sfdisk) read the result.
 */
import { execa } from "execa";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { attributePatches, decodeGpt, encodeGpt, getSlotState, setSlotState, TYPE_GUIDS, type GptTable } from "../../src/formats/gpt.js";

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const table: GptTable = {
  diskGuid: "5A3C0B52-92A4-4D5D-8E0F-6E2C1F0D9A11",
  partitions: [
    { number: 1, typeGuid: TYPE_GUIDS.efiSystem, partGuid: "0C5C2E2A-7F0B-4C3E-9A39-2B8F1E3D4C5A", firstLba: 2048n, lastLba: 6143n, attributes: 0n, name: "EFI-SYSTEM" },
    { number: 3, typeGuid: TYPE_GUIDS.coreosUsr, partGuid: "7130C94A-213A-4E5A-8E26-6CCE9662F132", firstLba: 6144n, lastLba: 14335n, attributes: 0x0101_0000_0000_0000n, name: "USR-A" },
    { number: 4, typeGuid: TYPE_GUIDS.coreosUsr, partGuid: "E03DD35C-7C2D-4A47-B3FE-27F15780A57C", firstLba: 14336n, lastLba: 22527n, attributes: 0n, name: "USR-B" },
  ],
};

function disk(): Buffer {
  const e = encodeGpt(table, SIZE);
  const d = Buffer.alloc(SIZE);
  e.primary.copy(d, 0);
  e.backup.copy(d, Number(e.backupOffset));
  return d;
}

function patched(d: Buffer, changes: Map<number, bigint>): Buffer {
  const out = Buffer.from(d);
  for (const p of attributePatches(d, changes)) p.bytes.copy(out, Number(p.offset));
  return out;
}

describe("attributePatches", () => {
  it("changes only the attribute field and the CRCs, in both copies", () => {
    const d = disk();
    const b = setSlotState(0n, { priority: 2, tries: 3, successful: false });
    const out = patched(d, new Map([[4, b]]));
    const g = decodeGpt(out);
    expect(g.problems).toEqual([]);
    expect(g.partitions.find((p) => p.number === 4)!.attributes).toBe(b);
    expect(g.partitions.find((p) => p.number === 3)!.attributes).toBe(0x0101_0000_0000_0000n);
    // the same bytes as encoding the changed table from scratch
    const again = encodeGpt({ ...table, partitions: table.partitions.map((p) => (p.number === 4 ? { ...p, attributes: b } : p)) }, SIZE);
    expect(out.subarray(512, again.primary.length).equals(again.primary.subarray(512))).toBe(true);
    expect(out.subarray(Number(again.backupOffset)).equals(again.backup)).toBe(true);
    const diff: number[] = [];
    for (let i = 0; i < out.length; i++) if (out[i] !== d[i]) diff.push(i);
    const attrAt = (base: number) => [base + 3 * 128 + 48 + 6, base + 3 * 128 + 48 + 7];
    const allowed = new Set([...attrAt(1024), ...attrAt(Number(again.backupOffset)), 512 + 16, 512 + 17, 512 + 18, 512 + 19, 512 + 88, 512 + 89, 512 + 90, 512 + 91, SIZE - 512 + 16, SIZE - 512 + 17, SIZE - 512 + 18, SIZE - 512 + 19, SIZE - 512 + 88, SIZE - 512 + 89, SIZE - 512 + 90, SIZE - 512 + 91]);
    expect(diff.filter((i) => !allowed.has(i))).toEqual([]);
  });

  it("cgpt and sgdisk read the bits we wrote; what sfdisk writes we read back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "acl-gpt-attr-"));
    const f = join(dir, "d.raw");
    writeFileSync(f, patched(disk(), new Map([[4, setSlotState(0n, { priority: 2, tries: 3, successful: false })], [3, setSlotState(0n, { priority: 1, tries: 0, successful: true })]])));
    const show = async (i: number, flag: string) => (await execa("cgpt", ["show", "-i", String(i), flag, f])).stdout.trim();
    expect([await show(4, "-P"), await show(4, "-T"), await show(4, "-S")]).toEqual(["2", "3", "0"]);
    expect([await show(3, "-P"), await show(3, "-T"), await show(3, "-S")]).toEqual(["1", "0", "1"]);
    expect((await execa("sgdisk", ["-v", f])).stdout).toMatch(/No problems found/);
    await execa("sfdisk", ["--quiet", "--no-reread", "--no-tell-kernel", "--part-attrs", f, "4", "GUID:48,52,56"]);
    const fh = await open(f, "r");
    const head = Buffer.alloc(MiB);
    const tail = Buffer.alloc(MiB);
    await fh.read(head, 0, MiB, 0);
    await fh.read(tail, 0, MiB, SIZE - MiB);
    await fh.close();
    const g = decodeGpt({ head, tail, diskSizeBytes: SIZE });
    expect(getSlotState(g.partitions.find((p) => p.number === 4)!.attributes)).toEqual({ priority: 1, tries: 1, successful: true });
    // the same state through cgpt add
    await execa("cgpt", ["add", "-i", "4", "-P", "5", "-T", "0", "-S", "1", f]);
    const d2 = readFileSync(f);
    expect(getSlotState(decodeGpt(d2).partitions.find((p) => p.number === 4)!.attributes)).toEqual({ priority: 5, tries: 0, successful: true });
  });

  it("refuses a table that needs repair, and unknown partitions", () => {
    // one flipped byte in the backup entry array: its CRC no longer matches
    const broken = disk();
    broken[SIZE - 33 * 512] ^= 0xff;
    expect(() => attributePatches(broken, new Map([[4, 0n]]))).toThrow(/needs repair/);
    expect(() => attributePatches(disk(), new Map([[7, 0n]]))).toThrow(/partition 7 does not exist/);
  });
});
