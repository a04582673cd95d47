/**
 * Boot tier: a real disk (built from real tools by helpers/image.ts) booted by
 * `acl boot-test` under QEMU TCG. Asserts on what the guest printed.
 * Default plan for an x86-64-v3 image: Haswell-v4 direct + UEFI (boots),
 * Nehalem direct (refused by the CPU gate), tamper on Haswell-v4 (dm-verity).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acl } from "../helpers/cli.js";
import { testImage, type TestImage } from "./helpers/image.js";
import type { BootTestResult } from "../../src/services/boot-test.js";
import { tempDirs } from "./helpers/temps.js";

function needTools(...tools: string[]): void {
  for (const t of tools) {
    try {
      execFileSync("sh", ["-c", `command -v ${t}`], { stdio: "pipe", env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } });
    } catch {
      throw new Error(`boot tests need '${t}' (run ./scripts/setup.sh)`);
    }
  }
}

const mkdtempSync = tempDirs();

const sha = (p: string) => createHash("sha256").update(readFileSync(p)).digest("hex");

describe("acl boot-test on a v3 image (busybox init)", () => {
  let img: TestImage;
  let diskSha: string;
  beforeAll(async () => {
    needTools("qemu-system-x86_64", "qemu-img", "qemu-io", "mkfs.erofs", "veritysetup", "sgdisk", "mkfs.vfat", "mcopy", "mkfs.ext4", "objcopy", "dpkg-deb", "depmod");
    img = await testImage("v3-busybox", { microarch: "x86-64-v3", corruption: "panic" });
    diskSha = sha(img.disk);
  }, 600_000);

  it("boots at v3 (direct and UEFI), refuses v2 cleanly, refuses a tampered /usr", async () => {
    const work = mkdtempSync(join(tmpdir(), "acl-boot-"));
    const junit = join(work, "boot.xml");
    const logs = join(work, "logs");
    const r = await acl(["boot-test", img.outDir, "--json", "--junit", junit, "--keep-logs", logs, "--timeout", "300"]);
    const res = JSON.parse(r.stdout) as BootTestResult;
    const summary = res.runs.map((x) => `${x.id}: ${x.passed ? "PASS" : "FAIL"} ${x.reason}`).join("\n");
    expect(r.exitCode, summary + "\n" + r.stderr.slice(-2000)).toBe(0);
    expect(res.image.microarch).toBe("x86-64-v3");
    expect(res.runs.map((x) => x.id).sort()).toEqual([
      "boot-Haswell-v4-direct", "boot-Haswell-v4-uefi", "boot-Nehalem-direct", "tamper-Haswell-v4-direct",
    ]);
    expect([res.passed, res.failed]).toEqual([4, 0]);

    for (const fw of ["direct", "uefi"]) {
      const run = res.runs.find((x) => x.id === `boot-Haswell-v4-${fw}`)!;
      expect(run.expected).toBe("boot");
      const check = (n: string) => run.checks.find((c) => c.name === n);
      expect(check("usr-verity")?.status).toBe("ok");
      expect(check("usr-verity")?.detail).toMatch(/^\/dev\/mapper\/usr erofs ro dm=usr uuid=CRYPT-VERITY-/);
      expect(check("no-pkg-manager")?.status).toBe("ok");
      expect(check("hwcaps")?.detail).toMatch(/supported: x86-64-v3 x86-64-v2$/);
      expect(check("init")?.detail).toMatch(/^busybox pid1=init/);
      expect(run.userspaceMs).toBeGreaterThan(0);
    }
    const refused = res.runs.find((x) => x.id === "boot-Nehalem-direct")!;
    expect(refused.expected).toBe("refuse-cpu");
    expect(refused.reason).toMatch(/^refused cleanly: lacks avx avx2 bmi1 bmi2 f16c fma lzcnt movbe osxsave$/);
    expect(refused.checks).toEqual([]);
    const nehalemLog = readFileSync(join(logs, "boot-Nehalem-direct.log"), "utf8");
    expect(nehalemLog).toMatch(/acl: this image requires x86-64-v3; this CPU lacks: avx avx2 bmi1 bmi2 f16c fma lzcnt movbe osxsave\n/);
    expect(nehalemLog).toMatch(/reboot: Power down/);
    expect(nehalemLog).not.toMatch(/Kernel panic/);

    const tamper = res.runs.find((x) => x.id === "tamper-Haswell-v4-direct")!;
    expect(tamper.expected).toBe("refuse-verity");
    expect(tamper.reason).toMatch(/device-mapper: verity: .* data block 0 is corrupted/);
    expect(tamper.reason).toMatch(/kernel panic \(dm-verity device corrupted\)/);
    expect(tamper.checks).toEqual([]);

    // UEFI went through OVMF -> systemd-boot -> the slot A UKI
    const uefiLog = readFileSync(join(logs, "boot-Haswell-v4-uefi.log"), "utf8");
    expect(uefiLog).toMatch(/EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID|EFI stub/);
    expect(uefiLog).toMatch(/acl\.slot=A/);
    expect(readdirSync(logs).sort()).toHaveLength(4);

    const xml = readFileSync(junit, "utf8");
    expect(xml).toMatch(/<testsuites tests="4" failures="0"/);
    expect(xml.match(/<testcase /g)).toHaveLength(4);
    // the runs used copy-on-write overlays: the build output is untouched
    expect(sha(img.disk)).toBe(diskSha);
  }, 1_200_000);

  it("kills a boot at the timeout, reports the last marker and exits non-zero", async () => {
    // 3 s: far shorter than any boot here, so QEMU is always killed mid-boot
    const r = await acl(["boot-test", img.outDir, "--json", "--case", "boot", "--cpu", "Haswell-v4", "--firmware", "direct", "--timeout", "3"]);
    expect(r.exitCode).toBe(1);
    const res = JSON.parse(r.stdout) as BootTestResult;
    expect([res.passed, res.failed]).toEqual([0, 1]);
    expect(res.runs[0]!.reason).toMatch(/^timed out after [34] s; (last seen: "(Linux version|Run \/init as init process|acl-init: )|nothing recognisable on the console)/);
    expect(res.runs[0]!.durationMs).toBeLessThan(8_000);
  }, 120_000);

  it("finds the slots on virtio-scsi and NVMe disks (hardware-detected modules)", async () => {
    const work = mkdtempSync(join(tmpdir(), "acl-boot-"));
    const r = await acl(["boot-test", img.outDir, "--json", "--case", "scsi", "--case", "nvme", "--keep-logs", work, "--timeout", "300"]);
    const res = JSON.parse(r.stdout) as BootTestResult;
    expect(r.exitCode, res.runs.map((x) => `${x.id}: ${x.reason}`).join("\n")).toBe(0);
    expect(res.runs.map((x) => [x.id, x.passed])).toEqual([["nvme-Haswell-v4-direct", true], ["scsi-Haswell-v4-direct", true]]);
    const scsi = readFileSync(join(work, "scsi-Haswell-v4-direct.log"), "utf8");
    expect(scsi).toMatch(/acl-init: modules loaded \(virtio nvme dm-verity erofs virtio-scsi\)/);
    expect(scsi).toMatch(/acl-init: usr slot \/dev\/sda2 \(PARTUUID=7130c94a-213a-4e5a-8e26-6cce9662f132\)/);
    expect(scsi).toMatch(/acl-init: root \/dev\/sda4 \(PARTLABEL=ROOT\)/);
    const nvme = readFileSync(join(work, "nvme-Haswell-v4-direct.log"), "utf8");
    expect(nvme).toMatch(/acl-init: modules loaded \(virtio nvme dm-verity erofs\)/);
    expect(nvme).toMatch(/acl-init: usr slot \/dev\/nvme0n1p2 /);
  }, 600_000);
});
