/**
 * The rootfs stage (cached by content): apply the content sources in order,
 * the kernel's modules, the guest checks and the spec's files, users and
 * units; then record the SBOM, sanitize (merged /usr, no package manager,
 * setuid policy, ISA audit) and keep only /usr (with /etc etc. in the
 * factory). The entry holds tree/, vmlinuz and sbom.spdx.json.
 */
import { copyFile, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { resolveSpecPath, type ImageSpec } from "../../config/spec.js";
import type { Manifest } from "../../pipeline/manifest.js";
import type { BuildContext, Stage, StageIO, StageResult } from "../../pipeline/stage.js";
import { walk } from "../../util/fs.js";
import { sha256Hex } from "../../util/hash.js";
import { installBusyboxApplets } from "./busybox.js";
import { applyFiles, applyUsers, enableUnits, stampOsRelease } from "./customize.js";
import { installGuestChecks } from "./guest-checks.js";
import { installIgnition, translateBase, type BaseConfig } from "./ignition.js";
import { AB_REQUIREMENTS, installAbNode, updateKeyPem } from "./ab-node.js";
import { assertIsaWithin, auditIsa } from "./isa-audit.js";
import { imageKernel, installKernel, KERNEL_TOOLS, resolveKernelPackage } from "./kernel.js";
import {
  auditPackageManagers,
  checkSetuid,
  listSetuid,
  mergeUsr,
  moveToFactory,
  removeMachineState,
  removePackageManagers,
  resolveEtcLinks,
} from "./sanitize.js";
import { buildSbom, SBOM_TOOLS, type FileSums, type KnownSums } from "./sbom.js";
import { readDpkgStatus } from "./sources/debian.js";
import { sourceType } from "./sources/index.js";
import type { DebPackage } from "./sources/source.js";
import { applySource, packageSources, PACKAGES_DIGESTS, PACKAGES_TREE, type PackagesMeta } from "../packages/stage.js";
import { run, tools } from "../../adapters/exec.js";

export interface RootfsMeta {
  packages: { name: string; version: string; arch: string }[];
  images: { ref: string; digest: string }[];
  archives: { path: string; sha256: string }[];
  tools: Record<string, string>;
  setuid: string[];
  isa: NonNullable<Manifest["isa"]>;
  kernel: { pkg: string; version: string; release: string };
  fileCount: number;
  removed: string[];
  etcLinks: string[];
  factory: string[];
  /** The Ignition base config baked into base.d, for the manifest. */
  ignitionBase?: BaseConfig;
}

/** Inside the cache entry. */
export const ROOTFS_TREE = "tree";
export const ROOTFS_VMLINUZ = "vmlinuz";
export const ROOTFS_SBOM = "sbom.spdx.json";

type RootfsInput = { packages: StageResult<PackagesMeta> };

export const rootfsStage: Stage<RootfsMeta, RootfsInput> = {
  name: "rootfs",
  requires: (spec) => [
    ...spec.sources.slice(packageSources(spec).length).flatMap((s) => sourceType(s).requires(s)),
    ...tools("cp"),
    ...KERNEL_TOOLS,
    ...SBOM_TOOLS,
    ...AB_REQUIREMENTS,
  ],
  detail: (ctx, { packages }) => `the packages tree${ctx.spec.sources.length > packages.value.sources ? ` + ${ctx.spec.sources.length - packages.value.sources} folder source(s)` : ""}`,
  // the packages tree by its entry's id, and everything that replays on top of it
  cacheInputs: async (ctx, { packages }) => ({
    packages: packages.id,
    ...(await rootfsInputs(ctx.spec, ctx.epoch, packages.value.sources, ctx.cache.root)),
    updateKey: await updateKeyPem(ctx.spec, ctx.signKey),
  }),
  run: fillRootfs,
  note: (m) => `${m.packages.length} packages, ${m.fileCount} files`,
};

/** The rootfs stage's cache inputs (also part of a whole build's key, services/build.ts). */
export async function rootfsCacheInputs(spec: Readonly<ImageSpec>, epoch: number, signKey: string | undefined, cacheRoot: string): Promise<Record<string, unknown>> {
  return { ...(await rootfsInputs(spec, epoch, 0, cacheRoot)), updateKey: await updateKeyPem(spec, signKey) };
}

/** Where the kernel's downloads, unpacked trees and apt answers are kept in the cache. */
export const kernelCacheDir = (cacheRoot: string) => join(cacheRoot, "kernel");

/** What goes into the rootfs stage id: everything in and around the spec that can change the tree. */
async function rootfsInputs(spec: Readonly<ImageSpec>, epoch: number, from: number, cacheRoot: string): Promise<Record<string, unknown>> {
  const sources: unknown[] = [];
  for (const [i, s] of spec.sources.entries()) if (i >= from) sources.push(await sourceType(s).cacheInput(s, { spec, key: `sources[${i}]` }));
  const files = [];
  for (const f of spec.files) {
    const data = f.content !== undefined ? Buffer.from(f.content) : await readFile(resolveSpecPath(spec.specDir, f.source!));
    files.push({ ...f, source: undefined, content: sha256Hex(data) });
  }
  return {
    sources,
    files,
    users: spec.users,
    groups: spec.groups,
    systemd: spec.systemd,
    // a kernel from the image is in the packages stage's tree, which its id covers
    kernel: spec.kernel.from === "image" ? { from: "image" } : await resolveKernelPackage(spec.kernel.package, kernelCacheDir(cacheRoot)),
    init: spec.init,
    microarch: spec.microarch,
    policy: spec.policy,
    update: spec.update,
    // the base config as baked: its Butane text and its local files both show in the JSON
    ignition: spec.ignition && { ...spec.ignition, base: (await translateBase(spec))?.json, files_dir: undefined },
    name: spec.name,
    version: spec.version,
    sourceDateEpoch: epoch,
  };
}

async function fillRootfs(ctx: BuildContext, { packages: pkg }: RootfsInput, io: StageIO): Promise<RootfsMeta> {
  const { spec, reporter: r } = ctx;
  const root = join(io.dir, ROOTFS_TREE);
  const work = join(io.dir, "work");
  await mkdir(work);
  // the packages stage's tree, copied whole (owners, modes, times, hard links, xattrs such as file capabilities)
  await run(["cp", "-a", "--reflink=auto", join(pkg.dir, PACKAGES_TREE), root]);
  // what changes after this marker gets a newer ctime: the SBOM reads only those files again
  const marker = join(work, "copied");
  await writeFile(marker, "");
  const known = await loadKnownSums(join(pkg.dir, PACKAGES_DIGESTS), (await stat(marker)).ctimeMs);
  const packages: DebPackage[] = [...pkg.value.packages];
  const images = [...pkg.value.images];
  const archives = [...pkg.value.archives];
  const toolsUsed: Record<string, string> = { ...pkg.value.tools };
  const rest = spec.sources.length - pkg.value.sources;
  const steps = rest + 3;

  for (let i = pkg.value.sources; i < spec.sources.length; i++) {
    const got = await applySource(ctx, spec.sources[i]!, i, root, work);
    packages.push(...(got.packages ?? []));
    images.push(...(got.images ?? []));
    archives.push(...(got.archives ?? []));
    Object.assign(toolsUsed, got.tools);
    io.progress.progress(i - pkg.value.sources + 1, steps, "sources");
  }
  // dpkg's database may have been written by a later source over an earlier one: re-read it
  const fromDb = await readDpkgStatus(root);
  // (RPMs were read from their own database, before anything could write over it)
  const allPackages = fromDb.length ? [...fromDb, ...packages.filter((p) => p.kind === "rpm" || (p.deb && !fromDb.some((d) => d.name === p.name)))] : packages;

  // merged /usr first, so later steps (kernel modules, guest checks, files) see the final layout
  await mergeUsr(root);
  const kernel =
    spec.kernel.from === "image"
      ? await imageKernel(root, allPackages, spec.specPath)
      : await installKernel({ rootDir: root, pkg: spec.kernel.package, cacheDir: kernelCacheDir(ctx.cache.root), reporter: r });
  await copyFile(kernel.vmlinuz, join(io.dir, ROOTFS_VMLINUZ));
  if (spec.init === "busybox") await installBusyboxApplets(root);
  await installGuestChecks(root, spec.init, spec.systemd.enable);
  const ab = await installAbNode(root, spec.init, await updateKeyPem(spec, ctx.signKey), spec.update.tries);
  await applyFiles(root, spec);
  await applyUsers(root, spec, ctx.epoch);
  const etcLinksEnabled = await enableUnits(root, spec);
  const ignitionBase = await translateBase(spec, r);
  await installIgnition(root, spec, ignitionBase);
  await stampOsRelease(root, spec);
  io.progress.progress(rest + 1, steps, "customize");

  // sanitize: merge /usr (again: overlays and files may have added /bin, /lib) and resolve links
  // into /etc, record the SBOM, then remove package managers
  await mergeUsr(root);
  const etcLinks = await resolveEtcLinks(root);
  const sbom = await buildSbom({
    root,
    name: spec.name,
    version: spec.version,
    specDigest: spec.specDigest,
    sourceDateEpoch: ctx.epoch,
    toolVersion: ctx.aclVersion,
    packages: allPackages,
    images,
    hostPackages: ab.hostPackages,
    known,
  });
  await writeFile(join(io.dir, ROOTFS_SBOM), sbom.json);
  const removed = [...(await removePackageManagers(root)), ...(await removeMachineState(root))];
  await auditPackageManagers(root);
  const setuid = await listSetuid(root);
  checkSetuid(setuid, spec.policy.allow_setuid, spec.specPath);
  const isa = await auditIsa(root, spec.microarch);
  assertIsaWithin(isa, spec.microarch, { specFile: spec.specPath });
  const factory = await moveToFactory(root);
  io.progress.progress(steps, steps, "sanitize");
  let fileCount = 0;
  for await (const _ of walk(root)) fileCount++;
  await rm(work, { recursive: true, force: true });

  return {
    packages: allPackages.map((p) => ({ name: p.name, version: p.version, arch: p.arch })).sort((a, b) => a.name.localeCompare(b.name)),
    images,
    archives,
    tools: toolsUsed,
    setuid,
    isa: { highest: isa.highest, files: isa.files, counts: isa.counts },
    kernel: { pkg: kernel.pkg, version: kernel.version, release: kernel.release },
    fileCount,
    removed,
    etcLinks: [...etcLinks, ...etcLinksEnabled.map((l) => `enabled ${l}`)],
    factory,
    ignitionBase,
  };
}

/** The packages entry's file digests (none when the entry has no such file: every file is read). */
async function loadKnownSums(path: string, copiedBeforeCtimeMs: number): Promise<KnownSums | undefined> {
  try {
    return { sums: JSON.parse(await readFile(path, "utf8")) as Record<string, FileSums>, copiedBeforeCtimeMs };
  } catch {
    return undefined;
  }
}
