/**
 * The rootfs stage (cached by content): apply the content sources in order,
 * the spec's files/users/units, the kernel's modules and the guest checks;
 * then record the SBOM, sanitize (merged /usr, no package manager, setuid
 * policy, ISA audit) and keep only /usr (with /etc etc. in the factory).
 */
import { createHash } from "node:crypto";
import { copyFile, mkdir, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { toolVersion } from "../adapters/exec.js";
import type { ImageSpec } from "../config/spec.js";
import { resolveSpecPath } from "../config/spec.js";
import type { Manifest } from "../pipeline/manifest.js";
import type { StageCache } from "../pipeline/cache.js";
import { stageId } from "../pipeline/cache.js";
import type { Reporter, StageHandle } from "../output/reporter.js";
import { applyDebianSource, hostMirror, readDpkgStatus, type DebPackage } from "./sources/debian.js";
import { applyOciArchive, applyDockerArchive } from "./sources/oci.js";
import { inspectImage } from "../adapters/docker.js";
import { exportImage } from "./sources/docker-image.js";
import { copyTreeInto, walk } from "./tree.js";
import { applyFiles, applyUsers, enableUnits, stampOsRelease } from "./customize.js";
import { installKernel, resolveKernelPackage } from "./kernel.js";
import { installGuestChecks } from "./guest-checks.js";
import { installBusyboxApplets } from "./busybox.js";
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
import { buildSbom } from "./sbom.js";
import { sha256Files } from "./hash.js";
import { auditIsa, assertIsaWithin } from "./isa-audit.js";

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
}

export interface RootfsOptions {
  spec: Readonly<ImageSpec>;
  cache: StageCache;
  sourceDateEpoch: number;
  aclVersion: string;
  /** Digest of acl's code (see services/build.ts): part of the stage id. */
  codeDigest: string;
  reporter: Reporter;
  progress?: StageHandle;
}

/** Digest of a folder's content: paths, types, modes, owners, link targets and file bytes, in sorted order. */
export async function treeDigest(dir: string): Promise<string> {
  const h = createHash("sha256");
  for await (const e of walk(dir)) {
    const st = e.stat;
    h.update(`${e.rel}\0${st.mode}\0${st.uid}\0${st.gid}\0`);
    if (st.isSymbolicLink()) h.update(await readlink(join(dir, e.rel)));
    else if (st.isFile()) h.update(await readFile(join(dir, e.rel)));
    h.update("\n");
  }
  return h.digest("hex");
}

/** What goes into the rootfs stage id: everything that can change the tree. */
async function rootfsInputs(o: RootfsOptions): Promise<Record<string, unknown>> {
  const { spec } = o;
  const sources: unknown[] = [];
  const tools: Record<string, string> = {};
  for (const [i, s] of spec.sources.entries()) {
    switch (s.type) {
      case "debian":
        tools.mmdebstrap ??= await toolVersion("mmdebstrap", ["--version"]);
        sources.push({ ...s, mirror: s.mirror ?? (await hostMirror()) });
        break;
      case "docker": {
        const img = await inspectImage(s.image, { key: `sources[${i}].image`, specFile: spec.specPath });
        sources.push({ ...s, id: img.id });
        break;
      }
      case "oci-archive":
      case "docker-archive":
        sources.push({ ...s, sha256: (await sha256Files([resolveSpecPath(spec.specDir, s.path)]))[0] });
        break;
      case "dir":
        sources.push({ ...s, tree: await treeDigest(resolveSpecPath(spec.specDir, s.path)) });
        break;
    }
  }
  const files = [];
  for (const f of spec.files) {
    const data = f.content !== undefined ? Buffer.from(f.content) : await readFile(resolveSpecPath(spec.specDir, f.source!));
    files.push({ ...f, source: undefined, content: createHash("sha256").update(data).digest("hex") });
  }
  const kernel = await resolveKernelPackage(spec.kernel.package);
  return {
    sources,
    files,
    users: spec.users,
    groups: spec.groups,
    systemd: spec.systemd,
    kernel,
    init: spec.init,
    microarch: spec.microarch,
    policy: spec.policy,
    name: spec.name,
    version: spec.version,
    sourceDateEpoch: o.sourceDateEpoch,
    acl: o.aclVersion,
    code: o.codeDigest,
    tools,
  };
}

export async function buildRootfs(o: RootfsOptions): Promise<{ id: string; dir: string; meta: RootfsMeta; cached: boolean }> {
  const { spec, cache, reporter: r } = o;
  const inputs = await rootfsInputs(o);
  const id = stageId("rootfs", inputs);
  const hit = await cache.lookup<RootfsMeta>("rootfs", id);
  if (hit) return { id, dir: cache.dir("rootfs", id), meta: hit, cached: true };

  const scratch = await cache.scratch("rootfs");
  try {
    return await fillRootfs(o, id, inputs, scratch);
  } catch (e) {
    // a failed build leaves nothing behind in the cache
    await rm(scratch, { recursive: true, force: true });
    throw e;
  }
}

