/**
 * Secure Boot and vTPM in the boot test, without booting (pure): what the
 * console of a refused or a trusted boot says and how the judge reads it,
 * which runs --secure-boot / --tpm plan, and QEMU's argv for them. The
 * firmware and kernel lines are verbatim from Debian's OVMF (snakeoil db).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { judge, parseConsole, planRuns } from "../../src/services/boot-test.js";
import { defaultModelFor, findModel, loadCases, loadCpuModels, type BootCase, type CpuModel, type CpuModels } from "../../src/config/qemu-cases.js";
import { OVMF_CODE, OVMF_CODE_SECBOOT, OVMF_VARS_SNAKEOIL, qemuArgv } from "../../src/adapters/qemu.js";
import { UserError } from "../../src/errors.js";
import { BUSYBOX_BOOT, L, okRun } from "./helpers/console.js";

/** A refused boot ends when firmware gives up (boot-test stops QEMU on that line). */
const stoppedRun = { exitCode: null, timedOut: false, stoppedBy: "BdsDxe: No bootable option or device was found", durationMs: 9000 };

const UNSIGNED_REFUSAL = 'BdsDxe: failed to load Boot0002 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0): Access Denied';
const TAMPERED_REFUSAL = "Error loading \\EFI\\Linux\\acl-A.efi: Access Denied";
const SHELL_REFUSAL = 'BdsDxe: failed to start Boot0003 "EFI Internal Shell" from Fv(...)/FvFile(...): Security Violation';
const NO_BOOT = "BdsDxe: No bootable option or device was found.";
const PCR11 = "BF67773A6F3ABA7D261DEA3D00B584D58858837B7CAAEEA02EA9CEE38D7EFC9C";
const pcr11 = PCR11.toLowerCase();

// the passing busybox transcript, booted through the signed UKI under Secure Boot with a vTPM
const signedBoot = L(
  "BdsDxe: loading Boot0002 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x1,0x0)",
  "BdsDxe: starting Boot0002 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x1,0x0)",
  "EFI stub: UEFI Secure Boot is enabled.",
  BUSYBOX_BOOT[0],
  "[    0.000000] secureboot: Secure boot enabled",
  ...BUSYBOX_BOOT.slice(1, -2),
  "ACL-CHECK secureboot ok Secure boot enabled",
  `ACL-CHECK pcr11 ok ${PCR11}`,
  ...BUSYBOX_BOOT.slice(-2),
);
const replace = (lines: { ms: number; text: string }[], from: string, to: string) => lines.map((l) => ({ ...l, text: l.text.replace(from, to) }));

const unsignedLoader = L(UNSIGNED_REFUSAL, SHELL_REFUSAL, NO_BOOT);
const tamperedUki = L(
  "BdsDxe: loading Boot0002 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x1,0x0)",
  "BdsDxe: starting Boot0002 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x1,0x0)",
  TAMPERED_REFUSAL,
  SHELL_REFUSAL,
  NO_BOOT,
);

let cases: BootCase[];
let models: CpuModels;
let defaults: { at?: CpuModel; below?: CpuModel };
const byName = (n: string) => cases.find((c) => c.name === n)!;

beforeAll(async () => {
  cases = await loadCases();
  models = await loadCpuModels();
  defaults = { at: defaultModelFor(models, "x86-64-v3"), below: defaultModelFor(models, "x86-64-v2") };
});

