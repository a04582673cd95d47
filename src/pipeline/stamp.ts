/**
 * The output folder's build stamp (.NAME.acl-stamp.json beside the folder
 * NAME, so the output itself stays exactly what the build made): the key of the
 * build that made it and the size, mtime and inode of every file it
 * published. A build whose key is unchanged and whose output still matches
 * its stamp has nothing to do (make's rule: a file nobody touched is the file
 * that was written). Anything else (a missing, added, resized or rewritten
 * file, another key, no stamp) means a full build.
 */
import { readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { walk } from "../util/fs.js";
import { canonicalJson } from "./manifest.js";

/** Where the stamp of an output folder lives. */
export function stampPath(outDir: string): string {
  return join(dirname(outDir), `.${basename(outDir)}.acl-stamp.json`);
}

interface FileStamp {
  size: number;
  mtimeMs: number;
  ino: number;
}

interface Stamp {
  buildKey: string;
  files: Record<string, FileStamp>;
}

async function snapshot(outDir: string): Promise<Record<string, FileStamp>> {
  const files: Record<string, FileStamp> = {};
  for await (const e of walk(outDir)) {
    if (e.stat.isDirectory()) continue;
    files[e.rel] = { size: e.stat.size, mtimeMs: e.stat.mtimeMs, ino: e.stat.ino };
  }
  return files;
}

/** Record the published output (through a temporary file and a rename). */
export async function writeStamp(outDir: string, buildKey: string): Promise<void> {
  const tmp = `${stampPath(outDir)}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, canonicalJson({ buildKey, files: await snapshot(outDir) }));
    await rename(tmp, stampPath(outDir));
  } catch {
    // without a stamp the next build is simply a full one
    await rm(tmp, { force: true });
  }
}

/** Why the output is not up to date for `buildKey`, or undefined when it is. */
export async function staleReason(outDir: string, buildKey: string): Promise<string | undefined> {
  let stamp: Stamp;
  try {
    stamp = JSON.parse(await readFile(stampPath(outDir), "utf8")) as Stamp;
  } catch {
    return "no build stamp in the output folder";
  }
  if (stamp.buildKey !== buildKey) return "the inputs changed";
  // a stamp outlives its folder when the folder is removed by hand
  if (!(await stat(outDir).then((s) => s.isDirectory(), () => false))) return "the output folder is gone";
  const now = await snapshot(outDir);
  for (const [rel, want] of Object.entries(stamp.files)) {
    const got = now[rel];
    if (!got) return `${rel} is missing`;
    if (got.size !== want.size || got.mtimeMs !== want.mtimeMs || got.ino !== want.ino) return `${rel} changed since it was built`;
  }
  const extra = Object.keys(now).find((rel) => !(rel in stamp.files));
  if (extra) return `${extra} was added to the output folder`;
  return undefined;
}