async function fillRootfs(
  o: RootfsOptions,
  id: string,
  inputs: Record<string, unknown>,
  scratch: string,
): Promise<{ id: string; dir: string; meta: RootfsMeta; cached: boolean }> {
  const { spec, cache, reporter: r } = o;
  const root = join(scratch, "tree");
  await mkdir(root);
  const work = join(scratch, "work");
  await mkdir(work);
  const debCache = join(cache.root, "debs");
  const packages: DebPackage[] = [];
  const images: { ref: string; digest: string }[] = [];
  const archives: { path: string; sha256: string }[] = [];

  for (const [i, s] of spec.sources.entries()) {
    const key = `sources[${i}]`;
    r.info(`source ${i + 1}/${spec.sources.length}: ${s.type} ${"image" in s ? s.image : "path" in s ? s.path : `${s.suite} (${s.packages.length} packages)`}`);
    switch (s.type) {
      case "debian": {
        const pk = await applyDebianSource(root, {
          ...s,
          key,
          specFile: spec.specPath,
          debCache,
          sourceDateEpoch: o.sourceDateEpoch,
          workDir: work,
        });
        packages.push(...pk);
        break;
      }
      case "docker": {
        const res = await exportImage(s.image, root, { key: `${key}.image`, specFile: spec.specPath });
        images.push({ ref: res.ref, digest: res.digest });
        break;
      }
      case "oci-archive":
      case "docker-archive": {
        const path = resolveSpecPath(spec.specDir, s.path);
        const res = s.type === "oci-archive" ? await applyOciArchive(path, root) : await applyDockerArchive(path, root);
        archives.push({ path: s.path, sha256: res.archiveSha256 });
        images.push({ ref: s.path, digest: res.digest });
        break;
      }
      case "dir":
        await copyTreeInto(resolveSpecPath(spec.specDir, s.path), root);
        break;
    }
    o.progress?.progress(i + 1, spec.sources.length + 3, "sources");
  }
  // dpkg's database may have been written by a later source over an earlier one: re-read it
  const fromDb = await readDpkgStatus(root);
  const allPackages = fromDb.length ? [...fromDb, ...packages.filter((p) => p.deb && !fromDb.some((d) => d.name === p.name))] : packages;

  // merged /usr first, so later steps (kernel modules, guest checks, files) see the final layout
  await mergeUsr(root);
  const kernel = await installKernel({ rootDir: root, pkg: spec.kernel.package, cacheDir: join(cache.root, "kernel"), reporter: r });
  await copyFile(kernel.vmlinuz, join(scratch, "vmlinuz"));
  if (spec.init === "busybox") await installBusyboxApplets(root);
  await installGuestChecks(root, spec.init);
  await applyFiles(root, spec);
  await applyUsers(root, spec);
  const etcLinksEnabled = await enableUnits(root, spec);
  await stampOsRelease(root, spec);
  o.progress?.progress(spec.sources.length + 1, spec.sources.length + 3, "customize");

  // sanitize: merge /usr (again: overlays and files may have added /bin, /lib) and resolve links
  // into /etc, record the SBOM, then remove package managers
  await mergeUsr(root);
  const etcLinks = await resolveEtcLinks(root);
  const sbom = await buildSbom({
    root,
    name: spec.name,
    version: spec.version,
    specDigest: spec.specDigest,
    sourceDateEpoch: o.sourceDateEpoch,
    toolVersion: o.aclVersion,
    packages: allPackages,
    images,
  });
  await writeFile(join(scratch, "sbom.spdx.json"), sbom.json);
  const removed = [...(await removePackageManagers(root)), ...(await removeMachineState(root))];
  await auditPackageManagers(root);
  const setuid = await listSetuid(root);
  checkSetuid(setuid, spec.policy.allow_setuid, spec.specPath);
  const isa = await auditIsa(root, spec.microarch);
  assertIsaWithin(isa, spec.microarch, { specFile: spec.specPath });
  const factory = await moveToFactory(root);
  o.progress?.progress(spec.sources.length + 3, spec.sources.length + 3, "sanitize");
  let fileCount = 0;
  for await (const _ of walk(root)) fileCount++;

  const meta: RootfsMeta = {
    packages: allPackages.map((p) => ({ name: p.name, version: p.version, arch: p.arch })).sort((a, b) => a.name.localeCompare(b.name)),
    images,
    archives,
    tools: (inputs.tools as Record<string, string>) ?? {},
    setuid,
    isa: { highest: isa.highest, files: isa.files, counts: isa.counts },
    kernel: { pkg: kernel.pkg, version: kernel.version, release: kernel.release },
    fileCount,
    removed,
    etcLinks: [...etcLinks, ...etcLinksEnabled.map((l) => `enabled ${l}`)],
    factory,
  };
  await rm(work, { recursive: true, force: true });
  const dir = await cache.commit(scratch, "rootfs", id, meta);
  return { id, dir, meta, cached: false };
}
