/**
 * A Butane config read as acl reads it everywhere (`acl butane`, an image's
 * `[ignition] base`, `acl boot-test --ignition`): translated by
 * formats/butane, its local files read from a files dir that no path may
 * leave, errors (and, when strict, warnings) turned into one UserError that
 * lists each with its YAML path, line and column.
 */
import { lstat, readdir, readFile, readlink, realpath, stat } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { UserError } from "../errors.js";
import { translateButane, type LocalEntry, type LocalFiles, type Report } from "../formats/butane/translate.js";

export function formatReport(name: string, r: Report): string {
  const where = r.position ? `${r.path}, line ${r.position.line} col ${r.position.column}` : r.path;
  return `${name}: ${r.kind} at ${where}: ${r.message}`;
}

/** The files dir on disk; every path is checked again after resolving links, so none leaves it. */
export function filesDirView(dir: string): LocalFiles {
  const root = resolve(dir);
  let rootReal: Promise<string> | undefined;
  const inside = async (rel: string): Promise<string> => {
    const p = resolve(root, rel);
    const real = await realpath(p);
    const realRoot = await (rootReal ??= realpath(root));
    if (real !== realRoot && !real.startsWith(realRoot + sep)) throw new Error(`${rel} resolves to ${real}, outside the files dir ${dir}`);
    return real;
  };
  return {
    async read(rel) {
      return readFile(await inside(rel));
    },
    async isDirectory(rel) {
      const p = await inside(rel).catch(() => undefined);
      return p ? ((await stat(p).catch(() => undefined))?.isDirectory() ?? false) : false;
    },
    async walk(rel) {
      const start = await inside(rel);
      const out: LocalEntry[] = [];
      const go = async (abs: string, prefix: string): Promise<void> => {
        const names = (await readdir(abs)).sort();
        for (const n of names) {
          const p = join(abs, n);
          const r = prefix ? `${prefix}/${n}` : n;
          const st = await lstat(p);
          if (st.isSymbolicLink()) out.push({ rel: r, kind: "link", mode: 0o777, target: await readlink(p) });
          else if (st.isDirectory()) {
            out.push({ rel: r, kind: "dir", mode: st.mode & 0o7777 });
            await go(p, r);
          } else if (st.isFile()) out.push({ rel: r, kind: "file", mode: st.mode & 0o7777 });
          else throw new Error(`${r} in the tree is neither a file, a folder nor a link`);
        }
      };
      await go(start, "");
      return out;
    },
  };
}

export interface LoadedButane {
  config: Record<string, unknown>;
  ignitionVersion: string;
  warnings: Report[];
}

/** Translate `input.text`; `input.name` names it in messages ("-" for stdin). */
export async function loadButane(input: { text: string; name: string }, opts: { filesDir?: string; strict?: boolean } = {}): Promise<LoadedButane> {
  const r = await translateButane(input.text, { files: opts.filesDir ? filesDirView(opts.filesDir) : undefined, filesDirName: opts.filesDir });
  const errors = r.reports.filter((x) => x.kind === "error");
  const warnings = r.reports.filter((x) => x.kind === "warning");
  if (errors.length || (opts.strict && warnings.length)) {
    const lines = [...errors, ...warnings].map((x) => formatReport(input.name, x));
    const first = errors[0] ?? warnings[0]!;
    throw new UserError(`${input.name}: ${errors.length ? `${errors.length} error(s)` : `${warnings.length} warning(s) with --strict`}:\n${lines.map((l) => `  ${l}`).join("\n")}`, {
      file: input.name === "-" ? undefined : input.name,
      key: first.path,
      hint: errors.length ? "fix the config at the path and line shown" : "fix the warnings, or drop --strict",
    });
  }
  return { config: r.config!, ignitionVersion: r.ignitionVersion!, warnings };
}