describe("parseConsole: Secure Boot facts", () => {
  it("takes the first refusal line, and no kernel, from a refused unsigned loader and a tampered UKI", () => {
    const u = parseConsole(unsignedLoader);
    expect(u.firmwareRefusal).toBe(UNSIGNED_REFUSAL);
    expect([u.kernelStarted, u.secureBoot, u.checks, u.userspaceMs]).toEqual([false, undefined, [], undefined]);
    const t = parseConsole(tamperedUki);
    expect(t.firmwareRefusal).toBe(TAMPERED_REFUSAL);
    expect(t.kernelStarted).toBe(false);
  });

  it("reads the kernel's Secure Boot state and the guest's PCR 11 from a signed boot", () => {
    const f = parseConsole(signedBoot);
    expect(f.kernelStarted).toBe(true);
    expect(f.firmwareRefusal).toBeUndefined();
    expect(f.secureBoot).toBe("Secure boot enabled");
    expect(f.checks.find((c) => c.name === "secureboot")).toEqual({ name: "secureboot", status: "ok", detail: "Secure boot enabled" });
    expect(f.checks.find((c) => c.name === "pcr11")).toEqual({ name: "pcr11", status: "ok", detail: PCR11 });
    // the EFI stub alone says the kernel started
    expect(parseConsole(L("EFI stub: UEFI Secure Boot is enabled.")).kernelStarted).toBe(true);
    // without the kernel's console line, the guest's dmesg check gives it; "not reported" gives nothing
    expect(parseConsole(L("ACL-CHECK secureboot ok Secure boot enabled")).secureBoot).toBe("Secure boot enabled");
    expect(parseConsole(L("ACL-CHECK secureboot ok not reported by the kernel")).secureBoot).toBeUndefined();
  });
});

describe("judge: refuse-signature", () => {
  const base = () => ({ expected: "refuse-signature" as const, imageLevel: "x86-64-v3" as const, cpuLevel: "x86-64-v3" as const, bootCase: byName("uki-tamper"), qemu: stoppedRun });

  it("passes the unsigned loader and the tampered UKI, naming the refusal", () => {
    expect(judge({ ...base(), bootCase: byName("boot"), facts: parseConsole(unsignedLoader) })).toEqual({ passed: true, reason: `refused before the kernel: ${UNSIGNED_REFUSAL}` });
    expect(judge({ ...base(), facts: parseConsole(tamperedUki) })).toEqual({ passed: true, reason: `refused before the kernel: ${TAMPERED_REFUSAL}` });
  });

  it("fails when the kernel started, even after a refusal", () => {
    const started = L(
      "BdsDxe: starting Boot0002 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x1,0x0)",
      "EFI stub: UEFI Secure Boot is enabled.",
      "[    0.000000] Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org)",
    );
    expect(judge({ ...base(), qemu: { ...okRun, exitCode: null, timedOut: false }, facts: parseConsole(started) })).toEqual({
      passed: false, reason: 'an image the firmware should refuse started; last seen: "Linux version 6.1.0-56-cloud-amd64"',
    });
    const afterRefusal = L(UNSIGNED_REFUSAL, "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path");
    expect(judge({ ...base(), facts: parseConsole(afterRefusal) })).toEqual({
      passed: false, reason: 'an image the firmware should refuse started; last seen: "EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path"',
    });
    // a signed boot that reached userspace is no refusal
    expect(judge({ ...base(), qemu: okRun, facts: parseConsole(signedBoot) })).toEqual({ passed: false, reason: 'an image the firmware should refuse started; last seen: "ACL-CHECK done 0"' });
    // guest checks without a kernel line count too
    expect(judge({ ...base(), facts: parseConsole(L(TAMPERED_REFUSAL, "ACL-CHECK userspace ok x pid1=init")) }).passed).toBe(false);
  });

  it("fails without any refusal line", () => {
    expect(judge({ ...base(), facts: parseConsole(L(NO_BOOT)) })).toEqual({ passed: false, reason: "no refusal by the firmware or the boot loader; nothing recognisable on the console" });
    const notFound = L('BdsDxe: failed to load Boot0002 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0): Not Found', NO_BOOT);
    expect(judge({ ...base(), facts: parseConsole(notFound) }).passed).toBe(false);
    // a hang is a timeout, not a refusal
    const hang = judge({ ...base(), qemu: { exitCode: null, timedOut: true, durationMs: 240_000 }, facts: parseConsole(L("BdsDxe: loading Boot0002 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x1,0x0)")) });
    expect(hang).toEqual({ passed: false, reason: "timed out after 240 s; nothing recognisable on the console" });
  });

  // under Secure Boot OVMF always refuses its own EFI Internal Shell (Boot0003, "Security Violation"): a disk whose
  // loader was not found ("Not Found") was never refused for its signature and must not pass
  it("does not take the firmware's refusal of its own EFI shell for a refusal of the image", () => {
    const notFound = L('BdsDxe: failed to load Boot0002 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0): Not Found', SHELL_REFUSAL, NO_BOOT);
    expect(judge({ ...base(), facts: parseConsole(notFound) }).passed).toBe(false);
  });
});

