/**
 * `acl build`: load and check the spec, check the host for every stage, then
 * run the stages (src/stages/index.ts) in a work folder next to the output
 * and publish the result by rename.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { cleanUpOnInterrupt, ownedTempDir, removeAbandoned } from "../pipeline/owner.js";
import { acquireLock, lockBeside, tryLock } from "../pipeline/lock.js";
import { basename, dirname, join, relative, resolve } from "node:path";
import { installedVersions } from "../adapters/dpkg.js";
import { checkRequirements } from "../adapters/exec.js";
import { lastCommitTime } from "../adapters/git.js";
import { loadSpec, type ImageSpec } from "../config/spec.js";
import { fsReason, UserError } from "../errors.js";
import type { Reporter } from "../output/reporter.js";
import { StageCache, defaultCacheDir, defaultMaxBytes, stageId } from "../pipeline/cache.js";
import { MANIFEST_FILE, readManifest, type Manifest } from "../pipeline/manifest.js";
import { staleReason, writeStamp } from "../pipeline/stamp.js";
import type { SecureBootKeys, SigningPair } from "../pipeline/stage.js";
import { rootfsCacheInputs } from "../stages/rootfs/stage.js";
import { checkoutTop } from "../adapters/git.js";
import { checkStages, runStages, stageRequirements, type StageTiming } from "../pipeline/runner.js";
import type { BuildContext, StageResult } from "../pipeline/stage.js";
import { BUILD_STAGES } from "../stages/index.js";
import { SECUREBOOT_PACKAGES, TOOL_PACKAGES_RECORDED, type ReleaseOut } from "../stages/release/stage.js";
import { SIGNATURE_FILE } from "../stages/release/sign.js";
import { SECUREBOOT_REQUIREMENTS } from "../stages/boot/secureboot.js";
import { DATA_DIR } from "../util/data.js";
import { preflight, type SecureBootFlags } from "./preflight.js";
import { walk } from "../util/fs.js";
import { makeDir } from "../util/fs.js";

export type { StageTiming } from "../pipeline/runner.js";

export interface BuildOptions {
  specPath: string;
  /** Output folder; default out/NAME next to the current directory. */
  outDir?: string;
  /** Private key (PEM) to sign with; overrides the spec's [signing] key. */
  signKey?: string;
  /** --secureboot-key/--secureboot-cert/--secureboot-passphrase-file and $ACL_SECUREBOOT_PASSPHRASE. */
  secureBoot?: SecureBootFlags;
  cacheDir?: string;
  /** Ignore cached stages (they are still refreshed). */
  noCache?: boolean;
  /** Keep the temporary build folder when the build fails (for debugging). */
  keepWork?: boolean;
  /** Stop at once, naming it, when another build is writing the same output folder (default: wait for it). */
  noWait?: boolean;
  /** SOURCE_DATE_EPOCH as given (the CLI passes the environment's); default: the spec's last commit, else 2024-01-01. */
  sourceDateEpoch?: string;
  reporter: Reporter;
}

export interface BuildResult {
  outDir: string;
  manifest: Manifest;
  stages: StageTiming[];
  signed: boolean;
  /** Nothing changed since the output was built: no stage ran. */
  upToDate: boolean;
}

export const ACL_VERSION = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

/** Folders of compiled code and of data that shape stage outputs. */
const CODE_DIRS = ["stages", "formats", "adapters", "pipeline", "config", "util"];
const DATA_DIRS = ["initramfs", "guest"];

/**
 * Digest of acl's own code and the data files it renders into images: part
 * of every stage id, so a changed acl never reuses stale cache entries.
 */
let codeDigestMemo: string | undefined;
export async function codeDigest(): Promise<string> {
  if (codeDigestMemo) return codeDigestMemo;
  const root = new URL("..", import.meta.url).pathname;
  const h = createHash("sha256").update(ACL_VERSION);
  const add = async (base: string, sub: string, keep: (rel: string) => boolean) => {
    for await (const e of walk(join(base, sub))) if (e.stat.isFile() && keep(e.rel)) h.update(`${sub}/${e.rel}`).update(await readFile(join(base, sub, e.rel)));
  };
  for (const sub of CODE_DIRS) await add(root, sub, (rel) => rel.endsWith(".js"));
  for (const sub of DATA_DIRS) await add(DATA_DIR, sub, () => true);
  codeDigestMemo = h.digest("hex");
  return codeDigestMemo;
}

/** SOURCE_DATE_EPOCH as given, else the spec's last git commit, else a fixed date. */
export async function resolveSourceDateEpoch(spec: Readonly<ImageSpec>, given: string | undefined): Promise<number> {
  if (given !== undefined && given !== "") {
    if (!/^\d+$/.test(given)) throw new UserError(`SOURCE_DATE_EPOCH must be a whole number of seconds, got '${given}'`, { hint: "unset it or set it to e.g. $(git log -1 --format=%ct)" });
    return Number(given);
  }
  return (await lastCommitTime(spec.specPath)) ?? 1704067200; // 2024-01-01T00:00:00Z
}

