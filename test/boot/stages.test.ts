/**
 * Boot stages against real tools: the kernel package (dpkg-deb, depmod), the
 * initramfs (read back by GNU cpio and our reader; veritysetup runs from it in
 * a chroot), the UKI (objdump sees the sections where OVMF booted them), and
 * the guest checks (shellcheck).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { installKernel } from "../../src/stages/rootfs/kernel.js";
import { buildInitramfs, moduleClosure, parseLdd, parseModulesDep } from "../../src/stages/initramfs/initramfs.js";
import { renderInitScript } from "../../src/stages/initramfs/init-script.js";
import { requiredCpuFlags } from "../../src/formats/microarch.js";
import { dataText } from "../../src/util/data.js";
import { buildEsp, loaderConf, slotCmdline } from "../../src/stages/boot/esp.js";
import { GUEST_DATA, installGuestChecks } from "../../src/stages/rootfs/guest-checks.js";
import { decodeCpio } from "../../src/formats/cpio.js";
import { peSectionData, peSections } from "../../src/formats/pe.js";
import { KERNEL_CACHE } from "./helpers/image.js";
import { tempDirs } from "./helpers/temps.js";

const PATH = `${process.env.PATH}:/usr/sbin:/sbin`;
const sh = (argv: string[], opts: { cwd?: string; input?: Buffer } = {}) =>
  execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8", env: { ...process.env, PATH, LC_ALL: "C" }, maxBuffer: 1 << 28, ...opts });
const sha = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");
const EPOCH = 1_700_000_000;
const mkdtempSync = tempDirs();

describe("kernel and initramfs", () => {
  const root = mkdtempSync(join(tmpdir(), "acl-kroot-"));
  let k: Awaited<ReturnType<typeof installKernel>>;
  beforeAll(async () => {
    k = await installKernel({ rootDir: root, cacheDir: KERNEL_CACHE });
  }, 600_000);

  it("installs the cloud kernel's modules with a fresh modules.dep", async () => {
    expect(k.pkg).toMatch(/^linux-image-\d+\.\d+\.\d+-\d+-cloud-amd64$/);
    expect(k.pkg).toBe(`linux-image-${k.release}`);
    expect(statSync(k.vmlinuz).size).toBeGreaterThan(4 << 20);
    const dep = readFileSync(join(root, "usr/lib/modules", k.release, "modules.dep"), "utf8");
    expect(dep).toMatch(/^kernel\/drivers\/md\/dm-verity\.ko: .*kernel\/drivers\/md\/dm-mod\.ko/m);
    expect(existsSync(join(root, "usr/lib/modules", k.release, "build"))).toBe(false);
    // cached: a second install does not download again
    const deb = sh(["sh", "-c", `ls ${KERNEL_CACHE}/debs/${k.pkg}_*.deb`]).trim();
    const before = statSync(deb).mtimeMs;
    const again = await installKernel({ rootDir: mkdtempSync(join(tmpdir(), "acl-kroot-")), cacheDir: KERNEL_CACHE });
    expect(again).toEqual(k);
    expect(statSync(deb).mtimeMs).toBe(before);
  }, 600_000);

  it("orders the module closure dependencies first", () => {
    const dep = parseModulesDep(readFileSync(join(root, "usr/lib/modules", k.release, "modules.dep"), "utf8"));
    const builtin = new Set(["ext4", "nvme"]);
    const c = moduleClosure(dep, builtin, ["dm_verity", "virtio_blk", "ext4", "ahci", "erofs"]);
    const names = c.order.map((p) => p.split("/").pop());
    expect(names.indexOf("dm-mod.ko")).toBeLessThan(names.indexOf("dm-verity.ko"));
    expect(names.indexOf("dm-bufio.ko")).toBeLessThan(names.indexOf("dm-verity.ko"));
    expect(names.indexOf("virtio.ko")).toBeLessThan(names.indexOf("virtio_blk.ko"));
    expect(c.builtin).toEqual(["ext4"]);
    expect(c.missing).toEqual(["ahci"]);
    expect(parseLdd("\tlinux-vdso.so.1 (0x1)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x2)\n\t/lib64/ld-linux-x86-64.so.2 (0x3)\n"))
      .toEqual(["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]);
  });

  it("builds a reproducible initramfs that GNU cpio lists and whose veritysetup runs", async () => {
    const out = mkdtempSync(join(tmpdir(), "acl-initrd-"));
    const o = { release: k.release, rootDir: root, microarch: "x86-64-v3" as const, corruption: "restart" as const, init: "systemd" as const, sourceDateEpoch: EPOCH };
    const a = await buildInitramfs({ ...o, outFile: join(out, "a.img") });
    const b = await buildInitramfs({ ...o, outFile: join(out, "b.img") });
    expect(a.sha256).toBe(b.sha256);
    expect(sha(a.path)).toBe(a.sha256);
    expect(a.modules).toEqual(expect.arrayContaining(["dm_mod", "dm_verity", "erofs", "virtio_blk", "virtio_pci", "squashfs", "overlay", "vfat", "hv_storvsc"]));
    expect(a.bootModules).toEqual(expect.arrayContaining(["dm_mod", "dm_verity", "erofs", "virtio_blk", "virtio_pci"]));
    expect(a.bootModules).not.toContain("hv_storvsc");
    expect(a.bootModules).not.toContain("squashfs");
    expect(a.bootModules).not.toContain("overlay");
    const raw = gunzipSync(readFileSync(a.path));
    const list = sh(["cpio", "-t", "--quiet"], { input: raw }).split("\n");
    for (const p of ["init", "bin/busybox", "bin/switch_root", "sbin/veritysetup", "sbin/blkid", "lib64/ld-linux-x86-64.so.2", "dev/console",
      `lib/modules/${k.release}/kernel/drivers/md/dm-verity.ko`, `lib/modules/${k.release}/kernel/fs/erofs/erofs.ko`]) {
      expect(list).toContain(p);
    }
    const recs = decodeCpio(raw).records;
    expect(new Set(recs.map((r) => r.mtime))).toEqual(new Set([EPOCH]));
    expect(recs.every((r) => r.uid === 0 && r.gid === 0)).toBe(true);
    const init = Buffer.from(recs.find((r) => r.path === "init")!.data).toString();
    expect(init).toContain("MICROARCH='x86-64-v3'");
    expect(init).toContain("CORRUPTION='restart'");
    expect(init).toContain("NEXT_INIT='/usr/lib/systemd/systemd'");
    expect(init).toMatch(/^SQUASHFS_MODULES='kernel\/fs\/squashfs\/squashfs\.ko'$/m);
    expect(init).toMatch(/^HYPERV_MODULES='.*kernel\/drivers\/hv\/hv_vmbus\.ko .*kernel\/drivers\/scsi\/hv_storvsc\.ko.*kernel\/drivers\/scsi\/sd_mod\.ko'$/m);
    expect(init).toMatch(/^VIRTIO_SCSI_MODULES='.*kernel\/drivers\/scsi\/virtio_scsi\.ko.*'$/m);
    expect(init).toMatch(/^AHCI_MODULES=''$/m);
    // extract and run veritysetup from it: its ldd closure is complete
    const x = join(out, "x");
    mkdirSync(x);
    sh(["cpio", "-i", "-d", "--quiet", "--no-absolute-filenames"], { cwd: x, input: raw });
    expect(sh(["chroot", x, "/sbin/veritysetup", "--version"])).toMatch(/^veritysetup \d/);
    expect(sh(["chroot", x, "/sbin/blkid", "--version"])).toMatch(/blkid from util-linux/);
    expect(sh(["chroot", x, "/bin/sh", "-n", "/init"])).toBe("");
  }, 600_000);
});

describe("/init and the guest check scripts", () => {
  it("/init carries the CPU gate's flags and refuses unsafe values (shellcheck: test/data/shell.test.ts)", () => {
    const init = renderInitScript({ release: "6.1.0-56-cloud-amd64", microarch: "x86-64-v2", corruption: "panic", init: "busybox", modules: ["kernel/a.ko"] });
    expect(init).toContain("REQUIRED='cx16:cx16 lahf:lahf_lm popcnt:popcnt sse3:pni ssse3:ssse3 sse4_1:sse4_1 sse4_2:sse4_2'");
    expect(init).not.toMatch(/\\\$\{|@[A-Z_]+@/);
    expect(requiredCpuFlags("x86-64")).toEqual([]);
    expect(requiredCpuFlags("x86-64-v4")).toHaveLength(7 + 9 + 5);
    expect(() => renderInitScript({ release: "6.1; rm -rf /", microarch: "x86-64", corruption: "panic", init: "busybox", modules: [] })).toThrow(/unsafe release/);
  });

  it("installs the busybox hooks and the systemd unit", async () => {
    const bb = mkdtempSync(join(tmpdir(), "acl-gc-"));
    mkdirSync(join(bb, "usr/bin"), { recursive: true });
    writeFileSync(join(bb, "usr/bin/busybox"), "");
    await installGuestChecks(bb, "busybox");
    expect(readlinkSync(join(bb, "usr/sbin/init"))).toBe("../bin/busybox");
    expect(readFileSync(join(bb, "etc/inittab"), "utf8")).toBe(dataText(GUEST_DATA.inittab));
    expect(lstatSync(join(bb, "usr/lib/acl/boot-check")).mode & 0o777).toBe(0o755);
    // an image's own inittab is kept; the check is appended once
    const own = mkdtempSync(join(tmpdir(), "acl-gc-"));
    mkdirSync(join(own, "etc"), { recursive: true });
    mkdirSync(join(own, "usr/sbin"), { recursive: true });
    writeFileSync(join(own, "etc/inittab"), "::sysinit:/etc/rc\n");
    writeFileSync(join(own, "usr/sbin/init"), "");
    await installGuestChecks(own, "busybox");
    await installGuestChecks(own, "busybox");
    expect(readFileSync(join(own, "etc/inittab"), "utf8")).toBe("::sysinit:/etc/rc\n::wait:/usr/lib/acl/acl-ab boot\n::once:/usr/lib/acl/boot-check busybox\n");

    const sd = mkdtempSync(join(tmpdir(), "acl-gc-"));
    await installGuestChecks(sd, "systemd", ["containerd.service", "ssh.service"]);
    const unit = readFileSync(join(sd, "usr/lib/systemd/system/acl-boot-check.service"), "utf8");
    expect(unit).toContain("After=multi-user.target");
    expect(unit).toContain("StandardOutput=journal+console");
    expect(unit).toContain("ExecStart=/usr/lib/acl/boot-check systemd containerd.service ssh.service\n");
    expect(readlinkSync(join(sd, "usr/lib/systemd/system/multi-user.target.wants/acl-boot-check.service"))).toBe("../acl-boot-check.service");
    expect(existsSync(join(sd, "etc/inittab"))).toBe(false);
  });
});

describe("ESP with systemd-boot and UKIs", () => {
  it("places the UKI sections where OVMF boots them, reproducibly", async () => {
    const d = mkdtempSync(join(tmpdir(), "acl-esp-"));
    const kernel = join(d, "vmlinuz");
    const initrd = join(d, "initrd");
    writeFileSync(kernel, Buffer.alloc(3 << 20, 1));
    writeFileSync(initrd, Buffer.alloc(1 << 20, 2));
    const slots = [
      { slot: "B" as const, partUuid: "E03DD35C-7C2D-4A47-B3FE-27F15780A57C", rootHash: "b".repeat(64), hashOffset: 4096 * 10 },
      { slot: "A" as const, partUuid: "7130c94a-213a-4e5a-8e26-6cce9662f132", rootHash: "a".repeat(64), hashOffset: 4096 * 20 },
    ];
    const opts = { vmlinuz: kernel, initramfs: initrd, slots, espSlot: "A" as const, osRelease: { name: "acl-min", version: "1.2.3", microarch: "x86-64-v3" }, sourceDateEpoch: EPOCH, extraCmdline: "quiet" };
    const r1 = await buildEsp({ ...opts, espDir: join(d, "esp1"), ukiDir: join(d, "ukis1") });
    const r2 = await buildEsp({ ...opts, espDir: join(d, "esp2"), ukiDir: join(d, "ukis2") });
    expect(r1.ukis.map((u) => u.slot)).toEqual(["A", "B"]);
    expect(r1.ukis[0]!.cmdline).toBe(
      `console=ttyS0,115200n8 panic=10 rw verity.usr=PARTUUID=7130c94a-213a-4e5a-8e26-6cce9662f132 verity.usrhash=${"a".repeat(64)} acl.usr.hashoffset=81920 acl.slot=A quiet`,
    );
    expect(r1.ukis[1]!.cmdline).toContain("verity.usr=PARTUUID=e03dd35c-7c2d-4a47-b3fe-27f15780a57c");
    for (const f of ["EFI/Linux/acl-A.efi", "EFI/BOOT/BOOTX64.EFI", "loader/loader.conf"]) {
      expect(sha(join(d, "esp1", f))).toBe(sha(join(d, "esp2", f)));
    }
    // a fresh ESP carries slot A's UKI only (good, uncounted); slot B's goes into the update payload
    expect(readdirSync(join(d, "esp1/EFI/Linux"))).toEqual(["acl-A.efi"]);
    expect(sha(join(d, "esp1/EFI/Linux/acl-A.efi"))).toBe(sha(join(d, "ukis1/acl-A.efi")));
    expect(sha(join(d, "ukis1/acl-B.efi"))).toBe(sha(join(d, "ukis2/acl-B.efi")));
    expect(sha(join(d, "esp1/EFI/BOOT/BOOTX64.EFI"))).toBe(sha("/usr/lib/systemd/boot/efi/systemd-bootx64.efi"));
    expect(sha(join(d, "esp1/EFI/systemd/systemd-bootx64.efi"))).toBe(sha("/usr/lib/systemd/boot/efi/systemd-bootx64.efi"));
    expect(readFileSync(join(d, "esp1/loader/loader.conf"), "utf8")).toBe(loaderConf());
    // no default: an entry's id changes with every counter rename, so systemd-boot's own order decides
    expect(loaderConf()).toBe("timeout 0\neditor no\nconsole-mode keep\n");
    expect(statSync(join(d, "esp1/EFI/Linux/acl-A.efi")).mtimeMs).toBe(EPOCH * 1000);
    const hdr = sh(["objdump", "-h", join(d, "esp1/EFI/Linux/acl-A.efi")]);
    const vma = (s: string) => new RegExp(`\\s${s.replace(".", "\\.")}\\s+([0-9a-f]+)\\s+([0-9a-f]+)`).exec(hdr)!;
    expect(parseInt(vma(".osrel")[2]!, 16)).toBe(0x20000);
    expect(parseInt(vma(".cmdline")[2]!, 16)).toBe(0x30000);
    expect(parseInt(vma(".linux")[2]!, 16)).toBe(0x2000000);
    expect(parseInt(vma(".initrd")[2]!, 16)).toBe(0x3000000);
    expect(parseInt(vma(".linux")[1]!, 16)).toBe(3 << 20);
    const section = (file: string, name: string) => {
      const o = join(d, `section${name}`);
      sh(["objcopy", "-O", "binary", `--only-section=${name}`, file, o]);
      return readFileSync(o, "utf8");
    };
    expect(section(join(d, "esp1/EFI/Linux/acl-A.efi"), ".cmdline").replace(/\0+$/, "")).toBe(r1.ukis[0]!.cmdline);
    expect(section(join(d, "ukis1/acl-B.efi"), ".osrel")).toContain('PRETTY_NAME="acl-min 1.2.3 (slot B)"');
    expect(section(join(d, "ukis1/acl-B.efi"), ".osrel")).toContain('ACL_MICROARCH="x86-64-v3"');
    // our PE section reader agrees with objdump's table and objcopy's extraction
    const ukiB = readFileSync(join(d, "ukis1/acl-B.efi"));
    for (const name of [".osrel", ".cmdline", ".linux", ".initrd"]) {
      const ours = peSections(ukiB).find((x) => x.name === name)!;
      expect(ours.virtualAddress).toBe(parseInt(vma(name)[2]!, 16));
      expect(peSectionData(ukiB, name)!.equals(readFileSync(join(d, "ukis1/acl-B.efi")).subarray(ours.rawOffset, ours.rawOffset + Math.min(ours.virtualSize, ours.rawSize)))).toBe(true);
    }
    expect(peSectionData(ukiB, ".osrel")!.toString()).toBe(section(join(d, "ukis1/acl-B.efi"), ".osrel"));
    // the COFF timestamp is the build's epoch
    const pe = readFileSync(join(d, "esp1/EFI/Linux/acl-A.efi"));
    expect(pe.readUInt32LE(pe.readUInt32LE(0x3c) + 8)).toBe(EPOCH);
    expect(() => slotCmdline({ slot: "A", partUuid: "nope", rootHash: "a".repeat(64), hashOffset: 4096 })).toThrow(/not a partition UUID/);
    expect(() => slotCmdline({ slot: "A", partUuid: slots[1]!.partUuid, rootHash: "a".repeat(64), hashOffset: 100 })).toThrow(/multiple of 4096/);
  });
});

