/**
 * First-boot provisioning under QEMU (TCG, direct kernel boots): images/container-host.toml with
 * Debian's Ignition run by our initramfs.
 * - `acl boot-test --ignition` with the fixture config (a new user with keys and a group, files
 *   with modes and owners, a folder, a link, a drop-in, an enabled and a masked unit): the first
 *   boot applies it and every probe matches; the second boot of the same disk keeps it and does not
 *   run Ignition again.
 * - A config on the OEM partition (config.ign, no fw_cfg) that writes into the read-only /usr:
 *   the boot stops with Ignition's own reason on the console, and afterwards the disk still holds
 *   the first-boot flag on the ESP, so the next boot runs Ignition again.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { FatImage } from "../../src/adapters/fat.js";
import { bootQemu } from "../../src/adapters/qemu.js";
import { espOffset, readManifest, type Manifest } from "../../src/pipeline/manifest.js";
import { FIRST_BOOT_FLAG } from "../../src/stages/boot/esp.js";
import { BOOT_CHECK_REQUEST } from "../../src/stages/rootfs/guest-checks.js";
import { acl, REPO } from "../helpers/cli.js";
import { builtImage } from "../helpers/images.js";

const sh = promisify(execFile);
const FIX = join(REPO, "test/fixtures/ignition");

interface Run {
  passed: boolean;
  reason: string;
  expected: string;
}

describe("Ignition at first boot (container-host, QEMU)", () => {
  let out: string;
  let m: Manifest;
  beforeAll(async () => {
    out = await builtImage("container-host");
    m = await readManifest(out);
  }, 30 * 60_000);

  it("the image says it runs Ignition, carries its base config, and its fresh ESP holds the first-boot flag", async () => {
    expect(m.ignition).toMatchObject({ platforms: ["qemu", "file"], firstBootFlag: FIRST_BOOT_FLAG, base: { path: "/usr/lib/ignition/base.d/50-container-host-base.ign" } });
    // Debian's ignition-validate accepts the baked base config
    const tmp = await mkdtemp(join(tmpdir(), "acl-ign-base-"));
    await writeFile(join(tmp, "base.ign"), m.ignition!.base!.config);
    await sh("ignition-validate", [join(tmp, "base.ign")]);
    const names = (await new FatImage(join(out, "disk.raw"), espOffset(m)!).list("acl")).map((f) => f.name);
    expect(names).toEqual(["first_boot"]);
  });

  it("boot-test --ignition: the first boot applies the fixture config (every probe ok), the second keeps it without running Ignition", async () => {
    const logs = await mkdtemp(join(tmpdir(), "acl-ign-logs-"));
    const r = await acl(
      ["boot-test", out, "--json", "--cpu", "Haswell-v4", "--firmware", "direct", "--case", "boot", "--timeout", "600",
        "--ignition", join(FIX, "provision.bu"), "--ignition-files-dir", join(FIX, "provision"), "--keep-logs", logs],
      { timeoutMs: 30 * 60_000 },
    );
    const result = JSON.parse(r.stdout) as { runs: Run[]; failed: number };
    const run = result.runs[0]!;
    expect(r.exitCode, `${run?.reason}\n${r.stderr.slice(-2000)}`).toBe(0);
    expect(result.runs).toHaveLength(1);
    // 12 from the config, 1 from the image's base config (/etc/containerd)
    expect(run.reason).toMatch(/Ignition applied the config, 13 probes ok; systemd: \d+ checks ok/);
    expect(run.reason).toMatch(/second boot skipped Ignition and kept all 13/);
    const first = await readFile(join(logs, "boot-Haswell-v4-direct.log"), "utf8");
    const second = await readFile(join(logs, "boot-Haswell-v4-direct-2.log"), "utf8");
    expect(first).toMatch(/acl-init: ignition: first boot; user config: QEMU fw_cfg opt\/com\.coreos\/config/);
    expect(first).toMatch(/acl-init: ignition: presets applied to acl-hello\.service/);
    expect(first).toMatch(/acl-init: ignition: first boot done \(flag removed from the ESP\)/);
    // the unit Ignition wrote and enabled ran on both boots
    expect(first).toContain("acl-hello: provisioned by Ignition");
    expect(second).toContain("acl-hello: provisioned by Ignition");
    expect(second).toMatch(/acl-init: ignition: not the first boot \(no acl\/first_boot on the ESP\): skipped/);
    expect(second).not.toMatch(/ignition: first boot;/);
  }, 30 * 60_000);

  it("a config from the OEM partition that writes into /usr stops the boot with Ignition's reason, and the flag stays on the ESP", async () => {
    const tmp = await mkdtemp(join(tmpdir(), "acl-ign-oem-"));
    const disk = join(tmp, "disk.raw");
    await sh("cp", ["--sparse=always", join(out, "disk.raw"), disk]);
    // config.ign onto OEM's ext4, as a provider would put it there
    const fails = await acl(["butane", join(FIX, "fails.bu"), "-o", join(tmp, "config.ign")]);
    expect(fails.exitCode, fails.stderr).toBe(0);
    const oem = m.disk!.partitions.find((p) => p.label === "OEM")!;
    const sectors = oem.lastLba - oem.firstLba + 1;
    await sh("dd", [`if=${disk}`, `of=${join(tmp, "oem.img")}`, "bs=512", `skip=${oem.firstLba}`, `count=${sectors}`, "status=none"]);
    await sh("debugfs", ["-w", "-R", `write ${join(tmp, "config.ign")} config.ign`, join(tmp, "oem.img")]);
    await sh("dd", [`if=${join(tmp, "oem.img")}`, `of=${disk}`, "bs=512", `seek=${oem.firstLba}`, "conv=notrunc,sparse", "status=none"]);
    const q = await bootQemu({
      disk, diskFormat: "raw", cpu: "Haswell-v4", firmware: "direct", kernel: join(out, "vmlinuz"), initrd: join(out, "initramfs.img"),
      append: m.kernel!.cmdline, smbiosStrings: [BOOT_CHECK_REQUEST], serialLog: join(tmp, "serial.log"), timeoutMs: 300_000, accel: "tcg",
      stopOn: [/acl-init: FATAL: /, /ACL-CHECK userspace/], graceMs: 1500,
    });
    const text = q.lines.map((l) => l.text).join("\n");
    const said = q.lines.map((l) => l.text).filter((l) => /acl-init|ignition/.test(l)).join("\n");
    expect(said).toMatch(/acl-init: ignition: first boot; user config: config\.ign on the OEM partition \(\/dev\/vda\d+\)/);
    expect(said).toMatch(/ignition: CRITICAL .*\/usr\/lib\/acl-test.*read-only file system/);
    expect(said).toMatch(/acl-init: FATAL: Ignition failed: stage files exited with status 1; the first boot is not marked done/);
    expect(text).not.toMatch(/ACL-CHECK userspace/);
    // what the disk holds afterwards: the flag, so the next boot runs Ignition again
    const names = (await new FatImage(disk, espOffset(m)!).list("acl")).map((f) => f.name);
    expect(names).toEqual(["first_boot"]);
  }, 10 * 60_000);

  it("boot-test --ignition reports a config Ignition refuses as a failed run naming Ignition's reason", async () => {
    const r = await acl(["boot-test", out, "--json", "--cpu", "Haswell-v4", "--firmware", "direct", "--case", "boot", "--ignition", join(FIX, "fails.bu")], { timeoutMs: 10 * 60_000 });
    expect(r.exitCode).toBe(1);
    const run = (JSON.parse(r.stdout) as { runs: Run[] }).runs[0]!;
    expect(run.passed).toBe(false);
    expect(run.reason).toMatch(/^Ignition failed: stage files exited with status 1.*\(CRITICAL : .*read-only file system\)$/);
  }, 10 * 60_000);

  it("boot-test --ignition refuses, before booting, a config the image's Ignition cannot apply and an image without Ignition", async () => {
    const tmp = await mkdtemp(join(tmpdir(), "acl-ign-cli-"));
    const cases: [string, string, RegExp, RegExp][] = [
      ["new.bu", "variant: flatcar\nversion: 1.1.0\n", /is Ignition spec 3\.4\.0; the image's Ignition \(Debian's 2\.14\) applies 3\.0\.0 to 3\.3\.0/, /version: 1\.0\.0/],
      ["remote.bu", "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/x\n      contents:\n        source: http://example.com/x\n", /remote sources.*\$\.storage\.files\.0\.contents\.source \(http:\/\/example\.com\/x\)/, /inline/],
      ["noversion.ign", '{"storage": {}}', /has no ignition\.version/, /"version": "3\.3\.0"/],
      ["broken.ign", '{"ignition": ', /is not valid JSON/, /Ignition config/],
    ];
    for (const [name, text, message, hint] of cases) {
      await writeFile(join(tmp, name), text);
      const r = await acl(["boot-test", out, "--json", "--firmware", "direct", "--ignition", join(tmp, name)]);
      expect(r.exitCode, name).toBe(1);
      const e = (JSON.parse(r.stdout) as { error: { message: string; hint: string } }).error;
      expect(e.message, name).toMatch(message);
      expect(e.hint, name).toMatch(hint);
    }
    const minimal = await builtImage("minimal");
    const r = await acl(["boot-test", minimal, "--json", "--ignition", join(FIX, "provision.bu")]);
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stdout).error).toMatchObject({ message: expect.stringMatching(/does not run Ignition: its spec has no \[ignition\] section/), hint: expect.stringMatching(/add an \[ignition\] section/) });
  }, 20 * 60_000);
});
