/**
 * Kernel stage: take a Debian kernel package (default the linux-image-cloud-amd64
 * metapackage, resolved to the real linux-image-<release>-cloud-amd64), download
 * it once into a cache, unpack it with dpkg-deb, ship its modules in
 * <root>/usr/lib/modules/<release> and run depmod (the .deb carries no
 * modules.dep: its postinst would make it).
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { tmpdir } from "node:os";
import { run, tools } from "../../adapters/exec.js";
import { UserError } from "../../errors.js";
import { ownedTempDir, OWNER_FILE } from "../../pipeline/owner.js";
import { acquireLock } from "../../pipeline/lock.js";
import type { Reporter } from "../../output/reporter.js";
import { exists, readdirSafe, walk } from "../../util/fs.js";

export const DEFAULT_KERNEL_PACKAGE = "linux-image-cloud-amd64";

export interface InstallKernelOptions {
  rootDir: string;
  /** Debian package: a linux-image metapackage or a versioned linux-image-<release>-<flavour>. */
  pkg?: string;
  /** Kept between builds: downloaded .debs and their unpacked trees. */
  cacheDir: string;
  reporter?: Reporter;
}

export interface InstalledKernel {
  /** Kernel release (`uname -r`), e.g. 6.1.0-56-cloud-amd64. */
  release: string;
  /** Debian package version, e.g. 6.1.192-2. */
  version: string;
  /** The real (versioned) package that was installed. */
  pkg: string;
  /** Path of the kernel image inside the cache. */
  vmlinuz: string;
}

/** What resolving, downloading, unpacking and depmod need. */
export const KERNEL_TOOLS = tools("apt-get", "apt-cache", "dpkg-deb", "depmod", "cp");

async function showField(pkg: string, field: string): Promise<string | undefined> {
  const r = await run(["apt-cache", "show", "--no-all-versions", pkg], { okCodes: [0, 100] });
  const m = new RegExp(`^${field}: (.*)$`, "m").exec(r.stdout);
  return m?.[1]?.trim();
}

const resolved = new Map<string, Promise<{ name: string; version: string }>>();

/** What apt answers from: its package lists and its configuration (sources, pins), by name, size and mtime. */
async function aptStateKey(): Promise<string> {
  const h = createHash("sha256");
  for (const dir of ["/var/lib/apt/lists", "/etc/apt"]) {
    try {
      for await (const e of walk(dir)) h.update(`${dir}/${e.rel}\0${e.stat.size}\0${e.stat.mtimeMs}\n`);
    } catch {
      h.update(`${dir}: none\n`);
    }
  }
  return h.digest("hex");
}

/**
 * Follow a metapackage's Depends to the package that carries /boot/vmlinuz-*.
 * Resolved once per process (the preflight, the rootfs stage id and the
 * install all ask), and remembered in `memoDir` (the cache's kernel folder)
 * for as long as apt's lists and configuration stay as they were: with
 * Debian's container default of no pkgcache.bin, each apt-cache run parses
 * every list again (about a second here).
 */
export function resolveKernelPackage(pkg: string, memoDir?: string): Promise<{ name: string; version: string }> {
  let r = resolved.get(pkg);
  if (!r) {
    r = memoDir ? remembered(pkg, memoDir) : resolveUncached(pkg);
    resolved.set(pkg, r);
  }
  return r;
}

async function remembered(pkg: string, memoDir: string): Promise<{ name: string; version: string }> {
  const file = join(memoDir, "apt-resolved.json");
  const key = await aptStateKey();
  type Memo = { aptState: string; packages: Record<string, { name: string; version: string }> };
  let memo: Memo = { aptState: key, packages: {} };
  try {
    const m = JSON.parse(await readFile(file, "utf8")) as Memo;
    if (m.aptState === key) memo = m;
  } catch {
    // none yet
  }
  const hit = memo.packages[pkg];
  if (hit) return hit;
  const got = await resolveUncached(pkg);
  memo.packages[pkg] = got;
  try {
    await mkdir(memoDir, { recursive: true });
    const tmp = `${file}.${process.pid}`;
    await writeFile(tmp, JSON.stringify(memo));
    await rename(tmp, file);
  } catch {
    // a cache that cannot be written only costs the apt-cache runs next time
  }
  return got;
}

