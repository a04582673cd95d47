/**
 * The initramfs /init (busybox sh), rendered from a template. It is the
 * whole early boot of an acl image:
 *   1. CPU gate: /proc/cpuinfo flags against the image's x86-64 level; when
 *      short, one line naming the level and the missing features, then a
 *      clean power-off (never a panic loop).
 *   2. Find the /usr slot named on the kernel command line (PARTUUID), waiting
 *      for the device to appear.
 *   3. veritysetup open with the command line's root hash and hash offset and
 *      the image's corruption policy (panic or restart).
 *   4. Mount ROOT (by GPT partition name, on the same disk) read-write as the
 *      new root, /usr read-only from dm-verity, the merged-/usr skeleton, and
 *      /etc (and /var, /home, … ) from /usr/share/factory on first boot.
 *   5. On the first boot of an image with [ignition] (the ESP holds
 *      FIRST_BOOT_FLAG): Debian's Ignition from the image's /usr, chrooted
 *      into the new root, stages fetch-offline then files; the presets it
 *      wrote; the flag removed only after success. A failure stops the boot.
 *   6. switch_root into systemd or busybox init.
 * Every step prints an `acl-init: ...` marker on the console so a test (or a
 * person on Azure's serial console) sees the last stage reached.
 *
 * The script itself is data/initramfs/init.sh; this module fills in its
 * values.
 *
 * Kernel command line keys (each slot's UKI carries its own values):
 *   verity.usr=PARTUUID=<uuid>     the /usr slot partition (Flatcar's key)
 *   verity.usrhash=<hex>           dm-verity root hash of that slot (Flatcar's key)
 *   acl.usr.hashoffset=<bytes>     where the verity superblock starts in the slot
 *   acl.root=PARTLABEL=<name>      writable root partition (default PARTLABEL=ROOT),
 *                                  searched on the disk that holds the /usr slot
 *   acl.timeout=<seconds>          how long to wait for devices (default 60)
 *   acl.emergency=reboot|poweroff|shell   what a failed boot does (default reboot)
 */
import { BugError } from "../../errors.js";
import { requiredCpuFlags, type Microarch } from "../../formats/microarch.js";
import { dataText } from "../../util/data.js";
import { renderTemplate } from "../../util/template.js";
import { IGNITION_ENGINE } from "../rootfs/ignition.js";
import { FIRST_BOOT_FLAG } from "../boot/esp.js";

export type CorruptionPolicy = "restart" | "panic";
export type InitKind = "systemd" | "busybox";

export interface InitScriptOptions {
  release: string;
  microarch: Microarch;
  corruption: CorruptionPolicy;
  init: InitKind;
  /** Module files to insmod, in load order, relative to /lib/modules/<release>. */
  modules: readonly string[];
  /** Loaded only when /init finds the hardware. */
  hardwareModules?: { hyperv?: readonly string[]; virtioScsi?: readonly string[]; ahci?: readonly string[] };
  /** Loaded only when /usr is not erofs. */
  squashfsModules?: readonly string[];
  /** Run Ignition on first boot: the platforms to read, in order, and the modules that takes (fw_cfg, vfat for the ESP's flag). */
  ignition?: { platforms: readonly string[]; modules: readonly string[] };
}

export const INIT_PATHS: Record<InitKind, string> = {
  systemd: "/usr/lib/systemd/systemd",
  busybox: "/usr/sbin/init",
};

/** The /init template: a real shell file with @KEY@ placeholders. */
export const INIT_TEMPLATE = "initramfs/init.sh";

const SAFE = /^[A-Za-z0-9._+\-/]+$/;

/** Render /init for one image. Values are checked so nothing needs shell quoting. */
export function renderInitScript(o: InitScriptOptions): string {
  const hw = o.hardwareModules ?? {};
  const all = [...o.modules, ...(hw.hyperv ?? []), ...(hw.virtioScsi ?? []), ...(hw.ahci ?? []), ...(o.squashfsModules ?? []), ...(o.ignition?.modules ?? [])];
  for (const [k, v] of [["release", o.release], ...all.map((m) => ["module", m] as const), ...(o.ignition?.platforms ?? []).map((p) => ["platform", p] as const)] as const) {
    if (!SAFE.test(v)) throw new BugError(`initramfs: unsafe ${k} '${v}'`);
  }
  const values: Record<string, string> = {
    MICROARCH: o.microarch,
    REQUIRED: requiredCpuFlags(o.microarch).join(" "),
    CORRUPTION: o.corruption,
    NEXT_INIT: INIT_PATHS[o.init],
    RELEASE: o.release,
    MODULES: o.modules.join(" "),
    HYPERV_MODULES: (hw.hyperv ?? []).join(" "),
    VIRTIO_SCSI_MODULES: (hw.virtioScsi ?? []).join(" "),
    AHCI_MODULES: (hw.ahci ?? []).join(" "),
    SQUASHFS_MODULES: (o.squashfsModules ?? []).join(" "),
    IGNITION: o.ignition ? "1" : "0",
    IGNITION_PLATFORMS: (o.ignition?.platforms ?? []).join(" "),
    IGNITION_MODULES: (o.ignition?.modules ?? []).join(" "),
    FIRST_BOOT_FLAG,
    IGNITION_ENGINE: `/${IGNITION_ENGINE}`,
  };
  return renderTemplate(dataText(INIT_TEMPLATE), values, INIT_TEMPLATE);
}
