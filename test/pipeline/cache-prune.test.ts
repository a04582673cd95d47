/**
 * The cache's size bound and `acl cache ls` / `acl cache prune`: sizes by
 * allocated blocks (a sparse file counts by what it holds), least recently
 * used first, entries used within the grace time kept.
 */
import { mkdir, mkdtemp, open, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { diskUsage, StageCache } from "../../src/pipeline/cache.js";
import { pruneCache } from "../../src/services/cache.js";
import { formatAge, parseSize } from "../../src/util/size.js";
import { acl } from "../helpers/cli.js";

const HOUR = 3600_000;
let root: string;

/** A committed-looking entry of `bytes` (one file) last used `agoMs` ago. */
async function entry(name: string, id: string, bytes: number, agoMs: number): Promise<void> {
  const d = join(root, "stages", `${name}-${id.padEnd(32, "0")}`);
  await mkdir(d, { recursive: true });
  await writeFile(join(d, "data"), Buffer.alloc(bytes, 1));
  await writeFile(join(d, "stage.json"), JSON.stringify({ id, name, meta: {}, bytes: await diskUsage(d) }));
  const t = new Date(Date.now() - agoMs);
  await utimes(d, t, t);
}

async function download(rel: string, bytes: number, agoMs: number): Promise<void> {
  await mkdir(join(root, rel, ".."), { recursive: true });
  await writeFile(join(root, rel), Buffer.alloc(bytes, 2));
  const t = new Date(Date.now() - agoMs);
  await utimes(join(root, rel), t, t);
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "acl-cache-"));
  await entry("rootfs", "aaaa", 3 << 20, 30 * HOUR);
  await entry("rootfs", "bbbb", 3 << 20, 20 * HOUR);
  await entry("rootfs", "cccc", 3 << 20, 1 * 60_000);
  await entry("usr", "dddd", 1 << 20, 10 * HOUR);
  await download("debs/libc6_2.36_amd64.deb", 2 << 20, 40 * HOUR);
  await download("tmp/rootfs-Xy12ab/partial", 1 << 20, 50 * HOUR);
  const old = new Date(Date.now() - 50 * HOUR);
  await utimes(join(root, "tmp/rootfs-Xy12ab"), old, old);
});

describe("sizes", () => {
  it("parses binary sizes and prints ages", () => {
    expect(parseSize("20GiB")).toBe(20 * 2 ** 30);
    expect(parseSize("1.5G")).toBe(1.5 * 2 ** 30);
    expect(parseSize("512 MiB")).toBe(512 * 2 ** 20);
    expect(parseSize("4096")).toBe(4096);
    expect(parseSize("20GB")).toBeUndefined();
    expect(parseSize("lots")).toBeUndefined();
    expect([formatAge(10_000), formatAge(5 * 60_000), formatAge(3 * HOUR), formatAge(72 * HOUR)]).toEqual(["just now", "5 min ago", "3 h ago", "3 days ago"]);
  });

  it("counts a sparse file by its allocated blocks", async () => {
    const f = join(root, "sparse.raw");
    const h = await open(f, "w");
    await h.truncate(1 << 30);
    await h.write(Buffer.alloc(4096, 1), 0, 4096, 512 << 20);
    await h.close();
    expect(await diskUsage(f)).toBeLessThan(1 << 20);
  });
});

