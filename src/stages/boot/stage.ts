/**
 * The boot stage: the kernel from the rootfs entry, a generated initramfs
 * (CPU gate, dm-verity, first-boot factory copy) and the ESP content:
 * systemd-boot and one UKI per /usr slot, each naming its slot's PARTUUID and
 * root hash.
 */
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Stage, StageResult } from "../../pipeline/stage.js";
import { USR_A_PARTUUID } from "../disk/layout.js";
import { ROOTFS_TREE, ROOTFS_VMLINUZ, type RootfsMeta } from "../rootfs/stage.js";
import type { UsrMeta } from "../usr/stage.js";
import { buildEsp, ESP_REQUIREMENTS } from "./esp.js";
import { buildInitramfs, INITRAMFS_REQUIREMENTS } from "./initramfs.js";

export interface BootOut {
  vmlinuz: string;
  initramfs: string;
  /** Folder that becomes the ESP's content. */
  espDir: string;
  /** Slot A's kernel command line (what a direct-kernel boot passes). */
  cmdline: string;
  /** Kernel modules in the initramfs. */
  modules: string[];
}

export const bootStage: Stage<BootOut, { rootfs: StageResult<RootfsMeta>; usr: StageResult<UsrMeta> }> = {
  name: "boot",
  requires: () => [...INITRAMFS_REQUIREMENTS, ...ESP_REQUIREMENTS],
  detail: (_ctx, { rootfs }) => `kernel ${rootfs.value.kernel.release}`,
  async run(ctx, { rootfs, usr }, io) {
    const { spec } = ctx;
    const vmlinuz = join(io.dir, "vmlinuz");
    await copyFile(join(rootfs.dir, ROOTFS_VMLINUZ), vmlinuz);
    const initramfs = await buildInitramfs({
      release: rootfs.value.kernel.release,
      rootDir: join(rootfs.dir, ROOTFS_TREE),
      microarch: spec.microarch,
      corruption: spec.usr.verity_corruption,
      init: spec.init,
      outFile: join(io.dir, "initramfs.img"),
      sourceDateEpoch: ctx.epoch,
      reporter: ctx.reporter,
    });
    const espDir = join(io.dir, "esp");
    await mkdir(espDir);
    const esp = await buildEsp({
      espDir,
      vmlinuz,
      initramfs: initramfs.path,
      slots: [{ slot: "A", partUuid: USR_A_PARTUUID.toLowerCase(), rootHash: usr.value.verity.rootHash, hashOffset: usr.value.verity.hashOffset }],
      extraCmdline: spec.kernel.cmdline.join(" "),
      osRelease: { name: spec.name, version: spec.version },
      sourceDateEpoch: ctx.epoch,
    });
    return { vmlinuz, initramfs: initramfs.path, espDir, cmdline: esp.ukis[0]!.cmdline, modules: initramfs.modules };
  },
  note: (b) => `${b.modules.length} modules in the initramfs`,
};
