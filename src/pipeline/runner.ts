/**
 * The stage runner: check what every stage needs on the host before the
 * first one runs (one message naming everything missing and the
 * `apt-get install` line), then run the stages in order with caching, timing
 * and progress. A cached stage's id is the sha256 of its name, its cache
 * inputs, acl's code digest and the versions of the packages it requires;
 * its output is built in a scratch folder and committed by rename, so a
 * failed or killed run never leaves an entry that looks valid.
 */
import { mkdir, rm, statfs } from "node:fs/promises";
import { dirname, join } from "node:path";
import { checkRequirements, type Requirement } from "../adapters/exec.js";
import type { ImageSpec } from "../config/spec.js";
import { ExternalToolError, UserError } from "../errors.js";
import type { StageHandle } from "../output/reporter.js";
import { formatMiB } from "../util/size.js";
import { stageId } from "./cache.js";
import { acquireLock } from "./lock.js";
import type { BuildContext, Stage, StageResult } from "./stage.js";

export interface StageTiming {
  stage: string;
  ms: number;
  cached: boolean;
}

// A list of stages of different types: each one's input is the results of those before it.
export type AnyStage = Stage<any, any>;

/** Everything the stages need for this spec (checked together, before the first stage). */
export function stageRequirements(stages: readonly AnyStage[], spec: Readonly<ImageSpec>): Requirement[] {
  return stages.flatMap((s) => s.requires(spec));
}

/** Check the host for every stage at once. */
export async function checkStages(stages: readonly AnyStage[], spec: Readonly<ImageSpec>): Promise<void> {
  await checkRequirements(stageRequirements(stages, spec));
}

/** Run the stages in order; returns each one's result by name and the timings. */
export async function runStages(
  ctx: BuildContext,
  stages: readonly AnyStage[],
): Promise<{ results: Record<string, StageResult<unknown>>; timings: StageTiming[] }> {
  const results: Record<string, StageResult<unknown>> = {};
  const timings: StageTiming[] = [];
  for (const stage of stages) {
    const handle = ctx.reporter.stage(stage.name, stage.detail?.(ctx, results));
    let result: StageResult<unknown>;
    try {
      result = stage.cacheInputs ? await runCached(ctx, stage, results, handle) : await runPlain(ctx, stage, results, handle);
    } catch (e) {
      // the work folder sits next to the output folder (and is removed): name the folder the user chose
      throw await explainSpace(e, stage.name, [
        { what: "the output's folder", path: dirname(ctx.workDir) },
        { what: "the cache", path: ctx.cache.root },
      ]);
    }
    const ms = handle.end({ cached: result.cached, note: stage.note?.(result.value) });
    timings.push({ stage: stage.name, ms: Math.round(ms), cached: result.cached });
    results[stage.name] = result;
  }
  return { results, timings };
}

async function runPlain(ctx: BuildContext, stage: AnyStage, input: object, progress: StageHandle): Promise<StageResult<unknown>> {
  const dir = join(ctx.workDir, stage.name);
  await mkdir(dir, { recursive: true });
  const value: unknown = await stage.run(ctx, input, { dir, progress });
  return { name: stage.name, dir, value, cached: false };
}

async function runCached(ctx: BuildContext, stage: AnyStage, input: object, progress: StageHandle): Promise<StageResult<unknown>> {
  const packages = [...new Set(stage.requires(ctx.spec).map((r) => r.package))].sort();
  const tools: Record<string, string> = {};
  for (const p of packages) tools[p] = ctx.hostTools[p] ?? "not installed";
  const id = stageId(stage.name, { inputs: await stage.cacheInputs!(ctx, input), code: ctx.codeDigest, acl: ctx.aclVersion, tools });
  const cachedResult = async () => {
    const hit = await ctx.cache.lookup<unknown>(stage.name, id);
    return hit === undefined ? undefined : { name: stage.name, dir: ctx.cache.dir(stage.name, id), value: hit, cached: true, id };
  };
  const first = await cachedResult();
  if (first) return first;
  // one build makes an entry: another that needs the same one waits for it, then uses it
  const lock = await acquireLock(ctx.cache.lockPath(stage.name, id), {
    onWait: (holder, ms) =>
      ctx.reporter.info(
        `${ms >= 1000 ? "still " : ""}waiting for the build with pid ${holder.pid}, which is making this same ${stage.name} entry${ms >= 1000 ? ` (${Math.round(ms / 1000)} s so far)` : ""}`,
      ),
  });
  try {
    const made = await cachedResult();
    if (made) return made;
    const scratch = await ctx.cache.scratch(stage.name);
    let value: unknown;
    try {
      value = await stage.run(ctx, input, { dir: scratch, progress });
    } catch (e) {
      // a failed stage leaves nothing behind in the cache
      await rm(scratch, { recursive: true, force: true });
      throw e;
    }
    const dir = await ctx.cache.commit(scratch, stage.name, id, value);
    return { name: stage.name, dir, value, cached: false, id };
  } finally {
    await lock.release();
  }
}

const NO_SPACE = /No space left on device|Disk quota exceeded/;

/**
 * A full file system, whichever way it showed (an ENOSPC from Node, or a
 * tool that said so), becomes one clear error naming the folders the build
 * writes into and how much room each has left.
 */
async function explainSpace(err: unknown, stage: string, folders: readonly { what: string; path: string }[]): Promise<unknown> {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const byTool = err instanceof ExternalToolError && NO_SPACE.test(err.stderr);
  if (code !== "ENOSPC" && code !== "EDQUOT" && !byTool) return err;
  const free: string[] = [];
  for (const f of folders) {
    try {
      const s = await statfs(f.path);
      free.push(`${f.what} ${f.path} (${formatMiB(s.bavail * s.bsize)} free)`);
    } catch {
      free.push(`${f.what} ${f.path}`);
    }
  }
  const what = byTool ? `${(err as ExternalToolError).argv[0]} reported "No space left on device"` : "no space left on device";
  return new UserError(`the ${stage} stage ran out of space: ${what}; the build writes into ${free.join(" and ")}`, {
    file: folders[0]?.path,
    hint: "free space there, or build on a larger file system: --out DIR for the output and its work folder, --cache-dir DIR (or ACL_CACHE_DIR) for the cache",
  });
}