describe("the cache's contents and its bound", () => {
  it("lists entries, downloads and scratch folders, most recently used first", async () => {
    const items = await new StageCache(root).list();
    expect(items.map((i) => `${i.kind} ${i.name}`)).toEqual(["stage rootfs", "stage usr", "stage rootfs", "stage rootfs", "download libc6_2.36_amd64.deb", "scratch rootfs-Xy12ab"]);
    expect(items[0]!.bytes).toBeGreaterThanOrEqual(3 << 20);
  });

  it("counts an rpm source's dnf cache, one item per repository, so the bound and prune reach it", async () => {
    await download("rpm/fedora-0123456789abcdef/packages/bash-5.2-1.fc41.x86_64.rpm", 2 << 20, 60 * HOUR);
    // the repository's folder was last written (used) when dnf last downloaded into it
    const old = new Date(Date.now() - 60 * HOUR);
    await utimes(join(root, "rpm/fedora-0123456789abcdef"), old, old);
    const cache = new StageCache(root);
    const rpm = (await cache.list()).find((i) => i.path === "rpm/fedora-0123456789abcdef")!;
    expect(rpm).toMatchObject({ kind: "download", name: "fedora-0123456789abcdef" });
    expect(rpm.bytes).toBeGreaterThanOrEqual(2 << 20);
    const removed = await cache.bound(12 << 20, HOUR);
    expect(removed.map((i) => i.path)).toContain("rpm/fedora-0123456789abcdef");
  });

  it("bound() removes the least recently used until under the size, never what was used within the grace", async () => {
    const cache = new StageCache(root);
    const removed = await cache.bound(5 << 20, 6 * HOUR);
    expect(removed.map((i) => i.path)).toEqual(["tmp/rootfs-Xy12ab", "debs/libc6_2.36_amd64.deb", "stages/rootfs-aaaa0000000000000000000000000000", "stages/rootfs-bbbb0000000000000000000000000000"]);
    // usr (10 h ago) and the newest rootfs are left: 4 MiB and a bit
    expect((await cache.list()).map((i) => i.name)).toEqual(["rootfs", "usr"]);
    // what is in use stays even over the bound
    expect(await cache.bound(0, 24 * HOUR)).toEqual([]);
  });

  it("prune --keep 1: one entry per stage, and no scratch; the entry used a minute ago stays", async () => {
    const r = await pruneCache({ root, keep: 1 });
    expect(r.removed.map((i) => i.path).sort()).toEqual(["stages/rootfs-aaaa0000000000000000000000000000", "stages/rootfs-bbbb0000000000000000000000000000", "tmp/rootfs-Xy12ab"]);
    expect(r.keptRecent).toBe(1);
    expect(r.freedBytes).toBeGreaterThanOrEqual(7 << 20);
  });

  it("never removes a running build's scratch folder, whether pruned or bounded", async () => {
    // one made by this process (a build that still runs), backdated past every grace time
    const live = await new StageCache(root).scratch("usr");
    await writeFile(join(live, "usr.img"), Buffer.alloc(4 << 20, 3));
    const old = new Date(Date.now() - 60 * HOUR);
    await utimes(live, old, old);
    const rel = `tmp/${live.slice(join(root, "tmp").length + 1)}`;
    expect((await new StageCache(root).list()).find((i) => i.path === rel)).toMatchObject({ kind: "scratch", live: true });
    const pruned = await pruneCache({ root, keep: 0, maxSize: "0" });
    expect(pruned.removed.map((i) => i.path)).not.toContain(rel);
    expect(pruned.removed.map((i) => i.path)).toContain("tmp/rootfs-Xy12ab");
    // no grace at all and a bound of zero: everything else goes, the live folder stays
    expect((await new StageCache(root).bound(0, 0)).map((i) => i.path)).not.toContain(rel);
    expect((await new StageCache(root).list()).map((i) => i.path)).toEqual([rel]);
  });

  it("prune refuses a call with nothing to do and a size it cannot read", async () => {
    await expect(pruneCache({ root })).rejects.toThrow(/needs --keep N, --max-size SIZE or --all/);
    await expect(pruneCache({ root, maxSize: "20GB" })).rejects.toThrow(/--max-size must be a size such as 20GiB/);
  });

  it("acl cache ls and prune through the CLI", async () => {
    const ls = await acl(["cache", "ls", "--cache-dir", root, "--json"]);
    expect(ls.exitCode, ls.stderr).toBe(0);
    const listed = JSON.parse(ls.stdout) as { items: { kind: string }[]; totalBytes: number; maxBytes: number };
    expect(listed.items).toHaveLength(6);
    expect(listed.maxBytes).toBe(40 * 2 ** 30);
    const text = await acl(["cache", "ls", "--cache-dir", root], { env: { ACL_CACHE_MAX_SIZE: "1GiB" } });
    expect(text.stdout).toMatch(/6 items, \d+\.\d MiB of 1\.0 GiB/);
    expect(text.stdout).toMatch(/stage +usr +1\.0 MiB +10 h ago/);
    const p = await acl(["cache", "prune", "--cache-dir", root, "--all"]);
    expect(p.exitCode, p.stderr).toBe(0);
    expect(p.stdout).toMatch(/^removed 5 items \(.* MiB\); the cache now holds .*; 1 used in the last 10 minutes kept/);
    const bad = await acl(["cache", "ls", "--cache-dir", root], { env: { ACL_CACHE_MAX_SIZE: "huge" } });
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/ACL_CACHE_MAX_SIZE must be a size such as 20GiB, got 'huge'/);
  });
});
