/**
 * The only module that starts QEMU. One call boots one VM: TCG (KVM hangs on
 * the machines this was built on), serial console on stdout, read live,
 * time-stamped and written to a log file; a hard timeout kills QEMU; a set of
 * "stop" patterns (a kernel panic, say) end the run early without waiting
 * for the timeout. Disks are always copy-on-write overlays, so a boot never
 * changes the build output.
 */
import { execa, type ResultPromise } from "execa";
import { createWriteStream } from "node:fs";
import { access, copyFile, mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { run, toolPath } from "./exec.js";
import { UserError } from "../errors.js";

export const QEMU_BINARY = "qemu-system-x86_64";
export const OVMF_CODE = "/usr/share/OVMF/OVMF_CODE.fd";
export const OVMF_VARS = "/usr/share/OVMF/OVMF_VARS.fd";
/**
 * Debian's Secure Boot OVMF (needs SMM) and its variable store with the snakeoil test key in PK,
 * KEK and db, Secure Boot on (key /usr/share/ovmf/PkKek-1-snakeoil.key, passphrase "snakeoil": tests only).
 */
export const OVMF_CODE_SECBOOT = "/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd";
export const OVMF_VARS_SNAKEOIL = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd";

export type Firmware = "uefi" | "direct";
export type DiskBus = "virtio-blk" | "virtio-scsi" | "nvme";

export interface QemuBootOptions {
  /** Disk image to boot (usually a per-run qcow2 overlay). */
  disk: string;
  diskFormat: "qcow2" | "raw";
  /** How the disk is attached (default virtio-blk; virtio-scsi looks like Azure's SCSI disks to the guest). */
  diskBus?: DiskBus;
  cpu: string;
  firmware: Firmware;
  /** Direct-kernel boot (firmware "direct"). */
  kernel?: string;
  initrd?: string;
  append?: string;
  /** UEFI: per-run writable copy of the OVMF variable store (made by prepareOvmfVars). */
  ovmfVars?: string;
  /** UEFI with Secure Boot enforced: the SMM build of OVMF (its vars copy from prepareOvmfVars(dest, true)). */
  secureBoot?: boolean;
  /** A TPM 2.0 (tpm-tis) backed by a swtpm started for this run, its state in this folder. */
  tpmDir?: string;
  /** SMBIOS type 11 vendor strings (seen by the guest in /sys/firmware/dmi/entries/11-*). */
  smbiosStrings?: string[];
  /** QEMU fw_cfg files (`-fw_cfg name=NAME,file=FILE`): Ignition's config, the boot test's probes. */
  fwCfg?: { name: string; file: string }[];
  memoryMiB?: number;
  smp?: number;
  /** Let the guest reboot (A/B scenarios: boot counting needs the loader to run again); default: a reboot ends the run. */
  allowReboot?: boolean;
  /** Extra raw disks (read-only virtio), e.g. an update payload for the on-node updater. */
  extraDisks?: string[];
  accel?: "tcg" | "kvm";
  serialLog: string;
  timeoutMs: number;
  /** End the run as soon as a console line matches (after `graceMs`, to catch trailing lines). */
  stopOn?: RegExp[];
  graceMs?: number;
  /** Called for each console line with milliseconds since QEMU started. */
  onLine?: (line: string, ms: number) => void;
}

export interface QemuBootResult {
  argv: string[];
  /** QEMU's exit code; null when it was killed. */
  exitCode: number | null;
  timedOut: boolean;
  /** The stop pattern that ended the run, if one did. */
  stoppedBy?: string;
  durationMs: number;
  /** Console lines with their time since start. */
  lines: { ms: number; text: string }[];
  stderr: string;
}

/** Build QEMU's argv for a boot (pure; exported for tests and for showing a reproducible command). */
export function qemuArgv(o: QemuBootOptions): string[] {
  if (o.secureBoot && o.firmware !== "uefi") throw new UserError("Secure Boot needs UEFI firmware, not a direct-kernel boot");
  const a = [
    QEMU_BINARY,
    // Secure Boot: SMM keeps the variable store out of the OS's reach, and the flash must be "secure" for it
    "-machine", o.secureBoot ? "q35,smm=on" : "q35",
    ...(o.secureBoot ? ["-global", "driver=cfi.pflash01,property=secure,value=on"] : []),
    "-accel", o.accel ?? "tcg",
    "-cpu", o.cpu,
    "-smp", String(o.smp ?? 2),
    "-m", String(o.memoryMiB ?? 1024),
    "-net", "none",
    ...(o.allowReboot ? [] : ["-no-reboot"]),
    "-display", "none",
    "-vga", "none",
    "-monitor", "none",
    "-parallel", "none",
    "-serial", "stdio",
  ];
  const drive = `file=${o.disk},format=${o.diskFormat},cache=unsafe`;
  switch (o.diskBus ?? "virtio-blk") {
    case "virtio-blk":
      a.push("-drive", `${drive},if=virtio`);
      break;
    case "virtio-scsi":
      a.push("-device", "virtio-scsi-pci,id=scsi0", "-drive", `${drive},if=none,id=disk0`, "-device", "scsi-hd,drive=disk0,bus=scsi0.0");
      break;
    case "nvme":
      a.push("-drive", `${drive},if=none,id=disk0`, "-device", "nvme,drive=disk0,serial=acl0");
      break;
  }
  for (const [i, d] of (o.extraDisks ?? []).entries()) a.push("-drive", `file=${d},format=raw,if=virtio,readonly=on,index=${i + 1}`);
  if (o.tpmDir) {
    a.push("-chardev", `socket,id=chrtpm,path=${tpmSocket(o.tpmDir)}`, "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0");
  }
  for (const s of o.smbiosStrings ?? []) {
    if (s.includes(",")) throw new UserError(`SMBIOS string '${s}' must not contain a comma`);
    a.push("-smbios", `type=11,value=${s}`);
  }
  for (const f of o.fwCfg ?? []) {
    if (!/^opt\/[A-Za-z0-9._\/-]+$/.test(f.name)) throw new UserError(`fw_cfg name '${f.name}' must start with opt/ and hold only letters, digits, '.', '_', '-' and '/'`);
    if (f.file.includes(",")) throw new UserError(`fw_cfg file '${f.file}' must not contain a comma (QEMU's option syntax)`, { hint: "move it to a path without commas" });
    a.push("-fw_cfg", `name=${f.name},file=${f.file}`);
  }
  if (o.firmware === "uefi") {
    if (!o.ovmfVars) throw new UserError("UEFI boot needs a per-run copy of OVMF_VARS.fd");
    a.push(
      "-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${o.secureBoot ? OVMF_CODE_SECBOOT : OVMF_CODE}`,
      "-drive", `if=pflash,format=raw,unit=1,file=${o.ovmfVars}`,
    );
  } else {
    if (!o.kernel || !o.initrd || o.append === undefined) throw new UserError("direct boot needs a kernel, an initramfs and a command line");
    a.push("-kernel", o.kernel, "-initrd", o.initrd, "-append", o.append);
  }
  return a;
}

/** A qcow2 overlay on top of `base` (absolute backing path), so the run never writes the base. */
export async function createOverlay(base: string, overlay: string, baseFormat: "raw" | "qcow2" = "raw"): Promise<void> {
  await run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", baseFormat, "-b", resolve(base), overlay], {
    hint: "qemu-img comes from qemu-utils",
  });
}

