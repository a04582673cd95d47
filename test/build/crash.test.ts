/**
 * A build killed with SIGKILL (no chance to clean up) at several points: the
 * next build removes the work folder and the unfinished cache entries it
 * left, and its output is byte for byte the one of a build never interrupted.
 * Interrupted with Ctrl-C or SIGTERM, a build cleans up itself and exits 130.
 */
import { execa } from "execa";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseManifest, type Manifest } from "../../src/pipeline/manifest.js";
import { specCopy } from "../helpers/images.js";
import { acl, REPO } from "../helpers/cli.js";

const SDE = "1700000000";
let tmp: string;
let spec: string;
let cache: string;
let reference: Manifest;

const env = () => ({ SOURCE_DATE_EPOCH: SDE, ACL_CACHE_DIR: cache });
const manifestOf = async (out: string) => parseManifest(JSON.parse(await readFile(join(out, "manifest.json"), "utf8")));
const workFolders = async () => (await readdir(tmp)).filter((n) => n.startsWith(".out.build-"));
const scratch = async () => (await readdir(join(cache, "tmp")).catch(() => [] as string[])).sort();

beforeAll(async () => {
  ({ tmp, spec } = await specCopy("acl-crash-"));
  cache = join(tmp, "cache");
  const r = await acl(["build", spec, "--out", join(tmp, "reference")], { env: env() });
  expect(r.exitCode, r.stderr.slice(-3000)).toBe(0);
  reference = await manifestOf(join(tmp, "reference"));
}, 20 * 60_000);

/** Start a build of every stage, wait until `ready` says so, and SIGKILL it with all its tools. */
async function killDuring(ready: () => Promise<boolean>): Promise<void> {
  const child = execa(process.execPath, [join(REPO, "bin/run.js"), "build", spec, "--out", join(tmp, "out"), "--no-cache"], {
    env: env(),
    cwd: REPO,
    detached: true,
    reject: false,
  });
  let ended: number | undefined;
  void child.then((r) => (ended = r.exitCode ?? -1));
  try {
    for (let i = 0; !(await ready()); i++) {
      if (ended !== undefined || i > 6000) throw new Error(`the build ended (exit ${ended}) before the point to kill it at`);
      await new Promise((res) => setTimeout(res, 50));
    }
  } finally {
    process.kill(-child.pid!, "SIGKILL");
    await child;
  }
}

describe("a build killed with SIGKILL", () => {
  for (const [point, ready] of [
    ["while the rootfs stage fills its scratch entry", async () => (await scratch()).some((n) => n.startsWith("rootfs-"))],
    ["while mkfs.erofs writes the /usr image", async () => (await scratch()).some((n) => n.startsWith("usr-"))],
    ["while the disk is assembled", async () => (await workFolders()).length > 0 && (await readdir(join(tmp, (await workFolders())[0]!)).catch(() => [] as string[])).includes("disk")],
  ] as const) {
    it(`${point}: the next build removes what it left and gives the same bytes`, async () => {
      // no output to fall back on: the next build makes it again, from what the cache holds
      await rm(join(tmp, "out"), { recursive: true, force: true });
      await killDuring(ready);
      // the kill left its work folder (and, before the disk, a scratch entry) behind
      expect(await workFolders()).toHaveLength(1);
      const r = await acl(["build", spec, "--out", join(tmp, "out"), "--json"], { env: env() });
      expect(r.exitCode, `${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`).toBe(0);
      expect(r.stderr).toMatch(/removed .*\.out\.build-\S+, left by a build that stopped \(pid \d+\)/);
      expect(await workFolders()).toEqual([]);
      expect(await scratch()).toEqual([]);
      // the killed build's locks (the output folder's, the entry it was making) were broken and are gone
      expect(await readdir(join(cache, "locks")).catch(() => [])).toEqual([]);
      expect((await readdir(tmp)).filter((n) => n.includes(".acl-lock"))).toEqual([]);
      expect((await manifestOf(join(tmp, "out"))).artifacts).toEqual(reference.artifacts);
    }, 20 * 60_000);
  }
});

describe("a build interrupted the way a terminal or a service manager does it", () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it(`${signal} to its process group while mkfs.erofs runs: its tools stop, its folders go, exit 130 with one line`, async () => {
      await rm(join(tmp, "out"), { recursive: true, force: true });
      const child = execa(process.execPath, [join(REPO, "bin/run.js"), "build", spec, "--out", join(tmp, "out"), "--no-cache"], { env: env(), cwd: REPO, detached: true, reject: false });
      let ended = false;
      void child.then(() => (ended = true));
      for (let i = 0; !(await scratch()).some((n) => n.startsWith("usr-")); i++) {
        if (ended || i > 6000) throw new Error("the build ended before mkfs.erofs ran");
        await new Promise((res) => setTimeout(res, 50));
      }
      process.kill(-child.pid!, signal);
      const r = await child;
      expect(r.exitCode, String(r.stderr).slice(-2000)).toBe(130);
      expect(String(r.stderr).trim().split("\n").at(-1)).toMatch(new RegExp(`^acl: stopped by ${signal}; removed \\d+ unfinished folders? of this build$`));
      expect(await workFolders()).toEqual([]);
      expect(await scratch()).toEqual([]);
      // nothing of the build still runs in its process group (a dead tool waiting to be reaped, state Z, has stopped)
      await new Promise((res) => setTimeout(res, 500));
      const ps = await execa("ps", ["-o", "pid=,stat=,args=", "-g", String(child.pid)], { reject: false });
      expect(ps.stdout.split("\n").filter((l) => l.trim() && !/^\s*\d+\s+Z/.test(l))).toEqual([]);
    }, 20 * 60_000);
  }
});
