/**
 * The /usr filesystem image: erofs (default) or squashfs, reproducible
 * (fixed timestamps and UUID, sorted input handled by the tools), made from
 * the tree's usr/ folder.
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../adapters/exec.js";

export interface UsrImageOptions {
  root: string;
  outFile: string;
  filesystem: "erofs" | "squashfs";
  compression: "none" | "lz4" | "lz4hc";
  /** lz4hc's level (erofs only); mkfs.erofs's default when absent. */
  level?: number;
  uuid: string;
  sourceDateEpoch: number;
}

export async function makeUsrImage(o: UsrImageOptions): Promise<{ size: number }> {
  const src = join(o.root, "usr");
  const env = { SOURCE_DATE_EPOCH: String(o.sourceDateEpoch) };
  if (o.filesystem === "erofs") {
    await run(
      [
        "mkfs.erofs",
        "--quiet",
        `-T${o.sourceDateEpoch}`,
        `-U${o.uuid}`,
        "-Eforce-inode-compact",
        ...(o.compression === "none" ? [] : [`-z${o.compression}${o.compression === "lz4hc" && o.level !== undefined ? `,${o.level}` : ""}`]),
        o.outFile,
        src,
      ],
      { env, hint: "mkfs.erofs comes from erofs-utils" },
    );
  } else {
    await run(
      [
        "mksquashfs",
        src,
        o.outFile,
        "-noappend",
        "-no-progress",
        "-quiet",
        "-all-time",
        String(o.sourceDateEpoch),
        "-mkfs-time",
        String(o.sourceDateEpoch),
        ...(o.compression === "none" ? ["-noI", "-noD", "-noF", "-noX"] : ["-comp", "lz4", ...(o.compression === "lz4hc" ? ["-Xhc"] : [])]),
      ],
      { env },
    );
  }
  return { size: (await stat(o.outFile)).size };
}
