/**
 * Every bytes-in decoder behind `acl inspect` and `acl update`, fed good
 * input made hostile: bits flipped, bytes written over, length and count
 * fields that lie, input cut short or grown. Each either decodes or throws
 * its own error class (which its callers word for users); none throws
 * anything else (a RangeError from reading past a buffer, a TypeError) or
 * hangs. The erofs and squashfs superblocks are the real tools' output.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeErofsSuperblock, ErofsFormatError, EROFS_SUPER_OFFSET, EROFS_SUPER_SIZE, isErofsSuperblock } from "../../src/formats/erofs.js";
import { crc32 } from "../../src/formats/crc32.js";
import { decodeGpt, encodeGpt, GptError } from "../../src/formats/gpt.js";
import { decodeSquashfsSuperblock, isSquashfsSuperblock, SquashfsFormatError, SQUASHFS_SUPER_SIZE } from "../../src/formats/squashfs.js";
import { decodeSignatureBlock, decodeUpdateHeader, encodeSignatureBlock, encodeUpdateHeader, UpdatePayloadError } from "../../src/formats/update-payload.js";
import { decodeSuperblock, encodeSuperblock, VerityFormatError } from "../../src/formats/verity.js";
import { decodeVhdFooter, encodeVhdFooter, VhdFooterError, VHD_DISK_TYPES } from "../../src/formats/vhd-footer.js";
import { layoutTable, planDiskLayout } from "../../src/stages/disk/layout.js";
import { budget, expectOneOf, mutate, mutations } from "./fuzz.js";

let dir: string;
let erofsHead: Buffer;
let squashfsHead: Buffer;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "acl-fuzz-decoders-"));
  const tree = join(dir, "tree");
  mkdirSync(join(tree, "bin"), { recursive: true });
  writeFileSync(join(tree, "bin/hello"), "#!/bin/sh\necho hello\n".repeat(50));
  execFileSync("mkfs.erofs", ["-zlz4hc", "-T0", join(dir, "usr.erofs"), tree], { stdio: "ignore" });
  execFileSync("mksquashfs", [tree, join(dir, "usr.squashfs"), "-noappend", "-quiet", "-mkfs-time", "0", "-all-time", "0"], { stdio: "ignore" });
  erofsHead = readFileSync(join(dir, "usr.erofs")).subarray(0, EROFS_SUPER_OFFSET + EROFS_SUPER_SIZE);
  squashfsHead = readFileSync(join(dir, "usr.squashfs")).subarray(0, SQUASHFS_SUPER_SIZE);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Recompute the entry array's and the header's CRC32 of the header at `at`, whatever its fields say (as far as the buffer holds them). */
function resealGpt(b: Buffer, at: number, sectorSize: number): void {
  if (b.length < at + 92) return;
  const headerSize = Math.min(Math.max(b.readUInt32LE(at + 12), 92), sectorSize);
  const entriesAt = Number(b.readBigUInt64LE(at + 72)) * sectorSize;
  const count = b.readUInt32LE(at + 80);
  const size = b.readUInt32LE(at + 84);
  if (entriesAt < b.length && count * size > 0) b.writeUInt32LE(crc32(b.subarray(entriesAt, Math.min(b.length, entriesAt + count * size))), at + 88);
  b.writeUInt32LE(0, at + 16);
  b.writeUInt32LE(crc32(b.subarray(at, Math.min(b.length, at + headerSize))), at + 16);
}

