/**
 * `acl boot-test OUT_DIR`: boot a built image under QEMU (TCG) on a matrix of
 * CPU models and firmware modes, and judge what the guest printed on its
 * serial console. Reads everything from the build manifest; never writes
 * into OUT_DIR (each run boots a qcow2 overlay in a scratch folder).
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile, access } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { bootQemu, createOverlay, prepareOvmfVars, readByte, writeByte, type Firmware, type QemuBootResult } from "../adapters/qemu.js";
import { requireTools, run as execRun } from "../adapters/exec.js";
import {
  defaultModelFor, findModel, loadCases, loadCpuModels, QEMU_DIR,
  type BootCase, type CpuModel, type Level,
} from "../config/qemu-cases.js";
import { formatReport, loadButane } from "../config/butane.js";
import { UserError, fsReason } from "../errors.js";
import { goJson } from "../formats/butane/translate.js";
import { ENGINE_SPEC, remoteSources } from "../stages/rootfs/ignition.js";
import { CONFIG_FW_CFG, ignitionBootMarkers, judgeIgnition, planIgnitionProbes, PROBES_FW_CFG, withBase, type IgnitionPlan } from "./boot-ignition.js";
import { levelBelow, microarchRank } from "../formats/microarch.js";
import type { Reporter } from "../output/reporter.js";
import { espOffset, readManifest, type Manifest } from "../pipeline/manifest.js";
import { espUkiPath } from "../stages/boot/esp.js";
import { BOOT_CHECK_REQUEST } from "../stages/rootfs/guest-checks.js";
import { makeDir } from "../util/fs.js";
import { mapLimit } from "../util/pool.js";
import { judge, parseConsole, type BootRun, type Expectation } from "./boot-judge.js";
import { runAbScenario } from "./boot-test-ab.js";
import { FatImage } from "../adapters/fat.js";
import { peSections } from "../formats/pe.js";
import { DEFAULT_TRIES } from "./update/apply.js";

export { highestLevel, judge, parseConsole, type BootRun, type ConsoleFacts, type Expectation, type GuestCheck } from "./boot-judge.js";

export const DEFAULT_TIMEOUT_SEC = 240;
export const DEFAULT_PARALLEL = 2;

export interface BootTestOptions {
  outDir: string;
  /** CPU models; default: the image level's model and the one just below. */
  cpus?: string[];
  /** Firmware modes; default per case (boot: direct+uefi at level, direct below; tamper: direct). */
  firmware?: Firmware[];
  /** Cases by name (qemu/cases/NAME); default all. */
  cases?: string[];
  timeoutSec?: number;
  parallel?: number;
  keepLogsDir?: string;
  junitFile?: string;
  qemuDir?: string;
  /** Default tcg: KVM hangs or asserts on the machines this was built on. */
  accel?: "tcg" | "kvm";
  /** A/B cases: update payloads to apply in turn, the public key they are signed by, and the tries each gets. */
  payloads?: string[];
  key?: string;
  tries?: number;
  /** Boot under Secure Boot (OVMF's SMM build, the snakeoil test key in db): a signed image must boot with it on, an unsigned one be refused. */
  secureBoot?: boolean;
  /** Attach a vTPM (swtpm): the guest's PCR 11 must equal the manifest's prediction for slot A. */
  tpm?: boolean;
  /** A Butane or Ignition config handed to the guest through fw_cfg: each boot run boots twice (Ignition applies it; the second boot keeps it and does not run Ignition). */
  ignition?: string;
  /** The files dir of a Butane --ignition config (its `local:` files). */
  ignitionFilesDir?: string;
  reporter?: Reporter;
}

export interface BootTestResult {
  image: { name: string; version: string; microarch: Level };
  runs: BootRun[];
  passed: number;
  failed: number;
  junit?: string;
  logsDir?: string;
}

// --- planning ---------------------------------------------------------------------

export interface PlannedRun {
  id: string;
  bootCase: BootCase;
  cpu: CpuModel;
  firmware: Firmware;
  expected: Expectation;
}

