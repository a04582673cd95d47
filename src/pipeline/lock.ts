/**
 * Locks between acl processes: a lock file that names its owner (PID, start
 * time, boot; see owner.ts). It is made whole in a file of its own and then
 * hard-linked into place, so it appears complete or not at all, and only one
 * process can make it. A lock whose owner is gone (a build killed with
 * SIGKILL) is broken by the next process that wants it; a live owner's is
 * waited for. Locks only save work: cache entries and outputs are published
 * by rename, so two processes that both went ahead would still leave one
 * whole result.
 */
import { link, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { disown, ownerAlive, own, thisOwner, type Owner } from "./owner.js";
import { readdirSafe } from "../util/fs.js";

export interface Lock {
  readonly path: string;
  release(): Promise<void>;
}

export interface LockWait {
  /** Called once when the lock is held by another live process, and then every `repeatMs` while it still is. */
  onWait?(holder: Owner, waitedMs: number): void;
  /** How often to look again (default 200 ms). */
  pollMs?: number;
  /** How often onWait is called again (default 60 s). */
  repeatMs?: number;
}

const sameOwner = (a: Owner, b: Owner) => a.pid === b.pid && a.start === b.start && a.boot === b.boot;

async function readLock(path: string): Promise<Owner | "unreadable" | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  try {
    const o = JSON.parse(text) as Partial<Owner>;
    if (typeof o.pid === "number" && typeof o.start === "string" && typeof o.boot === "string") return o as Owner;
  } catch {
    // not a lock acl wrote whole: it has no owner to wait for
  }
  return "unreadable";
}

/**
 * Take the lock at `path` if it is free (or its owner is gone); otherwise
 * return the owner that holds it.
 */
export async function tryLock(path: string): Promise<Lock | Owner> {
  await mkdir(dirname(path), { recursive: true });
  const me = await thisOwner();
  const mine = `${path}.${process.pid}-${Math.random().toString(36).slice(2)}`;
  await writeFile(mine, JSON.stringify(me));
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await link(mine, path);
        own(path);
        return {
          path,
          async release() {
            disown(path);
            // only ours: a lock broken as abandoned and taken by another process stays theirs
            const held = await readLock(path).catch(() => undefined);
            if (held && held !== "unreadable" && sameOwner(held, me)) await rm(path, { force: true });
          },
        };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      const holder = await readLock(path);
      if (holder === undefined) continue; // released meanwhile
      if (holder !== "unreadable" && (await ownerAlive(holder))) return holder;
      await breakLock(path, holder);
    }
    throw new Error(`could not take the lock ${path}: it kept changing hands`);
  } finally {
    await rm(mine, { force: true });
  }
}

/**
 * Remove a lock whose owner is gone. It is renamed aside first (one process
 * wins that) and checked: when another process took the lock between our
 * read and the rename, theirs is put back.
 */
async function breakLock(path: string, dead: Owner | "unreadable"): Promise<void> {
  const aside = `${path}.broken-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    await rename(path, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return; // another process broke it first
    throw e;
  }
  const got = await readLock(aside);
  const wasDead = got === "unreadable" ? dead === "unreadable" : got !== undefined && dead !== "unreadable" && sameOwner(got, dead);
  if (!wasDead) await link(aside, path).catch(() => undefined);
  await rm(aside, { force: true });
}

/** Take the lock at `path`, waiting while a live process holds it. */
export async function acquireLock(path: string, wait: LockWait = {}): Promise<Lock> {
  const poll = wait.pollMs ?? 200;
  const repeat = wait.repeatMs ?? 60_000;
  const t0 = Date.now();
  let told = -Infinity;
  let last: Owner | undefined;
  for (;;) {
    const got = await tryLock(path);
    if ("release" in got) return got;
    const now = Date.now();
    if (!last || !sameOwner(last, got) || now - told >= repeat) {
      wait.onWait?.(got, now - t0);
      told = now;
      last = got;
    }
    await new Promise((r) => setTimeout(r, poll));
  }
}

/** Remove the lock files in `dir` whose owner is gone (and the leftovers of taking or breaking one). */
export async function removeAbandonedLocks(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of (await readdirSafe(dir)).sort()) {
    const path = join(dir, name);
    if (!name.endsWith(".lock")) {
      // LOCK.PID-RANDOM or LOCK.broken-PID-RANDOM: a process stopped between writing and removing it
      const pid = /\.lock\.(?:broken-)?(\d+)-[0-9a-z]+$/.exec(name)?.[1];
      if (pid && !(await pidRuns(Number(pid)))) {
        await rm(path, { force: true });
        removed.push(path);
      }
      continue;
    }
    const holder = await readLock(path).catch(() => undefined);
    if (holder === undefined) continue;
    if (holder !== "unreadable" && (await ownerAlive(holder))) continue;
    await breakLock(path, holder);
    removed.push(path);
  }
  return removed;
}

/** Whether some process has this PID (a leftover named by PID alone cannot say more). */
export async function pidRuns(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The lock file of a folder that many processes may write: .NAME.acl-lock beside it. */
export function lockBeside(path: string): string {
  return join(dirname(path), `.${basename(path)}.acl-lock`);
}
