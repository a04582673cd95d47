/**
 * The /usr filesystem superblock codecs (erofs, squashfs): golden bytes
 * written by hand from the on-disk structs, and images made by the real
 * mkfs.erofs and mksquashfs read by us and compared with what dump.erofs -s
 * and unsquashfs -s report about them.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeErofsSuperblock, EROFS_SUPER_MAGIC, EROFS_SUPER_OFFSET, EROFS_SUPER_SIZE, ErofsFormatError, isErofsSuperblock } from "../../src/formats/erofs.js";
import { decodeSquashfsSuperblock, isSquashfsSuperblock, SQUASHFS_MAGIC, SQUASHFS_SUPER_SIZE, SquashfsFormatError } from "../../src/formats/squashfs.js";
import { tempDirs } from "../boot/helpers/temps.js";

const mkdtempSync = tempDirs();
const sh = (argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8", env: { ...process.env, LC_ALL: "C", TZ: "UTC" } });
const EPOCH = 1_700_000_000;
const UUID = "6a0c2a3e-1111-4222-8333-444455556666";

function tree(): string {
  const d = mkdtempSync(join(tmpdir(), "acl-usrfs-"));
  mkdirSync(join(d, "usr/bin"), { recursive: true });
  mkdirSync(join(d, "usr/lib"), { recursive: true });
  writeFileSync(join(d, "usr/bin/hello"), "#!/bin/sh\necho hello\n");
  // enough data for several blocks
  writeFileSync(join(d, "usr/lib/blob"), Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251)));
  return d;
}

describe("erofs superblock", () => {
  it("decodes golden bytes laid out as struct erofs_super_block", () => {
    const sb = Buffer.alloc(EROFS_SUPER_SIZE);
    sb.writeUInt32LE(EROFS_SUPER_MAGIC, 0);
    sb[12] = 12; // 4 KiB blocks
    sb.writeUInt16LE(36, 14);
    sb.writeBigUInt64LE(5n, 16);
    sb.writeBigUInt64LE(BigInt(EPOCH), 24);
    sb.writeUInt32LE(11, 36);
    Buffer.from(UUID.replace(/-/g, ""), "hex").copy(sb, 48);
    Buffer.from("usr").copy(sb, 64);
    sb.writeUInt32LE(0x3, 80);
    expect(decodeErofsSuperblock(sb)).toEqual({
      blockSize: 4096,
      blocks: 11,
      sizeBytes: 11 * 4096,
      inodes: 5n,
      buildTime: BigInt(EPOCH),
      uuid: UUID,
      volumeName: "usr",
      featureCompat: 0,
      featureIncompat: 3,
    });
    expect(() => decodeErofsSuperblock(Buffer.alloc(EROFS_SUPER_SIZE))).toThrow(ErofsFormatError);
    expect(() => decodeErofsSuperblock(sb.subarray(0, 64))).toThrow(/needs 128 bytes/);
    const bad = Buffer.from(sb);
    bad[12] = 40;
    expect(() => decodeErofsSuperblock(bad)).toThrow(/out of range/);
  });

  it("reads what mkfs.erofs wrote as dump.erofs -s reports it", () => {
    const d = tree();
    const img = join(d, "usr.erofs");
    sh(["mkfs.erofs", "--quiet", `-T${EPOCH}`, `-U${UUID}`, "-Eforce-inode-compact", "-zlz4hc", img, join(d, "usr")]);
    const bytes = readFileSync(img);
    const ours = decodeErofsSuperblock(bytes.subarray(EROFS_SUPER_OFFSET));
    const dump = sh(["dump.erofs", "-s", img]);
    const field = (name: string) => new RegExp(`^Filesystem ${name}:\\s+(.+)$`, "m").exec(dump)?.[1]?.trim();
    expect(ours.blocks).toBe(Number(field("blocks")));
    expect(ours.inodes).toBe(BigInt(field("inode count")!));
    expect(ours.uuid).toBe(field("UUID"));
    expect(ours.sizeBytes).toBe(statSync(img).size);
    expect(isErofsSuperblock(bytes.subarray(EROFS_SUPER_OFFSET))).toBe(true);
    expect(isSquashfsSuperblock(bytes)).toBe(false);
  });
});

describe("squashfs superblock", () => {
  it("decodes golden bytes laid out as struct squashfs_super_block", () => {
    const sb = Buffer.alloc(SQUASHFS_SUPER_SIZE);
    sb.writeUInt32LE(SQUASHFS_MAGIC, 0);
    sb.writeUInt32LE(4, 4);
    sb.writeUInt32LE(EPOCH, 8);
    sb.writeUInt32LE(131072, 12);
    sb.writeUInt32LE(1, 16);
    sb.writeUInt16LE(5, 20); // lz4
    sb.writeUInt16LE(17, 22);
    sb.writeUInt16LE(0x1c0, 24);
    sb.writeUInt16LE(4, 28);
    sb.writeUInt16LE(0, 30);
    sb.writeBigUInt64LE(312n, 40);
    expect(decodeSquashfsSuperblock(sb)).toEqual({
      inodes: 4,
      mkfsTime: EPOCH,
      blockSize: 131072,
      fragments: 1,
      compression: "lz4",
      flags: 0x1c0,
      major: 4,
      minor: 0,
      bytesUsed: 312n,
    });
    expect(Buffer.from("hsqs").equals(sb.subarray(0, 4))).toBe(true);
    const v3 = Buffer.from(sb);
    v3.writeUInt16LE(3, 28);
    expect(() => decodeSquashfsSuperblock(v3)).toThrow(/squashfs 3\.0 is not supported/);
    const badLog = Buffer.from(sb);
    badLog.writeUInt16LE(16, 22);
    expect(() => decodeSquashfsSuperblock(badLog)).toThrow(/does not match block_log/);
    expect(() => decodeSquashfsSuperblock(Buffer.alloc(SQUASHFS_SUPER_SIZE))).toThrow(SquashfsFormatError);
  });

  it("reads what mksquashfs wrote as unsquashfs -s reports it", () => {
    const d = tree();
    const img = join(d, "usr.squashfs");
    sh(["mksquashfs", join(d, "usr"), img, "-noappend", "-no-progress", "-quiet", "-all-time", String(EPOCH), "-mkfs-time", String(EPOCH), "-comp", "lz4", "-Xhc"]);
    const bytes = readFileSync(img);
    const ours = decodeSquashfsSuperblock(bytes);
    const info = sh(["unsquashfs", "-s", img]);
    expect(Number(ours.bytesUsed)).toBe(Number(/^Filesystem size (\d+) bytes/m.exec(info)![1]));
    expect(ours.compression).toBe(/^Compression (\S+)/m.exec(info)![1]);
    expect(ours.blockSize).toBe(Number(/^Block size (\d+)/m.exec(info)![1]));
    expect(ours.inodes).toBe(Number(/^Number of inodes (\d+)/m.exec(info)![1]));
    expect(ours.fragments).toBe(Number(/^Number of fragments (\d+)/m.exec(info)![1]));
    expect(ours.mkfsTime).toBe(EPOCH);
    // mksquashfs pads the file to 4 KiB after the filesystem
    expect(statSync(img).size).toBe(Math.ceil(Number(ours.bytesUsed) / 4096) * 4096);
    expect(isErofsSuperblock(bytes.subarray(EROFS_SUPER_OFFSET))).toBe(false);
  });
});
