/**
 * The disk stage: the GPT disk (protective MBR, both headers; ESP, USR-A with
 * the /usr payload, an empty USR-B, OEM, ROOT; Flatcar's A/B attributes),
 * written as a sparse raw file and converted to each requested format
 * (qcow2, fixed VHD with a deterministic footer).
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { diskUsage } from "../../pipeline/cache.js";
import type { Stage, StageResult } from "../../pipeline/stage.js";
import { MiB } from "../../util/size.js";
import type { BootOut } from "../boot/stage.js";
import { USR_IMAGE, type UsrMeta } from "../usr/stage.js";
import { assembleDisk, diskRequirements, type AssembleDiskResult, type DiskInfo } from "./assemble.js";

export interface DiskOut {
  files: AssembleDiskResult["files"];
  disk: DiskInfo;
  /** How full USR-A is, in percent. */
  usrAPercent?: number;
}

export const diskStage: Stage<DiskOut, { usr: StageResult<UsrMeta>; boot: StageResult<BootOut> }> = {
  name: "disk",
  requires: () => diskRequirements(),
  detail: (ctx) => ctx.spec.output.formats.join(", "),
  space: (ctx, input) => diskAndReleaseBytes(ctx.spec.output.formats, input),
  async run(ctx, { usr, boot }, io) {
    const { spec } = ctx;
    const formats = [...spec.output.formats];
    const res = await assembleDisk({
      workDir: join(io.dir, "work"),
      outDir: io.dir,
      name: spec.name,
      version: spec.version,
      sourceDateEpoch: ctx.epoch,
      usrPayload: join(usr.dir, USR_IMAGE),
      espDir: boot.value.espDir,
      sizes: {
        // whole MiB: the spec schema refuses anything else
        espMiB: spec.partitions.esp / MiB,
        usrMiB: spec.partitions.usr / MiB,
        oemMiB: spec.partitions.oem / MiB,
        rootMiB: spec.partitions.root / MiB,
        biosBoot: spec.partitions.bios_boot,
      },
      formats,
      reporter: ctx.reporter,
    });
    return { files: res.files, disk: res.disk, usrAPercent: res.slots.find((s) => s.label === "USR-A")?.percent };
  },
  note: (d) => (d.usrAPercent === undefined ? undefined : `USR-A ${d.usrAPercent}% full`),
};

/** Beyond /usr and the ESP's files, each disk holds its GPT, FAT tables and the OEM and ROOT file systems' metadata. */
const DISK_OVERHEAD = 16 * MiB;

/**
 * What the disk stage and the release write beside the output, on disk: the
 * raw disk (always made; sparse, so /usr, the ESP and the file systems'
 * metadata), the qcow2 and VHD copies of it, and the release's update payload
 * (/usr and both UKIs) and copy of the /usr image.
 */
export async function diskAndReleaseBytes(formats: readonly string[], { usr, boot }: { usr: StageResult<UsrMeta>; boot: StageResult<BootOut> }): Promise<number> {
  const usrBytes = await diskUsage(join(usr.dir, USR_IMAGE));
  const esp = await diskUsage(boot.value.espDir);
  const ukis = (await Promise.all(Object.values(boot.value.ukis).map((u) => stat(u).then((s) => s.size, () => 0)))).reduce((a, b) => a + b, 0);
  const perDisk = usrBytes + esp + DISK_OVERHEAD;
  const disks = 1 + (formats.includes("qcow2") ? 1 : 0) + (formats.includes("vhd") ? 1 : 0);
  return disks * perDisk + (usrBytes + ukis) + usrBytes;
}
