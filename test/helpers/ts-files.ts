/** The .ts files under a folder, recursively, sorted (for tests that read acl's own sources). */
import { readdir } from "node:fs/promises";
import { join } from "node:path";

export async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await tsFiles(p)));
    else if (e.name.endsWith(".ts")) out.push(p);
  }
  return out.sort();
}
