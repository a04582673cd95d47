/**
 * The boot stage: the kernel from the rootfs entry, a generated initramfs
 * (CPU gate, dm-verity, first-boot factory copy) and the ESP content:
 * systemd-boot and one UKI per /usr slot, each naming its slot's PARTUUID and
 * root hash.
 */
import { constants as fsConstants, copyFile, mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Stage, StageResult } from "../../pipeline/stage.js";
import { UserError } from "../../errors.js";
import type { Slot } from "../../formats/boot-entries.js";
import { formatMiB, MiB } from "../../util/size.js";
import { USR_A_PARTUUID, USR_B_PARTUUID } from "../disk/layout.js";
import { ROOTFS_TREE, ROOTFS_VMLINUZ, type RootfsMeta } from "../rootfs/stage.js";
import type { UsrMeta } from "../usr/stage.js";
import { buildEsp, ESP_LOADERS, ESP_REQUIREMENTS, espUkiPath, SYSTEMD_BOOT_EFI } from "./esp.js";
import { sbsign, SECUREBOOT_REQUIREMENTS } from "./secureboot.js";
import { BOOTED_PHASES, extendPhases, predictUkiPcr11 } from "../../formats/pcr.js";
import type { SlotBootInfo } from "../../pipeline/manifest.js";
import { sha256Hex } from "../../util/hash.js";
import { access, readFile } from "node:fs/promises";
import { INITRAMFS_IMAGE, type InitramfsOut } from "../initramfs/stage.js";

export interface BootOut {
  vmlinuz: string;
  initramfs: string;
  /** Folder that becomes the ESP's content. */
  espDir: string;
  /** Slot A's kernel command line (what a direct-kernel boot passes). */
  cmdline: string;
  /** Every slot's UKI (slot A's is also on the ESP; both go into the update payload). */
  ukis: Record<Slot, string>;
  /** Kernel modules in the initramfs. */
  modules: string[];
  /** Per slot: the UKI's sha256 and size, and the PCR 11 values systemd-stub (and systemd-pcrphase) will measure. */
  slots: Record<Slot, SlotBootInfo>;
  /** ESP paths signed for Secure Boot (empty when unsigned). */
  signed: string[];
}

export const bootStage: Stage<BootOut, { rootfs: StageResult<RootfsMeta>; initramfs: StageResult<InitramfsOut>; usr: StageResult<UsrMeta> }> = {
  name: "boot",
  requires: (spec) => [...ESP_REQUIREMENTS, ...(spec.secureboot ? SECUREBOOT_REQUIREMENTS : [])],
  detail: (_ctx, { rootfs }) => `kernel ${rootfs.value.kernel.release}`,
  async run(ctx, { rootfs, initramfs: initrd, usr }, io) {
    const { spec } = ctx;
    const vmlinuz = join(io.dir, "vmlinuz");
    await copyFile(join(rootfs.dir, ROOTFS_VMLINUZ), vmlinuz);
    // a copy (a reflink where the file system can): the release moves it into the output
    const initramfs = { path: join(io.dir, INITRAMFS_IMAGE), modules: initrd.value.modules };
    await copyFile(join(initrd.dir, INITRAMFS_IMAGE), initramfs.path, fsConstants.COPYFILE_FICLONE);
    const espDir = join(io.dir, "esp");
    await mkdir(espDir);
    const hash = { rootHash: usr.value.verity.rootHash, hashOffset: usr.value.verity.hashOffset };
    const esp = await buildEsp({
      espDir,
      ukiDir: join(io.dir, "ukis"),
      espSlot: "A",
      vmlinuz,
      initramfs: initramfs.path,
      slots: [
        { slot: "A", partUuid: USR_A_PARTUUID.toLowerCase(), ...hash },
        { slot: "B", partUuid: USR_B_PARTUUID.toLowerCase(), ...hash },
      ],
      extraCmdline: spec.kernel.cmdline.join(" "),
      osRelease: { name: spec.name, version: spec.version, microarch: spec.microarch },
      sourceDateEpoch: ctx.epoch,
      firstBoot: Boolean(spec.ignition?.enabled),
      sign: ctx.secureBoot ? (f) => sbsign(f, ctx.secureBoot!, ctx.epoch) : undefined,
    });
    const ukis = Object.fromEntries(esp.ukis.map((u) => [u.slot, u.path])) as Record<Slot, string>;
    await checkEspRoom(spec.partitions.esp, (await stat(ukis.A)).size, spec.specPath);
    const phases = await pcrPhasesRun(join(rootfs.dir, ROOTFS_TREE), spec.init);
    const slots = {} as Record<Slot, SlotBootInfo>;
    for (const slot of ["A", "B"] as const) {
      const bytes = await readFile(ukis[slot]);
      const pcr11 = predictUkiPcr11(bytes);
      slots[slot] = { uki: { sha256: sha256Hex(bytes), size: bytes.length }, pcr11, ...(phases ? { pcr11Ready: extendPhases(pcr11, BOOTED_PHASES) } : {}) };
    }
    const signed = ctx.secureBoot ? [...ESP_LOADERS, espUkiPath("A"), "update:uki-A", "update:uki-B"] : [];
    return { vmlinuz, initramfs: initramfs.path, espDir, cmdline: esp.ukis.find((u) => u.slot === "A")!.cmdline, ukis, modules: initramfs.modules, slots, signed };
  },
  note: (b) => `${b.modules.length} modules in the initramfs${b.signed.length ? `, ${b.signed.length} EFI binaries signed` : ""}`,
};

