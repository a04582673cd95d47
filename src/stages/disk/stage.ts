/**
 * The disk stage: the GPT disk (protective MBR, both headers; ESP, USR-A with
 * the /usr payload, an empty USR-B, OEM, ROOT; Flatcar's A/B attributes),
 * written as a sparse raw file and converted to each requested format
 * (qcow2, fixed VHD with a deterministic footer).
 */
import { join } from "node:path";
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