export async function build(opts: BuildOptions): Promise<BuildResult> {
  const r = opts.reporter;
  const load = r.stage("load spec", opts.specPath);
  const spec = await loadSpec(opts.specPath);
  const outDir = resolve(opts.outDir ?? join("out", spec.name));
  // every missing host tool at once, then a key that cannot sign or an unknown kernel: now, not after the first stages
  await checkStages(BUILD_STAGES, spec);
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const { signKey, secureBoot } = await preflight(spec, { signKey: opts.signKey, secureBoot: opts.secureBoot, cacheDir });
  const epoch = await resolveSourceDateEpoch(spec, opts.sourceDateEpoch);
  // signing asked for by flags alone (no [secureboot]) needs sbsigntool and efitools as much
  if (secureBoot) await checkRequirements(SECUREBOOT_REQUIREMENTS);
  const hostTools = await installedVersions([
    ...TOOL_PACKAGES_RECORDED,
    ...(secureBoot ? SECUREBOOT_PACKAGES : []),
    ...stageRequirements(BUILD_STAGES, spec).map((q) => q.package),
  ]);
  const timings: StageTiming[] = [{ stage: "load spec", ms: Math.round(load.end()), cached: false }];

  // from here, Ctrl-C or SIGTERM removes what this build made before it exits
  cleanUpOnInterrupt();
  // one build at a time writes an output folder: a second waits (or, asked not to, stops naming the first)
  const outLock = await lockOutput(outDir, r, opts.noWait);
  try {
    await checkOutDir(outDir);
    return await buildLocked(opts, { spec, outDir, cacheDir, signKey, secureBoot, epoch, hostTools, timings });
  } finally {
    await outLock.release();
  }
}

interface Prepared {
  spec: ImageSpec;
  outDir: string;
  cacheDir: string;
  signKey?: string;
  secureBoot?: SecureBootKeys;
  epoch: number;
  hostTools: Record<string, string>;
  timings: StageTiming[];
}

/** The lock of an output folder: .NAME.acl-lock beside it. */
async function lockOutput(outDir: string, r: Reporter, noWait = false) {
  const path = lockBeside(outDir);
  try {
    await makeDir(dirname(outDir));
    if (noWait) {
      const got = await tryLock(path);
      if ("release" in got) return got;
      throw new UserError(`another build (pid ${got.pid}) is writing ${outDir}`, {
        file: outDir,
        hint: "wait for it to finish (without --no-wait the build waits), or build into another --out",
      });
    }
    return await acquireLock(path, {
      onWait: (holder, ms) =>
        r.info(`${ms >= 1000 ? `still waiting (${Math.round(ms / 1000)} s so far)` : "waiting"} for the build with pid ${holder.pid}, which is writing ${relative(process.cwd(), outDir) || outDir}`),
    });
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`cannot create the build's lock and work folder in ${dirname(outDir)}: ${fsReason(e)}`, {
      file: dirname(outDir),
      hint: "the build works next to its output folder and publishes by rename: choose a writable --out",
    });
  }
}

async function buildLocked(opts: BuildOptions, p: Prepared): Promise<BuildResult> {
  const r = opts.reporter;
  const { spec, outDir, cacheDir, signKey, secureBoot, epoch, hostTools, timings } = p;
  // first (a build with nothing to do cleans up too): what builds killed before they could clean up
  // left, their work folders beside this output and their unfinished cache entries (each names its
  // owner process; a running build's are kept)
  const cache = Object.assign(new StageCache(cacheDir, !opts.noCache), { maxBytes: defaultMaxBytes() });
  const workPrefix = `.${basename(outDir)}.build-`;
  for (const a of [...(await removeAbandoned(dirname(outDir), (n) => n.startsWith(workPrefix))), ...(await cache.removeAbandoned())])
    r.info(`removed ${a.path}, left by ${a.owner ? `a build that stopped (pid ${a.owner.pid})` : "an earlier build"}`);
  // nothing changed and the output is as it was published: nothing to do
  const key = await buildKey(spec, { epoch, hostTools, signKey, secureBoot, cacheDir });
  if (!opts.noCache) {
    const upToDate = await upToDateBuild(outDir, key, r, timings);
    if (upToDate) return upToDate;
  }
  let work: string;
  try {
    work = await ownedTempDir(dirname(outDir), workPrefix);
  } catch (e) {
    throw new UserError(`cannot create the build's work folder in ${dirname(outDir)}: ${fsReason(e)}`, {
      file: dirname(outDir),
      hint: "the build works next to its output folder and publishes by rename: choose a writable --out",
    });
  }
  const staging = join(work, "out");
  await mkdir(staging);
  let published = false;
  try {
    const ctx: BuildContext = {
      spec,
      epoch,
      cache,
      workDir: work,
      stagingDir: staging,
      reporter: r,
      hostTools,
      aclVersion: ACL_VERSION,
      codeDigest: await codeDigest(),
      signKey,
      secureBoot,
    };
    const { results, timings: staged } = await runStages(ctx, BUILD_STAGES);
    timings.push(...staged);
    const release = results.release as StageResult<ReleaseOut>;

    const pub = r.stage("publish", relative(process.cwd(), outDir) || outDir);
    await publish(staging, outDir, join(work, "previous"));
    published = true;
    await writeStamp(outDir, key);
    timings.push({ stage: "publish", ms: Math.round(pub.end()), cached: false });
    return { outDir, manifest: release.value.manifest, stages: timings, signed: release.value.signatures.length > 0, upToDate: false };
  } finally {
    if (!opts.keepWork || published) await rm(work, { recursive: true, force: true });
  }
}

