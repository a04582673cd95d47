/**
 * Built images shared by the test files: the first caller builds with the
 * real CLI, others wait on a lock and reuse the output (same spec, same acl).
 */
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { treeDigest } from "../../src/util/hash.js";
import { acl, REPO } from "./cli.js";

export const TEST_OUT = join(REPO, ".cache/test-out");

async function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(TEST_OUT, `.${name}.lock`);
  await mkdir(TEST_OUT, { recursive: true });
  const deadline = Date.now() + 40 * 60_000;
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch {
      // a lock older than 40 minutes belongs to a dead run
      const st = await stat(lock).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 40 * 60_000) await rm(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/** Build images/NAME.toml (or another spec) once per spec content and acl build; returns the output folder. */
export async function builtImage(name: string, spec = `images/${name}.toml`): Promise<string> {
  return withLock(name, async () => {
    const out = join(TEST_OUT, name);
    // the spec and acl itself (compiled code and data files): a changed acl rebuilds
    const key = createHash("sha256").update(await readFile(join(REPO, spec))).update(await treeDigest(join(REPO, "dist"))).update(await treeDigest(join(REPO, "data"))).digest("hex");
    const marker = join(TEST_OUT, `.${name}.built`);
    const built = await readFile(marker, "utf8").catch(() => "");
    if (built === key && process.env.ACL_TEST_REBUILD !== "1" && (await stat(join(out, "manifest.json")).catch(() => undefined))) return out;
    const r = await acl(["build", spec, "--out", out], { env: { SOURCE_DATE_EPOCH: "1700000000" } });
    if (r.exitCode !== 0) throw new Error(`acl build ${spec} failed (${r.exitCode}):\n${r.stderr.slice(-4000)}`);
    await writeFile(marker, key);
    return out;
  });
}
