/**
 * Content-addressed stage cache. A stage's id is the sha256 of its name, its
 * canonical options, the ids of its inputs and the versions of the tools it
 * runs; a finished stage lives in CACHE/stages/NAME-ID/ and is committed by
 * rename, so a crash never leaves a half-written entry that looks valid.
 */
import { createHash } from "node:crypto";
import { lstat, mkdir, readFile, rename, rm, stat, utimes, writeFile, readdir } from "node:fs/promises";
import { disown, ownedTempDir, ownerAlive, OWNER_FILE, readOwner, removeAbandoned, type Abandoned } from "./owner.js";
import { homedir } from "node:os";
import { pidRuns, removeAbandonedLocks } from "./lock.js";
import { join } from "node:path";
import { readdirSafe, walk } from "../util/fs.js";
import { GiB, parseSize } from "../util/size.js";
import { UserError } from "../errors.js";
import { canonicalJson } from "./manifest.js";

/** Entries kept per stage beyond those used recently. */
export const KEEP_ENTRIES = 3;
/** An entry used within this time is never pruned (a build beside this one may be using it). */
export const PRUNE_GRACE_MS = 6 * 3600_000;

/** The cache's default size bound (entries and downloads); ACL_CACHE_MAX_SIZE overrides it. */
export const DEFAULT_MAX_BYTES = 40 * GiB;

/** What a folder or file takes on disk (allocated blocks: a sparse disk image counts by what it holds). */
export async function diskUsage(path: string): Promise<number> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return 0;
  if (!st.isDirectory()) return st.blocks * 512;
  let n = st.blocks * 512;
  for await (const e of walk(path)) n += e.stat.blocks * 512;
  return n;
}

/** One thing in the cache that can be removed on its own. */
export interface CacheItem {
  /** "stage" (an entry: rootfs, usr, …), "download" (a .deb), "kernel" (an unpacked kernel package), "scratch" (an unfinished entry). */
  kind: "stage" | "download" | "kernel" | "scratch";
  /** The stage's name, or the file's. */
  name: string;
  /** Relative to the cache root. */
  path: string;
  bytes: number;
  /** Last use (an entry's folder mtime is touched on every hit). */
  usedMs: number;
  /** A scratch folder whose owner (a build) still runs: never removed. */
  live?: boolean;
}

export function stageId(name: string, inputs: unknown): string {
  return createHash("sha256").update(name).update("\0").update(canonicalJson(inputs)).digest("hex");
}

/** ACL_CACHE_MAX_SIZE, else DEFAULT_MAX_BYTES; a value that does not read is an error naming it. */
export function defaultMaxBytes(): number {
  const v = process.env.ACL_CACHE_MAX_SIZE;
  if (v === undefined || v === "") return DEFAULT_MAX_BYTES;
  const n = parseSize(v);
  if (n === undefined) throw new UserError(`ACL_CACHE_MAX_SIZE must be a size such as 20GiB, got '${v}'`, { hint: "unset it for the default (40GiB), or give bytes or a binary unit (KiB, MiB, GiB, TiB)" });
  return n;
}

export function defaultCacheDir(): string {
  if (process.env.ACL_CACHE_DIR) return process.env.ACL_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "acl");
}

export class StageCache {
  constructor(
    readonly root: string,
    /** When false, lookups always miss (entries are still written). */
    readonly enabled = true,
  ) {}

  dir(name: string, id: string): string {
    return join(this.root, "stages", `${name}-${id.slice(0, 32)}`);
  }

  /** The metadata of a committed entry, or undefined. A hit marks the entry as used now. */
  async lookup<T>(name: string, id: string): Promise<T | undefined> {
    if (!this.enabled) return undefined;
    const meta = await this.read<T>(name, id);
    if (meta !== undefined) await this.touch(name, id);
    return meta;
  }

  /** An entry's metadata when its folder holds a valid entry for `id`. */
  private async read<T>(name: string, id: string): Promise<T | undefined> {
    try {
      const entry = JSON.parse(await readFile(join(this.dir(name, id), "stage.json"), "utf8")) as { id: string; meta: T };
      return entry.id === id ? entry.meta : undefined;
    } catch {
      return undefined;
    }
  }

