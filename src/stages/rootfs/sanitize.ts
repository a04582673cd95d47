/**
 * Sanitize an image tree: merge everything into /usr, resolve /usr symlinks
 * that point into /etc, remove package managers and their databases (and
 * fail if any remains), check setuid/setgid files against the spec, and move
 * the state folders (/etc, /var, …) into /usr/share/factory so the initramfs
 * can populate them on first boot.
 */
import { lstat, readdir, readFile, readlink, rename, rm, symlink, mkdir, copyFile, chmod, chown, rmdir, writeFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { UserError } from "../../errors.js";
import { walk } from "../../util/fs.js";
import { resolveInRoot, copyTreeInto } from "./tree.js";

/** Top-level folders merged into /usr (`/bin` → `/usr/bin`, …). */
export const MERGED_DIRS = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] as const;
/** Top-level folders that exist only at run time and are never shipped. */
export const RUNTIME_DIRS = ["proc", "sys", "dev", "run", "tmp", "mnt", "media", "boot", "lost+found"] as const;
export const FACTORY_DIR = "usr/share/factory";

/** Where package managers and their databases live (relative to the root, after merging /usr). */
export const PACKAGE_MANAGER_PATHS = [
  // Debian
  "usr/bin/dpkg", "usr/bin/dpkg-deb", "usr/bin/dpkg-query", "usr/bin/dpkg-split", "usr/bin/dpkg-divert",
  "usr/bin/dpkg-statoverride", "usr/bin/dpkg-trigger", "usr/bin/dpkg-maintscript-helper", "usr/bin/dpkg-realpath",
  "usr/sbin/dpkg-preconfigure", "usr/sbin/dpkg-reconfigure", "usr/sbin/start-stop-daemon", "usr/bin/update-alternatives",
  "usr/bin/apt", "usr/bin/apt-get", "usr/bin/apt-cache", "usr/bin/apt-cdrom", "usr/bin/apt-config", "usr/bin/apt-key",
  "usr/bin/apt-mark", "usr/lib/apt", "usr/lib/dpkg", "usr/share/dpkg", "usr/libexec/dpkg",
  "var/lib/dpkg", "var/lib/apt", "var/cache/apt", "var/cache/debconf", "var/log/apt", "var/log/dpkg.log",
  "etc/apt", "etc/dpkg", "etc/cron.daily/dpkg", "etc/cron.daily/apt-compat", "etc/logrotate.d/apt", "etc/logrotate.d/dpkg",
  // RPM family
  "usr/bin/rpm", "usr/bin/rpmdb", "usr/bin/rpmkeys", "usr/bin/rpmquery", "usr/bin/rpmverify", "usr/bin/dnf", "usr/bin/dnf-3",
  "usr/bin/yum", "usr/bin/microdnf", "usr/bin/tdnf", "usr/bin/zypper", "usr/lib/rpm", "usr/lib/sysimage/rpm",
  "var/lib/rpm", "var/lib/dnf", "var/lib/yum", "var/cache/dnf", "var/cache/yum", "etc/dnf", "etc/yum", "etc/yum.repos.d",
  "etc/rpm", "etc/zypp", "var/lib/tdnf", "var/cache/tdnf", "etc/tdnf", "var/log/dnf.log", "var/log/dnf.librepo.log",
  "var/log/dnf.rpm.log", "var/log/hawkey.log",
  // Alpine and others
  "usr/sbin/apk", "usr/bin/apk", "usr/lib/apk", "etc/apk", "var/cache/apk", "usr/bin/pacman", "var/lib/pacman",
  "usr/bin/opkg", "var/lib/opkg",
] as const;

/** File names that mark a package manager wherever they are found. */
const PACKAGE_MANAGER_NAMES = new Set(["dpkg", "apt", "apt-get", "apt-cache", "rpm", "dnf", "yum", "apk", "microdnf", "tdnf", "zypper", "pacman", "opkg"]);

export interface SanitizeResult {
  merged: string[];
  etcLinksResolved: string[];
  removed: string[];
  setuid: string[];
  factoryDirs: string[];
}