async function resolveUncached(pkg: string): Promise<{ name: string; version: string }> {
  const version = await showField(pkg, "Version");
  if (!version) {
    throw new UserError(`kernel package '${pkg}' is not known to apt`, {
      hint: "check 'kernel.package' in the spec (default linux-image-cloud-amd64) and run `apt-get update`",
    });
  }
  if (/^linux-image-\d/.test(pkg)) return { name: pkg, version };
  const deps = await run(["apt-cache", "depends", "--no-recommends", "--no-suggests", pkg]);
  const real = /Depends: (linux-image-\d[^\s]*)/.exec(deps.stdout)?.[1];
  if (!real) {
    throw new UserError(`'${pkg}' does not depend on a versioned linux-image-<release> package`, {
      hint: "name a Debian kernel package such as linux-image-cloud-amd64 or linux-image-6.1.0-56-cloud-amd64",
    });
  }
  return resolveUncached(real);
}

/** apt's file name for a package version (the epoch colon is escaped as %3a). */
function debFileName(name: string, version: string): string {
  return `${name}_${version.replace(/:/g, "%3a")}_amd64.deb`;
}

/** The kernel package's .deb in the cache (downloaded when missing) and its unpacked tree (made when missing). */
async function fetchAndUnpack(cacheDir: string, deb: string, name: string, version: string): Promise<{ tree: string; downloaded: boolean }> {
  let downloaded = false;
  if (!(await exists(deb))) {
    const tmp = await ownedTempDir(dirname(deb), ".dl-");
    try {
      await run(["apt-get", "download", "-o", "APT::Sandbox::User=root", `${name}=${version}`], {
        cwd: tmp,
        hint: "the kernel is downloaded from the Debian archive apt is configured with; check `apt-get update`",
      });
      const got = (await readdir(tmp)).filter((f) => f.endsWith(".deb"));
      if (got.length !== 1) throw new UserError(`apt-get download ${name} left ${got.length} .deb files in ${tmp}`);
      await rename(join(tmp, got[0]!), deb);
      downloaded = true;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  // Unpack once per package version, into a scratch folder renamed into place when complete (a marker
  // file says so): a build killed while unpacking leaves no tree that looks whole.
  const tree = join(cacheDir, "unpacked", `${name}_${version}`);
  if (!(await exists(join(tree, ".acl-complete")))) {
    await mkdir(join(cacheDir, "unpacked"), { recursive: true });
    const scratch = await ownedTempDir(join(cacheDir, "unpacked"), `.${name}-`);
    try {
      await run(["dpkg-deb", "-x", deb, scratch]);
      await rm(join(scratch, OWNER_FILE));
      await writeFile(join(scratch, ".acl-complete"), `${name} ${version}\n`);
      // a tree without the marker is what a killed build left: move it out of the way first
      if ((await exists(tree)) && !(await exists(join(tree, ".acl-complete")))) {
        const stale = `${scratch}.stale`;
        await rename(tree, stale).catch(() => undefined);
        await rm(stale, { recursive: true, force: true });
      }
      await rename(scratch, tree).catch(async (e: NodeJS.ErrnoException) => {
        if (!["EEXIST", "ENOTEMPTY"].includes(e.code ?? "") || !(await exists(join(tree, ".acl-complete")))) throw e;
      });
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }
  return { tree, downloaded };
}

export async function installKernel(opts: InstallKernelOptions): Promise<InstalledKernel> {
  const pkgName = opts.pkg ?? DEFAULT_KERNEL_PACKAGE;
  const st = opts.reporter?.stage("kernel", pkgName);
  const { name, version } = await resolveKernelPackage(pkgName, opts.cacheDir);
  const debDir = join(opts.cacheDir, "debs");
  await mkdir(debDir, { recursive: true });
  const deb = join(debDir, debFileName(name, version));
  // one build downloads and unpacks a kernel version; another that needs it waits, then uses it
  const lock = await acquireLock(join(opts.cacheDir, "locks", `${name}_${version}.lock`), {
    onWait: (holder) => opts.reporter?.info(`waiting for the build with pid ${holder.pid}, which is unpacking ${name} ${version}`),
  });
  let tree: string;
  let downloaded: boolean;
  try {
    ({ tree, downloaded } = await fetchAndUnpack(opts.cacheDir, deb, name, version));
  } finally {
    await lock.release();
  }
  // Debian 12 ships modules in /lib/modules; later releases in /usr/lib/modules.
  let modBase = join(tree, "usr/lib/modules");
  if (!(await exists(modBase))) modBase = join(tree, "lib/modules");
  const releases = (await readdir(modBase)).sort();
  if (releases.length !== 1) throw new UserError(`${deb}: expected one kernel release under lib/modules, found ${releases.join(", ") || "none"}`);
  const release = releases[0]!;
  const vmlinuz = join(tree, "boot", `vmlinuz-${release}`);
  if (!(await exists(vmlinuz))) throw new UserError(`${deb}: no /boot/vmlinuz-${release} in the package`, { hint: "use a linux-image package, not headers or a metapackage" });

  const dest = join(opts.rootDir, "usr/lib/modules", release);
  await rm(dest, { recursive: true, force: true });
  await mkdir(join(opts.rootDir, "usr/lib/modules"), { recursive: true });
  // cp -a: owners, modes and the package's times, five times faster than Node's cp for 1.3 k files
  await run(["cp", "-a", "--reflink=auto", join(modBase, release), dest]);
  // the build and source links point at headers that are not installed
  for (const l of ["build", "source"]) await rm(join(dest, l), { force: true });
  await depmod(opts.rootDir, release);
  st?.end({ cached: !downloaded, note: `${name} ${version}, release ${release}` });
  return { release, version, pkg: name, vmlinuz };
}

/**
 * The kernel a package source installed into the tree (kernel.from =
 * "image"): the one /usr/lib/modules/RELEASE/vmlinuz there, as Fedora's
 * kernel-core lays it out. Its package and version are those of
 * the package that owns that file, when a source says so (an RPM's files).
 */
export async function imageKernel(rootDir: string, packages: readonly { name: string; version: string; files?: readonly string[] }[], specFile: string): Promise<InstalledKernel> {
  const base = join(rootDir, "usr/lib/modules");
  const releases: string[] = [];
  for (const r of (await readdirSafe(base)).sort()) if (await exists(join(base, r, "vmlinuz"))) releases.push(r);
  if (releases.length !== 1) {
    throw new UserError(
      `${specFile}: 'kernel.from' is "image", but the tree has ${releases.length ? `${releases.length} kernels (${releases.join(", ")})` : "no kernel"} at /usr/lib/modules/RELEASE/vmlinuz`,
      { file: specFile, key: "kernel.from", hint: 'install exactly one kernel package from a source (for Fedora: kernel-core), or use from = "debian"' },
    );
  }
  const release = releases[0]!;
  const owned = [`/usr/lib/modules/${release}/vmlinuz`, `/lib/modules/${release}/vmlinuz`];
  const owner = packages.find((p) => p.files?.some((f) => owned.includes(f)));
  await depmod(rootDir, release);
  return { release, version: owner?.version ?? release, pkg: owner?.name ?? "(in the image)", vmlinuz: join(base, release, "vmlinuz") };
}

/**
 * Run depmod for <root>/usr/lib/modules/<release>. depmod -b looks in
 * <base>/lib/modules, which on a tree without the merged-/usr /lib symlink
 * does not exist; a scratch base with a link into the tree covers both.
 */
export async function depmod(rootDir: string, release: string): Promise<void> {
  const modDir = join(rootDir, "usr/lib/modules", release);
  await stat(modDir);
  const base = await mkdtemp(join(tmpdir(), "acl-depmod-"));
  try {
    await mkdir(join(base, "lib/modules"), { recursive: true });
    await symlink(modDir, join(base, "lib/modules", release));
    await run(["depmod", "-b", base, release], { hint: "depmod comes from the kmod package" });
  } finally {
    await rm(base, { recursive: true, force: true });
  }
  if (!(await exists(join(modDir, "modules.dep")))) throw new UserError(`depmod wrote no modules.dep in ${modDir}`);
}