describe("judge: a trusted boot (Secure Boot on, PCR 11 = manifest)", () => {
  const base = () => ({ expected: "boot" as const, imageLevel: "x86-64-v3" as const, cpuLevel: "x86-64-v3" as const, bootCase: byName("boot"), qemu: okRun });
  const trusted = { secureBoot: true, pcr11 };

  it("passes a signed boot whose kernel saw Secure Boot and whose PCR 11 is the manifest's", () => {
    expect(judge({ ...base(), trusted, facts: parseConsole(signedBoot) })).toEqual({
      passed: true, reason: "busybox: 5 checks ok, hwcaps x86-64-v3; Secure Boot enabled, PCR 11 = manifest (bf67773a6f3aba7d…)",
    });
    // the manifest's value compares case-insensitively too
    expect(judge({ ...base(), trusted: { secureBoot: true, pcr11: PCR11 }, facts: parseConsole(signedBoot) }).passed).toBe(true);
    // Secure Boot only (no TPM): PCR 11 is not asked for
    expect(judge({ ...base(), trusted: { secureBoot: true }, facts: parseConsole(signedBoot) })).toEqual({ passed: true, reason: "busybox: 5 checks ok, hwcaps x86-64-v3; Secure Boot enabled" });
  });

  it("fails when PCR 11 differs, naming both values", () => {
    const other = "0".repeat(64);
    const v = judge({ ...base(), trusted: { secureBoot: true, pcr11: other }, facts: parseConsole(signedBoot) });
    expect(v).toEqual({ passed: false, reason: `PCR 11 is ${pcr11}, the manifest predicts ${other}` });
  });

  it("fails when the guest has no TPM to read PCR 11 from", () => {
    const noTpm = replace(signedBoot, `ACL-CHECK pcr11 ok ${PCR11}`, "ACL-CHECK pcr11 skip no TPM 2.0 with a sha256 bank");
    expect(parseConsole(noTpm).checks.find((c) => c.name === "pcr11")).toEqual({ name: "pcr11", status: "skip", detail: "no TPM 2.0 with a sha256 bank" });
    expect(judge({ ...base(), trusted, facts: parseConsole(noTpm) })).toEqual({ passed: false, reason: "no PCR 11 from the TPM (skip no TPM 2.0 with a sha256 bank)" });
    // without a TPM expectation the skip is fine
    expect(judge({ ...base(), trusted: { secureBoot: true }, facts: parseConsole(noTpm) }).passed).toBe(true);
  });

  it("fails when the kernel said Secure Boot is disabled, or said nothing", () => {
    const off = replace(replace(signedBoot, "secureboot: Secure boot enabled", "secureboot: Secure boot disabled"), "ACL-CHECK secureboot ok Secure boot enabled", "ACL-CHECK secureboot ok Secure boot disabled");
    expect(parseConsole(off).secureBoot).toBe("Secure boot disabled");
    expect(judge({ ...base(), trusted, facts: parseConsole(off) })).toEqual({ passed: false, reason: "the kernel did not report Secure Boot enabled (it said: Secure boot disabled)" });
    const silent = signedBoot.filter((l) => !/secureboot/.test(l.text));
    expect(judge({ ...base(), trusted: { secureBoot: true }, facts: parseConsole(silent) })).toEqual({ passed: false, reason: "the kernel did not report Secure Boot enabled (it said: nothing)" });
    // both problems are named together
    const offOther = judge({ ...base(), trusted: { secureBoot: true, pcr11: "ab".repeat(32) }, facts: parseConsole(off) });
    expect(offOther.reason).toBe(`the kernel did not report Secure Boot enabled (it said: Secure boot disabled); PCR 11 is ${pcr11}, the manifest predicts ${"ab".repeat(32)}`);
    // and without the trusted expectation the same boot passes
    expect(judge({ ...base(), facts: parseConsole(off) })).toEqual({ passed: true, reason: "busybox: 5 checks ok, hwcaps x86-64-v3" });
  });
});

