/**
 * `acl butane`: translate a Butane config (flatcar 1.0.0/1.1.0, fcos
 * 1.4.0/1.5.0) to an Ignition config, as butane does. Reports carry the YAML
 * path, line and column; warnings fail the run only with `strict`. The output
 * file is written through a temporary file and renamed, so a failed run never
 * leaves a half-written config.
 */
import { lstat, readdir, readFile, readlink, realpath, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import { UserError, fsReason } from "../errors.js";
import { goJson, translateButane, type LocalEntry, type LocalFiles, type Report } from "../formats/butane/translate.js";

export interface ButaneOptions {
  /** The config: a file to read, or text already read from stdin (name "-"). */
  input: { path: string } | { text: string; name: string };
  filesDir?: string;
  strict?: boolean;
  pretty?: boolean;
  /** Validate only: write nothing. */
  check?: boolean;
  /** Output file; undefined: the caller prints `json`. */
  output?: string;
}

export interface ButaneResult {
  ignitionVersion: string;
  warnings: Report[];
  /** The Ignition config as written (compact or pretty). */
  json: string;
  output?: string;
}

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

export async function translateButaneFile(opts: ButaneOptions): Promise<ButaneResult> {
  let input: { text: string; name: string };
  if ("path" in opts.input) {
    const path = opts.input.path;
    try {
      input = { text: await readFile(path, "utf8"), name: path };
    } catch (e) {
      throw new UserError(`cannot read ${path}: ${fsReason(e)}`, { file: path, hint: "pass a Butane YAML file, or - for stdin" });
    }
  } else input = opts.input;
  const o = { ...opts, input };
  if (o.filesDir) {
    const st = await stat(o.filesDir).catch(() => undefined);
    if (!st?.isDirectory()) throw new UserError(`--files-dir ${o.filesDir} is not a folder`, { file: o.filesDir, hint: "pass the folder that holds the config's local files" });
  }
  const r = await translateButane(o.input.text, { files: o.filesDir ? filesDirView(o.filesDir) : undefined, filesDirName: o.filesDir });
  const errors = r.reports.filter((x) => x.kind === "error");
  const warnings = r.reports.filter((x) => x.kind === "warning");
  if (errors.length || (o.strict && warnings.length)) {
    const lines = [...errors, ...warnings].map((x) => formatReport(o.input.name, x));
    const first = errors[0] ?? warnings[0]!;
    throw new UserError(`${o.input.name}: ${errors.length ? `${errors.length} error(s)` : `${warnings.length} warning(s) with --strict`}:\n${lines.map((l) => `  ${l}`).join("\n")}`, {
      file: o.input.name === "-" ? undefined : o.input.name,
      key: first.path,
      hint: errors.length ? "fix the config at the path and line shown" : "fix the warnings, or drop --strict",
    });
  }
  const json = goJson(r.config, o.pretty);
  if (o.output && !o.check) {
    const tmp = join(dirname(resolve(o.output)), `.${basename(o.output)}.tmp-${process.pid}`);
    try {
      await writeFile(tmp, json);
      await rename(tmp, o.output);
    } catch (e) {
      await rm(tmp, { force: true });
      throw new UserError(`cannot write ${o.output}: ${fsReason(e)}`, { file: o.output, hint: "choose a writable -o path" });
    }
  }
  return { ignitionVersion: r.ignitionVersion!, warnings, json, output: o.output && !o.check ? o.output : undefined };
}