export function planRuns(opts: {
  imageLevel: Level;
  cases: BootCase[];
  cpus: CpuModel[] | undefined;
  firmware: Firmware[] | undefined;
  defaults: { at?: CpuModel; below?: CpuModel };
  /** Secure Boot runs: UEFI only, one run per boot case at the image's level; `signed` says whether the image should pass. */
  secureBoot?: { signed: boolean };
  /** A vTPM is attached: PCR 11 is only measured through the UKI, so UEFI only. */
  tpm?: boolean;
  /** Provisioning runs: only boots at the image's level (below it the CPU gate stops the boot before Ignition). */
  ignition?: boolean;
}): PlannedRun[] {
  const runs: PlannedRun[] = [];
  const meets = (c: CpuModel) => microarchRank(c.level) >= microarchRank(opts.imageLevel);
  if (opts.secureBoot || opts.tpm) {
    // chosen CPUs all below the image's level give no run (the caller says so), rather than a silent default
    const cpu = opts.cpus ? opts.cpus.find(meets) : opts.defaults.at;
    if (!cpu) return runs;
    for (const bc of opts.cases) {
      if (bc.meta.kind === "uki-tamper" && opts.secureBoot) runs.push({ id: `${bc.name}-${cpu.name}-uefi-sb`, bootCase: bc, cpu, firmware: "uefi", expected: "refuse-signature" });
      if (bc.meta.kind !== "boot") continue;
      const expected: Expectation = opts.secureBoot && !opts.secureBoot.signed ? "refuse-signature" : "boot";
      runs.push({ id: `${bc.name}-${cpu.name}-uefi${opts.secureBoot ? "-sb" : ""}${opts.tpm ? "-tpm" : ""}`, bootCase: bc, cpu, firmware: "uefi", expected });
    }
    return runs;
  }
  for (const bc of opts.cases) {
    if (bc.meta.kind === "uki-tamper") continue; // only means something under Secure Boot
    if (opts.ignition && bc.meta.kind !== "boot") continue;
    if (bc.meta.kind === "ab") {
      // one scenario, UEFI from the disk alone (boot counting lives in the loader), on a CPU at the image's level
      const cpu = opts.cpus?.find(meets) ?? opts.defaults.at;
      if (cpu) runs.push({ id: `${bc.name}-${cpu.name}-uefi`, bootCase: bc, cpu, firmware: "uefi", expected: bc.meta.ab?.break === "none" || bc.meta.ab?.break === "interrupt" ? "ab-update" : "ab-fallback" });
      continue;
    }
    let pairs: { cpu: CpuModel; fw: Firmware }[] = [];
    const add = (cpu: CpuModel | undefined, fws: Firmware[]) => {
      if (cpu) for (const fw of fws) pairs.push({ cpu, fw });
    };
    if (opts.cpus) {
      for (const cpu of opts.cpus) {
        if (bc.meta.kind === "tamper" && !meets(cpu)) continue;
        const fws = opts.firmware ?? (meets(cpu) ? bc.meta.matrix.atLevel : bc.meta.matrix.belowLevel);
        add(cpu, fws.length ? fws : ["direct"]);
      }
      if (bc.meta.kind === "tamper") pairs = pairs.slice(0, 1);
    } else {
      add(opts.defaults.at, opts.firmware ?? bc.meta.matrix.atLevel);
      if (bc.meta.kind !== "tamper") add(opts.defaults.below, opts.firmware ?? bc.meta.matrix.belowLevel);
    }
    if (opts.ignition) pairs = pairs.filter((x) => meets(x.cpu));
    for (const { cpu, fw } of pairs) {
      const expected: Expectation = bc.meta.kind === "tamper" ? "refuse-verity" : meets(cpu) ? "boot" : "refuse-cpu";
      runs.push({ id: `${bc.name}-${cpu.name}-${fw}`, bootCase: bc, cpu, firmware: fw, expected });
    }
  }
  return runs;
}

// --- running ------------------------------------------------------------------------

/** The ESP's slot A UKI as a fresh disk has it. */
export const ESP_UKI = espUkiPath("A");

/**
 * Flip one byte in the middle of the ESP's UKI's .linux section (in a raw
 * copy, never the build output): the Authenticode hash no longer matches its
 * signature, so Secure Boot firmware must refuse to start it.
 */
