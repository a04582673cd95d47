/**
 * Where a sparse file holds data, as `qemu-img map` reports it (qemu's raw
 * driver asks the file system with SEEK_DATA/SEEK_HOLE). The disk stage reads
 * only these ranges: a hole read from a file just written costs a zeroed page
 * of page cache per 4 KiB, about four times the cost of hashing zeros, and
 * container-host's disk is 2.9 GB with 260 MB of data.
 */
import { run, tools } from "../../adapters/exec.js";
import { UserError } from "../../errors.js";

export const EXTENT_TOOLS = tools("qemu-img");

/** A byte range of a file that may hold data (everything outside reads as zeros). */
export interface Extent {
  start: number;
  length: number;
}

/**
 * The data ranges in `qemu-img map --output=json -f raw` output, merged where they
 * touch, in order. Entries with `"data": false` are holes (or known zeros) and dropped.
 */
export function parseQemuImgMap(json: string, what = "qemu-img map"): Extent[] {
  let entries: unknown;
  try {
    entries = JSON.parse(json);
  } catch (e) {
    throw new UserError(`${what} printed something that is not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(entries)) throw new UserError(`${what} printed JSON that is not a list of extents`);
  const out: Extent[] = [];
  let end = 0;
  for (const [i, x] of entries.entries()) {
    const e = x as { start?: unknown; length?: unknown; data?: unknown };
    if (typeof e.start !== "number" || typeof e.length !== "number" || typeof e.data !== "boolean" || e.start < end || e.length < 0)
      throw new UserError(`${what}: extent ${i} is not {start, length, data} in order: ${JSON.stringify(x)}`);
    end = e.start + e.length;
    if (!e.data || e.length === 0) continue;
    const last = out[out.length - 1];
    if (last && last.start + last.length === e.start) last.length += e.length;
    else out.push({ start: e.start, length: e.length });
  }
  return out;
}

/** The data ranges of a raw (sparse) file. */
export async function dataExtents(path: string): Promise<Extent[]> {
  const r = await run(["qemu-img", "map", "--output=json", "-f", "raw", path], { hint: "qemu-img comes from qemu-utils" });
  return parseQemuImgMap(r.stdout, `qemu-img map ${path}`);
}
