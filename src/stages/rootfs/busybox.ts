/**
 * busybox images (init = "busybox"): a tree from busybox-static has only the
 * busybox binary; install its applets as symlinks (sh, getty, mount, …) the
 * way `busybox --install -s` would, into the merged /usr, never over an
 * existing file and never for package-manager applets (rpm, dpkg), which the
 * image must not carry.
 */
import { lstat, symlink } from "node:fs/promises";
import { join, posix } from "node:path";
import { run } from "../../adapters/exec.js";
import { UserError } from "../../errors.js";
import { mkdirInRoot, resolveInRoot } from "./tree.js";

/** Applets that are package managers or their helpers: not linked. */
export const EXCLUDED_APPLETS = new Set(["rpm", "rpm2cpio", "dpkg", "dpkg-deb", "start-stop-daemon", "linuxrc"]);

/** Map an applet path from `busybox --list-full` to its merged-/usr location. */
export function appletTarget(listed: string): string | undefined {
  const p = listed.replace(/^\/+/, "");
  if (p.startsWith("usr/")) return p;
  if (p.startsWith("bin/") || p.startsWith("sbin/")) return `usr/${p}`;
  return undefined;
}

export async function installBusyboxApplets(root: string): Promise<string[]> {
  const bbRel = await resolveInRoot(root, "usr/bin/busybox");
  try {
    await lstat(join(root, bbRel));
  } catch {
    throw new UserError("init = \"busybox\" but the image has no /usr/bin/busybox", {
      hint: "add busybox-static to the packages of a debian source ('sources[].packages'), or set 'init' = \"systemd\"",
    });
  }
  // busybox-static is a static binary: listing its applets runs nothing from the image's libraries
  const list = (await run([join(root, bbRel), "--list-full"])).stdout.split("\n").filter(Boolean).sort();
  const made: string[] = [];
  for (const entry of list) {
    const target = appletTarget(entry);
    const name = posix.basename(entry);
    if (!target || EXCLUDED_APPLETS.has(name) || name === "busybox") continue;
    const dir = await mkdirInRoot(root, posix.dirname(target));
    const linkPath = join(root, dir, name);
    try {
      await lstat(linkPath);
      continue; // a real program (or an earlier link) wins
    } catch {
      /* absent: link it */
    }
    await symlink(posix.relative(dir, bbRel), linkPath);
    made.push(`${dir}/${name}`);
  }
  return made;
}