export async function flipUkiByte(rawDisk: string, m: Manifest, workDir: string): Promise<{ offset: number }> {
  const esp = espOffset(m);
  if (esp === undefined) throw new UserError("the manifest lists no EFI-SYSTEM partition", { hint: "boot-test needs the disk layout in manifest.disk" });
  const fat = new FatImage(rawDisk, esp);
  const uki = await fat.read(ESP_UKI);
  const linux = peSections(uki).find((s) => s.name === ".linux");
  if (!linux) throw new UserError(`${ESP_UKI} on the ESP has no .linux section`);
  const offset = linux.rawOffset + Math.floor(linux.rawSize / 2);
  uki[offset] = uki[offset]! ^ 0x01;
  const local = join(workDir, "tampered.efi");
  await writeFile(local, uki);
  await fat.write(local, ESP_UKI);
  await rm(local, { force: true });
  return { offset };
}

function artifactPath(m: Manifest, outDir: string, kinds: string[]): { path: string; kind: string } | undefined {
  for (const k of kinds) {
    const a = m.artifacts.find((x) => x.kind === k);
    if (a) return { path: join(outDir, a.path), kind: k };
  }
  return undefined;
}

const xml = (s: string) => s.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]!).replace(/[\x00-\x08\x0b\x0c\x0e-\x1f]/g, "");

export function junitXml(r: BootTestResult, tails: Map<string, string>): string {
  const total = r.runs.reduce((s, x) => s + x.durationMs, 0) / 1000;
  const cases = r.runs.map((x) => {
    const head = `    <testcase classname="acl.boot-test.${xml(x.case)}" name="${xml(`${x.cpu} ${x.firmware} (${x.expected})`)}" time="${(x.durationMs / 1000).toFixed(3)}">`;
    const body = x.passed ? "" : `\n      <failure message="${xml(x.reason)}">${xml(x.reason)}</failure>`;
    const out = tails.get(x.id) ? `\n      <system-out>${xml(tails.get(x.id)!)}</system-out>` : "";
    return `${head}${body}${out}\n    </testcase>`;
  });
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<testsuites tests="${r.runs.length}" failures="${r.failed}" time="${total.toFixed(3)}">`,
    `  <testsuite name="acl boot-test ${xml(r.image.name)} ${xml(r.image.version)}" tests="${r.runs.length}" failures="${r.failed}" time="${total.toFixed(3)}">`,
    ...cases,
    `  </testsuite>`,
    `</testsuites>`,
    "",
  ].join("\n");
}

/** The --ignition config: Ignition JSON as given, or Butane translated as `acl butane` would. */
export async function loadIgnitionInput(file: string, filesDir: string | undefined, m: Manifest, outDir: string, reporter?: Reporter): Promise<{ json: string; plan: IgnitionPlan }> {
  if (!m.ignition) throw new UserError(`${m.name} ${m.version} does not run Ignition: its spec has no [ignition] section`, { file: join(outDir, "manifest.json"), hint: 'add an [ignition] section to the spec and "ignition" to its packages, then rebuild' });
  if (!m.ignition.platforms.includes("qemu"))
    throw new UserError(`${m.name} reads Ignition configs only from ${m.ignition.platforms.join(", ")}; --ignition hands the config to QEMU's fw_cfg`, { file: join(outDir, "manifest.json"), hint: 'add "qemu" to [ignition] platforms and rebuild' });
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new UserError(`cannot read ${file}: ${fsReason(e)}`, { file, key: "--ignition", hint: "pass a Butane (.bu) or Ignition (.ign) file" });
  }
  let config: Record<string, unknown>;
  let version: string | undefined;
  const isJson = /^\s*\{/.test(text);
  if (isJson) {
    try {
      config = JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      throw new UserError(`${file} is not valid JSON: ${(e as Error).message}`, { file, hint: "pass an Ignition config, or a Butane YAML file" });
    }
    version = (config.ignition as { version?: unknown } | undefined)?.version as string | undefined;
    if (typeof version !== "string") throw new UserError(`${file} has no ignition.version`, { file, key: "ignition.version", hint: `an Ignition config starts {"ignition": {"version": "${ENGINE_SPEC}"}, …}` });
  } else {
    if (filesDir && !(await stat(filesDir).catch(() => undefined))?.isDirectory()) throw new UserError(`--ignition-files-dir ${filesDir} is not a folder`, { file: filesDir, hint: "pass the folder that holds the config's local files" });
    const r = await loadButane({ text, name: file }, { filesDir });
    for (const w of r.warnings) reporter?.warn(formatReport(file, w));
    config = r.config;
    version = r.ignitionVersion;
  }
  if (!/^3\.[0-3]\.0$/.test(version))
    throw new UserError(`${file} is Ignition spec ${version}; the image's Ignition (Debian's 2.14) applies 3.0.0 to ${ENGINE_SPEC}`, { file, key: "ignition.version", hint: "write it as Butane variant: flatcar, version: 1.0.0 (Ignition 3.3.0)" });
  const remote = remoteSources(config);
  if (remote.length) throw new UserError(`${file} names remote sources, which the image's initramfs cannot fetch (it has no network): ${remote.join(", ")}`, { file, hint: "inline the contents (Butane: inline or local with --ignition-files-dir)" });
  // the image's base config applies too, under the user's
  const user = planIgnitionProbes(config);
  const plan = m.ignition.base ? withBase(user, planIgnitionProbes(JSON.parse(m.ignition.base.config) as Record<string, unknown>)) : user;
  return { json: isJson ? text : goJson(config), plan };
}

