/** Run the built CLI (dist/) as a user would, with the project's Node. */
import { execa } from "execa";
import { join, resolve } from "node:path";

export const REPO = resolve(import.meta.dirname, "../..");

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export async function acl(args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number; repo?: string } = {}): Promise<CliResult> {
  // `repo`: another copy of the CLI (bin/, dist/, data/, package.json), such as one with its code changed
  const r = await execa(process.execPath, [join(opts.repo ?? REPO, "bin/run.js"), ...args], {
    cwd: opts.cwd ?? REPO,
    env: { ACL_CACHE_DIR: TEST_CACHE, ...opts.env },
    reject: false,
    timeout: opts.timeoutMs ?? 20 * 60_000,
    all: false,
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Stage cache shared by the test run (kernel and .deb downloads are reused between files). */
export const TEST_CACHE = join(REPO, ".cache/test-cache");
