/**
 * `acl cache ls` and `acl cache prune`: what the stage cache holds (entries,
 * downloaded packages, unpacked kernels, unfinished scratch folders) with
 * sizes and ages, and removing the least recently used of them.
 */
import { StageCache, type CacheItem } from "../pipeline/cache.js";
import { UserError } from "../errors.js";
import { parseSize } from "../util/size.js";

/** An explicit prune leaves what was used this recently: a build may be running beside it. */
export const EXPLICIT_GRACE_MS = 10 * 60_000;

export interface CacheListResult {
  root: string;
  items: CacheItem[];
  totalBytes: number;
  maxBytes: number;
}

export async function listCache(root: string, maxBytes: number): Promise<CacheListResult> {
  const items = await new StageCache(root).list();
  return { root, items, totalBytes: items.reduce((a, i) => a + i.bytes, 0), maxBytes };
}

export interface PruneOptions {
  root: string;
  /** Stage entries kept per stage (most recently used first). */
  keep?: number;
  /** Total size to get under ("20GiB"), removing the least recently used items first. */
  maxSize?: string;
  /** Remove everything not used within the grace time. */
  all?: boolean;
  graceMs?: number;
}

export interface PruneResult {
  root: string;
  removed: CacheItem[];
  freedBytes: number;
  /** Items left that were used within the grace time (never removed by an explicit prune). */
  keptRecent: number;
  totalBytes: number;
}

export async function pruneCache(o: PruneOptions): Promise<PruneResult> {
  if (o.keep === undefined && o.maxSize === undefined && !o.all)
    throw new UserError("acl cache prune needs --keep N, --max-size SIZE or --all", { hint: "for example: acl cache prune --keep 1 --max-size 20GiB" });
  if (o.keep !== undefined && (!Number.isInteger(o.keep) || o.keep < 0)) throw new UserError(`--keep must be a whole number of entries, got ${o.keep}`);
  const maxBytes = o.maxSize === undefined ? undefined : parseSize(o.maxSize);
  if (o.maxSize !== undefined && maxBytes === undefined) throw new UserError(`--max-size must be a size such as 20GiB, got '${o.maxSize}'`, { hint: "bytes, or a binary unit: KiB, MiB, GiB, TiB" });
  const cache = new StageCache(o.root);
  const grace = o.graceMs ?? EXPLICIT_GRACE_MS;
  const cutoff = Date.now() - grace;
  const removed: CacheItem[] = [];
  const remove = async (items: CacheItem[]) => {
    for (const i of items) {
      // a running build's scratch folder is never removed, whatever is asked
      if (i.usedMs >= cutoff || i.live) continue;
      await cache.remove(i);
      removed.push(i);
    }
  };
  if (o.all) await remove(await cache.list());
  if (o.keep !== undefined) {
    const byStage = new Map<string, CacheItem[]>();
    for (const i of (await cache.list()).filter((x) => x.kind === "stage")) byStage.set(i.name, [...(byStage.get(i.name) ?? []), i]);
    for (const list of byStage.values()) await remove(list.slice(o.keep));
    // unfinished scratch folders are never worth keeping
    await remove((await cache.list()).filter((x) => x.kind === "scratch"));
  }
  if (maxBytes !== undefined) removed.push(...(await cache.bound(maxBytes, grace)));
  const left = await cache.list();
  return {
    root: o.root,
    removed,
    freedBytes: removed.reduce((a, i) => a + i.bytes, 0),
    keptRecent: left.filter((i) => i.usedMs >= cutoff).length,
    totalBytes: left.reduce((a, i) => a + i.bytes, 0),
  };
}

export { defaultCacheDir, defaultMaxBytes } from "../pipeline/cache.js";