/** Step 1: move /bin, /sbin, /lib* into /usr and replace them with relative symlinks. */
export async function mergeUsr(root: string): Promise<string[]> {
  await mkdir(join(root, "usr"), { recursive: true });
  const merged: string[] = [];
  for (const d of MERGED_DIRS) {
    const p = join(root, d);
    let st;
    try {
      st = await lstat(p);
    } catch {
      continue;
    }
    if (st.isSymbolicLink()) {
      const t = await readlink(p);
      if (t === `usr/${d}` || t === `/usr/${d}`) continue;
      // Fedora 42 and later merge sbin into bin: /sbin is a link to usr/bin (and /usr/sbin to bin)
      if (d === "sbin" && (t === "usr/bin" || t === "/usr/bin")) continue;
      throw new UserError(`/${d} is a symlink to ${t}, expected usr/${d}`, { hint: "a content source replaced a merged-/usr symlink; remove it from that source" });
    }
    if (!st.isDirectory()) throw new UserError(`/${d} is not a folder in the image tree`, { hint: `remove /${d} from the content sources` });
    const dest = join(root, "usr", d);
    await mkdir(dest, { recursive: true });
    await copyTreeInto(p, join(root, "usr", d));
    await rm(p, { recursive: true, force: true });
    await symlink(`usr/${d}`, p);
    merged.push(d);
  }
  return merged;
}

/**
 * Step 2: symlinks inside /usr that lead into /etc (alternatives, localtime,
 * environment) are re-pointed at their final target in /usr, or replaced by
 * a copy of the file when the final target lives in /etc.
 */
export async function resolveEtcLinks(root: string): Promise<string[]> {
  const fixed: string[] = [];
  for await (const e of walk(root, "usr")) {
    if (!e.stat.isSymbolicLink()) continue;
    const target = await readlink(join(root, e.rel));
    const parent = posix.dirname(e.rel);
    const literal = target.startsWith("/") ? target.slice(1) : posix.normalize(posix.join(parent, target));
    if (!(literal === "etc" || literal.startsWith("etc/"))) continue;
    const final = await resolveInRoot(root, e.rel);
    let st;
    try {
      st = await lstat(join(root, final));
    } catch {
      st = undefined;
    }
    await rm(join(root, e.rel));
    if (final.startsWith("usr/") && st) {
      await symlink(posix.relative(parent, final), join(root, e.rel));
    } else if (st?.isFile()) {
      await copyFile(join(root, final), join(root, e.rel));
      await chmod(join(root, e.rel), st.mode & 0o7777);
      await chown(join(root, e.rel), st.uid, st.gid);
    } else {
      // dangling or a folder in /etc: nothing in /usr may depend on /etc, drop the link
      fixed.push(`${e.rel} (removed: ${target} does not resolve inside /usr)`);
      continue;
    }
    fixed.push(`${e.rel} -> ${final}`);
  }
  return fixed;
}

/** Step 3 (after the SBOM is recorded): remove package managers and their databases. */
export async function removePackageManagers(root: string): Promise<string[]> {
  const removed: string[] = [];
  // files the dpkg database lists for dpkg and apt themselves, without ever deleting folders or
  // the merged-/usr symlinks (/bin, /lib, … appear in those lists)
  for (const pkg of ["dpkg", "apt", "debconf"]) {
    for (const name of [`${pkg}.list`, `${pkg}:amd64.list`]) {
      let text = "";
      try {
        text = await readFile(join(root, "var/lib/dpkg/info", name), "utf8");
      } catch {
        continue;
      }
      for (const line of text.split("\n").filter(Boolean).sort()) {
        const rel = line.replace(/^\/+/, "");
        if (!rel || (MERGED_DIRS as readonly string[]).includes(rel)) continue;
        const real = await resolveInRoot(root, rel, false);
        if (real.startsWith("usr/share/doc/") || real.startsWith("usr/share/man/")) continue;
        try {
          const st = await lstat(join(root, real));
          if (st.isDirectory()) continue;
          await rm(join(root, real));
          removed.push(real);
        } catch {
          /* already gone */
        }
      }
    }
  }
  for (const p of PACKAGE_MANAGER_PATHS) {
    const real = await resolveInRoot(root, p, false);
    try {
      await lstat(join(root, real));
    } catch {
      continue;
    }
    await rm(join(root, real), { recursive: true, force: true });
    removed.push(real);
  }
  await removeEmptyDirs(root, ["usr/lib/apt", "var/lib", "var/cache"]);
  return [...new Set(removed)].sort();
}

async function removeEmptyDirs(root: string, dirs: string[]): Promise<void> {
  for (const d of dirs) {
    try {
      if ((await readdir(join(root, d))).length === 0) await rmdir(join(root, d));
    } catch {
      /* not there */
    }
  }
}