describe("planRuns with --secure-boot and --tpm", () => {
  const plan = (opts: { secureBoot?: { signed: boolean }; tpm?: boolean; cpus?: CpuModel[]; names?: string[] }) =>
    planRuns({
      imageLevel: "x86-64-v3",
      cases: (opts.names ?? ["boot", "uki-tamper", "tamper", "ab-update"]).map(byName),
      cpus: opts.cpus, firmware: undefined, defaults, secureBoot: opts.secureBoot, tpm: opts.tpm,
    }).map((p) => ({ id: p.id, case: p.bootCase.name, cpu: p.cpu.name, firmware: p.firmware, expected: p.expected }));

  it("a signed image: one UEFI run per boot case at the image's level, and the tampered UKI refused", () => {
    expect(plan({ secureBoot: { signed: true } })).toEqual([
      { id: "boot-Haswell-v4-uefi-sb", case: "boot", cpu: "Haswell-v4", firmware: "uefi", expected: "boot" },
      { id: "uki-tamper-Haswell-v4-uefi-sb", case: "uki-tamper", cpu: "Haswell-v4", firmware: "uefi", expected: "refuse-signature" },
    ]);
    // every boot-kind case gets its one run; dm-verity tampering and A/B are not planned
    const all = plan({ secureBoot: { signed: true }, names: cases.map((c) => c.name) });
    expect(all.map((r) => `${r.id}:${r.expected}`)).toEqual([
      "boot-Haswell-v4-uefi-sb:boot", "nvme-Haswell-v4-uefi-sb:boot", "scsi-Haswell-v4-uefi-sb:boot", "uki-tamper-Haswell-v4-uefi-sb:refuse-signature",
    ]);
    expect(all.every((r) => r.firmware === "uefi" && r.cpu === "Haswell-v4")).toBe(true);
    // a chosen CPU at the level is used (the first one that meets it)
    const chosen = plan({ secureBoot: { signed: true }, cpus: ["Nehalem", "EPYC-v3", "max"].map((n) => findModel(models, n)) });
    expect(chosen.map((r) => r.id)).toEqual(["boot-EPYC-v3-uefi-sb", "uki-tamper-EPYC-v3-uefi-sb"]);
  });

  it("an unsigned image: the boot case must be refused too", () => {
    expect(plan({ secureBoot: { signed: false } })).toEqual([
      { id: "boot-Haswell-v4-uefi-sb", case: "boot", cpu: "Haswell-v4", firmware: "uefi", expected: "refuse-signature" },
      { id: "uki-tamper-Haswell-v4-uefi-sb", case: "uki-tamper", cpu: "Haswell-v4", firmware: "uefi", expected: "refuse-signature" },
    ]);
  });

  it("without Secure Boot the tampered-UKI case is never planned", () => {
    expect(plan({ names: ["uki-tamper"] })).toEqual([]);
    expect(plan({ names: ["uki-tamper"], cpus: [findModel(models, "Haswell-v4")] })).toEqual([]);
    expect(planRuns({ imageLevel: "x86-64-v3", cases: [byName("uki-tamper")], cpus: undefined, firmware: ["uefi"], defaults })).toEqual([]);
    expect(plan({ tpm: true, names: ["uki-tamper"] })).toEqual([]);
    // the default plan is unchanged by the case's presence
    expect(plan({ names: ["boot", "uki-tamper", "tamper"] }).map((r) => `${r.id}:${r.expected}`)).toEqual([
      "boot-Haswell-v4-direct:boot", "boot-Haswell-v4-uefi:boot", "boot-Nehalem-direct:refuse-cpu", "tamper-Haswell-v4-direct:refuse-verity",
    ]);
  });

  it("a TPM alone: UEFI runs of the boot cases, expected to boot", () => {
    expect(plan({ tpm: true })).toEqual([{ id: "boot-Haswell-v4-uefi-tpm", case: "boot", cpu: "Haswell-v4", firmware: "uefi", expected: "boot" }]);
    expect(plan({ tpm: true, secureBoot: { signed: true } }).map((r) => `${r.id}:${r.expected}`)).toEqual([
      "boot-Haswell-v4-uefi-sb-tpm:boot", "uki-tamper-Haswell-v4-uefi-sb:refuse-signature",
    ]);
    // no TCG model reaches v4 (boot-test's defaults for it have no model at the level): nothing to plan
    const v4 = { at: defaultModelFor(models, "x86-64-v4"), below: defaultModelFor(models, "x86-64-v3") };
    expect(v4.at).toBeUndefined();
    for (const o of [{ tpm: true }, { secureBoot: { signed: true } }])
      expect(planRuns({ imageLevel: "x86-64-v4", cases: [byName("boot"), byName("uki-tamper")], cpus: undefined, firmware: undefined, defaults: v4, ...o })).toEqual([]);
  });
});

