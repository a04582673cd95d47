/**
 * Content-addressed stage cache. A stage's id is the sha256 of its name, its
 * canonical options, the ids of its inputs and the versions of the tools it
 * runs; a finished stage lives in CACHE/stages/NAME-ID/ and is committed by
 * rename, so a crash never leaves a half-written entry that looks valid.
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile, readdir } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { canonicalJson } from "./manifest.js";

export function stageId(name: string, inputs: unknown): string {
  return createHash("sha256").update(name).update("\0").update(canonicalJson(inputs)).digest("hex");
}

export function defaultCacheDir(): string {
  if (process.env.ACL_CACHE_DIR) return process.env.ACL_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "acl");
}

export class StageCache {
  constructor(
    readonly root: string,
    /** When false, lookups always miss (entries are still written). */
    readonly enabled = true,
  ) {}

  dir(name: string, id: string): string {
    return join(this.root, "stages", `${name}-${id.slice(0, 32)}`);
  }

  /** The metadata of a committed entry, or undefined. */
  async lookup<T>(name: string, id: string): Promise<T | undefined> {
    if (!this.enabled) return undefined;
    try {
      const meta = JSON.parse(await readFile(join(this.dir(name, id), "stage.json"), "utf8")) as { id: string; meta: T };
      return meta.id === id ? meta.meta : undefined;
    } catch {
      return undefined;
    }
  }

  /** A fresh folder to build an entry in. */
  async scratch(name: string): Promise<string> {
    await mkdir(join(this.root, "tmp"), { recursive: true });
    return mkdtemp(join(this.root, "tmp", `${name}-`));
  }

  /** Commit a scratch folder as the entry for (name, id). */
  async commit<T>(scratchDir: string, name: string, id: string, meta: T): Promise<string> {
    await writeFile(join(scratchDir, "stage.json"), canonicalJson({ id, name, meta }));
    const dest = this.dir(name, id);
    await mkdir(join(this.root, "stages"), { recursive: true });
    await rm(dest, { recursive: true, force: true });
    await rename(scratchDir, dest);
    await this.prune(name, 3);
    return dest;
  }

  /** Keep only the newest `keep` entries of a stage. */
  async prune(name: string, keep: number): Promise<void> {
    const dir = join(this.root, "stages");
    const entries: { p: string; t: number }[] = [];
    for (const e of await readdir(dir)) {
      if (!e.startsWith(`${name}-`)) continue;
      const p = join(dir, e);
      entries.push({ p, t: (await stat(p)).mtimeMs });
    }
    entries.sort((a, b) => b.t - a.t);
    for (const old of entries.slice(keep)) await rm(old.p, { recursive: true, force: true });
  }
}