describe("decoders on hostile bytes", () => {
  it("GPT: primary and backup damaged, the disk's size lying, 512- and 4096-byte sectors", () => {
    for (const sectorSize of [512, 4096] as const) {
      const layout = planDiskLayout({ name: "fuzz", version: "1.0.0", sizes: { espMiB: 34, usrMiB: 16, oemMiB: 8, rootMiB: 8, biosBoot: sectorSize === 512 }, sectorSize });
      const gpt = encodeGpt(layoutTable(layout), layout.sizeBytes, sectorSize);
      const hot: [number, number][] = [
        [0, 512], // protective MBR
        [sectorSize, sectorSize + 92], // header
        [2 * sectorSize, 2 * sectorSize + 128 * 8], // the first entries
      ];
      fc.assert(
        fc.property(mutations(gpt.primary.length, hot), mutations(gpt.backup.length, [[gpt.backup.length - sectorSize, gpt.backup.length - sectorSize + 92]]), fc.oneof(fc.constant(0n), fc.bigInt({ min: -4096n, max: 4096n })), fc.boolean(), (mp, mb, sizeLie, fixCrcs) => {
          const head = mutate(gpt.primary, mp);
          const tail = mutate(gpt.backup, mb);
          // past the checksums too: a lying field with CRCs that match, as a tool with a bug (or an attacker) writes it
          if (fixCrcs) resealGpt(head, sectorSize, sectorSize);
          const diskSizeBytes = BigInt(layout.sizeBytes) + sizeLie;
          try {
            const d = decodeGpt({ head, tail, diskSizeBytes: diskSizeBytes < 0n ? 0n : diskSizeBytes }, { sectorSize });
            // what it does decode stays inside the disk
            for (const p of d.partitions) {
              expect(p.firstLba <= p.lastLba).toBe(true);
              expect(p.lastLba * BigInt(sectorSize) < (diskSizeBytes < 0n ? 0n : diskSizeBytes)).toBe(true);
            }
          } catch (e) {
            expectOneOf(e, [GptError], "decodeGpt");
          }
        }),
        budget(400),
      );
    }
  });

  it("VHD footer: with and without its checksum checked", () => {
    const good = encodeVhdFooter({
      features: 2, formatVersion: 0x10000, dataOffset: 0xffffffffffffffffn, timestamp: 0, creatorApp: "qem2", creatorVersion: 0x50003, creatorHostOs: "Wi2k",
      originalSize: 64n << 20n, currentSize: 64n << 20n, geometry: { cylinders: 1000, heads: 16, sectorsPerTrack: 63 }, diskType: VHD_DISK_TYPES.fixed, checksum: 0,
      uniqueId: "0123abcd-0000-4000-8000-000000000001", savedState: 0,
    });
    expect(decodeVhdFooter(good).diskType).toBe(VHD_DISK_TYPES.fixed);
    fc.assert(
      fc.property(mutations(good.length, [[0, 85]]), fc.boolean(), (ms, verifyChecksum) => {
        try {
          decodeVhdFooter(mutate(good, ms), { verifyChecksum });
        } catch (e) {
          expectOneOf(e, [VhdFooterError], "decodeVhdFooter");
        }
      }),
      budget(400),
    );
  });

  it("verity superblock", () => {
    const good = encodeSuperblock({ version: 1, hashType: 1, uuid: "0123abcd-0000-4000-8000-000000000001", algorithm: "sha256", dataBlockSize: 4096, hashBlockSize: 4096, dataBlocks: 12345n, salt: Buffer.alloc(32, 7) });
    expect(decodeSuperblock(good).dataBlocks).toBe(12345n);
    fc.assert(
      fc.property(mutations(good.length, [[0, 112]]), (ms) => {
        try {
          decodeSuperblock(mutate(good, ms));
        } catch (e) {
          expectOneOf(e, [VerityFormatError], "decodeSuperblock");
        }
      }),
      budget(400),
    );
  });

  it("erofs and squashfs superblocks, as mkfs.erofs and mksquashfs write them", () => {
    expect(isErofsSuperblock(erofsHead.subarray(EROFS_SUPER_OFFSET))).toBe(true);
    expect(isSquashfsSuperblock(squashfsHead)).toBe(true);
    fc.assert(
      fc.property(mutations(EROFS_SUPER_SIZE, [[0, 96]]), mutations(SQUASHFS_SUPER_SIZE, [[0, 96]]), (me, ms) => {
        const e = mutate(erofsHead.subarray(EROFS_SUPER_OFFSET), me);
        try {
          if (e.length >= EROFS_SUPER_SIZE && isErofsSuperblock(e)) {
            const sb = decodeErofsSuperblock(e);
            expect(Number.isFinite(sb.sizeBytes) && sb.sizeBytes >= 0).toBe(true);
          } else decodeErofsSuperblock(e);
        } catch (x) {
          expectOneOf(x, [ErofsFormatError], "decodeErofsSuperblock");
        }
        try {
          decodeSquashfsSuperblock(mutate(squashfsHead, ms));
        } catch (x) {
          expectOneOf(x, [SquashfsFormatError], "decodeSquashfsSuperblock");
        }
      }),
      budget(400),
    );
  });

  it("update payload header and signature block", () => {
    const base = {
      name: "minimal", version: "1.2.3", microarch: "x86-64-v3", filesystem: "erofs",
      verity: { rootHash: "cd".repeat(32), salt: "ef".repeat(32), hashOffset: 4096, dataBlocks: 1, dataBlockSize: 4096, hashBlockSize: 4096, algorithm: "sha256", hashType: 1, uuid: "00000000-0000-8000-8000-000000000000" },
    };
    const sections = [
      { name: "uki-A" as const, size: 5000, sha256: "a1".repeat(32) },
      { name: "uki-B" as const, size: 5000, sha256: "b2".repeat(32) },
      { name: "usr" as const, size: 8192, sha256: "ab".repeat(32) },
    ];
    const { header } = encodeUpdateHeader(base, sections);
    const len = header.readUInt32BE(8);
    const sig = encodeSignatureBlock({ algorithm: "ed25519", keyId: "00".repeat(32), signature: Buffer.alloc(64, 7).toString("base64") });
    fc.assert(
      fc.property(mutations(header.length, [[0, 12], [12, 12 + len]]), mutations(sig.length, [[0, 16]]), (mh, msig) => {
        try {
          const d = decodeUpdateHeader(mutate(header, mh));
          for (const s of d.meta.sections) expect(s.offset >= d.dataOffset && s.size >= 0).toBe(true);
        } catch (e) {
          expectOneOf(e, [UpdatePayloadError], "decodeUpdateHeader");
        }
        try {
          decodeSignatureBlock(mutate(sig, msig));
        } catch (e) {
          expectOneOf(e, [UpdatePayloadError], "decodeSignatureBlock");
        }
      }),
      budget(400),
    );
  });
});
