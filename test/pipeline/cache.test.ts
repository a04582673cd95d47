/**
 * The stage cache: entries are committed by rename and pruned to the few most
 * recently used, but never one used within the grace period (a build beside
 * this one may be reading it: two builds sharing a cache are common on CI).
 */
import { mkdtemp, readdir, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { KEEP_ENTRIES, PRUNE_GRACE_MS, StageCache, stageId } from "../../src/pipeline/cache.js";

async function cacheWith(n: number): Promise<{ cache: StageCache; ids: string[] }> {
  const cache = new StageCache(await mkdtemp(join(tmpdir(), "acl-cache-")));
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = stageId("usr", { i });
    const s = await cache.scratch("usr");
    await writeFile(join(s, "usr.img"), `entry ${i}`);
    await cache.commit(s, "usr", id, { i });
    ids.push(id);
  }
  return { cache, ids };
}

describe("stage cache", () => {
  it("keeps every entry used within the grace period, however many", async () => {
    const { cache, ids } = await cacheWith(KEEP_ENTRIES + 3);
    expect(await readdir(join(cache.root, "stages"))).toHaveLength(KEEP_ENTRIES + 3);
    for (const [i, id] of ids.entries()) expect(await cache.lookup("usr", id)).toEqual({ i });
    expect(await readdir(join(cache.root, "tmp"))).toEqual([]);
  });

  it("prunes the least recently used beyond the few it keeps, once they are past the grace period", async () => {
    const { cache, ids } = await cacheWith(KEEP_ENTRIES + 3);
    const old = (Date.now() - PRUNE_GRACE_MS - 3600_000) / 1000;
    // entries 0..3 were last used long ago, 0 the longest
    for (let i = 0; i <= 3; i++) await utimes(cache.dir("usr", ids[i]!), old + i, old + i);
    await cache.prune("usr", KEEP_ENTRIES);
    const left = await Promise.all(ids.map(async (id) => !!(await stat(cache.dir("usr", id)).catch(() => undefined))));
    // kept: 4 and 5 (recent) and 3 (the most recently used of the old ones)
    expect(left).toEqual([false, false, false, true, true, true]);
  });

  it("a lookup counts as a use", async () => {
    const { cache, ids } = await cacheWith(1);
    const old = (Date.now() - PRUNE_GRACE_MS - 3600_000) / 1000;
    await utimes(cache.dir("usr", ids[0]!), old, old);
    await cache.lookup("usr", ids[0]!);
    expect((await stat(cache.dir("usr", ids[0]!))).mtimeMs).toBeGreaterThan(Date.now() - 60_000);
  });
});

describe("stage cache commits", () => {
  it("a second commit of the same id keeps the first entry (a build may be reading it) and drops its own scratch", async () => {
    const { cache, ids } = await cacheWith(1);
    const dir = cache.dir("usr", ids[0]!);
    const before = (await stat(join(dir, "usr.img"))).ino;
    const s = await cache.scratch("usr");
    await writeFile(join(s, "usr.img"), "entry 0");
    expect(await cache.commit(s, "usr", ids[0]!, { i: 0 })).toBe(dir);
    expect((await stat(join(dir, "usr.img"))).ino).toBe(before);
    expect(await readdir(join(cache.root, "tmp"))).toEqual([]);
  });

  it("replaces a folder in the way that is not a valid entry", async () => {
    const { cache, ids } = await cacheWith(1);
    const dir = cache.dir("usr", ids[0]!);
    await writeFile(join(dir, "stage.json"), "{ broken");
    const s = await cache.scratch("usr");
    await writeFile(join(s, "usr.img"), "fresh");
    await cache.commit(s, "usr", ids[0]!, { i: 0 });
    expect(await cache.lookup("usr", ids[0]!)).toEqual({ i: 0 });
    expect(await readdir(join(cache.root, "tmp"))).toEqual([]);
  });
});
