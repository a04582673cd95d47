import { execa } from "execa";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { peChecksum, readPeTimestamp, withPeTimestamp, PeFormatError } from "../../src/formats/pe.js";

const SD_BOOT = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/** A 512-byte PE skeleton: MZ, e_lfanew = 0x80, "PE\0\0", COFF header, optional header with a checksum. */
function tinyPe(): Buffer {
  const b = Buffer.alloc(512);
  b.write("MZ", 0, "latin1");
  b.writeUInt32LE(0x80, 0x3c);
  b.writeUInt32LE(0x00004550, 0x80);
  b.writeUInt16LE(0x8664, 0x84); // machine x86-64
  b.writeUInt32LE(0x12345678, 0x88); // timestamp
  b.writeUInt16LE(0x20b, 0x98); // PE32+ magic
  b.writeUInt32LE(1, 0x98 + 64); // non-zero checksum: recompute
  return b;
}

describe("PE timestamp and checksum", () => {
  it("golden bytes: timestamp at e_lfanew+8, checksum at e_lfanew+88", () => {
    const out = withPeTimestamp(tinyPe(), 1700000000);
    expect(out.readUInt32LE(0x88)).toBe(1700000000);
    // sum of the 16-bit words (checksum excluded), folded, plus the length
    let sum = 0;
    for (let i = 0; i < out.length; i += 2) if (i !== 0xd8 && i !== 0xda) { sum += out.readUInt16LE(i); sum = (sum & 0xffff) + (sum >>> 16); }
    expect(out.readUInt32LE(0xd8)).toBe(((sum & 0xffff) + (sum >>> 16) + 512) >>> 0);
    expect(readPeTimestamp(out)).toBe(1700000000);
    expect(() => withPeTimestamp(Buffer.alloc(100), 0)).toThrow(PeFormatError);
  });

  it("computes the checksums that the shipped systemd-boot binaries carry", async () => {
    for (const f of [SD_BOOT, "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"]) {
      const b = await readFile(f);
      const stored = b.readUInt32LE(b.readUInt32LE(0x3c) + 24 + 64);
      expect(stored).not.toBe(0);
      expect(peChecksum(b)).toBe(stored);
      // rewriting the same timestamp gives back the same bytes
      expect(withPeTimestamp(b, readPeTimestamp(b)).equals(b)).toBe(true);
    }
  });

  it("objdump reads back our timestamp and checksum", async () => {
    const dir = await mkdtemp(join(tmpdir(), "acl-pe-"));
    const f = join(dir, "boot.efi");
    await writeFile(f, withPeTimestamp(await readFile(SD_BOOT), 1700000000));
    const r = await execa("objdump", ["-p", f], { env: { TZ: "UTC" } });
    expect(r.stdout).toMatch(/Time\/Date\s+Tue Nov 14 22:13:20 2023/);
    const sum = /CheckSum\s+([0-9a-f]+)/.exec(r.stdout)![1]!;
    expect(parseInt(sum, 16)).toBe(peChecksum(await readFile(f)));
  });
});
