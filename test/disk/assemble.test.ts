/**
 * Disk assembly with the real tools: a real erofs + dm-verity USR payload,
 * ESP/OEM/ROOT trees; checked by sgdisk, veritysetup, fsck.vfat, mtools,
 * e2fsck, debugfs and qemu-img; built twice (inputs touched and the clock
 * moved in between) to prove raw, qcow2 and vhd are byte-identical; and
 * `inspect` compared with `sgdisk -p` / `sgdisk -i`.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, open, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireTools, run } from "../../src/adapters/exec.js";
import { UserError } from "../../src/errors.js";
import { decodeGpt, getSlotState } from "../../src/formats/gpt.js";
import { decodeVhdFooter, vhdTimestamp } from "../../src/formats/vhd-footer.js";
import { Manifest } from "../../src/pipeline/manifest.js";
import { inspectDisk, type InspectResult } from "../../src/services/inspect.js";
import { assembleDisk, diskRequirements, type AssembleDiskOptions, type AssembleDiskResult } from "../../src/stages/disk/assemble.js";
import { deriveGuid, USR_A_PARTUUID, USR_B_PARTUUID } from "../../src/stages/disk/layout.js";
import { MiB } from "../../src/util/size.js";
import { acl } from "../helpers/cli.js";
import { makeUsrPayload, type TestPayload } from "./usr-payload.js";

const EPOCH = 1_700_000_000;
const SIZES = { espMiB: 34, usrMiB: 8, oemMiB: 4, rootMiB: 8 };
let dir: string;
let payload: TestPayload;
let r1: AssembleDiskResult;
let r2: AssembleDiskResult;

async function sha256(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest("hex");
}

async function slice(path: string, offset: number, length: number, out: string): Promise<string> {
  const fh = await open(path, "r");
  const b = Buffer.alloc(length);
  await fh.read(b, 0, length, offset);
  await fh.close();
  await writeFile(out, b);
  return out;
}

function opts(n: number): AssembleDiskOptions {
  return {
    workDir: join(dir, `work${n}`),
    outDir: join(dir, `out${n}`),
    name: "disk-test",
    version: "1.0.0",
    sourceDateEpoch: EPOCH,
    usrPayload: payload.path,
    espDir: join(dir, "esp"),
    oemDir: join(dir, "oem"),
    rootDir: join(dir, "root"),
    sizes: SIZES,
    formats: ["raw", "qcow2", "vhd"],
  };
}

const file = (r: AssembleDiskResult, kind: string) => r.files.find((f) => f.kind === kind)!.path;

beforeAll(async () => {
  await requireTools([...diskRequirements().map((r) => ("tool" in r ? r.tool : r.file)), "sgdisk", "mkfs.erofs", "veritysetup", "mtype", "fsck.vfat", "e2fsck", "e2label"]);
  dir = await mkdtemp(join(tmpdir(), "acl-disk-"));
  payload = await makeUsrPayload(dir);
  await mkdir(join(dir, "esp/EFI/BOOT"), { recursive: true });
  await mkdir(join(dir, "esp/loader/entries"), { recursive: true });
  await writeFile(join(dir, "esp/EFI/BOOT/BOOTX64.EFI"), "not really a UKI\n");
  await writeFile(join(dir, "esp/loader/loader.conf"), "timeout 0\n");
  await writeFile(join(dir, "esp/loader/entries/acl.conf"), "title acl\n");
  await mkdir(join(dir, "oem"), { recursive: true });
  await writeFile(join(dir, "oem/grub.cfg"), "set oem_id=qemu\n");
  await mkdir(join(dir, "root/etc"), { recursive: true });
  await writeFile(join(dir, "root/etc/motd"), "hello from ROOT\n");
  r1 = await assembleDisk(opts(1));
  // move the inputs' times and the clock: nothing of it may reach the outputs
  const later = Date.now() / 1000 + 3600;
  for (const p of ["esp/EFI/BOOT/BOOTX64.EFI", "oem/grub.cfg", "root/etc/motd", "root/etc", "root"]) await utimes(join(dir, p), later, later);
  await new Promise((res) => setTimeout(res, 1100));
  r2 = await assembleDisk(opts(2));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("assembleDisk", () => {
  it("produces raw, qcow2 and vhd files and a manifest-shaped disk record", async () => {
    expect(r1.files.map((f) => f.kind)).toEqual(["disk-raw", "disk-qcow2", "disk-vhd"]);
    expect(Manifest.shape.disk.parse(r1.disk)).toEqual(r1.disk);
    expect(r1.disk.sizeBytes).toBe((1 + 34 + 8 + 8 + 4 + 8 + 1) * MiB);
    expect((await stat(file(r1, "disk-raw"))).size).toBe(r1.disk.sizeBytes);
    expect(r1.disk.partitions.map((p) => [p.number, p.label, p.attributes, p.used])).toEqual([
      [1, "EFI-SYSTEM", "0000000000000000", undefined],
      [3, "USR-A", "0101000000000000", payload.hashOffset + (await stat(payload.path)).size - payload.fsBytes],
      [4, "USR-B", "0000000000000000", 0],
      [6, "OEM", "0000000000000000", undefined],
      [9, "ROOT", "0000000000000000", undefined],
    ]);
    expect(r1.disk.diskGuid).toBe(deriveGuid("disk", "disk-test", "1.0.0"));
    expect(r1.disk.partitions.find((p) => p.label === "USR-A")!.partGuid).toBe(USR_A_PARTUUID);
    expect(r1.disk.partitions.find((p) => p.label === "USR-B")!.partGuid).toBe(USR_B_PARTUUID);
    // every partition starts and ends on a 1 MiB boundary
    for (const p of r1.disk.partitions) {
      expect((p.firstLba * 512) % MiB).toBe(0);
      expect(((p.lastLba + 1) * 512) % MiB).toBe(0);
    }
    expect(r1.slots.map((s) => [s.label, s.percent])).toEqual([
      ["USR-A", Math.round(((await stat(payload.path)).size / (8 * MiB)) * 1000) / 10],
      ["USR-B", 0],
    ]);
  });

  it("reports the raw disk's and the VHD's sha256 without reading them, as sha256sum gives them", async () => {
    for (const kind of ["disk-raw", "disk-vhd"]) expect(r1.files.find((f) => f.kind === kind)!.sha256, kind).toBe(await sha256(file(r1, kind)));
    expect(r1.files.find((f) => f.kind === "disk-qcow2")!.sha256).toBeUndefined();
  });

  it("is reproducible: two runs give byte-identical raw, qcow2 and vhd", async () => {
    for (const kind of ["disk-raw", "disk-qcow2", "disk-vhd"]) {
      expect(await sha256(file(r2, kind)), kind).toBe(await sha256(file(r1, kind)));
    }
    expect(r2.disk).toEqual(r1.disk);
  });

  it("makes only the formats asked for, with the same bytes, and leaves no raw file behind", async () => {
    const r = await assembleDisk({ ...opts(6), formats: ["vhd"] });
    expect(r.files.map((f) => f.kind)).toEqual(["disk-vhd"]);
    expect(await sha256(file(r, "disk-vhd"))).toBe(await sha256(file(r1, "disk-vhd")));
    expect((await readdir(opts(6).outDir)).sort()).toEqual(["disk.vhd"]);
    expect(await readdir(opts(6).workDir)).toEqual([]);
  });

  it("keeps the raw file sparse", async () => {
    const s = await stat(file(r1, "disk-raw"));
    expect(s.blocks * 512).toBeLessThan(s.size / 4);
  });

  it("writes a GPT that sgdisk -v finds clean", async () => {
    const v = await run(["sgdisk", "-v", file(r1, "disk-raw")]);
    expect(v.stdout).toContain("No problems found");
    const d = decodeGpt(await readFile(file(r1, "disk-raw")));
    expect(d.problems).toEqual([]);
    expect(getSlotState(d.partitions.find((p) => p.name === "USR-A")!.attributes)).toEqual({ priority: 1, tries: 0, successful: true });
    expect(getSlotState(d.partitions.find((p) => p.name === "USR-B")!.attributes)).toEqual({ priority: 0, tries: 0, successful: false });
  });

  it("puts the payload in USR-A: veritysetup verify passes with its root hash", async () => {
    const a = r1.disk.partitions.find((p) => p.label === "USR-A")!;
    const part = await slice(file(r1, "disk-raw"), a.firstLba * 512, (a.lastLba - a.firstLba + 1) * 512, join(dir, "usr-a.img"));
    await run(["veritysetup", "verify", part, part, payload.rootHash, `--hash-offset=${payload.hashOffset}`]);
    const b = r1.disk.partitions.find((p) => p.label === "USR-B")!;
    const usrB = await slice(file(r1, "disk-raw"), b.firstLba * 512, (b.lastLba - b.firstLba + 1) * 512, join(dir, "usr-b.img"));
    expect((await readFile(usrB)).every((x) => x === 0)).toBe(true);
  });

  it("makes a FAT32 ESP with the tree's files and SOURCE_DATE_EPOCH times", async () => {
    const raw = file(r1, "disk-raw");
    const esp = r1.disk.partitions.find((p) => p.label === "EFI-SYSTEM")!;
    const img = await slice(raw, esp.firstLba * 512, (esp.lastLba - esp.firstLba + 1) * 512, join(dir, "esp.img"));
    const fsck = await run(["fsck.vfat", "-n", img]);
    expect(fsck.stdout).toMatch(/files/);
    expect((await run(["mtype", "-i", `${raw}@@${esp.firstLba * 512}`, "::/EFI/BOOT/BOOTX64.EFI"])).stdout).toBe("not really a UKI\n");
    expect((await run(["mtype", "-i", img, "::/loader/entries/acl.conf"])).stdout).toBe("title acl\n");
    const listing = (await run(["mdir", "-i", img, "::/loader"], { env: { TZ: "UTC" } })).stdout;
    expect(listing).toContain("2023-11-14  22:13"); // 1700000000
    expect(listing).toMatch(/Volume in drive : is EFI-SYSTEM/);
  });

  it("makes OEM and ROOT ext4 filesystems with the tree's files and fixed UUIDs", async () => {
    const raw = file(r1, "disk-raw");
    for (const [label, path, content] of [["OEM", "/grub.cfg", "set oem_id=qemu\n"], ["ROOT", "/etc/motd", "hello from ROOT\n"]] as const) {
      const p = r1.disk.partitions.find((q) => q.label === label)!;
      const img = await slice(raw, p.firstLba * 512, (p.lastLba - p.firstLba + 1) * 512, join(dir, `${label}.img`));
      await run(["e2fsck", "-fn", img]);
      expect((await run(["e2label", img])).stdout.trim()).toBe(label);
      expect((await run(["debugfs", "-R", `cat ${path}`, img])).stdout).toBe(content);
      const st = (await run(["debugfs", "-R", `stat ${path}`, img], { env: { TZ: "UTC" } })).stdout;
      expect(st).toMatch(/ctime: 0x6553f100/);
      expect(st).toMatch(/atime: 0x6553f100/);
      const uuid = (await run(["debugfs", "-R", "stats", img])).stdout;
      expect(uuid).toContain(`Filesystem UUID:          ${deriveGuid("ext4-uuid", "disk-test", "1.0.0", label).toLowerCase()}`);
    }
  });

  it("converts to qcow2 and a fixed VHD with the same content and a deterministic footer", async () => {
    const raw = file(r1, "disk-raw");
    expect((await run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, file(r1, "disk-qcow2")])).stdout).toContain("Images are identical");
    expect((await run(["qemu-img", "compare", "-f", "raw", "-F", "vpc", raw, file(r1, "disk-vhd")])).stdout).toContain("Images are identical");
    const vhd = await readFile(file(r1, "disk-vhd"));
    expect(vhd.length).toBe(r1.disk.sizeBytes + 512);
    const f = decodeVhdFooter(vhd.subarray(vhd.length - 512));
    expect(f.diskType).toBe(2);
    expect(Number(f.currentSize)).toBe(r1.disk.sizeBytes);
    expect(Number(f.currentSize) % MiB).toBe(0);
    expect(f.timestamp).toBe(vhdTimestamp(EPOCH));
    expect(f.uniqueId).toBe(deriveGuid("vhd", "disk-test", "1.0.0").toLowerCase());
    const info = JSON.parse((await run(["qemu-img", "info", "-f", "vpc", "--output", "json", file(r1, "disk-vhd")])).stdout) as { "virtual-size": number };
    expect(info["virtual-size"]).toBe(r1.disk.sizeBytes);
  });

  it("refuses a /usr payload larger than its slot and says how full the slots would be", async () => {
    const big = join(dir, "big.payload");
    const fh = await open(big, "w");
    await fh.truncate(9 * MiB);
    await fh.close();
    const err = await assembleDisk({ ...opts(3), usrPayload: big }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toMatch(/does not fit the USR-A slot \(8\.0 MiB\): USR-A 9\.0 MiB of 8\.0 MiB \(112\.5%\), USR-B 0\.0 MiB of 8\.0 MiB \(0%\)/);
    expect((err as UserError).hint).toMatch(/at least "9MiB"/);
  });

  it("rejects an ESP too small for FAT32, a missing payload and ESP names FAT cannot tell apart", async () => {
    await expect(assembleDisk({ ...opts(4), sizes: { ...SIZES, espMiB: 16 } })).rejects.toThrow(/'espMiB' is 16; it must be a whole number of MiB, at least 34/);
    await expect(assembleDisk({ ...opts(4), usrPayload: join(dir, "nope") })).rejects.toThrow(/USR payload .*nope does not exist/);
    const clash = join(dir, "esp-clash");
    await mkdir(join(clash, "EFI"), { recursive: true });
    await writeFile(join(clash, "EFI/a.efi"), "1");
    await writeFile(join(clash, "EFI/A.EFI"), "2");
    await expect(assembleDisk({ ...opts(5), espDir: clash })).rejects.toThrow(/ESP names 'EFI\/A\.EFI' and 'EFI\/a\.efi' differ only in case/);
  });
});

describe("inspect", () => {
  let raw: InspectResult;
  beforeAll(async () => {
    raw = await inspectDisk({ path: file(r1, "disk-raw") });
  });

  it("reads the same table from raw, qcow2 and vhd", async () => {
    const q = await inspectDisk({ path: file(r1, "disk-qcow2") });
    const v = await inspectDisk({ path: file(r1, "disk-vhd") });
    expect(q.format).toBe("qcow2");
    expect(v.format).toBe("vhd");
    expect(v.vhd).toMatchObject({ diskType: 2, currentSize: r1.disk.sizeBytes, timestamp: vhdTimestamp(EPOCH) });
    for (const other of [q, v]) {
      expect(other.partitions).toEqual(raw.partitions);
      expect(other.diskGuid).toBe(raw.diskGuid);
      expect(other.sizeBytes).toBe(raw.sizeBytes);
    }
  });

  it("finds the verity root hash of USR-A, an empty USR-B and the slot that boots", () => {
    const a = raw.partitions.find((p) => p.label === "USR-A")!;
    expect(a.slot).toEqual({ priority: 1, tries: 0, successful: true });
    expect(a.usr?.filesystem).toBe("erofs");
    expect(a.usr?.fsBytes).toBe(payload.fsBytes);
    expect(a.usr?.verity).toMatchObject({ rootHash: payload.rootHash, hashOffset: payload.hashOffset, dataBlocks: payload.dataBlocks, salt: "5a17".repeat(16) });
    const b = raw.partitions.find((p) => p.label === "USR-B")!;
    expect(b.usr).toEqual({ filesystem: null, usedBytes: 0, percent: 0 });
    expect(raw.boot).toEqual({ number: 3, label: "USR-A", decrementTries: false });
    expect(raw.problems).toEqual([]);
  });

  it("matches sgdisk -p and sgdisk -i", async () => {
    const p = (await run(["sgdisk", "-p", file(r1, "disk-raw")])).stdout;
    expect(p).toContain(`Disk identifier (GUID): ${raw.diskGuid}`);
    expect(p).toContain(`First usable sector is ${raw.firstUsableLba}, last usable sector is ${raw.lastUsableLba}`);
    const rows = p
      .split("\n")
      .filter((l) => /^\s+\d+\s+\d+\s+\d+\s/.test(l))
      .map((l) => {
        const m = /^\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+\S+\s+(.*)$/.exec(l)!;
        return { number: Number(m[1]), firstLba: Number(m[2]), lastLba: Number(m[3]), label: m[4]!.trim() };
      });
    expect(rows).toEqual(raw.partitions.map(({ number, firstLba, lastLba, label }) => ({ number, firstLba, lastLba, label })));
    for (const part of raw.partitions) {
      const i = (await run(["sgdisk", "-i", String(part.number), file(r1, "disk-raw")])).stdout;
      expect(i).toContain(`Partition GUID code: ${part.typeGuid}`);
      expect(i).toContain(`Partition unique GUID: ${part.partGuid}`);
      expect(i).toContain(`Attribute flags: ${part.attributes}`);
    }
  });

  it("is what `acl inspect DISK --json` prints, and the human table shows the rows and the root hash", async () => {
    const j = await acl(["inspect", file(r1, "disk-vhd"), "--json"]);
    expect(j.exitCode).toBe(0);
    const v = JSON.parse(j.stdout) as InspectResult;
    expect(v.partitions).toEqual(raw.partitions);
    expect(v.format).toBe("vhd");
    const h = await acl(["inspect", file(r1, "disk-raw")]);
    expect(h.exitCode).toBe(0);
    expect(h.stdout).toContain(`Disk identifier (GUID): ${raw.diskGuid}`);
    expect(h.stdout).toMatch(/^\s+3\s+\d+\s+\d+\s+8\.0 MiB\s+0101000000000000\s+USR-A$/m);
    expect(h.stdout).toContain(`verity root hash: ${payload.rootHash}`);
    expect(h.stdout).toContain("GPT (gptprio) boots next: 3 USR-A");
    const bad = await acl(["inspect", join(dir, "missing.raw")]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/^error: cannot open disk image .*missing\.raw: it does not exist \(ENOENT\)\nhint: /m);
  });

  it("reads a squashfs /usr slot: size from its superblock, root hash as veritysetup computed it", async () => {
    const sq = await makeUsrPayload(dir, 64 * 1024, "squashfs");
    const r = await assembleDisk({ ...opts(3), usrPayload: sq.path, formats: ["raw"] });
    const a = (await inspectDisk({ path: file(r, "disk-raw") })).partitions.find((p) => p.label === "USR-A")!;
    expect(a.usr?.filesystem).toBe("squashfs");
    expect(a.usr?.verity).toMatchObject({ rootHash: sq.rootHash, hashOffset: sq.hashOffset, dataBlocks: sq.dataBlocks });
    const h = await acl(["inspect", file(r, "disk-raw")]);
    expect(h.stdout).toMatch(/content: squashfs .* used/);
    expect(h.stdout).toContain(`verity root hash: ${sq.rootHash}`);
  });

  it("fails clearly on a file that is not a disk image", async () => {
    const junk = join(dir, "junk.bin");
    await writeFile(junk, Buffer.alloc(64 * 1024, 7));
    await expect(inspectDisk({ path: junk })).rejects.toThrow(/no GPT found/);
    await expect(inspectDisk({ path: join(dir, "missing.raw") })).rejects.toThrow(/cannot open disk image/);
  });
});
