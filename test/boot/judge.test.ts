/** The boot-test judge and planner on console transcripts (pure). */
import { describe, expect, it } from "vitest";
import { highestLevel, judge, parseConsole, planRuns, junitXml, type BootTestResult } from "../../src/services/boot-test.js";
import { loadCases, loadCpuModels, defaultModelFor, findModel } from "../../src/config/qemu-cases.js";
import { levelBelow } from "../../src/formats/microarch.js";
import { qemuArgv } from "../../src/adapters/qemu.js";
import { BUSYBOX_BOOT, L, okRun } from "./helpers/console.js";

const goodBusybox = L(...BUSYBOX_BOOT);

describe("boot-test judge", async () => {
  const cases = await loadCases();
  const boot = cases.find((c) => c.name === "boot")!;
  const tamper = cases.find((c) => c.name === "tamper")!;

  it("parses checks even when a login prompt shares the line, and the time to userspace", () => {
    const f = parseConsole(goodBusybox);
    expect(f.checks.map((c) => c.name)).toEqual(["userspace", "usr-verity", "no-pkg-manager", "hwcaps", "init"]);
    expect(f.hwcaps).toEqual(["x86-64-v3", "x86-64-v2"]);
    expect([f.done, f.powerDown, f.userspaceMs]).toEqual([true, true, 1030]);
    expect(f.lastMarker).toBe("ACL-CHECK done 0");
  });

  it("passes a good boot and names each problem of a bad one", () => {
    const base = { expected: "boot" as const, imageLevel: "x86-64-v3" as const, cpuLevel: "x86-64-v3" as const, bootCase: boot, qemu: okRun };
    expect(judge({ ...base, facts: parseConsole(goodBusybox) })).toEqual({ passed: true, reason: "busybox: 5 checks ok, hwcaps x86-64-v3" });
    const bad = goodBusybox.map((l) => ({ ...l, text: l.text.replace("no-pkg-manager ok none of: dpkg apt apt-get rpm dnf yum apk", "no-pkg-manager fail found: /usr/bin/dpkg") }));
    expect(judge({ ...base, facts: parseConsole(bad) }).reason).toBe("no-pkg-manager: fail found: /usr/bin/dpkg");
    // the CPU table says v3 but the guest's ld.so only supports v2
    const v2 = goodBusybox.map((l) => ({ ...l, text: l.text.replace("supported: x86-64-v3 x86-64-v2", "supported: x86-64-v2") }));
    expect(judge({ ...base, facts: parseConsole(v2) }).reason).toBe("hwcaps: ld.so supports up to x86-64-v2, the CPU table says x86-64-v3");
    // a static userland (no glibc loader, as the RPM test image): the check is skipped, nothing to compare
    const noLoader = goodBusybox.map((l) => ({ ...l, text: l.text.replace(/hwcaps ok supported: x86-64-v3 x86-64-v2/, "hwcaps skip no glibc dynamic loader in the image") }));
    expect(parseConsole(noLoader).hwcaps).toBeUndefined();
    expect(judge({ ...base, facts: parseConsole(noLoader) })).toEqual({ passed: true, reason: "busybox: 5 checks ok" });
    // a hang reports the last marker
    const hang = judge({ ...base, qemu: { exitCode: null, timedOut: true, durationMs: 240_000 }, facts: parseConsole(goodBusybox.slice(0, 3)) });
    expect(hang).toEqual({ passed: false, reason: 'timed out after 240 s; last seen: "acl-init: switching root to /usr/sbin/init"' });
  });

  it("requires the systemd checks when PID 1 is systemd", () => {
    const sd = L(
      "ACL-CHECK userspace ok 6.1.0 pid1=systemd", "ACL-CHECK usr-verity ok x", "ACL-CHECK no-pkg-manager ok x",
      "ACL-CHECK hwcaps ok supported: x86-64-v3 x86-64-v2", "ACL-CHECK multi-user fail degraded",
      "ACL-CHECK failed-units fail  foo.service", "ACL-CHECK done 2", "reboot: Power down",
    );
    const v = judge({ expected: "boot", imageLevel: "x86-64-v3", cpuLevel: "x86-64-v3", bootCase: boot, qemu: okRun, facts: parseConsole(sd) });
    expect(v.passed).toBe(false);
    expect(v.reason).toBe("multi-user: fail degraded; failed-units: fail foo.service; enabled-units: not reported");
  });

  it("judges the CPU refusal: one line, clean power-off, never a panic", () => {
    const refuse = L("acl-init: started", "acl: this image requires x86-64-v3; this CPU lacks: avx avx2", "reboot: Power down");
    const base = { expected: "refuse-cpu" as const, imageLevel: "x86-64-v3" as const, cpuLevel: "x86-64-v2" as const, bootCase: boot, qemu: okRun };
    expect(judge({ ...base, facts: parseConsole(refuse) })).toEqual({ passed: true, reason: "refused cleanly: lacks avx avx2" });
    const panicked = [...refuse.slice(0, 2), ...L("Kernel panic - not syncing: Attempted to kill init!")];
    expect(judge({ ...base, qemu: { ...okRun, exitCode: null }, facts: parseConsole(panicked) }).reason).toMatch(/^kernel panic instead of a clean power-off/);
    expect(judge({ ...base, facts: parseConsole(goodBusybox) }).passed).toBe(false);
  });

  it("judges tampering: corruption plus panic or restart, and nothing of userspace", () => {
    const base = { expected: "refuse-verity" as const, imageLevel: "x86-64-v3" as const, cpuLevel: "x86-64-v3" as const, bootCase: tamper, qemu: { ...okRun, exitCode: null, stoppedBy: "panic" } };
    const panic = L("device-mapper: verity: 254:0: data block 0 is corrupted", "Kernel panic - not syncing: dm-verity device corrupted");
    expect(judge({ ...base, facts: parseConsole(panic) }).passed).toBe(true);
    const restart = L("device-mapper: verity: 254:0: metadata block 7 is corrupted", "reboot: Restarting system with command 'dm-verity device corrupted'");
    expect(judge({ ...base, facts: parseConsole(restart) }).reason).toMatch(/; restart$/);
    expect(judge({ ...base, facts: parseConsole(goodBusybox) }).reason).toBe("tampered /usr reached: ACL-CHECK done, ACL-CHECK userspace");
  });

  it("plans the default matrix from the CPU table", async () => {
    const models = await loadCpuModels();
    const defaults = { at: defaultModelFor(models, "x86-64-v3"), below: defaultModelFor(models, levelBelow("x86-64-v3")!) };
    const defaultCases = cases.filter((c) => c.meta.default !== false);
    // uki-tamper is a default case but is planned only under --secure-boot (test/boot/secureboot-judge.test.ts)
    expect(defaultCases.map((c) => c.name)).toEqual(["boot", "tamper", "uki-tamper"]);
    const plan = planRuns({ imageLevel: "x86-64-v3", cases: defaultCases, cpus: undefined, firmware: undefined, defaults });
    expect(plan.map((p) => `${p.id}:${p.expected}`)).toEqual([
      "boot-Haswell-v4-direct:boot", "boot-Haswell-v4-uefi:boot", "boot-Nehalem-direct:refuse-cpu", "tamper-Haswell-v4-direct:refuse-verity",
    ]);
    const scsi = planRuns({ imageLevel: "x86-64-v3", cases: cases.filter((c) => c.name === "scsi"), cpus: undefined, firmware: undefined, defaults });
    expect(scsi.map((p) => [p.id, p.bootCase.meta.disk])).toEqual([["scsi-Haswell-v4-direct", "virtio-scsi"]]);
    const chosen = planRuns({ imageLevel: "x86-64-v3", cases: defaultCases, cpus: ["qemu64", "EPYC-v3", "max"].map((n) => findModel(models, n)), firmware: ["uefi"], defaults });
    expect(chosen.map((p) => p.id)).toEqual(["boot-qemu64-uefi", "boot-EPYC-v3-uefi", "boot-max-uefi", "tamper-EPYC-v3-uefi"]);
    expect(() => findModel(models, "Pentium")).toThrow(/unknown CPU model 'Pentium'/);
    // no TCG model reaches v4: only the refusal below is planned
    expect(defaultModelFor(models, "x86-64-v4")).toBeUndefined();
    expect(highestLevel(["tls", "x86-64-v2", "x86-64-v3"])).toBe("x86-64-v3");
  });

  it("builds QEMU's argv for both boot paths and writes JUnit XML", () => {
    const common = { disk: "/w/d.qcow2", diskFormat: "qcow2" as const, cpu: "Haswell-v4", serialLog: "/w/s.log", timeoutMs: 1000, smbiosStrings: ["acl.boot-check=1"] };
    const u = qemuArgv({ ...common, firmware: "uefi", ovmfVars: "/w/VARS.fd" });
    expect(u.join(" ")).toContain("-accel tcg -cpu Haswell-v4 -smp 2 -m 1024 -net none -no-reboot");
    expect(u.join(" ")).toContain("-smbios type=11,value=acl.boot-check=1");
    expect(u.join(" ")).toContain("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd");
    expect(u).not.toContain("-kernel");
    const d = qemuArgv({ ...common, firmware: "direct", kernel: "/o/vmlinuz", initrd: "/o/initramfs.img", append: "console=ttyS0" });
    expect(d.slice(-6)).toEqual(["-kernel", "/o/vmlinuz", "-initrd", "/o/initramfs.img", "-append", "console=ttyS0"]);
    expect(d.join(" ")).toContain("-drive file=/w/d.qcow2,format=qcow2,cache=unsafe,if=virtio");
    const scsi = qemuArgv({ ...common, firmware: "direct", kernel: "k", initrd: "i", append: "", diskBus: "virtio-scsi" }).join(" ");
    expect(scsi).toContain("-device virtio-scsi-pci,id=scsi0 -drive file=/w/d.qcow2,format=qcow2,cache=unsafe,if=none,id=disk0 -device scsi-hd,drive=disk0,bus=scsi0.0");
    expect(qemuArgv({ ...common, firmware: "direct", kernel: "k", initrd: "i", append: "", diskBus: "nvme" }).join(" ")).toContain("-device nvme,drive=disk0,serial=acl0");
    const r: BootTestResult = {
      image: { name: "m", version: "1", microarch: "x86-64-v3" }, passed: 1, failed: 1,
      runs: [
        { id: "a", case: "boot", cpu: "Haswell-v4", cpuLevel: "x86-64-v3", firmware: "direct", expected: "boot", passed: true, reason: "ok", durationMs: 1500, checks: [] },
        { id: "b", case: "boot", cpu: "Nehalem", cpuLevel: "x86-64-v2", firmware: "direct", expected: "refuse-cpu", passed: false, reason: "no <refusal> & more", durationMs: 2000, checks: [] },
      ],
    };
    const x = junitXml(r, new Map([["b", "console \u0007tail"]]));
    expect(x).toContain('<testsuites tests="2" failures="1" time="3.500">');
    expect(x).toContain('<failure message="no &lt;refusal&gt; &amp; more">');
    expect(x).toContain("<system-out>console tail</system-out>");
  });
});