/** One boot of a provisioning run: the usual checks, what the initramfs said about Ignition, and the probes. */
export function judgeProvisioning(plan: IgnitionPlan, lines: readonly string[], which: "first" | "again", base: { passed: boolean; reason: string }): { passed: boolean; reason: string } {
  const mk = ignitionBootMarkers(lines);
  if (mk.failure) {
    const said = lines.find((l) => /ignition: (CRITICAL|ERROR) /.test(l))?.replace(/^.*ignition: /, "").trim();
    return { passed: false, reason: `${mk.failure}${said ? ` (${said})` : ""}` };
  }
  if (which === "first") {
    if (!mk.ran) return { passed: false, reason: "Ignition did not run on the first boot (no first-boot flag on the ESP, or an image built without [ignition])" };
    if (!mk.done) return { passed: false, reason: `Ignition ran but the first boot was not marked done${base.passed ? "" : `: ${base.reason}`}` };
  } else {
    if (mk.ran) return { passed: false, reason: "Ignition ran again: the first-boot flag was not removed" };
    if (!mk.skipped) return { passed: false, reason: `the initramfs did not report skipping Ignition${base.passed ? "" : `: ${base.reason}`}` };
  }
  if (!base.passed) return base;
  const problems = judgeIgnition(plan, lines);
  if (problems.length) return { passed: false, reason: `${which === "first" ? "after Ignition" : "on the second boot"}: ${problems.join("; ")}` };
  const n = plan.expect.length;
  return { passed: true, reason: which === "first" ? `Ignition applied the config, ${n} probes ok; ${base.reason}` : `second boot skipped Ignition and kept all ${n}` };
}

