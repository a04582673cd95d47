/**
 * VHD footer codec: golden bytes (a footer qemu-img 7.2 wrote for a 3 MiB
 * fixed disk with force_size), footers of VHDs made by the real qemu-img
 * read by us, and footers rewritten by us accepted by qemu-img (which checks
 * the checksum: "Incorrect header checksum").
 */
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireTools, run } from "../../src/adapters/exec.js";
import {
  decodeVhdFooter,
  encodeVhdFooter,
  VHD_DISK_TYPES,
  VHD_FIXED_DATA_OFFSET,
  VHD_FOOTER_SIZE,
  vhdChecksum,
  vhdTimestamp,
  withDeterministicFooter,
} from "../../src/formats/vhd-footer.js";

/** The non-zero head of the footer; the remaining 424 bytes are zero. */
const QEMU_3MIB_FOOTER_HEAD =
  "636f6e65637469780000000200010000ffffffffffffffff329816a871656d32000500035769326b00000000003000000000000000300000ffff10ff00000002ffffe5189c66946b9aaa483b9bce27653c9af43700000000";
const golden = () => Buffer.concat([Buffer.from(QEMU_3MIB_FOOTER_HEAD, "hex"), Buffer.alloc(VHD_FOOTER_SIZE - 88)]);

describe("golden bytes", () => {
  it("decodes every field of qemu-img's footer", () => {
    expect(decodeVhdFooter(golden())).toEqual({
      features: 2,
      formatVersion: 0x00010000,
      dataOffset: VHD_FIXED_DATA_OFFSET,
      timestamp: 0x329816a8, // 2026-11-24, seconds since 2000-01-01
      creatorApp: "qem2", // qemu-img with force_size
      creatorVersion: 0x00050003,
      creatorHostOs: "Wi2k",
      originalSize: 3n * 1024n * 1024n,
      currentSize: 3n * 1024n * 1024n,
      geometry: { cylinders: 0xffff, heads: 16, sectorsPerTrack: 0xff },
      diskType: VHD_DISK_TYPES.fixed,
      checksum: 0xffffe518,
      uniqueId: "9c66946b-9aaa-483b-9bce-27653c9af437",
      savedState: 0,
    });
  });

  it("re-encodes to the same 512 bytes and computes the same checksum", () => {
    const g = golden();
    expect(encodeVhdFooter(decodeVhdFooter(g)).equals(g)).toBe(true);
    expect(vhdChecksum(g)).toBe(0xffffe518);
  });

  it("rewrites timestamp and UUID: only those bytes and the checksum change", () => {
    const g = golden();
    const out = withDeterministicFooter(g, { unixSeconds: 1_700_000_000, uniqueId: "01234567-89ab-8cde-8f01-23456789abcd" });
    expect(out.readUInt32BE(24)).toBe(0x2ce6ad80); // 1700000000 - 946684800
    expect(out.subarray(68, 84).toString("hex")).toBe("0123456789ab8cde8f0123456789abcd");
    const changed = [...out.keys()].filter((i) => out[i] !== g[i]);
    expect(changed.every((i) => (i >= 24 && i < 28) || (i >= 64 && i < 68) || (i >= 68 && i < 84))).toBe(true);
    expect(decodeVhdFooter(out).checksum).toBe(vhdChecksum(out));
  });

  it("rejects a wrong cookie, a bad checksum, a short footer and a dynamic disk", () => {
    const bad = golden();
    bad.write("conectiX", 0, "latin1");
    expect(() => decodeVhdFooter(bad)).toThrow(/cookie/);
    const sum = golden();
    sum[40] ^= 1;
    expect(() => decodeVhdFooter(sum)).toThrow(/checksum 0xffffe518 does not match/);
    expect(decodeVhdFooter(sum, { verifyChecksum: false }).originalSize).toBe(3n * 1024n * 1024n + (1n << 56n));
    expect(() => decodeVhdFooter(golden().subarray(0, 511))).toThrow(/512 bytes/);
    const dyn = encodeVhdFooter({ ...decodeVhdFooter(golden()), diskType: VHD_DISK_TYPES.dynamic });
    expect(() => withDeterministicFooter(dyn, { unixSeconds: 0, uniqueId: "01234567-89ab-8cde-8f01-23456789abcd" })).toThrow(/not 2 \(fixed\)/);
  });

  it("counts time from 2000-01-01 and clamps earlier times", () => {
    expect(vhdTimestamp(946_684_800)).toBe(0);
    expect(vhdTimestamp(946_684_800 + 86_400)).toBe(86_400);
    expect(vhdTimestamp(0)).toBe(0);
  });
});

