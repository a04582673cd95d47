/**
 * File-system helpers every layer shares: existence without following the
 * last symlink, and the one sorted tree walk (reproducible order: names
 * sorted by code unit, a folder before its content, symlinks not followed).
 */
import { lstatSync, readdirSync, type Stats } from "node:fs";
import { lstat, mkdir, open, readdir, type FileHandle } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";

/** Whether a path exists (a dangling symlink counts: it is an entry). */
export async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * mkdir -p that reports the real reason: Node's recursive mkdir says ENOENT
 * where the parent exists but cannot take a new folder (a read-only file
 * system, no permission); a plain mkdir of the last part then tells why.
 */
export async function makeDir(path: string, mode?: number): Promise<void> {
  try {
    await mkdir(path, { recursive: true, mode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    // the first missing folder below the deepest one that exists: creating it alone gives the reason
    let child = resolve(path);
    while (dirname(child) !== child && !(await exists(dirname(child)))) child = dirname(child);
    await mkdir(child, { mode }); // throws EROFS, EACCES, ENOTDIR … naming that folder
    await mkdir(path, { recursive: true, mode });
  }
}

export interface WalkEntry {
  /** POSIX path relative to the walk's root. */
  rel: string;
  /** lstat of the entry. */
  stat: Stats;
}

/**
 * Sorted, depth-first walk of a tree (not following symlinks). Directories come before their content.
 * Each folder is listed and its entries stat'ed in one synchronous step: image trees hold tens of
 * thousands of small entries whose metadata is in the page cache, where one thread-pool round trip
 * per lstat made a walk about nine times slower (0.8 s against 0.09 s for container-host's 12 k entries).
 */
export async function* walk(root: string, rel = ""): AsyncGenerator<WalkEntry> {
  const names = readdirSync(rel ? join(root, rel) : root).sort();
  const entries = names.map((name) => {
    const r = rel ? `${rel}/${name}` : name;
    return { rel: r, stat: lstatSync(join(root, r)) };
  });
  for (const e of entries) {
    yield e;
    if (e.stat.isDirectory()) yield* walk(root, e.rel);
  }
}

/** Up to `length` bytes at `offset` of an open file (fewer at its end). */
export async function readRange(fh: FileHandle, offset: number, length: number): Promise<Buffer> {
  const b = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(b, done, length - done, offset + done);
    if (!bytesRead) break;
    done += bytesRead;
  }
  return b.subarray(0, done);
}

/** Up to `length` bytes at `offset` of the file at `path`. */
export async function readFileRange(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, "r");
  try {
    return await readRange(fh, offset, length);
  } finally {
    await fh.close();
  }
}

/** A folder's names, or none when it does not exist (or cannot be read). */
export async function readdirSafe(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}
