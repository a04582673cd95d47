/** Small file systems for the tests that need one full or read-only (the mounts need root; CI runs as root). */
import { execFileSync } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";

/** Mounts made by `tmpfs`, to unmount when the file's tests end (`unmountAll`). */
const mounts: string[] = [];

/** A tmpfs of `size` (as mount takes it: 32m, 1g) at PARENT/NAME, read-only when asked. */
export async function tmpfs(parent: string, name: string, size: string, ro = false): Promise<string> {
  const m = join(parent, name);
  await mkdir(m);
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}${ro ? ",ro" : ""}`, "tmpfs", m]);
  mounts.push(m);
  return m;
}

export function unmountAll(): void {
  for (const m of mounts.splice(0).reverse()) execFileSync("umount", [m]);
}
