/**
 * The initramfs stage (cached by content): the newc archive is collected
 * first (host busybox, veritysetup and blkid with their libraries, the
 * kernel modules the early boot needs from the rootfs tree, the rendered
 * /init), and its digest is the stage's cache input; compressing it is the
 * part a cache hit saves. A change to the image's content that does not
 * reach those files (an overlay file, a package the initramfs does not
 * copy) reuses the entry. The entry holds initramfs.img.
 */
import { join } from "node:path";
import type { BuildContext, Stage, StageResult } from "../../pipeline/stage.js";
import { sha256Hex } from "../../util/hash.js";
import { formatMiB } from "../../util/size.js";
import { ROOTFS_TREE, type RootfsMeta } from "../rootfs/stage.js";
import { collectInitramfs, INITRAMFS_REQUIREMENTS, writeInitramfs, type InitramfsArchive } from "./initramfs.js";

/** Inside the cache entry. */
export const INITRAMFS_IMAGE = "initramfs.img";

export interface InitramfsOut {
  sha256: string;
  size: number;
  /** Kernel modules in the archive, in dependency order. */
  modules: string[];
  /** The ones /init loads on every boot, in load order. */
  bootModules: string[];
}

type InitramfsInput = { rootfs: StageResult<RootfsMeta> };

// collected once per build: for the cache id, then (on a miss) compressed by run
const collected = new WeakMap<BuildContext, Promise<InitramfsArchive>>();

function collect(ctx: BuildContext, { rootfs }: InitramfsInput): Promise<InitramfsArchive> {
  let p = collected.get(ctx);
  if (!p) {
    const { spec } = ctx;
    p = collectInitramfs({
      release: rootfs.value.kernel.release,
      rootDir: join(rootfs.dir, ROOTFS_TREE),
      microarch: spec.microarch,
      corruption: spec.usr.verity_corruption,
      init: spec.init,
      sourceDateEpoch: ctx.epoch,
      ignition: spec.ignition?.enabled ? { platforms: spec.ignition.platforms } : undefined,
      reporter: ctx.reporter,
    });
    collected.set(ctx, p);
  }
  return p;
}

export const initramfsStage: Stage<InitramfsOut, InitramfsInput> = {
  name: "initramfs",
  requires: () => INITRAMFS_REQUIREMENTS,
  detail: (ctx) => `${ctx.spec.microarch}, ${ctx.spec.init}, ${ctx.spec.usr.verity_corruption} on corruption`,
  // the archive's own bytes, and the compressor that turns them into the file
  cacheInputs: async (ctx, input) => ({ cpio: sha256Hex((await collect(ctx, input)).cpio), gzip: { level: 9, zlib: process.versions.zlib } }),
  async run(ctx, input, io) {
    const r = await writeInitramfs(await collect(ctx, input), join(io.dir, INITRAMFS_IMAGE));
    return { sha256: r.sha256, size: r.size, modules: r.modules, bootModules: r.bootModules };
  },
  note: (m) => `${formatMiB(m.size)}, ${m.modules.length} modules (${m.bootModules.length} loaded at boot)`,
};