/** Fail, naming the file, if any package manager file remains. */
export async function auditPackageManagers(root: string): Promise<void> {
  const found: string[] = [];
  for (const p of PACKAGE_MANAGER_PATHS) {
    const real = await resolveInRoot(root, p, false);
    try {
      await lstat(join(root, real));
      found.push("/" + real);
    } catch {
      /* absent */
    }
  }
  for await (const e of walk(root)) {
    const base = posix.basename(e.rel);
    if (e.stat.isDirectory()) continue;
    if (/^(usr\/)?(s?bin)\//.test(e.rel) && PACKAGE_MANAGER_NAMES.has(base)) found.push("/" + e.rel);
  }
  if (found.length) {
    const list = [...new Set(found)].sort();
    throw new UserError(`package manager files remain in the image: ${list.slice(0, 10).join(", ")}${list.length > 10 ? ` (+${list.length - 10} more)` : ""}`, {
      hint: "acl images carry no package manager; remove the content source that adds it, or its files with an overlay",
    });
  }
}

/**
 * Per-machine state that package installs leave behind and that must never be
 * shared by every machine booted from the image (nor make builds differ):
 * SSH host keys, machine ids, random seeds, caches and logs.
 */
export async function removeMachineState(root: string): Promise<string[]> {
  const removed: string[] = [];
  try {
    for (const f of (await readdir(join(root, "etc/ssh"))).sort()) {
      if (/^ssh_host_.*_key(\.pub)?$/.test(f)) {
        await rm(join(root, "etc/ssh", f));
        removed.push(`etc/ssh/${f}`);
      }
    }
  } catch {
    /* no sshd */
  }
  for (const p of ["var/lib/dbus/machine-id", "var/lib/systemd/random-seed", "var/cache/ldconfig/aux-cache", "etc/ld.so.cache"]) {
    try {
      await lstat(join(root, p));
      await rm(join(root, p), { recursive: true, force: true });
      removed.push(p);
    } catch {
      /* absent */
    }
  }
  try {
    for (const f of (await readdir(join(root, "var/log"), { recursive: true })).sort().reverse()) {
      const st = await lstat(join(root, "var/log", f));
      if (st.isFile()) {
        await rm(join(root, "var/log", f));
        removed.push(`var/log/${f}`);
      }
    }
  } catch {
    /* no logs */
  }
  // an empty machine-id: each node generates its own ID at boot. (Since systemd 247 an empty file
  // does not set ConditionFirstBoot, so presets are not applied; only "uninitialized" would do that,
  // and with Debian's 90-systemd.preset a first-boot preset-all would change the units the build enabled.)
  try {
    await lstat(join(root, "etc"));
    await rm(join(root, "etc/machine-id"), { force: true });
    await writeFile(join(root, "etc/machine-id"), "");
  } catch {
    /* no /etc */
  }
  return removed;
}

/** setuid/setgid files (image paths), sorted. */
export async function listSetuid(root: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of walk(root)) {
    if (e.stat.isFile() && (e.stat.mode & 0o6000) !== 0) out.push("/" + e.rel);
  }
  return out.sort();
}

export function checkSetuid(found: readonly string[], allowed: readonly string[], specFile: string): void {
  const allow = new Set(allowed.map((p) => p.replace(/^\/(bin|sbin|lib|lib64)\//, "/usr/$1/")));
  const bad = found.filter((f) => !allow.has(f));
  if (bad.length) {
    throw new UserError(`setuid/setgid files not allowed by the spec: ${bad.join(", ")}`, {
      file: specFile,
      hint: `add them to [policy] allow_setuid in ${specFile} if they are intended, or remove them from the image`,
    });
  }
}

/**
 * Move every top-level folder other than /usr, the merged-/usr symlinks and
 * run-time folders into /usr/share/factory/NAME. The tree keeps only /usr.
 */
export async function moveToFactory(root: string): Promise<string[]> {
  const moved: string[] = [];
  await mkdir(join(root, FACTORY_DIR), { recursive: true });
  for (const name of (await readdir(root)).sort()) {
    if (name === "usr") continue;
    const p = join(root, name);
    const st = await lstat(p);
    if ((MERGED_DIRS as readonly string[]).includes(name) && st.isSymbolicLink()) {
      await rm(p);
      continue;
    }
    if ((RUNTIME_DIRS as readonly string[]).includes(name)) {
      await rm(p, { recursive: true, force: true });
      continue;
    }
    if (!st.isDirectory()) {
      await rm(p, { force: true });
      continue;
    }
    const dest = join(root, FACTORY_DIR, name);
    await rm(dest, { recursive: true, force: true });
    await rename(p, dest);
    moved.push(name);
  }
  return moved;
}