describe("with the real qemu-img", () => {
  let dir: string;
  beforeAll(async () => {
    await requireTools(["qemu-img"]);
    dir = await mkdtemp(join(tmpdir(), "acl-vhd-"));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function makeVhd(name: string, mib: number): Promise<string> {
    const raw = join(dir, `${name}.raw`);
    const vhd = join(dir, `${name}.vhd`);
    await writeFile(raw, Buffer.alloc(0));
    const fh = await open(raw, "r+");
    await fh.truncate(mib * 1024 * 1024);
    await fh.write(Buffer.from("hello vhd"), 0, 9, 4096);
    await fh.close();
    await run(["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", raw, vhd]);
    return vhd;
  }

  it("reads the footer of a fixed VHD qemu-img made: cookie, type 2, whole-MiB size, valid checksum", async () => {
    const vhd = await makeVhd("a", 5);
    const bytes = await readFile(vhd);
    expect(bytes.length).toBe(5 * 1024 * 1024 + 512);
    const f = decodeVhdFooter(bytes.subarray(bytes.length - 512));
    expect(f.diskType).toBe(VHD_DISK_TYPES.fixed);
    expect(f.currentSize).toBe(5n * 1024n * 1024n);
    expect(f.originalSize).toBe(5n * 1024n * 1024n);
    expect(f.dataOffset).toBe(VHD_FIXED_DATA_OFFSET);
    expect(f.checksum).toBe(vhdChecksum(bytes.subarray(bytes.length - 512)));
    // qemu stamps the wall clock: within a minute of now
    expect(Math.abs(f.timestamp - vhdTimestamp(Date.now() / 1000))).toBeLessThan(60);
  });

  it("qemu-img accepts our rewritten footer and rejects a wrong checksum", async () => {
    const vhd = await makeVhd("b", 3);
    const fh = await open(vhd, "r+");
    const size = (await fh.stat()).size;
    const footer = Buffer.alloc(512);
    await fh.read(footer, 0, 512, size - 512);
    const fixed = withDeterministicFooter(footer, { unixSeconds: 1_700_000_000, uniqueId: "5d3f0c8e-1b2a-8c4d-9e6f-0a1b2c3d4e5f" });
    await fh.write(fixed, 0, 512, size - 512);
    await fh.close();
    const info = JSON.parse((await run(["qemu-img", "info", "-f", "vpc", "--output", "json", vhd])).stdout) as { "virtual-size": number; format: string };
    expect(info).toMatchObject({ format: "vpc", "virtual-size": 3 * 1024 * 1024 });
    const cmp = await run(["qemu-img", "compare", "-f", "vpc", "-F", "raw", vhd, join(dir, "b.raw")]);
    expect(cmp.stdout).toContain("Images are identical");

    const broken = Buffer.from(fixed);
    broken[67] ^= 1; // low bit of the checksum
    const fh2 = await open(vhd, "r+");
    await fh2.write(broken, 0, 512, size - 512);
    await fh2.close();
    await expect(run(["qemu-img", "info", "-f", "vpc", vhd])).rejects.toThrow(/Incorrect header checksum/);
  });
});