  /** Mark an entry as used now (its folder's mtime is its last use). */
  private async touch(name: string, id: string): Promise<void> {
    const now = new Date();
    await utimes(this.dir(name, id), now, now);
  }

  /** The lock a build holds while it makes the entry (name, id). */
  lockPath(name: string, id: string): string {
    return join(this.root, "locks", `${name}-${id.slice(0, 32)}.lock`);
  }

  /** A fresh folder to build an entry in, naming this process as its owner. */
  async scratch(name: string): Promise<string> {
    await mkdir(join(this.root, "tmp"), { recursive: true });
    return ownedTempDir(join(this.root, "tmp"), `${name}-`);
  }

  /**
   * Remove what builds that stopped without cleaning up left (killed, or the machine went down):
   * scratch entries and unpack or download folders whose owner process is gone.
   */
  async removeAbandoned(): Promise<Abandoned[]> {
    const found = [
      ...(await removeAbandoned(join(this.root, "tmp"), () => true)),
      ...(await removeAbandoned(join(this.root, "kernel/unpacked"), (n) => n.startsWith("."))),
      ...(await removeAbandoned(join(this.root, "kernel/debs"), (n) => n.startsWith(".dl-"))),
    ];
    // a .deb a killed build was copying in (.NAME.deb.partPID)
    for (const n of await readdirSafe(join(this.root, "debs"))) {
      const pid = /^\..+\.deb\.part(\d+)$/.exec(n)?.[1];
      if (pid && !(await pidRuns(Number(pid)))) {
        await rm(join(this.root, "debs", n), { force: true });
        found.push({ path: join(this.root, "debs", n) });
      }
    }
    // the locks of builds that were killed go quietly: they hold nothing but a PID
    await removeAbandonedLocks(join(this.root, "locks"));
    await removeAbandonedLocks(join(this.root, "kernel/locks"));
    return found;
  }

