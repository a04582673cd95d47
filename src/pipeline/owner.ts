/**
 * Temporary folders that name their owner. A build's work folder, the cache's
 * scratch entries and the kernel's unpack folders each hold `.acl-owner`: the
 * PID of the acl process that made it, that process's start time (from
 * /proc, so a PID the kernel gave to another process since does not count as
 * the owner) and the boot it ran in. A later build removes the folders whose
 * owner is gone (a build killed with SIGKILL, a machine that lost power) and
 * never one whose owner still runs. Interrupted (Ctrl-C, SIGTERM), this
 * process removes the folders it still owns itself and exits with 130.
 */
import { existsSync, rmSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { readdirSafe } from "../util/fs.js";
import { join } from "node:path";

export const OWNER_FILE = ".acl-owner";

export interface Owner {
  pid: number;
  /** Field 22 of /proc/PID/stat: clock ticks after boot when the process started. */
  start: string;
  /** /proc/sys/kernel/random/boot_id of the boot the process ran in. */
  boot: string;
}

/** The start time in a /proc/PID/stat line (the command name may hold spaces and parentheses). */
export function parseProcStart(stat: string): string | undefined {
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // after "pid (comm) ", the fields start at number 3 (state): starttime is field 22
  const start = rest[22 - 3];
  return start && /^\d+$/.test(start) ? start : undefined;
}

async function processStart(pid: number): Promise<string | undefined> {
  try {
    return parseProcStart(await readFile(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}

const bootId = () => readFile("/proc/sys/kernel/random/boot_id", "utf8").then((s) => s.trim(), () => "");

let self: Promise<Owner> | undefined;

/** This process as an owner. */
export function thisOwner(): Promise<Owner> {
  self ??= (async () => ({ pid: process.pid, start: (await processStart(process.pid)) ?? "", boot: await bootId() }))();
  return self;
}

/** The folders this process made and may still own (renamed or removed ones are simply gone). */
const owned = new Set<string>();

/** mkdtemp in `parent` with this process recorded as the owner. */
export async function ownedTempDir(parent: string, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(parent, prefix));
  owned.add(dir);
  await writeFile(join(dir, OWNER_FILE), JSON.stringify(await thisOwner()));
  return dir;
}

/** The lock files this process holds (lock.ts): removed on interrupt too, but not counted as folders. */
const locks = new Set<string>();

/** A lock file this process now holds. */
export function own(lockFile: string): void {
  locks.add(lockFile);
}

/** A folder of ours that became something kept (a cache entry renamed into place), or a lock released: never removed on interrupt. */
export function disown(path: string): void {
  owned.delete(path);
  locks.delete(path);
}

let interruptsHandled = false;

/**
 * From now on, SIGINT and SIGTERM remove the folders this process still owns and exit
 * with 130 after one line on stderr. The tools it runs get the signal from the terminal
 * (the same process group) or are killed as acl exits (execa's cleanup).
 */
export function cleanUpOnInterrupt(): void {
  if (interruptsHandled) return;
  interruptsHandled = true;
  const stop = (signal: NodeJS.Signals) => {
    let n = 0;
    for (const dir of owned) {
      if (!existsSync(dir)) continue; // removed or renamed into place since
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
        n++;
      } catch {
        // left for the next build, which removes it: its owner is gone by then
      }
    }
    for (const lock of locks) {
      try {
        rmSync(lock, { force: true });
      } catch {
        // broken as abandoned by the next process that wants it
      }
    }
    process.stderr.write(`acl: stopped by ${signal}; removed ${n} unfinished folder${n === 1 ? "" : "s"} of this build\n`);
    process.exit(130);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

/** The owner a folder names, if it names one. */
export async function readOwner(dir: string): Promise<Owner | undefined> {
  try {
    const o = JSON.parse(await readFile(join(dir, OWNER_FILE), "utf8")) as Partial<Owner>;
    return typeof o.pid === "number" && typeof o.start === "string" && typeof o.boot === "string" ? (o as Owner) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether an owner still runs: the same boot, and a process with that PID that started at that time. */
export async function ownerAlive(o: Owner): Promise<boolean> {
  if (o.boot !== (await bootId())) return false;
  const start = await processStart(o.pid);
  return start !== undefined && start === o.start;
}

/** A folder without an owner file this old is left from a build that stopped before writing one (or from an older acl). */
export const UNOWNED_GRACE_MS = 60 * 60_000;

export interface Abandoned {
  path: string;
  owner?: Owner;
}

/**
 * Remove the folders in `parent` whose names `match` and whose owner is gone
 * (or that name none and are older than UNOWNED_GRACE_MS). Returns what was removed.
 */
export async function removeAbandoned(parent: string, match: (name: string) => boolean, now = Date.now()): Promise<Abandoned[]> {
  const removed: Abandoned[] = [];
  for (const name of (await readdirSafe(parent)).filter(match).sort()) {
    const path = join(parent, name);
    const st = await stat(path).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    const owner = await readOwner(path);
    const gone = owner ? !(await ownerAlive(owner)) : now - st.mtimeMs > UNOWNED_GRACE_MS;
    if (!gone) continue;
    await rm(path, { recursive: true, force: true });
    removed.push({ path, owner });
  }
  return removed;
}
