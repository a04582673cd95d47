/**
 * ESP content: systemd-boot plus one unified kernel image (UKI) per /usr slot.
 *
 *   EFI/BOOT/BOOTX64.EFI             systemd-boot (the removable-media path firmware boots)
 *   EFI/systemd/systemd-bootx64.efi  systemd-boot (its own path, for boot entries made later)
 *   EFI/Linux/acl-A.efi              slot A's UKI: stub + .osrel + .cmdline + .linux + .initrd
 *   loader/loader.conf               timeout 0, editor off, no default
 *   acl/first_boot                   only with [ignition]: Ignition has not run yet (FIRST_BOOT_FLAG)
 *
 * A UKI is made for each slot; a fresh disk carries slot A's, good
 * (uncounted); slot B's goes into the update payload. Each UKI carries its
 * slot's command line (PARTUUID, root hash, hash offset), so the signed image,
 * not a config file, names the /usr it trusts. loader.conf names no entry:
 * systemd-boot 252's own order decides (formats/boot-entries.ts), and an
 * entry's id changes with every boot-counter rename anyway. Section
 * addresses are the ones Debian's systemd 252 stub boots under OVMF; placing
 * them right after the stub's last section gave "Load Error".
 */
import { copyFile, mkdir, rm, utimes, writeFile, readFile, stat, rename } from "node:fs/promises";
import { dirname, join } from "node:path";
import { run, tools, type Requirement } from "../../adapters/exec.js";
import { UserError } from "../../errors.js";
import { withPeTimestamp } from "../../formats/pe.js";
import type { Reporter } from "../../output/reporter.js";
import { slotEntryName, type Slot } from "../../formats/boot-entries.js";
import { walk } from "../../util/fs.js";

export const SYSTEMD_BOOT_EFI = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
export const UKI_STUB = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/** The ESP's two copies of systemd-boot: the removable-media fallback firmware boots, and its own path. */
/** On the ESP of an image with an [ignition] section, until its first boot has run Ignition successfully (Flatcar keeps flatcar/first_boot there). */
export const FIRST_BOOT_FLAG = "acl/first_boot";
export const ESP_LOADERS = ["EFI/BOOT/BOOTX64.EFI", "EFI/systemd/systemd-bootx64.efi"] as const;

/** The boot loader and stub from systemd-boot-efi, objcopy to make UKIs. */
export const ESP_REQUIREMENTS: readonly Requirement[] = [
  { file: SYSTEMD_BOOT_EFI, package: "systemd-boot-efi" },
  { file: UKI_STUB, package: "systemd-boot-efi" },
  ...tools("objcopy"),
];

/** Section virtual addresses in the UKI (hex, as objcopy takes them). */
export const UKI_SECTIONS = {
  ".osrel": 0x20000,
  ".cmdline": 0x30000,
  ".linux": 0x2000000,
  ".initrd": 0x3000000,
} as const;
/** .linux must end before .initrd starts. */
export const MAX_KERNEL_SIZE = UKI_SECTIONS[".initrd"] - UKI_SECTIONS[".linux"];

/** Parts of every acl command line that do not depend on the slot. */
export const BASE_CMDLINE = "console=ttyS0,115200n8 panic=10 rw";

export type { Slot };

export interface SlotBoot {
  slot: Slot;
  /** PARTUUID of the slot's /usr partition. */
  partUuid: string;
  /** dm-verity root hash (hex) of the slot's /usr. */
  rootHash: string;
  /** Byte offset of the verity superblock in the slot. */
  hashOffset: number;
}

export interface BuildEspOptions {
  /** Folder that becomes the ESP's content (created; existing acl files replaced). */
  espDir: string;
  /** Folder for every slot's UKI (`acl-A.efi`, `acl-B.efi`). */
  ukiDir: string;
  /** The slot whose UKI goes onto the ESP. */
  espSlot: Slot;
  vmlinuz: string;
  initramfs: string;
  slots: SlotBoot[];
  extraCmdline?: string;
  osRelease: { name: string; version: string; microarch: string };
  sourceDateEpoch: number;
  /** Write FIRST_BOOT_FLAG: the image runs Ignition on its first boot. */
  firstBoot?: boolean;
  /** Secure Boot: sign an EFI binary in place (each boot loader copy, and each UKI before it is copied to the ESP). */
  sign?: (file: string) => Promise<void>;
  reporter?: Reporter;
}