/** Per-run writable copy of the OVMF variable store (the snakeoil-keyed one for Secure Boot). */
export async function prepareOvmfVars(dest: string, secureBoot = false): Promise<void> {
  const src = secureBoot ? OVMF_VARS_SNAKEOIL : OVMF_VARS;
  await copyFile(src, dest).catch(() => {
    throw new UserError(`${src} is missing`, { hint: "apt-get install ovmf" });
  });
}

const tpmSocket = (dir: string) => join(dir, "swtpm.sock");

/** Start swtpm (TPM 2.0) on a control socket in `dir`; it ends when QEMU disconnects, or when killed. */
async function startSwtpm(dir: string): Promise<{ child: ResultPromise }> {
  await mkdir(dir, { recursive: true });
  const sock = tpmSocket(dir);
  const child = execa("swtpm", ["socket", "--tpm2", "--tpmstate", `dir=${dir}`, "--ctrl", `type=unixio,path=${sock}`, "--terminate"], {
    reject: false, stdin: "ignore", stdout: "ignore", stderr: "pipe", env: { PATH: toolPath(), LC_ALL: "C" },
  });
  let exited = false;
  void child.then(() => (exited = true));
  for (let i = 0; i < 100; i++) {
    if (await access(sock).then(() => true, () => false)) return { child }; // wrapped: returning the promise itself would wait for swtpm to end
    if (exited) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  const r = await child;
  if ((r as { code?: string }).code === "ENOENT") throw new UserError("swtpm is not installed", { hint: "apt-get install swtpm swtpm-tools" });
  throw new UserError(`swtpm did not open its socket ${sock}: ${String(r.stderr ?? "").trim().split("\n").at(-1) ?? ""}`, { hint: "check that swtpm runs: swtpm socket --tpm2 --help" });
}

/** Read one byte of a disk image at a guest offset (through the block layer, works on overlays). */
export async function readByte(image: string, format: "qcow2" | "raw", offset: number): Promise<number> {
  const r = await run(["qemu-io", "-f", format, "-c", `read -v ${offset} 1`, image]);
  const m = /^[0-9a-f]+:\s+([0-9a-f]{2})/m.exec(r.stdout);
  if (!m) throw new UserError(`qemu-io read at ${offset} gave no bytes: ${r.stdout.trim()}`);
  return parseInt(m[1]!, 16);
}

/** Write one byte into a disk image at a guest offset (qcow2 overlays keep the base intact). */
export async function writeByte(image: string, format: "qcow2" | "raw", offset: number, value: number): Promise<void> {
  await run(["qemu-io", "-f", format, "-c", `write -P ${value} ${offset} 1`, image]);
}

export async function bootQemu(o: QemuBootOptions): Promise<QemuBootResult> {
  const argv = qemuArgv(o);
  const tpm = o.tpmDir ? await startSwtpm(o.tpmDir) : undefined;
  try {
    return await runQemu(o, argv);
  } finally {
    if (tpm) {
      tpm.child.kill("SIGKILL");
      await tpm.child;
    }
  }
}

async function runQemu(o: QemuBootOptions, argv: string[]): Promise<QemuBootResult> {
  const log = createWriteStream(o.serialLog);
  const lines: QemuBootResult["lines"] = [];
  const t0 = performance.now();
  let timedOut = false;
  let stoppedBy: string | undefined;
  let child: ResultPromise;
  try {
    child = execa(argv[0]!, argv.slice(1), {
      reject: false,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      buffer: { stdout: false, stderr: true },
      env: { PATH: toolPath(), LC_ALL: "C" },
    });
  } catch (e) {
    log.end();
    throw e;
  }
  let pending = "";
  const flushLine = (raw: string) => {
    // OVMF and the kernel paint with escape sequences and CRs: keep the text
    // eslint-disable-next-line no-control-regex
    const text = raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r/g, "");
    const ms = Math.round(performance.now() - t0);
    lines.push({ ms, text });
    log.write(`${(ms / 1000).toFixed(3).padStart(8)} ${text}\n`);
    o.onLine?.(text, ms);
    if (!stoppedBy && o.stopOn?.some((re) => re.test(text))) {
      stoppedBy = o.stopOn.find((re) => re.test(text))!.source;
      setTimeout(() => child.kill("SIGKILL"), o.graceMs ?? 1500);
    }
  };
  child.stdout!.setEncoding("latin1");
  child.stdout!.on("data", (chunk: string) => {
    pending += chunk;
    let i: number;
    while ((i = pending.indexOf("\n")) >= 0) {
      flushLine(pending.slice(0, i));
      pending = pending.slice(i + 1);
    }
  });
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, o.timeoutMs);
  const r = await child;
  clearTimeout(timer);
  if (pending) flushLine(pending);
  await new Promise<void>((res) => log.end(res));
  const durationMs = Math.round(performance.now() - t0);
  const stderr = String(r.stderr ?? "");
  if ((r as { code?: string }).code === "ENOENT") {
    throw new UserError(`${QEMU_BINARY} is not installed`, { hint: "apt-get install qemu-system-x86" });
  }
  return {
    argv,
    exitCode: timedOut || stoppedBy || r.isTerminated ? null : (r.exitCode ?? null),
    timedOut: timedOut && !stoppedBy,
    stoppedBy,
    durationMs,
    lines,
    stderr,
  };
}