/**
 * The key of a whole build: everything any stage reads. The rootfs stage's
 * cache inputs (sources resolved, files and overlays by content, the kernel
 * version, the base Ignition config), the spec's bytes, the epoch, acl's code,
 * the host packages' versions, the signing and Secure Boot keys, and where the
 * spec sits in its git checkout (the provenance names that path).
 */
async function buildKey(spec: Readonly<ImageSpec>, o: { epoch: number; hostTools: Record<string, string>; signKey?: string; secureBoot?: SecureBootKeys; cacheDir: string }): Promise<string> {
  const fileDigest = async (p: string | undefined) => (p ? createHash("sha256").update(await readFile(p)).digest("hex") : undefined);
  const pair = (k: SigningPair | undefined) => k && { key: createHash("sha256").update(k.keyPem).digest("hex"), cert: createHash("sha256").update(k.cert.raw).digest("hex") };
  const top = await checkoutTop(spec.specDir);
  return stageId("build", {
    acl: ACL_VERSION,
    code: await codeDigest(),
    spec: spec.specDigest,
    rootfs: await rootfsCacheInputs(spec, o.epoch, o.signKey, o.cacheDir),
    epoch: o.epoch,
    hostTools: o.hostTools,
    signKey: await fileDigest(o.signKey),
    secureBoot: o.secureBoot && { ...pair(o.secureBoot), kek: pair(o.secureBoot.kek) },
    specInCheckout: top ? relative(top, spec.specPath) : basename(spec.specPath),
  });
}

/** The result of a build that has nothing to do, or undefined when the output must be rebuilt (said in one line). */
async function upToDateBuild(outDir: string, key: string, r: Reporter, timings: StageTiming[]): Promise<BuildResult | undefined> {
  const check = r.stage("up to date?", relative(process.cwd(), outDir) || outDir);
  const stale = await staleReason(outDir, key);
  let manifest: Manifest | undefined;
  if (!stale) manifest = await readManifest(outDir).catch(() => undefined);
  timings.push({ stage: "up to date?", ms: Math.round(check.end({ note: stale ?? (manifest ? "yes" : "the manifest does not read") })), cached: false });
  if (!manifest) return undefined;
  for (const s of [...BUILD_STAGES.map((x) => x.name), "publish"]) timings.push({ stage: s, ms: Math.round(r.stage(s).end({ cached: true })), cached: true });
  const signed = await stat(join(outDir, SIGNATURE_FILE)).then(() => true, () => false);
  return { outDir, manifest, stages: timings, signed, upToDate: true };
}

/**
 * Publishing replaces the output folder: refuse one that is not a previous
 * acl output (a file, or a folder with other content), rather than remove it.
 */
async function checkOutDir(outDir: string): Promise<void> {
  const st = await stat(outDir).catch(() => undefined);
  if (!st) return;
  if (!st.isDirectory()) {
    throw new UserError(`the output folder ${outDir} exists and is not a folder`, { file: outDir, hint: "choose another --out, or remove the file" });
  }
  const names = await readdir(outDir);
  if (names.length && !names.includes(MANIFEST_FILE)) {
    throw new UserError(`the output folder ${outDir} holds files and no ${MANIFEST_FILE}: it is not an acl output, and a build would replace it`, {
      file: outDir,
      hint: "choose another --out (the default is out/NAME), or empty that folder first",
    });
  }
}

/** Rename `staging` onto `outDir`; the previous output is moved aside first and put back if that fails. */
async function publish(staging: string, outDir: string, aside: string): Promise<void> {
  let hadOld = false;
  try {
    await rename(outDir, aside);
    hadOld = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  try {
    await rename(staging, outDir);
  } catch (e) {
    if (hadOld) await rename(aside, outDir); // put the previous good output back
    throw e;
  }
  if (hadOld) await rm(aside, { recursive: true, force: true });
}
