/** The Butane translation table (test/fixtures/butane/cases.json) and the files dirs its cases need. */
import { chmod, mkdir, mkdtemp, symlink, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export interface Where { path?: string | null; line?: number; column?: number; substance: string; origin?: string; more?: Where[] }
export interface ButaneCase {
  name: string;
  version: string;
  butane: string;
  files?: Record<string, string>;
  files_base64?: Record<string, string>;
  file_modes?: Record<string, string>;
  symlinks?: Record<string, string>;
  dirs?: string[];
  files_dir?: boolean;
  exit_code: number;
  ignition?: Record<string, unknown>;
  stdout?: string;
  gzip?: boolean;
  warnings?: Where[];
  error?: Where;
  strict?: boolean;
  pretty?: boolean;
}

export const CASES: ButaneCase[] = JSON.parse(readFileSync(join(import.meta.dirname, "../fixtures/butane/cases.json"), "utf8"));

/** The case's files dir on disk. */
export async function filesDir(c: ButaneCase): Promise<string> {
  // under the run's TMPDIR, removed when the test run ends
  const d = await mkdtemp(join(tmpdir(), "acl-butane-"));
  for (const dir of c.dirs ?? []) await mkdir(join(d, dir), { recursive: true });
  for (const [p, text] of Object.entries(c.files ?? {})) {
    await mkdir(dirname(join(d, p)), { recursive: true });
    await writeFile(join(d, p), text);
  }
  for (const [p, b64] of Object.entries(c.files_base64 ?? {})) {
    await mkdir(dirname(join(d, p)), { recursive: true });
    await writeFile(join(d, p), Buffer.from(b64, "base64"));
  }
  for (const [p, mode] of Object.entries(c.file_modes ?? {})) await chmod(join(d, p), parseInt(mode, 8));
  for (const [p, target] of Object.entries(c.symlinks ?? {})) {
    await mkdir(dirname(join(d, p)), { recursive: true });
    await symlink(target, join(d, p));
  }
  return d;
}