export async function runBootTest(opts: BootTestOptions): Promise<BootTestResult> {
  const outDir = resolve(opts.outDir);
  const manifest = await readManifest(outDir);
  const qemuDir = opts.qemuDir ?? QEMU_DIR;
  const models = await loadCpuModels(qemuDir);
  let cases = await loadCases(qemuDir);
  if (opts.cases?.length) {
    const unknown = opts.cases.filter((n) => !cases.some((c) => c.name === n));
    if (unknown.length) throw new UserError(`unknown boot-test case: ${unknown.join(", ")}`, { hint: `cases are folders in ${join(qemuDir, "cases")}: ${cases.map((c) => c.name).join(", ")}` });
    cases = cases.filter((c) => opts.cases!.includes(c.name));
    const sbOnly = cases.find((c) => c.meta.kind === "uki-tamper");
    if (sbOnly && !opts.secureBoot) throw new UserError(`case ${sbOnly.name} needs --secure-boot: without it firmware boots a tampered UKI`, { hint: `acl boot-test ${opts.outDir} --secure-boot --case ${sbOnly.name}` });
  } else {
    cases = cases.filter((c) => c.meta.default !== false);
  }
  const imageLevel = manifest.microarch;
  const cpus = opts.cpus?.length ? opts.cpus.map((n) => findModel(models, n)) : undefined;
  const below = levelBelow(imageLevel);
  const defaults = { at: defaultModelFor(models, imageLevel), below: below ? defaultModelFor(models, below) : undefined };
  if (!cpus && !defaults.at) opts.reporter?.warn(`no QEMU ${models.accel} CPU model reaches ${imageLevel}: only the refusal below it is tested`);
  if ((opts.secureBoot || opts.tpm) && opts.firmware?.includes("direct")) {
    throw new UserError(`${opts.secureBoot ? "--secure-boot" : "--tpm"} boots through the firmware and the UKI: it cannot be combined with --firmware direct`, { hint: "drop --firmware (UEFI is used)" });
  }
  const signed = Boolean(manifest.boot?.secureBoot);
  const plan = planRuns({ imageLevel, cases, cpus, firmware: opts.firmware, defaults, secureBoot: opts.secureBoot ? { signed } : undefined, tpm: opts.tpm, ignition: Boolean(opts.ignition) });
  if (opts.tpm && !manifest.boot) throw new UserError(`${join(outDir, "manifest.json")} has no PCR 11 prediction (boot.slots)`, { hint: "rebuild the image with this acl" });
  if (opts.secureBoot && !signed) opts.reporter?.warn("the image is not Secure Boot signed: firmware must refuse it (rebuild with --secureboot-key/--secureboot-cert to boot it)");
  const trusted = opts.secureBoot || opts.tpm
    ? { secureBoot: Boolean(opts.secureBoot), pcr11: opts.tpm ? (manifest.boot!.slots.A.pcr11Ready ?? manifest.boot!.slots.A.pcr11) : undefined }
    : undefined;
  const provisioning = opts.ignition ? await loadIgnitionInput(opts.ignition, opts.ignitionFilesDir, manifest, outDir, opts.reporter) : undefined;
  if (!plan.length) throw new UserError("nothing to boot: the chosen CPU models, firmware and cases give no runs", { hint: "drop --cpu/--case or pick a CPU at the image's level" });

  const disk = artifactPath(manifest, outDir, ["disk-raw", "disk-qcow2"]);
  if (!disk) throw new UserError(`${join(outDir, "manifest.json")} lists no disk-raw or disk-qcow2 artifact`, { hint: "rebuild with a disk output format (raw or qcow2)" });
  const kernel = artifactPath(manifest, outDir, ["kernel"]);
  const initrd = artifactPath(manifest, outDir, ["initramfs"]);
  const needsDirect = plan.some((p) => p.firmware === "direct");
  if (needsDirect && (!kernel || !initrd || !manifest.kernel?.cmdline)) {
    throw new UserError("direct-kernel boot needs kernel and initramfs artifacts and kernel.cmdline in the manifest", { hint: "use --firmware uefi, or rebuild with acl build" });
  }
  const abRuns = plan.filter((p) => p.bootCase.meta.kind === "ab");
  if (abRuns.length && (!opts.payloads?.length || !opts.key))
    throw new UserError(`case ${abRuns[0]!.bootCase.name} applies update payloads: pass --payload FILE (repeatable) and --key PUB`, {
      hint: "build a newer version of the image with the same signing key; its NAME-VERSION.update is the payload",
    });
  const tools = ["qemu-system-x86_64", "qemu-img"];
  if (plan.some((p) => p.bootCase.meta.kind === "tamper")) tools.push("qemu-io");
  if (opts.tpm) tools.push("swtpm");
  await requireTools(tools);
  for (const p of [disk.path, kernel?.path, initrd?.path]) if (p) await access(p).catch(() => { throw new UserError(`artifact ${p} is missing`, { hint: "rebuild the image; boot-test reads what the manifest lists" }); });

  const scratch = await mkdtemp(join(tmpdir(), "acl-boot-test-"));
  const timeoutMs = (opts.timeoutSec ?? DEFAULT_TIMEOUT_SEC) * 1000;
  const tails = new Map<string, string>();
  try {
    const fwCfg: { name: string; file: string }[] = [];
    if (provisioning) {
      await writeFile(join(scratch, "config.ign"), provisioning.json);
      await writeFile(join(scratch, "probes"), provisioning.plan.probes);
      fwCfg.push({ name: CONFIG_FW_CFG, file: join(scratch, "config.ign") }, { name: PROBES_FW_CFG, file: join(scratch, "probes") });
      if (provisioning.plan.skipped.length) opts.reporter?.warn(`not probed on the guest (a space in the name): ${provisioning.plan.skipped.join(", ")}`);
    }
    // one run's setup failure (qemu-img, qemu-io, a missing partition) fails that run, not the others
    const runs = await mapLimit(plan, opts.parallel ?? DEFAULT_PARALLEL, (p) =>
      runOne(p).catch((e: unknown): BootRun => ({
        id: p.id, case: p.bootCase.name, cpu: p.cpu.name, cpuLevel: p.cpu.level, firmware: p.firmware, expected: p.expected,
        passed: false, reason: `could not run: ${(e as Error).message.split("\n")[0]}`, durationMs: 0, checks: [],
      })),
    );
    async function runOne(p: PlannedRun): Promise<BootRun> {
      const st = opts.reporter?.stage(`boot ${p.id}`, `expect ${p.expected}`);
      const dir = join(scratch, p.id);
      await mkdir(dir, { recursive: true });
      if (p.bootCase.meta.kind === "ab") {
        const serialLog = join(dir, "serial.log");
        const r = await runAbScenario({
          id: p.id, bootCase: p.bootCase, cpu: p.cpu, disk: disk!, payloads: opts.payloads ?? [], key: opts.key ?? "",
          tries: opts.tries ?? DEFAULT_TRIES, dir, timeoutMs, accel: opts.accel ?? "tcg", imageLevel, serialLog,
        });
        const { lines, ...run } = r;
        tails.set(p.id, lines.slice(-40).join("\n"));
        if (opts.keepLogsDir) {
          await makeDir(opts.keepLogsDir);
          run.log = join(resolve(opts.keepLogsDir), `${p.id}.log`);
          await writeFile(run.log, lines.join("\n") + "\n");
          // the disk as the scenario left it, for `acl inspect`, cgpt and bootctl
          await execRun(["cp", "--sparse=always", join(dir, "disk.raw"), join(resolve(opts.keepLogsDir), `${p.id}.raw`)]);
        }
        await rm(dir, { recursive: true, force: true });
        st?.end({ note: `${run.passed ? "PASS" : "FAIL"}: ${run.reason}` });
        return run;
      }
      let bootDisk = join(dir, "disk.qcow2");
      let bootFormat: "qcow2" | "raw" = "qcow2";
      if (p.bootCase.meta.kind === "uki-tamper") {
        // the UKI is rewritten through the ESP's file system, which mtools reaches only in a raw image
        bootDisk = join(dir, "disk.raw");
        bootFormat = "raw";
        if (disk!.kind === "disk-raw") await execRun(["cp", "--sparse=always", disk!.path, bootDisk]);
        else await execRun(["qemu-img", "convert", "-O", "raw", disk!.path, bootDisk]);
        await flipUkiByte(bootDisk, manifest, dir);
      } else {
        await createOverlay(disk!.path, bootDisk, disk!.kind === "disk-raw" ? "raw" : "qcow2");
      }
      const overlay = bootDisk;
      if (p.bootCase.meta.tamper) {
        const t = p.bootCase.meta.tamper;
        const part = manifest.disk?.partitions.find((x) => x.label === t.partition);
        if (!part) throw new UserError(`the manifest has no partition ${t.partition} (needed by case ${p.bootCase.name})`, { hint: "boot-test needs the disk layout in manifest.disk" });
        const off = part.firstLba * (manifest.disk!.sectorSize) + t.offset;
        const b = await readByte(overlay, "qcow2", off);
        await writeByte(overlay, "qcow2", off, b ^ 0xff);
      }
      let vars: string | undefined;
      if (p.firmware === "uefi") {
        vars = join(dir, "OVMF_VARS.fd");
        await prepareOvmfVars(vars, opts.secureBoot);
      }
      const bootOnce = async (serialLog: string) => {
        const q = await bootQemu({
          disk: overlay, diskFormat: bootFormat, diskBus: p.bootCase.meta.disk, cpu: p.cpu.name, firmware: p.firmware,
          secureBoot: opts.secureBoot, tpmDir: opts.tpm && p.expected === "boot" ? join(dir, "tpm") : undefined,
          kernel: kernel?.path, initrd: initrd?.path, append: manifest.kernel?.cmdline,
          ovmfVars: vars, smbiosStrings: [BOOT_CHECK_REQUEST] /* through SMBIOS type 11: works for sealed UKI command lines too */, serialLog, timeoutMs, accel: opts.accel ?? "tcg",
          fwCfg: p.expected === "boot" ? fwCfg : undefined,
          // firmware that refused every boot option waits for a key press forever; a failed Ignition run reboots
          stopOn: [/Kernel panic - not syncing/, /BdsDxe: No bootable option or device was found/, ...(provisioning ? [/acl-init: FATAL: /] : [])], graceMs: 1500,
        });
        const facts = parseConsole(q.lines);
        const verdict = judge({ expected: p.expected, facts, qemu: q, imageLevel, cpuLevel: p.cpu.level, bootCase: p.bootCase, trusted: p.expected === "boot" ? trusted : undefined });
        return { q, facts, verdict };
      };
      const serialLog = join(dir, "serial.log");
      const first = await bootOnce(serialLog);
      let { q, facts, verdict } = first;
      let durationMs = q.durationMs;
      const logs = [serialLog];
      if (provisioning && p.expected === "boot") {
        // the first boot applies the config; the second, of the same disk, keeps it and runs no Ignition
        const texts = (r: QemuBootResult) => r.lines.map((l) => l.text);
        const v1 = judgeProvisioning(provisioning.plan, texts(q), "first", verdict);
        verdict = v1;
        if (v1.passed) {
          const again = await bootOnce(join(dir, "serial-2.log"));
          logs.push(join(dir, "serial-2.log"));
          durationMs += again.q.durationMs;
          const v2 = judgeProvisioning(provisioning.plan, texts(again.q), "again", again.verdict);
          verdict = v2.passed ? { passed: true, reason: `${v1.reason}; then ${v2.reason}` } : { passed: false, reason: `second boot: ${v2.reason}` };
          q = again.q;
          facts = again.facts;
        }
      }
      tails.set(p.id, q.lines.slice(-40).map((l) => l.text).join("\n"));
      let log: string | undefined;
      if (opts.keepLogsDir) {
        await makeDir(opts.keepLogsDir);
        log = join(resolve(opts.keepLogsDir), `${p.id}.log`);
        await copyFile(logs[0]!, log);
        if (logs[1]) await copyFile(logs[1], join(resolve(opts.keepLogsDir), `${p.id}-2.log`));
      }
      await rm(dir, { recursive: true, force: true });
      st?.end({ note: `${verdict.passed ? "PASS" : "FAIL"}: ${verdict.reason}` });
      return {
        id: p.id, case: p.bootCase.name, cpu: p.cpu.name, cpuLevel: p.cpu.level, firmware: p.firmware, expected: p.expected,
        passed: verdict.passed, reason: verdict.reason, durationMs, userspaceMs: first.facts.userspaceMs,
        lastMarker: facts.lastMarker, checks: facts.checks, log,
      };
    }
    const result: BootTestResult = {
      image: { name: manifest.name, version: manifest.version, microarch: imageLevel },
      runs,
      passed: runs.filter((r) => r.passed).length,
      failed: runs.filter((r) => !r.passed).length,
      logsDir: opts.keepLogsDir ? resolve(opts.keepLogsDir) : undefined,
    };
    if (opts.junitFile) {
      await makeDir(dirname(resolve(opts.junitFile)));
      await writeFile(opts.junitFile, junitXml(result, tails));
      result.junit = resolve(opts.junitFile);
    }
    return result;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
