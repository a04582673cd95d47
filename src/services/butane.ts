/**
 * `acl butane`: translate a Butane config (flatcar 1.0.0/1.1.0, fcos
 * 1.4.0/1.5.0) to an Ignition config, as butane does. Reports carry the YAML
 * path, line and column; warnings fail the run only with `strict`. The output
 * file is written through a temporary file and renamed, so a failed run never
 * leaves a half-written config.
 */
import { readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { UserError, fsReason } from "../errors.js";
import { loadButane } from "../config/butane.js";
import { goJson, type Report } from "../formats/butane/translate.js";

export { filesDirView, formatReport } from "../config/butane.js";

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
  const r = await loadButane(o.input, { filesDir: o.filesDir, strict: o.strict });
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
  return { ignitionVersion: r.ignitionVersion, warnings: r.warnings, json, output: o.output && !o.check ? o.output : undefined };
}