describe("qemuArgv with Secure Boot and a vTPM", () => {
  const common = { disk: "/w/d.qcow2", diskFormat: "qcow2" as const, cpu: "Haswell-v4", serialLog: "/w/s.log", timeoutMs: 1000 };
  const after = (a: string[], flag: string) => a.filter((_, i) => a[i - 1] === flag);

  it("uses the SMM machine, secure flash and the snakeoil-keyed OVMF", () => {
    const a = qemuArgv({ ...common, firmware: "uefi", ovmfVars: "/w/VARS.fd", secureBoot: true });
    expect(after(a, "-machine")).toEqual(["q35,smm=on"]);
    expect(after(a, "-global")).toEqual(["driver=cfi.pflash01,property=secure,value=on"]);
    expect(OVMF_CODE_SECBOOT).toBe("/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd");
    expect(after(a, "-drive")).toEqual([
      "file=/w/d.qcow2,format=qcow2,cache=unsafe,if=virtio",
      "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd",
      "if=pflash,format=raw,unit=1,file=/w/VARS.fd",
    ]);
    // the firmware it names is installed (with its variable store)
    expect([existsSync(OVMF_CODE_SECBOOT), existsSync(OVMF_VARS_SNAKEOIL)]).toEqual([true, true]);
    // without Secure Boot: the plain machine and firmware, no -global
    const plain = qemuArgv({ ...common, firmware: "uefi", ovmfVars: "/w/VARS.fd" });
    expect(after(plain, "-machine")).toEqual(["q35"]);
    expect(plain).not.toContain("-global");
    expect(plain).toContain(`if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`);
    expect(plain.join(" ")).not.toContain("snakeoil");
  });

  it("attaches a TPM 2.0 through swtpm's socket in the TPM folder", () => {
    const a = qemuArgv({ ...common, firmware: "uefi", ovmfVars: "/w/VARS.fd", tpmDir: "/w/run/tpm" });
    expect(after(a, "-chardev")).toEqual(["socket,id=chrtpm,path=/w/run/tpm/swtpm.sock"]);
    expect(after(a, "-tpmdev")).toEqual(["emulator,id=tpm0,chardev=chrtpm"]);
    expect(after(a, "-device")).toEqual(["tpm-tis,tpmdev=tpm0"]);
    const i = a.indexOf("-chardev");
    expect(a.slice(i, i + 6)).toEqual(["-chardev", "socket,id=chrtpm,path=/w/run/tpm/swtpm.sock", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0"]);
    // a TPM does not need Secure Boot
    expect(after(a, "-machine")).toEqual(["q35"]);
    const none = qemuArgv({ ...common, firmware: "uefi", ovmfVars: "/w/VARS.fd" });
    expect(none.filter((x) => /tpm/.test(x))).toEqual([]);
  });

  it("refuses Secure Boot with a direct-kernel boot", () => {
    const direct = { ...common, firmware: "direct" as const, kernel: "/o/vmlinuz", initrd: "/o/initramfs.img", append: "console=ttyS0" };
    expect(() => qemuArgv({ ...direct, secureBoot: true })).toThrow(UserError);
    expect(() => qemuArgv({ ...direct, secureBoot: true })).toThrow("Secure Boot needs UEFI firmware, not a direct-kernel boot");
    expect(qemuArgv({ ...direct, secureBoot: false }).slice(-6)).toEqual(["-kernel", "/o/vmlinuz", "-initrd", "/o/initramfs.img", "-append", "console=ttyS0"]);
  });
});
