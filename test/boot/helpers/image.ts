/**
 * Builds a small but real acl-style disk from real tools, so the boot side
 * can be tested without the full `acl build`: a busybox /usr (erofs +
 * dm-verity tree appended, veritysetup format --hash-offset), our kernel
 * stage, initramfs, boot checks and UKI/ESP, and a GPT disk (sgdisk) with
 * EFI-SYSTEM, USR-A, USR-B and ROOT. Writes a build manifest next to it, as
 * `acl build` would, so `acl boot-test` runs on it unchanged.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync, existsSync, openSync, writeSync, closeSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { installKernel } from "../../../src/stages/rootfs/kernel.js";
import { buildInitramfs } from "../../../src/stages/initramfs/initramfs.js";
import { buildEsp, slotCmdline } from "../../../src/stages/boot/esp.js";
import { installGuestChecks } from "../../../src/stages/rootfs/guest-checks.js";
import type { CorruptionPolicy } from "../../../src/stages/initramfs/init-script.js";
import type { Microarch } from "../../../src/formats/microarch.js";
import { canonicalJson, MANIFEST_SCHEMA_VERSION, type Manifest } from "../../../src/pipeline/manifest.js";

export const REPO = new URL("../../../", import.meta.url).pathname;
export const KERNEL_CACHE = join(REPO, ".cache/kernel");
const MiB = 1024 * 1024;
const SECTOR = 512;

export const USR_TYPE = "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6";
export const ROOT_TYPE = "3884DD41-8582-4404-B9A8-E9B84F2DF50E";
export const ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
export const USR_A_UUID = "7130c94a-213a-4e5a-8e26-6cce9662f132";
export const USR_B_UUID = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c";
const ROOT_UUID = "3a0b5d1e-42b1-4c1c-9e0b-8f5b7f1c2d33";
const ESP_UUID = "1e6c9a3b-5f0d-4b7e-8a2c-6d4e2f1a0b99";
const DISK_GUID = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";

export interface TestImageOptions {
  /** Output folder (like out/NAME): manifest.json, disk.raw, vmlinuz, initramfs.img. */
  outDir: string;
  microarch?: Microarch;
  corruption?: CorruptionPolicy;
  /** Default busybox (a busybox-static /usr). "systemd" needs `systemdRootfsTar`. */
  init?: "busybox" | "systemd";
  /** A Debian tree as a tarball (mmdebstrap --variant=minbase --include=systemd,...,containerd). */
  systemdRootfsTar?: string;
  sourceDateEpoch?: number;
}

export interface TestImage {
  outDir: string;
  disk: string;
  manifest: Manifest;
  /** Partition layout: byte offsets. */
  usrA: { offset: number; size: number; partUuid: string };
  rootHash: string;
  hashOffset: number;
}

const sh = (argv: string[], env: Record<string, string> = {}) =>
  execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C", PATH: `${process.env.PATH}:/usr/sbin:/sbin`, ...env } });

const sha256File = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");

/** Put `src` into `disk` at byte offset `off` without truncating. */
function writeAt(disk: string, off: number, src: string): void {
  const data = readFileSync(src);
  const fd = openSync(disk, "r+");
  try {
    writeSync(fd, data, 0, data.length, off);
  } finally {
    closeSync(fd);
  }
}

