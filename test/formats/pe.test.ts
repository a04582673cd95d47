import { execa } from "execa";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { peCertificateTable, peChecksum, readPeTimestamp, withPeTimestamp, PeFormatError } from "../../src/formats/pe.js";

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

describe("PE certificate table (Authenticode, data directory 4)", () => {
  it("golden bytes: offset and size at the optional header + 144 of a PE32+ image; none when the size is 0 or the directory is absent", () => {
    const b = tinyPe();
    expect(peCertificateTable(b)).toBeUndefined(); // NumberOfRvaAndSizes 0
    b.writeUInt32LE(16, 0x98 + 108);
    expect(peCertificateTable(b)).toBeUndefined(); // size 0
    b.writeUInt32LE(0x100, 0x98 + 144);
    b.writeUInt32LE(0x80, 0x98 + 148);
    expect(peCertificateTable(b)).toEqual({ offset: 0x100, size: 0x80 });
    b.writeUInt32LE(0x1000, 0x98 + 148);
    expect(() => peCertificateTable(b)).toThrow(/runs past the end/);
  });

  it("systemd-boot as Debian ships it is unsigned; sbsign's output has a table that sbattach detaches", async () => {
    expect(peCertificateTable(await readFile(SD_BOOT))).toBeUndefined();
    const d = await mkdtemp(join(tmpdir(), "acl-pe-sig-"));
    const key = join(d, "k.pem");
    const crt = join(d, "c.pem");
    await execa("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt, "-subj", "/CN=acl pe test", "-days", "1"]);
    await execa("sbsign", ["--key", key, "--cert", crt, "--output", join(d, "s.efi"), SD_BOOT]);
    const signed = await readFile(join(d, "s.efi"));
    const t = peCertificateTable(signed)!;
    expect(t.offset + t.size).toBe(signed.length);
    // WIN_CERTIFICATE: dwLength, wRevision 0x0200, wCertificateType 0x0002 (PKCS#7 SignedData)
    expect(signed.readUInt32LE(t.offset)).toBeLessThanOrEqual(t.size);
    expect(signed.readUInt16LE(t.offset + 4)).toBe(0x0200);
    expect(signed.readUInt16LE(t.offset + 6)).toBe(0x0002);
    await execa("sbattach", ["--detach", join(d, "sig.p7"), join(d, "s.efi")]);
    const p7 = await readFile(join(d, "sig.p7"));
    expect(Buffer.compare(p7, signed.subarray(t.offset + 8, t.offset + 8 + p7.length))).toBe(0);
    // and the on-node updater's shell reading of the same field agrees
    for (const [f, want] of [[join(d, "s.efi"), 0], [SD_BOOT, 1]] as const) {
      const r = await execa("busybox", ["sh", "data/guest/acl-ab.sh", "pe-signed", f, "0"], { reject: false });
      expect(r.exitCode, r.stderr).toBe(want);
    }
    // inside a bigger file at an offset, as the UKI sits in an update payload
    const wrapped = Buffer.concat([Buffer.alloc(8192, 0), signed, Buffer.alloc(100)]);
    await writeFile(join(d, "wrapped"), wrapped);
    const r = await execa("busybox", ["sh", "data/guest/acl-ab.sh", "pe-signed", join(d, "wrapped"), "8192"], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
  });
});

