/**
 * The packages stage (cached by content): the spec's sources up to and
 * including its last package source (debian, docker, oci-archive,
 * docker-archive) applied into one tree, the slow part of a build. What
 * comes after (overlay folders listed after them, files, users, units, the
 * kernel, sanitize) is the rootfs stage, which starts from a copy of this
 * tree, so editing an overlay file never installs the packages again. A cold
 * build goes through both stages the same way, so both give the same bytes.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Source } from "../../config/spec-schema.js";
import type { ImageSpec } from "../../config/spec.js";
import type { BuildContext, Stage, StageIO } from "../../pipeline/stage.js";
import { treeFileDigests } from "../rootfs/sbom.js";
import { sourceType } from "../rootfs/sources/index.js";
import type { DebPackage, SourceContext } from "../rootfs/sources/source.js";

export interface PackagesMeta {
  /** How many of the spec's sources are in this tree (a prefix of them). */
  sources: number;
  packages: DebPackage[];
  images: { ref: string; digest: string }[];
  archives: { path: string; sha256: string }[];
  tools: Record<string, string>;
}

/** Inside the cache entry. */
export const PACKAGES_TREE = "tree";
/** Inside the cache entry: every file's digests (treeFileDigests), reused by the rootfs stage's SBOM for the files it did not change. */
export const PACKAGES_DIGESTS = "file-digests.json";

/** The sources this stage applies: up to and including the last one that is not a local folder. */
export function packageSources(spec: Readonly<ImageSpec>): readonly Source[] {
  let last = -1;
  spec.sources.forEach((s, i) => {
    if (s.type !== "dir") last = i;
  });
  return spec.sources.slice(0, last + 1);
}

export const packagesStage: Stage<PackagesMeta> = {
  name: "packages",
  requires: (spec) => packageSources(spec).flatMap((s) => sourceType(s).requires(s)),
  detail: (ctx) => `${packageSources(ctx.spec).length} of ${ctx.spec.sources.length} source(s)`,
  cacheInputs: async (ctx) => {
    const sources: unknown[] = [];
    for (const [i, s] of packageSources(ctx.spec).entries()) sources.push(await sourceType(s).cacheInput(s, { spec: ctx.spec, key: `sources[${i}]` }));
    // a source's output can carry the image's name and the epoch (mmdebstrap's SOURCE_DATE_EPOCH)
    return { sources, name: ctx.spec.name, version: ctx.spec.version, sourceDateEpoch: ctx.epoch };
  },
  run: applyPackageSources,
  note: (m) => `${m.packages.length} packages from ${m.sources} source(s)`,
};

async function applyPackageSources(ctx: BuildContext, _input: object, io: StageIO): Promise<PackagesMeta> {
  const root = join(io.dir, PACKAGES_TREE);
  await mkdir(root);
  const work = join(io.dir, "work");
  await mkdir(work);
  const list = packageSources(ctx.spec);
  const meta: PackagesMeta = { sources: list.length, packages: [], images: [], archives: [], tools: {} };
  for (const [i, s] of list.entries()) {
    const got = await applySource(ctx, s, i, root, work);
    meta.packages.push(...(got.packages ?? []));
    meta.images.push(...(got.images ?? []));
    meta.archives.push(...(got.archives ?? []));
    Object.assign(meta.tools, got.tools);
    io.progress.progress(i + 1, list.length, "sources");
  }
  await rm(work, { recursive: true, force: true });
  await writeFile(join(io.dir, PACKAGES_DIGESTS), JSON.stringify(await treeFileDigests(root)));
  return meta;
}

/** Apply the spec's source number `i` onto `root` (also used by the rootfs stage for the sources after these). */
export async function applySource(ctx: BuildContext, s: Source, i: number, root: string, workDir: string) {
  const type = sourceType(s);
  ctx.reporter.info(`source ${i + 1}/${ctx.spec.sources.length}: ${type.describe(s)}`);
  const sctx: SourceContext = { spec: ctx.spec, key: `sources[${i}]`, root, workDir, downloadDir: join(ctx.cache.root, "debs"), cacheRoot: ctx.cache.root, epoch: ctx.epoch, reporter: ctx.reporter };
  return type.apply(s, sctx);
}