/** A busybox-static /usr: applets linked (no dpkg/rpm applets), a glibc loader for the hwcaps check. */
function makeTree(tree: string): void {
  mkdirSync(join(tree, "usr/bin"), { recursive: true });
  mkdirSync(join(tree, "usr/sbin"), { recursive: true });
  mkdirSync(join(tree, "usr/lib64"), { recursive: true });
  mkdirSync(join(tree, "etc"), { recursive: true });
  copyFileSync("/bin/busybox", join(tree, "usr/bin/busybox"));
  const pkgApplets = new Set(["dpkg", "dpkg-deb", "rpm", "rpm2cpio", "busybox"]);
  for (const a of sh(["/bin/busybox", "--list"]).split("\n").map((s) => s.trim()).filter(Boolean)) {
    if (pkgApplets.has(a)) continue;
    symlinkSync("busybox", join(tree, "usr/bin", a));
  }
  for (const a of ["getty", "reboot", "poweroff", "halt", "mdev", "switch_root"]) symlinkSync("../bin/busybox", join(tree, "usr/sbin", a));
  copyFileSync("/lib64/ld-linux-x86-64.so.2", join(tree, "usr/lib64/ld-linux-x86-64.so.2"));
  writeFileSync(join(tree, "etc/hostname"), "acl-test\n");
  writeFileSync(join(tree, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  writeFileSync(join(tree, "etc/group"), "root:x:0:\n");
  writeFileSync(join(tree, "etc/os-release"), 'NAME="acl test"\nID=acl\nVERSION_ID=0.0.1\n');
}

export async function buildTestImage(o: TestImageOptions): Promise<TestImage> {
  const microarch = o.microarch ?? "x86-64-v3";
  const corruption = o.corruption ?? "panic";
  const epoch = o.sourceDateEpoch ?? 1_700_000_000;
  const work = `${o.outDir}.work`;
  rmSync(work, { recursive: true, force: true });
  rmSync(o.outDir, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  mkdirSync(o.outDir, { recursive: true });
  const tree = join(work, "tree");
  const init = o.init ?? "busybox";
  if (init === "systemd") {
    if (!o.systemdRootfsTar) throw new Error("a systemd test image needs systemdRootfsTar");
    mkdirSync(tree);
    sh(["tar", "-C", tree, "-xf", o.systemdRootfsTar]);
    // a crude sanitize: no package managers, no package database
    execFileSync("sh", ["-c", "rm -rf usr/bin/dpkg* usr/bin/apt* usr/lib/apt usr/lib/dpkg var/lib/dpkg var/lib/apt var/cache/apt etc/apt usr/sbin/dpkg*"], { cwd: tree });
    writeFileSync(join(tree, "etc/hostname"), "acl-test\n");
    rmSync(join(tree, "etc/machine-id"), { force: true });
  } else {
    makeTree(tree);
  }
  const kernel = await installKernel({ rootDir: tree, cacheDir: KERNEL_CACHE });
  await installGuestChecks(tree, init);
  // what the integrator's sanitize does: /etc defaults move into /usr/share/factory/etc
  mkdirSync(join(tree, "usr/share/factory"), { recursive: true });
  renameSync(join(tree, "etc"), join(tree, "usr/share/factory/etc"));

  // /usr: erofs, then the verity tree after it in the same file
  const usrImg = join(work, "usr.img");
  sh(["mkfs.erofs", "--quiet", "-T" + epoch, "-U", "6a1e0f52-8d2c-4d3b-9a41-0c7e3b5f2a10", "--all-root", "-Eforce-inode-compact", usrImg, join(tree, "usr")]);
  const fsSize = statSync(usrImg).size;
  if (fsSize % 4096) throw new Error(`erofs image size ${fsSize} is not 4096-aligned`);
  const fmt = sh([
    "veritysetup", "format", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096",
    `--data-blocks=${fsSize / 4096}`, `--hash-offset=${fsSize}`,
    "--salt=" + createHash("sha256").update("acl-test 0.0.1").digest("hex"),
    "--uuid=2f4c6e8a-0b1d-4f3a-8c5e-7a9b1d3f5e70", usrImg, usrImg,
  ]);
  const rootHash = /Root hash:\s+([0-9a-f]{64})/.exec(fmt)![1]!;
  const salt = /Salt:\s+([0-9a-f]+)/.exec(fmt)![1]!;
  const payloadSize = statSync(usrImg).size;

  const initrd = join(o.outDir, "initramfs.img");
  await buildInitramfs({ release: kernel.release, rootDir: tree, microarch, corruption, init, outFile: initrd, sourceDateEpoch: epoch });
  const vmlinuz = join(o.outDir, "vmlinuz");
  copyFileSync(kernel.vmlinuz, vmlinuz);

  const espDir = join(work, "esp");
  const slotA = { slot: "A" as const, partUuid: USR_A_UUID, rootHash, hashOffset: fsSize };
  await buildEsp({ espDir, ukiDir: join(work, "ukis"), espSlot: "A", vmlinuz, initramfs: initrd, slots: [slotA], osRelease: { name: "acl-test", version: "0.0.1", microarch }, sourceDateEpoch: epoch });

  // filesystems
  const espSize = 64 * MiB;
  const espImg = join(work, "esp.img");
  sh(["truncate", "-s", String(espSize), espImg]);
  sh(["mkfs.vfat", "-F", "32", "-s", "1", "-n", "EFI-SYSTEM", "--invariant", "-i", "0ac1e5f0", espImg]);
  const espEntries = readdirSync(espDir).map((e) => join(espDir, e));
  sh(["mcopy", "-s", "-m", "-i", espImg, ...espEntries, "::/"], { SOURCE_DATE_EPOCH: String(epoch) });
  const rootSize = (init === "systemd" ? 256 : 64) * MiB;
  const rootImg = join(work, "root.img");
  sh(["truncate", "-s", String(rootSize), rootImg]);
  sh(["mkfs.ext4", "-q", "-L", "ROOT", "-U", ROOT_UUID, "-E", "hash_seed=" + ROOT_UUID, rootImg], { E2FSPROGS_FAKE_TIME: String(epoch) });

  // GPT: 1 MiB alignment
  const usrSlot = Math.ceil((payloadSize + 4 * MiB) / MiB) * MiB;
  const layout = [
    { n: 1, label: "EFI-SYSTEM", type: ESP_TYPE, uuid: ESP_UUID, size: espSize },
    { n: 2, label: "USR-A", type: USR_TYPE, uuid: USR_A_UUID, size: usrSlot },
    { n: 3, label: "USR-B", type: USR_TYPE, uuid: USR_B_UUID, size: usrSlot },
    { n: 4, label: "ROOT", type: ROOT_TYPE, uuid: ROOT_UUID, size: rootSize },
  ];
  let lba = MiB / SECTOR;
  const parts = layout.map((p) => {
    const first = lba;
    const last = first + p.size / SECTOR - 1;
    lba = last + 1;
    return { ...p, first, last };
  });
  const diskSize = lba * SECTOR + MiB;
  const disk = join(o.outDir, "disk.raw");
  sh(["truncate", "-s", String(diskSize), disk]);
  const args = ["sgdisk", "-U", DISK_GUID];
  for (const p of parts) args.push("-n", `${p.n}:${p.first}:${p.last}`, "-t", `${p.n}:${p.type}`, "-c", `${p.n}:${p.label}`, "-u", `${p.n}:${p.uuid}`);
  args.push("-A", "2:set:48", "-A", "2:set:56", disk);
  sh(args);
  writeAt(disk, parts[0]!.first * SECTOR, espImg);
  writeAt(disk, parts[1]!.first * SECTOR, usrImg);
  writeAt(disk, parts[3]!.first * SECTOR, rootImg);

  const artifacts = ["disk.raw", "vmlinuz", "initramfs.img"].map((p) => ({
    path: p,
    kind: (p === "disk.raw" ? "disk-raw" : p === "vmlinuz" ? "kernel" : "initramfs") as "disk-raw" | "kernel" | "initramfs",
    size: statSync(join(o.outDir, p)).size,
    sha256: sha256File(join(o.outDir, p)),
  }));
  const manifest: Manifest = {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    name: "acl-test",
    version: "0.0.1",
    arch: "x86_64",
    microarch,
    sourceDateEpoch: epoch,
    specDigest: "0".repeat(64),
    usr: { filesystem: "erofs", size: fsSize, uuid: "6a1e0f52-8d2c-4d3b-9a41-0c7e3b5f2a10" },
    verity: { rootHash, salt, hashOffset: fsSize, dataBlocks: fsSize / 4096, dataBlockSize: 4096, hashBlockSize: 4096, algorithm: "sha256", hashType: 1, uuid: "2f4c6e8a-0b1d-4f3a-8c5e-7a9b1d3f5e70" },
    artifacts,
    inputs: { packages: [{ name: kernel.pkg, version: kernel.version, arch: "amd64" }], images: [], archives: [] },
    tools: {},
    setuid: [],
    kernel: { package: kernel.pkg, version: kernel.version, release: kernel.release, cmdline: slotCmdline(slotA) },
    disk: {
      sectorSize: SECTOR,
      diskGuid: DISK_GUID,
      sizeBytes: diskSize,
      partitions: parts.map((p) => ({
        number: p.n, label: p.label, typeGuid: p.type, partGuid: p.uuid, firstLba: p.first, lastLba: p.last,
        attributes: p.n === 2 ? "0x0101000000000000" : "0x0000000000000000",
      })),
    },
  };
  writeFileSync(join(o.outDir, "manifest.json"), canonicalJson(manifest));
  rmSync(work, { recursive: true, force: true });
  return {
    outDir: o.outDir,
    disk,
    manifest,
    usrA: { offset: parts[1]!.first * SECTOR, size: usrSlot, partUuid: USR_A_UUID },
    rootHash,
    hashOffset: fsSize,
  };
}

/** Build once per process into a cache folder keyed by options (tests in one file share it). */
export async function testImage(name: string, o: Omit<TestImageOptions, "outDir"> = {}): Promise<TestImage> {
  const outDir = join(REPO, ".cache/boot-test-images", name);
  const marker = join(outDir, ".built");
  // rebuild when the options or any code that shapes the image changed
  const h = createHash("sha256").update(JSON.stringify(o));
  for (const f of [
    "src/stages/rootfs/kernel.ts", "src/stages/initramfs/initramfs.ts", "src/stages/initramfs/init-script.ts", "src/stages/boot/esp.ts",
    "src/stages/rootfs/guest-checks.ts", "src/formats/cpio.ts", "data/initramfs/init.sh", "data/guest/boot-check.sh",
    "data/guest/acl-boot-check.service", "data/guest/inittab", "test/boot/helpers/image.ts",
  ]) {
    h.update(readFileSync(join(REPO, f)));
  }
  const key = h.digest("hex");
  if (existsSync(marker) && readFileSync(marker, "utf8") === key) {
    const manifest = JSON.parse(readFileSync(join(outDir, "manifest.json"), "utf8")) as Manifest;
    const p = manifest.disk!.partitions.find((x) => x.label === "USR-A")!;
    return {
      outDir, disk: join(outDir, "disk.raw"), manifest,
      usrA: { offset: p.firstLba * SECTOR, size: (p.lastLba - p.firstLba + 1) * SECTOR, partUuid: p.partGuid },
      rootHash: manifest.verity.rootHash, hashOffset: manifest.verity.hashOffset,
    };
  }
  const img = await buildTestImage({ ...o, outDir });
  writeFileSync(marker, key);
  return img;
}