/** The libraries systemd-pcrphase 252 loads (dlopen) to reach the TPM; without them acl's drop-in skips it (data/guest/pcrphase-tpm2.conf). */
export const PCRPHASE_LIBS = ["libtss2-esys.so.0", "libtss2-rc.so.0", "libtss2-mu.so.0", "libtss2-tcti-device.so.0"] as const;

/**
 * Will systemd-pcrphase extend PCR 11 with "sysinit" and "ready" on this
 * image? Only under systemd, with its units and the TPM2 libraries present
 * (our initramfs is not systemd, so the initrd phase words never happen).
 */
export async function pcrPhasesRun(tree: string, init: string): Promise<boolean> {
  if (init !== "systemd") return false;
  // followed through links, as systemd's ConditionPathExists and the loader see them (util's exists counts a dangling link)
  const resolves = (p: string) => access(join(tree, p)).then(() => true, () => false);
  if (!(await resolves("usr/lib/systemd/system/sysinit.target.wants/systemd-pcrphase.service"))) return false;
  for (const lib of PCRPHASE_LIBS) if (!(await resolves(`usr/lib/x86_64-linux-gnu/${lib}`))) return false;
  return true;
}

/**
 * An update writes the new UKI before the old one of that slot is gone only
 * in the worst case (a retried apply), so the ESP must hold two boot loader
 * copies and three UKIs, with FAT's tables and 1 MiB to spare.
 */
export async function checkEspRoom(espBytes: number, ukiBytes: number, specPath: string): Promise<void> {
  const loader = (await stat(SYSTEMD_BOOT_EFI)).size;
  const data = 2 * loader + 3 * ukiBytes + MiB;
  // FAT32 with 512-byte clusters: two FATs of 4 bytes per cluster, plus the reserved sectors
  const need = Math.ceil((data * (1 + 8 / 512) + MiB) / MiB) * MiB;
  if (need > espBytes)
    throw new UserError(`the ESP (${formatMiB(espBytes)}) cannot hold two UKIs of ${formatMiB(ukiBytes)} and room for a third during an update: it needs ${formatMiB(need)}`, {
      file: specPath,
      key: "partitions.esp",
      hint: `set partitions.esp = "${need / MiB}MiB" or more in the spec`,
    });
}
