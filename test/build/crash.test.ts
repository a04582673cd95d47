/**
 * A build killed with SIGKILL (no chance to clean up) at several points: the
 * next build removes the work folder and the unfinished cache entries it
 * left, and its output is byte for byte the one of a build never interrupted.
 */
import { execa } from "execa";
import { cp, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseManifest, type Manifest } from "../../src/pipeline/manifest.js";
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
  tmp = await mkdtemp(join(tmpdir(), "acl-crash-"));
  await cp(join(REPO, "images/minimal"), join(tmp, "images/minimal"), { recursive: true });
  await cp(join(REPO, "images/minimal.toml"), join(tmp, "images/minimal.toml"));
  spec = join(tmp, "images/minimal.toml");
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
    ["while the disk is assembled", async () => (await workFolders()).length > 0 && (await readdir(join(tmp, (await workFolders())[0]!)).catch(() => [])).includes("disk")],
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
      expect((await manifestOf(join(tmp, "out"))).artifacts).toEqual(reference.artifacts);
    }, 20 * 60_000);
  }
});
