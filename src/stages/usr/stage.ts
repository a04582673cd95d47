/**
 * The usr stage (cached): the /usr filesystem (erofs or squashfs, made
 * reproducibly from the rootfs tree's usr/) with its dm-verity superblock
 * and hash tree appended, as one file: the content of a USR slot. Its sha256
 * is taken once here and kept with the cache entry.
 */
import { join } from "node:path";
import { tools } from "../../adapters/exec.js";
import { deriveSalt, deriveUuid } from "../../formats/verity.js";
import type { VerityInfo } from "../../pipeline/manifest.js";
import type { Stage, StageResult } from "../../pipeline/stage.js";
import { sha256Files } from "../../util/hash.js";
import { formatMiB } from "../../util/size.js";
import { ROOTFS_TREE, type RootfsMeta } from "../rootfs/stage.js";
import { makeUsrImage } from "./mkfs.js";
import { appendVerity } from "./verity.js";

export interface UsrMeta {
  /** Bytes of the filesystem (before the verity superblock). */
  size: number;
  verity: VerityInfo;
  /** Filesystem UUID (derived from name + version). */
  fsUuid: string;
  /** sha256 of USR_IMAGE (filesystem + verity). */
  imageSha256: string;
}

/** Inside the cache entry. */
export const USR_IMAGE = "usr.img";

export const usrStage: Stage<UsrMeta, { rootfs: StageResult<RootfsMeta> }> = {
  name: "usr",
  requires: (spec) => tools(spec.usr.filesystem === "erofs" ? "mkfs.erofs" : "mksquashfs"),
  detail: (ctx) => `${ctx.spec.usr.filesystem} + dm-verity`,
  cacheInputs: async (ctx, { rootfs }) => ({ rootfs: rootfs.id, fs: ctx.spec.usr, ...ids(ctx.spec.name, ctx.spec.version) }),
  async run(ctx, { rootfs }, io) {
    const { spec } = ctx;
    const { salt, fsUuid, verityUuid } = ids(spec.name, spec.version);
    const img = join(io.dir, USR_IMAGE);
    const { size } = await makeUsrImage({
      root: join(rootfs.dir, ROOTFS_TREE),
      outFile: img,
      filesystem: spec.usr.filesystem,
      compression: spec.usr.compression,
      level: spec.usr.compression_level,
      uuid: fsUuid,
      sourceDateEpoch: ctx.epoch,
    });
    const verity = await appendVerity(img, { salt: Buffer.from(salt, "hex"), uuid: verityUuid });
    const [imageSha256] = (await sha256Files([img])) as [string];
    return { size, verity, fsUuid, imageSha256 };
  },
  note: (m) => `${formatMiB(m.size)}, root hash ${m.verity.rootHash.slice(0, 16)}…`,
};

/** Salt and UUIDs of a /usr image, derived from name + version. */
function ids(name: string, version: string): { salt: string; fsUuid: string; verityUuid: string } {
  return { salt: deriveSalt(name, version).toString("hex"), fsUuid: deriveUuid(`${name}-usr-fs`, version), verityUuid: deriveUuid(name, version) };
}
