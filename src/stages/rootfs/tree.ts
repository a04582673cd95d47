/**
 * Helpers for working on an image tree (a folder that becomes the image's
 * root) without ever touching the host: paths are resolved inside the root
 * the way a chroot would (absolute symlinks point back into the root), and
 * walks are sorted so their results are reproducible.
 */
import { lstat, readlink, mkdir, copyFile, symlink, chown, chmod, lchown, lutimes, rm, link } from "node:fs/promises";
import type { Stats } from "node:fs";
import { join, posix } from "node:path";
import { UserError } from "../../errors.js";
import { walk } from "../../util/fs.js";

/** Normalise an image path ("/etc/../usr//bin") to a relative POSIX path ("usr/bin"); throws when it escapes. */
export function imageRel(p: string, what = "path"): string {
  const parts: string[] = [];
  for (const c of p.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") {
      if (parts.length === 0) throw new UserError(`${what} '${p}' escapes the image root`, { hint: "remove '..' from the path" });
      parts.pop();
    } else parts.push(c);
  }
  return parts.join("/");
}

/**
 * Resolve `rel` inside `root`, following symlinks the way the image would see
 * them (absolute targets are relative to the root; '..' stops at the root).
 * With `followLast` false the final component is not followed.
 */
export async function resolveInRoot(root: string, rel: string, followLast = true, depth = 0): Promise<string> {
  if (depth > 40) throw new UserError(`too many levels of symbolic links resolving /${rel} in the image`);
  const parts = rel.split("/").filter((c) => c && c !== ".");
  const out: string[] = [];
  for (let i = 0; i < parts.length; i++) {
    const c = parts[i]!;
    if (c === "..") {
      out.pop();
      continue;
    }
    out.push(c);
    const last = i === parts.length - 1;
    if (last && !followLast) break;
    let st: Stats;
    try {
      st = await lstat(join(root, ...out));
    } catch {
      // does not exist (yet): the rest is taken literally
      return [...out, ...parts.slice(i + 1)].join("/");
    }
    if (st.isSymbolicLink()) {
      const target = await readlink(join(root, ...out));
      out.pop();
      const base = target.startsWith("/") ? "" : out.join("/");
      const joined = posix.join(base || ".", target, ...parts.slice(i + 1));
      return resolveInRoot(root, joined.replace(/^\/+/, ""), followLast, depth + 1);
    }
  }
  return out.join("/");
}

/** mkdir -p of an image directory, resolving through the image's own symlinks (e.g. /bin -> usr/bin). */
export async function mkdirInRoot(root: string, rel: string, mode = 0o755): Promise<string> {
  const resolved = await resolveInRoot(root, rel);
  await mkdir(join(root, resolved), { recursive: true, mode });
  return resolved;
}

/**
 * Copy a host folder over the image tree, preserving modes, owners, symlinks
 * and hard links inside the folder, resolving destination parents inside
 * the root (never writing through a symlink to outside).
 */
export async function copyTreeInto(srcDir: string, root: string, opts: { mtime?: number } = {}): Promise<number> {
  let n = 0;
  const inodes = new Map<string, string>();
  for await (const e of walk(srcDir)) {
    const parentRel = posix.dirname(e.rel) === "." ? "" : posix.dirname(e.rel);
    const parent = parentRel ? await mkdirInRoot(root, parentRel) : "";
    const destRel = parent ? `${parent}/${posix.basename(e.rel)}` : posix.basename(e.rel);
    const dest = join(root, destRel);
    const src = join(srcDir, e.rel);
    const st = e.stat;
    let existing: Stats | undefined;
    try {
      existing = await lstat(dest);
    } catch {
      existing = undefined;
    }
    if (st.isDirectory()) {
      if (existing && !existing.isDirectory()) {
        if (existing.isSymbolicLink()) {
          // a directory over a symlink to a directory (bin -> usr/bin): merge into its target
          await mkdirInRoot(root, destRel);
          continue;
        }
        await rm(dest, { force: true });
      }
      if (!existing || !existing.isDirectory()) await mkdir(dest, { mode: st.mode & 0o7777 });
      await chown(dest, st.uid, st.gid);
      await chmod(dest, st.mode & 0o7777);
    } else {
      if (existing) await rm(dest, { recursive: true, force: true });
      const key = `${st.dev}:${st.ino}`;
      if (st.isFile() && st.nlink > 1 && inodes.has(key)) {
        await link(join(root, inodes.get(key)!), dest);
      } else if (st.isSymbolicLink()) {
        await symlink(await readlink(src), dest);
        await lchown(dest, st.uid, st.gid);
      } else if (st.isFile()) {
        await copyFile(src, dest);
        await chown(dest, st.uid, st.gid);
        await chmod(dest, st.mode & 0o7777);
        if (st.nlink > 1) inodes.set(key, destRel);
      } else {
        throw new UserError(`${src}: special files (devices, sockets, fifos) are not allowed in an overlay folder`, {
          hint: "remove it; device nodes are created at boot",
        });
      }
    }
    if (opts.mtime !== undefined) await lutimes(dest, opts.mtime, opts.mtime);
    n++;
  }
  return n;
}
