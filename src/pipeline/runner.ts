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
import { diskUsage, stageId } from "./cache.js";
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
  // the work folder sits next to the output folder (and is removed): name the folder the user chose
  const outFolder = dirname(ctx.workDir);
  let plan: SpacePlan | undefined;
  for (const stage of stages) {
    if (stage.space) plan = await checkSpace(ctx, stage.name, await stage.space(ctx, results), outFolder);
    const handle = ctx.reporter.stage(stage.name, stage.detail?.(ctx, results));
    let result: StageResult<unknown>;
    try {
      result = stage.cacheInputs ? await runCached(ctx, stage, results, handle) : await runPlain(ctx, stage, results, handle);
    } catch (e) {
      const need = async () => (stage.cacheInputs ? cacheNeed(ctx, stage.name) : plan && planNeed(ctx, plan));
      throw await explainSpace(e, stage.name, [
        { what: "the output's folder", path: outFolder },
        { what: "the cache", path: ctx.cache.root },
      ], need);
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

/** What the stages from one on will write into the work folder, and what it held when that was checked. */
interface SpacePlan {
  from: string;
  bytes: number;
  usedAtCheck: number;
}

/** Room for what the rest of the build writes beside the output, checked before a stage that says how much that is. */
async function checkSpace(ctx: BuildContext, stage: string, bytes: number, outFolder: string): Promise<SpacePlan> {
  const free = await freeBytes(outFolder);
  if (free !== undefined && free < bytes) {
    throw new UserError(
      `not enough space for the ${stage} stage and those after it: they write about ${formatMiB(bytes)} into ${outFolder}, which has ${formatMiB(free)} free; about ${formatMiB(bytes - free)} more is needed`,
      { file: outFolder, hint: "free space there, or build on a larger file system with --out DIR (the build works and publishes beside its output folder)" },
    );
  }
  return { from: stage, bytes, usedAtCheck: await diskUsage(ctx.workDir) };
}

/** What a stage that ran out of room in the work folder still needed: the plan, less what was written since, less what is free. */
async function planNeed(ctx: BuildContext, plan: SpacePlan): Promise<Need> {
  const written = Math.max(0, (await diskUsage(ctx.workDir)) - plan.usedAtCheck);
  const free = (await freeBytes(dirname(ctx.workDir))) ?? 0;
  return { where: dirname(ctx.workDir), bytes: plan.bytes, more: plan.bytes - written - free, what: `the ${plan.from} stage and those after it write about ${formatMiB(plan.bytes)}` };
}

/** What a cached stage that ran out of room needs, going by its last entry in the cache (its scratch folder is removed by now). */
async function cacheNeed(ctx: BuildContext, stage: string): Promise<Need | undefined> {
  const last = (await ctx.cache.list().catch(() => [])).find((i) => i.kind === "stage" && i.name === stage);
  if (!last) return undefined;
  const free = (await freeBytes(ctx.cache.root)) ?? 0;
  return { where: ctx.cache.root, bytes: last.bytes, more: last.bytes - free, what: `its last entry in the cache took ${formatMiB(last.bytes)}` };
}

interface Need {
  where: string;
  bytes: number;
  /** Roughly how much more room it takes (not said when not positive). */
  more: number;
  what: string;
}

async function freeBytes(path: string): Promise<number | undefined> {
  try {
    const s = await statfs(path);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

const NO_SPACE = /No space left on device|Disk quota exceeded/;

/**
 * A full file system, whichever way it showed (an ENOSPC from Node, or a
 * tool that said so), becomes one clear error naming the folders the build
 * writes into and how much room each has left.
 */
async function explainSpace(err: unknown, stage: string, folders: readonly { what: string; path: string }[], needed: () => Promise<Need | undefined>): Promise<unknown> {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const byTool = err instanceof ExternalToolError && NO_SPACE.test(err.stderr);
  if (code !== "ENOSPC" && code !== "EDQUOT" && !byTool) return err;
  // measured only for a full file system: what the stage (and those after it) needed there
  const need = await needed().catch(() => undefined);
  const free: string[] = [];
  for (const f of folders) {
    const bytes = await freeBytes(f.path);
    free.push(`${f.what} ${f.path}${bytes === undefined ? "" : ` (${formatMiB(bytes)} free)`}`);
  }
  const what = byTool ? `${(err as ExternalToolError).argv[0]} reported "No space left on device"` : "no space left on device";
  const more = need && need.more > 0 ? `; ${need.what}: roughly ${formatMiB(need.more)} more is needed in ${need.where}` : "";
  return new UserError(`the ${stage} stage ran out of space: ${what}; the build writes into ${free.join(" and ")}${more}`, {
    file: need && need.more > 0 ? need.where : folders[0]?.path,
    hint: "free space there, or build on a larger file system: --out DIR for the output and its work folder, --cache-dir DIR (or ACL_CACHE_DIR) for the cache",
  });
}