export interface EspResult {
  ukis: { slot: Slot; path: string; cmdline: string }[];
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The kernel command line for one slot. The same string goes into the UKI
 * and, for direct-kernel boots, into the manifest's kernel.cmdline.
 */
export function slotCmdline(s: SlotBoot, extra?: string): string {
  if (!UUID_RE.test(s.partUuid)) throw new UserError(`slot ${s.slot}: '${s.partUuid}' is not a partition UUID`);
  if (!/^[0-9a-f]{64}$/.test(s.rootHash)) throw new UserError(`slot ${s.slot}: root hash '${s.rootHash}' is not 64 lowercase hex digits`);
  if (!Number.isSafeInteger(s.hashOffset) || s.hashOffset <= 0 || s.hashOffset % 4096 !== 0) {
    throw new UserError(`slot ${s.slot}: hash offset ${s.hashOffset} must be a positive multiple of 4096`);
  }
  const parts = [
    BASE_CMDLINE,
    `verity.usr=PARTUUID=${s.partUuid.toLowerCase()}`,
    `verity.usrhash=${s.rootHash}`,
    `acl.usr.hashoffset=${s.hashOffset}`,
    `acl.slot=${s.slot}`,
  ];
  if (extra?.trim()) parts.push(extra.trim());
  return parts.join(" ");
}

/** A slot's UKI on a fresh disk's ESP (EFI/Linux/acl-A.efi). */
export function espUkiPath(slot: Slot): string {
  return `EFI/Linux/${ukiFileName(slot)}`;
}

/** File name of a slot's UKI, good (uncounted), as a fresh disk has it under EFI/Linux. */
export function ukiFileName(slot: Slot): string {
  return slotEntryName(slot);
}

/** The UKI's .osrel: IMAGE_ID and IMAGE_VERSION order the entries; ACL_* tell the updater what is installed. */
export function osReleaseText(o: { name: string; version: string; microarch: string }, slot: Slot): string {
  const q = (v: string) => `"${v.replace(/["\\$`]/g, "\\$&")}"`;
  return [
    `NAME=${q(o.name)}`,
    `ID=acl`,
    `VERSION=${q(o.version)}`,
    `VERSION_ID=${q(o.version)}`,
    `PRETTY_NAME=${q(`${o.name} ${o.version} (slot ${slot})`)}`,
    `IMAGE_ID=${q(o.name)}`,
    `IMAGE_VERSION=${q(o.version)}`,
    `ACL_SLOT=${slot}`,
    `ACL_MICROARCH=${q(o.microarch)}`,
    "",
  ].join("\n");
}

export function loaderConf(): string {
  return ["timeout 0", "editor no", "console-mode keep", ""].join("\n");
}

/** Build one UKI with objcopy at the fixed section addresses. */
export async function buildUki(opts: { out: string; vmlinuz: string; initramfs: string; cmdline: string; osrel: string; workDir: string; sourceDateEpoch: number }): Promise<void> {
  const size = (await stat(opts.vmlinuz)).size;
  if (size > MAX_KERNEL_SIZE) {
    throw new UserError(`kernel ${opts.vmlinuz} is ${size} bytes; a UKI here holds at most ${MAX_KERNEL_SIZE} bytes before .initrd`);
  }
  const cmdFile = join(opts.workDir, "cmdline.txt");
  const osrelFile = join(opts.workDir, "os-release");
  await writeFile(cmdFile, opts.cmdline + "\0");
  await writeFile(osrelFile, opts.osrel);
  const sec = (name: keyof typeof UKI_SECTIONS, file: string) => [
    "--add-section", `${name}=${file}`,
    "--change-section-vma", `${name}=0x${UKI_SECTIONS[name].toString(16)}`,
  ];
  const tmp = `${opts.out}.tmp`;
  await run([
    "objcopy",
    ...sec(".osrel", osrelFile),
    ...sec(".cmdline", cmdFile),
    ...sec(".linux", opts.vmlinuz),
    ...sec(".initrd", opts.initramfs),
    UKI_STUB,
    tmp,
  ], {
    env: { SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch) },
    hint: "objcopy comes from binutils; the stub from systemd-boot-efi",
  });
  // objcopy stamps the current time into the COFF header (binutils ignores SOURCE_DATE_EPOCH for PE)
  await writeFile(tmp, withPeTimestamp(await readFile(tmp), opts.sourceDateEpoch));
  await rename(tmp, opts.out);
}


export async function buildEsp(opts: BuildEspOptions): Promise<EspResult> {
  if (!opts.slots.length) throw new UserError("buildEsp: no slots to make boot entries for");
  if (new Set(opts.slots.map((s) => s.slot)).size !== opts.slots.length) throw new UserError("buildEsp: a slot is listed twice");
  const st = opts.reporter?.stage("esp", `systemd-boot + ${opts.slots.length} UKI(s)`);
  const d = opts.espDir;
  for (const sub of ["EFI/BOOT", "EFI/systemd", "EFI/Linux", "loader"]) await mkdir(join(d, sub), { recursive: true });
  for (const loader of ESP_LOADERS) {
    await copyFile(SYSTEMD_BOOT_EFI, join(d, loader));
    await opts.sign?.(join(d, loader));
  }
  if (!opts.slots.some((s) => s.slot === opts.espSlot)) throw new UserError(`buildEsp: slot ${opts.espSlot} has no UKI to put on the ESP`);
  await writeFile(join(d, "loader/loader.conf"), loaderConf());
  if (opts.firstBoot) {
    await mkdir(join(d, dirname(FIRST_BOOT_FLAG)), { recursive: true });
    await writeFile(join(d, FIRST_BOOT_FLAG), "");
  }
  await mkdir(opts.ukiDir, { recursive: true });
  const work = join(d, ".acl-work");
  await mkdir(work, { recursive: true });
  const ukis: EspResult["ukis"] = [];
  try {
    for (const s of [...opts.slots].sort((a, b) => a.slot.localeCompare(b.slot))) {
      const cmdline = slotCmdline(s, opts.extraCmdline);
      const path = join(opts.ukiDir, ukiFileName(s.slot));
      await buildUki({ out: path, vmlinuz: opts.vmlinuz, initramfs: opts.initramfs, cmdline, osrel: osReleaseText(opts.osRelease, s.slot), workDir: work, sourceDateEpoch: opts.sourceDateEpoch });
      await opts.sign?.(path);
      ukis.push({ slot: s.slot, path, cmdline });
      if (s.slot === opts.espSlot) await copyFile(path, join(d, "EFI/Linux", ukiFileName(s.slot)));
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  // fixed times, so an mcopy -m of this folder is reproducible
  const t = new Date(opts.sourceDateEpoch * 1000);
  const paths = [d];
  for await (const e of walk(d)) paths.push(join(d, e.rel));
  for (const p of paths.reverse()) await utimes(p, t, t);
  st?.end();
  return { ukis };
}