  /**
   * Commit a scratch folder as the entry for (name, id). When another build
   * committed the same id meanwhile, its entry stays (it may be reading it;
   * ids are content addresses, so the two are the same) and ours is dropped;
   * a folder in the way that is not a valid entry (or any, with --no-cache)
   * is moved aside first.
   */
  async commit<T>(scratchDir: string, name: string, id: string, meta: T): Promise<string> {
    // its size, so listing and bounding the cache need not walk every tree in it
    // an entry has no owner: only unfinished folders do
    await rm(join(scratchDir, OWNER_FILE), { force: true });
    const bytes = await diskUsage(scratchDir);
    await writeFile(join(scratchDir, "stage.json"), canonicalJson({ id, name, meta, bytes }));
    const dest = this.dir(name, id);
    await mkdir(join(this.root, "stages"), { recursive: true });
    for (let attempt = 0; ; attempt++) {
      try {
        await rename(scratchDir, dest);
        disown(scratchDir);
        break;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code !== "ENOTEMPTY" && code !== "EEXIST") || attempt > 2) throw e;
        // (with --no-cache the fresh entry replaces the old one: that is what the flag asks for)
        if (this.enabled && (await this.read(name, id)) !== undefined) {
          await rm(scratchDir, { recursive: true, force: true });
          break;
        }
        const aside = await ownedTempDir(join(this.root, "tmp"), `${name}-stale-`);
        await rename(dest, join(aside, "entry")).catch(() => undefined);
        await rm(aside, { recursive: true, force: true });
      }
    }
    await this.touch(name, id);
    await this.prune(name, KEEP_ENTRIES);
    await this.bound(this.maxBytes);
    return dest;
  }

  /** The size bound: ACL_CACHE_MAX_SIZE (bytes, or with a unit such as 20GiB), else DEFAULT_MAX_BYTES. */
  maxBytes = DEFAULT_MAX_BYTES;

  /** Remove one item (listed by list()). */
  async remove(item: CacheItem): Promise<void> {
    await rm(join(this.root, item.path), { recursive: true, force: true });
  }

  /** Everything in the cache, most recently used first. Sizes are measured once and remembered. */
  async list(): Promise<CacheItem[]> {
    const items: CacheItem[] = [];
    const children = async (rel: string) => (await readdir(join(this.root, rel)).catch(() => [] as string[])).sort().map((n) => `${rel}/${n}`);
    for (const rel of await children("stages")) {
      const p = join(this.root, rel);
      const st = await stat(p).catch(() => undefined);
      if (!st?.isDirectory()) continue;
      let entry: { name?: string; bytes?: number } | undefined;
      try {
        entry = JSON.parse(await readFile(join(p, "stage.json"), "utf8")) as { name?: string; bytes?: number };
      } catch {
        // a broken entry (no stage.json): measured, and listed under its folder's name
      }
      let bytes = entry?.bytes;
      if (bytes === undefined) {
        bytes = await diskUsage(p);
        // an entry from before sizes were recorded: recorded now, so it is measured once
        // (rewriting a file in the folder leaves the folder's mtime, its last use, as it was)
        if (entry) await writeFile(join(p, "stage.json"), canonicalJson({ ...entry, bytes })).catch(() => undefined);
      }
      items.push({ kind: "stage", name: entry?.name ?? rel.slice("stages/".length).replace(/-[0-9a-f]{32}$/, ""), path: rel, bytes, usedMs: st.mtimeMs });
    }
    // unpacked kernels do not change once there: their sizes are remembered by folder and mtime
    const memoFile = join(this.root, "sizes.json");
    const memo = JSON.parse(await readFile(memoFile, "utf8").catch(() => "{}")) as Record<string, { mtimeMs: number; bytes: number }>;
    const fresh: typeof memo = {};
    const files = async (kind: CacheItem["kind"], rel: string, remember: boolean) => {
      for (const c of await children(rel)) {
        const st = await lstat(join(this.root, c)).catch(() => undefined);
        if (!st) continue;
        let bytes = remember && memo[c]?.mtimeMs === st.mtimeMs ? memo[c]!.bytes : undefined;
        bytes ??= await diskUsage(join(this.root, c));
        if (remember) fresh[c] = { mtimeMs: st.mtimeMs, bytes };
        const owner = kind === "scratch" || c.slice(rel.length + 1).startsWith(".") ? await readOwner(join(this.root, c)) : undefined;
        items.push({ kind, name: c.slice(rel.length + 1), path: c, bytes, usedMs: st.mtimeMs, ...(owner && (await ownerAlive(owner)) ? { live: true } : {}) });
      }
    };
    await files("download", "debs", false);
    await files("download", "kernel/debs", false);
    // dnf's cache of an rpm source: one folder per repository, its metadata and the RPMs it downloaded
    await files("download", "rpm", false);
    await files("kernel", "kernel/unpacked", true);
    await files("scratch", "tmp", false);
    if (JSON.stringify(fresh) !== JSON.stringify(memo)) await writeFile(memoFile, JSON.stringify(fresh)).catch(() => undefined);
    return items.sort((a, b) => b.usedMs - a.usedMs || a.path.localeCompare(b.path));
  }

  /**
   * Remove least recently used items until the cache holds at most `maxBytes`.
   * Items used within `graceMs` stay (a build beside this one may be using them).
   */
  async bound(maxBytes: number, graceMs = PRUNE_GRACE_MS): Promise<CacheItem[]> {
    const items = await this.list();
    let total = items.reduce((a, i) => a + i.bytes, 0);
    const removed: CacheItem[] = [];
    const cutoff = Date.now() - graceMs;
    for (const i of [...items].reverse()) {
      if (total <= maxBytes) break;
      if (i.usedMs >= cutoff || i.live) continue;
      await this.remove(i);
      total -= i.bytes;
      removed.push(i);
    }
    return removed;
  }

  /**
   * Keep the `keep` most recently used entries of a stage, and every entry
   * used within `graceMs`: another build running beside this one may be
   * reading an entry it just looked up or made.
   */
  async prune(name: string, keep: number, graceMs = PRUNE_GRACE_MS): Promise<void> {
    const dir = join(this.root, "stages");
    const entries: { p: string; t: number }[] = [];
    for (const e of await readdir(dir)) {
      if (!e.startsWith(`${name}-`)) continue;
      const p = join(dir, e);
      const st = await stat(p).catch(() => undefined);
      if (st) entries.push({ p, t: st.mtimeMs });
    }
    entries.sort((a, b) => b.t - a.t);
    const cutoff = Date.now() - graceMs;
    for (const old of entries.slice(keep)) if (old.t < cutoff) await rm(old.p, { recursive: true, force: true });
  }
}
