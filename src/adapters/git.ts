/**
 * The two facts acl reads from git, both optional (a spec need not be in a
 * checkout): the time of the last commit that touched a file (the default
 * SOURCE_DATE_EPOCH) and the top of the checkout (provenance names the spec
 * relative to it).
 */
import { basename, dirname } from "node:path";
import { run } from "./exec.js";

/** Commit time (seconds) of the last commit touching `file`, or undefined outside git. */
export async function lastCommitTime(file: string): Promise<number | undefined> {
  try {
    const r = await run(["git", "log", "-1", "--format=%ct", "--", basename(file)], { cwd: dirname(file) });
    const t = Number(r.stdout.trim());
    return t > 0 ? t : undefined;
  } catch {
    return undefined;
  }
}

/** The top folder of the checkout holding `dir`, or undefined outside git. */
export async function checkoutTop(dir: string): Promise<string | undefined> {
  try {
    return (await run(["git", "rev-parse", "--show-toplevel"], { cwd: dir })).stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}
