/**
 * Room on the file systems a build writes to, on real (small) tmpfs mounts:
 * a stage that says what the rest of the build writes is refused before it
 * runs when that does not fit, and a real ENOSPC (the check passed, then the
 * space went) says roughly how much more was needed; so does one in a cached
 * stage, going by its last entry.
 */
import { mkdir, mkdtemp, open, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tmpfs as mountTmpfs, unmountAll } from "../helpers/mounts.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UserError } from "../../src/errors.js";
import { silentReporter } from "../../src/output/reporter.js";
import { StageCache } from "../../src/pipeline/cache.js";
import { runStages, type AnyStage } from "../../src/pipeline/runner.js";
import type { BuildContext } from "../../src/pipeline/stage.js";
import { MiB } from "../../src/util/size.js";

let dir: string;
const tmpfs = (name: string, size: string, ro = false) => mountTmpfs(dir, name, size, ro);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "acl-space-"));
});
afterAll(async () => {
  unmountAll();
  await rm(dir, { recursive: true, force: true });
});

/** Write `bytes` of real data (tmpfs holds what is written, zeros too). */
async function fill(path: string, bytes: number): Promise<void> {
  const fh = await open(path, "w");
  try {
    const chunk = Buffer.alloc(MiB, 0x5a);
    for (let done = 0; done < bytes; done += MiB) await fh.write(chunk, 0, Math.min(MiB, bytes - done));
  } finally {
    await fh.close();
  }
}

async function context(outFolder: string, cacheRoot: string): Promise<BuildContext> {
  const work = join(outFolder, ".out.build-test");
  await mkdir(work, { recursive: true });
  return {
    spec: {} as BuildContext["spec"],
    epoch: 0,
    cache: new StageCache(cacheRoot),
    workDir: work,
    stagingDir: join(work, "out"),
    reporter: silentReporter,
    hostTools: {},
    aclVersion: "test",
    codeDigest: "test",
  };
}

async function failure(p: Promise<unknown>): Promise<UserError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(UserError);
  return e as UserError;
}

describe("space on the file systems a build writes to", () => {
  it("refuses a stage whose writes do not fit before it runs, naming the folder and how much more is needed", async () => {
    const out = await tmpfs("small-out", "32m");
    const ctx = await context(out, join(dir, "cache-a"));
    let ran = false;
    const disk: AnyStage = {
      name: "disk",
      requires: () => [],
      space: async () => 100 * MiB,
      run: async () => {
        ran = true;
      },
    };
    const e = await failure(runStages(ctx, [disk]));
    expect(e.message).toMatch(new RegExp(`^not enough space for the disk stage and those after it: they write about 100\\.0 MiB into ${out}, which has 3\\d\\.\\d MiB free; about 6\\d\\.\\d MiB more is needed$`));
    expect(e.file).toBe(out);
    expect(e.hint).toMatch(/--out DIR/);
    expect(ran).toBe(false);
  });

  it("a real ENOSPC after the check passed says roughly how much more the rest of the build needed", async () => {
    const out = await tmpfs("taken-out", "32m");
    const ctx = await context(out, join(dir, "cache-b"));
    const disk: AnyStage = {
      name: "disk",
      requires: () => [],
      space: async () => 24 * MiB,
      // another program takes most of the room once the check has passed, then the stage writes its 24 MiB
      run: async (_c, _i, io) => {
        await fill(join(out, "someone-else"), 20 * MiB);
        await fill(join(io.dir, "disk.raw"), 24 * MiB);
      },
    };
    const e = await failure(runStages(ctx, [disk]));
    expect(e.message).toMatch(/^the disk stage ran out of space: no space left on device; the build writes into the output's folder .* \(0\.0 MiB free\) and the cache .*; the disk stage and those after it write about 24\.0 MiB: roughly (\d+\.\d) MiB more is needed in /);
    const more = Number(/roughly (\d+\.\d) MiB more/.exec(e.message)![1]);
    // written before the file system filled: 12 MiB of the 24, give or take tmpfs's own blocks
    expect(more).toBeGreaterThan(8);
    expect(more).toBeLessThan(16);
    expect(e.file).toBe(out);
  });

  it("a cached stage that fills the cache goes by its last entry there, and leaves no scratch folder", async () => {
    const cacheRoot = await tmpfs("small-cache", "16m");
    const ctx = await context(join(dir, "out-c"), cacheRoot);
    // the last usr entry, as the cache records it: 40 MiB
    await mkdir(join(cacheRoot, "stages", `usr-${"0".repeat(32)}`), { recursive: true });
    await writeFile(join(cacheRoot, "stages", `usr-${"0".repeat(32)}`, "stage.json"), JSON.stringify({ id: "0".repeat(64), name: "usr", meta: {}, bytes: 40 * MiB }));
    const usr: AnyStage = {
      name: "usr",
      requires: () => [],
      cacheInputs: async () => ({ v: 2 }),
      run: async (_c, _i, io) => fill(join(io.dir, "usr.img"), 20 * MiB),
    };
    const e = await failure(runStages(ctx, [usr]));
    expect(e.message).toMatch(new RegExp(`^the usr stage ran out of space: .*; its last entry in the cache took 40\\.0 MiB: roughly 2\\d\\.\\d MiB more is needed in ${cacheRoot}$`));
    expect(e.file).toBe(cacheRoot);
    expect(await readdir(join(cacheRoot, "tmp"))).toEqual([]);
  });
});
