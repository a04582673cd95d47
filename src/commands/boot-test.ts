import { Args, Flags } from "@oclif/core";
import { AclCommand } from "../lib/base-command.js";
import { DEFAULT_PARALLEL, DEFAULT_TIMEOUT_SEC, runBootTest, type BootTestResult } from "../services/boot-test.js";

export default class BootTest extends AclCommand<BootTestResult> {
  static override summary = "Boot a built image under QEMU and judge its console";
  static override description =
    "Boot a built image under QEMU (TCG) on CPU models at and below its x86-64 level, with UEFI (OVMF + systemd-boot + UKI) and direct-kernel boots, and judge what the guest printed on its serial console";

  static override examples = [
    "<%= config.bin %> boot-test out/minimal",
    "<%= config.bin %> boot-test out/minimal --cpu Haswell-v4 --cpu Nehalem --firmware uefi",
    "<%= config.bin %> boot-test out/container-host --case boot --junit out/boot.xml --keep-logs out/boot-logs",
    "<%= config.bin %> boot-test out/minimal-signed --secure-boot --tpm --case boot --case uki-tamper",
    "<%= config.bin %> boot-test out/container-host --ignition butane/container-host.bu --ignition-files-dir butane/container-host --firmware direct",
    "<%= config.bin %> boot-test out/minimal --case ab-update --payload out/minimal-v2/minimal-1.1.0.update --key keys/acl-signing.pub",
  ];

  static override args = {
    outDir: Args.string({ description: "output folder of `acl build` (holds manifest.json)", required: true }),
  };

  static override flags = {
    cpu: Flags.string({ description: "QEMU CPU model (repeatable; default: the image level's model and the one just below, from qemu/cpu-models.json)", multiple: true }),
    firmware: Flags.string({ description: "boot path (repeatable; default: uefi and direct at the image's level, direct below it)", options: ["uefi", "direct"], multiple: true }),
    case: Flags.string({ description: "test case from qemu/cases (repeatable; default: all)", multiple: true }),
    timeout: Flags.integer({ description: "seconds before a boot is killed", default: DEFAULT_TIMEOUT_SEC, min: 1 }),
    parallel: Flags.integer({ description: "boots at once", default: DEFAULT_PARALLEL, min: 1 }),
    accel: Flags.string({ description: "QEMU accelerator (kvm only where /dev/kvm works; the CPU table is for tcg)", options: ["tcg", "kvm"], default: "tcg" }),
    junit: Flags.string({ description: "write a JUnit XML report to this file" }),
    "keep-logs": Flags.string({ description: "copy each boot's serial log into this folder (A/B cases: also the disk as the scenario left it, ID.raw)" }),
    payload: Flags.string({ description: "A/B cases (ab-update, ab-bad-verity, ab-bad-health): update payload to apply (repeatable, applied in turn)", multiple: true }),
    key: Flags.string({ description: "A/B cases: public key (PEM) the payloads are signed by" }),
    "secure-boot": Flags.boolean({ description: "boot under Secure Boot (OVMF's SMM build with the snakeoil test key in db): a signed image must boot with the kernel reporting Secure Boot enabled, an unsigned or tampered one (case uki-tamper) be refused by the firmware" }),
    tpm: Flags.boolean({ description: "attach a vTPM (swtpm): PCR 11 read by the guest must equal the manifest's prediction for slot A" }),
    ignition: Flags.string({ helpValue: "FILE", description: "a Butane (translated on the fly) or Ignition config given to the guest through QEMU's fw_cfg: each boot at the image's level boots twice, the first must apply it (every file, link, user, key and unit checked on the guest), the second must keep it and not run Ignition" }),
    "ignition-files-dir": Flags.string({ helpValue: "DIR", description: "folder of a Butane --ignition config's local files (as acl butane -d)", dependsOn: ["ignition"] }),
    tries: Flags.integer({ description: "A/B cases: boot tries each installed payload gets", default: 3, min: 1, max: 15 }),
  };

  async run(): Promise<BootTestResult> {
    const { args, flags } = await this.parse(BootTest);
    const r = await runBootTest({
      outDir: args.outDir,
      cpus: flags.cpu,
      firmware: flags.firmware as ("uefi" | "direct")[] | undefined,
      cases: flags.case,
      timeoutSec: flags.timeout,
      parallel: flags.parallel,
      junitFile: flags.junit,
      keepLogsDir: flags["keep-logs"],
      accel: flags.accel as "tcg" | "kvm",
      payloads: flags.payload,
      key: flags.key,
      tries: flags.tries,
      secureBoot: flags["secure-boot"],
      tpm: flags.tpm,
      ignition: flags.ignition,
      ignitionFilesDir: flags["ignition-files-dir"],
      reporter: this.reporter(),
    });
    if (!this.jsonEnabled()) {
      this.log(`boot-test ${r.image.name} ${r.image.version} (${r.image.microarch})`);
      for (const x of r.runs) {
        const t = `${(x.durationMs / 1000).toFixed(1)} s`.padStart(7);
        this.log(`  ${x.passed ? "PASS" : "FAIL"}  ${x.case.padEnd(7)} ${x.cpu.padEnd(18)} ${x.firmware.padEnd(6)} ${t}  ${x.reason}`);
      }
      this.log(`${r.passed} passed, ${r.failed} failed${r.junit ? ` (JUnit: ${r.junit})` : ""}`);
    }
    if (r.failed) process.exitCode = 1;
    return r;
  }
}
