/**
 * Builds side by side, as CI runners run jobs on one cache: three builds of
 * one spec started together, two into the same output folder and one into
 * another, all with one empty cache. Each cache entry is made once (a build
 * that needs one being made waits for it), the second build into the same
 * folder waits for the first and then has nothing to do, and every output
 * verifies. --no-wait stops at once, naming the build that holds the folder.
 */
import { execa } from "execa";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseManifest } from "../../src/pipeline/manifest.js";
import { parseProcStart, thisOwner } from "../../src/pipeline/owner.js";
import { specCopy } from "../helpers/images.js";
import { acl, REPO, TEST_CACHE } from "../helpers/cli.js";

const SDE = "1700000000";
let tmp: string;
let spec: string;
let cache: string;
let keys: { privateKey: string; publicKey: string };

const env = () => ({ SOURCE_DATE_EPOCH: SDE, ACL_CACHE_DIR: cache });
const manifestOf = async (out: string) => parseManifest(JSON.parse(await readFile(join(out, "manifest.json"), "utf8")));

beforeAll(async () => {
  ({ tmp, spec } = await specCopy("acl-concurrent-"));
  cache = join(tmp, "cache");
  // downloads the test run already has are linked in (no stage entry is): the builds make every entry
  for (const d of ["debs", "kernel/debs"]) {
    if (!existsSync(join(TEST_CACHE, d))) continue;
    await mkdir(join(cache, d, ".."), { recursive: true });
    await execa("cp", ["-al", join(TEST_CACHE, d), join(cache, d, "..")]);
  }
  const k = await acl(["keys", "generate", "--out", join(tmp, "keys"), "--json"]);
  expect(k.exitCode, k.stderr).toBe(0);
  keys = JSON.parse(k.stdout);
}, 60_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function start(out: string) {
  const child = execa(process.execPath, [join(REPO, "bin/run.js"), "build", spec, "--out", join(tmp, out), "--sign-key", keys.privateKey], {
    env: env(),
    cwd: REPO,
    reject: false,
    timeout: 20 * 60_000,
  });
  return { pid: child.pid!, done: child.then((r) => ({ exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) })) };
}

describe("builds side by side with one cache", () => {
  it("three builds at once (two into one folder): each entry is made once, the second into the folder waits, all verify", async () => {
    const builds = [start("one"), start("one"), start("two")];
    const results = await Promise.all(builds.map((b) => b.done));
    for (const r of results) expect(r.exitCode, `${r.stdout.slice(-1500)}\n${r.stderr.slice(-3000)}`).toBe(0);

    // the output folder: one of the two built it; the other said whom it waited for, then had nothing to do
    const [a, b] = [results[0]!, results[1]!];
    const waiter = /waiting for the build with pid \d+, which is writing/.test(a.stderr) ? 0 : 1;
    const w = results[waiter]!;
    const builder = builds[1 - waiter]!;
    expect(w.stderr).toContain(`waiting for the build with pid ${builder.pid}, which is writing`);
    expect(w.stdout).toMatch(/is up to date in .*\/one: nothing to do/);
    expect((waiter === 0 ? b : a).stdout).toMatch(/^built minimal /m);

    // the cache: one entry per cached stage, so none was made twice; the build into "two" and the
    // one that built "one" met at an entry, and one of them waited for the other to make it
    const entries = (await readdir(join(cache, "stages"))).map((n) => n.replace(/-[0-9a-f]{32}$/, "")).sort();
    expect(entries).toEqual(["initramfs", "packages", "rootfs", "usr"]);
    const makers = [results[1 - waiter]!, results[2]!];
    expect(makers.map((r) => r.stderr).join("\n")).toMatch(/waiting for the build with pid \d+, which is making this same (packages|rootfs|initramfs|usr) entry/);

    // nothing is left over: no scratch entry, no lock, no work folder
    expect(await readdir(join(cache, "tmp")).catch(() => [])).toEqual([]);
    expect(await readdir(join(cache, "locks")).catch(() => [])).toEqual([]);
    expect(await readdir(join(cache, "kernel/locks")).catch(() => [])).toEqual([]);
    expect((await readdir(tmp)).filter((n) => n.startsWith(".")).sort()).toEqual([".one.acl-stamp.json", ".two.acl-stamp.json"]);

    // both outputs verify, with acl and with sha256sum, and hold the same bytes
    for (const out of ["one", "two"]) {
      const v = await acl(["verify", join(tmp, out), "--key", keys.publicKey]);
      expect(v.exitCode, v.stderr).toBe(0);
      const c = await execa("sha256sum", ["--strict", "-c", "SHA256SUMS"], { cwd: join(tmp, out) });
      expect(c.stdout).not.toMatch(/FAILED/);
    }
    expect((await manifestOf(join(tmp, "one"))).artifacts).toEqual((await manifestOf(join(tmp, "two"))).artifacts);
  }, 20 * 60_000);

  it("--no-wait: a build into a folder another build holds stops at once, naming it, and leaves the folder alone", async () => {
    const holder = execa("sleep", ["600"]);
    try {
      await new Promise((r) => setTimeout(r, 50));
      const owner = { ...(await thisOwner()), pid: holder.pid!, start: parseProcStart(await readFile(`/proc/${holder.pid}/stat`, "utf8"))! };
      await writeFile(join(tmp, ".one.acl-lock"), JSON.stringify(owner));
      const before = await readFile(join(tmp, "one/manifest.json"));
      const r = await acl(["build", spec, "--out", join(tmp, "one"), "--no-wait"], { env: env() });
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`another build \\(pid ${holder.pid}\\) is writing .*/one\\nhint: wait for it to finish`));
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(await readFile(join(tmp, "one/manifest.json"))).toEqual(before);
      expect(JSON.parse(await readFile(join(tmp, ".one.acl-lock"), "utf8")).pid).toBe(holder.pid);
    } finally {
      holder.kill("SIGKILL");
      await holder.catch(() => undefined);
      await rm(join(tmp, ".one.acl-lock"), { force: true });
    }
  }, 120_000);
});
