/**
 * Butane → Ignition, as coreos/butane translates the flatcar and fcos
 * variants acl supports (BUTANE_VERSIONS). Pure apart from `LocalFiles`, the
 * caller's view of the files dir (`-d`): the translator resolves and checks
 * every local path itself, so a path that leaves the files dir is an error
 * before anything is read.
 *
 * Output key order follows Ignition's Go types (what butane's JSON has);
 * empty sections are left out.
 */
import { posix } from "node:path";
import { parseButaneYaml, type Position, ButaneYamlError } from "./yaml.js";
import { BUTANE_VERSIONS, butaneSchema, REFUSED_SECTIONS, unusedKeys, type ButaneConfig, type ButaneResource, type Variant } from "./schema.js";
import { toDataUrl } from "./dataurl.js";

export interface Report {
  kind: "error" | "warning";
  /** `$.storage.files.0.path` */
  path: string;
  message: string;
  position?: Position;
}

export interface LocalEntry {
  /** Relative to the tree's root, POSIX separators. */
  rel: string;
  kind: "file" | "dir" | "link";
  /** Permission bits of the local file. */
  mode: number;
  /** Link target. */
  target?: string;
}

/** The files dir, as the translator may read it (paths are relative and already checked). */
export interface LocalFiles {
  read(rel: string): Promise<Uint8Array>;
  /** Every entry under `rel` (a directory), sorted by path, not following links. */
  walk(rel: string): Promise<LocalEntry[]>;
  isDirectory(rel: string): Promise<boolean>;
}

export interface TranslateResult {
  config?: Record<string, unknown>;
  ignitionVersion?: string;
  reports: Report[];
}

export class ButaneError extends Error {
  constructor(readonly report: Report) {
    super(report.message);
  }
}

type Json = Record<string, unknown>;

/** Drop undefined values and empty objects/arrays (Go's omitempty), keeping key order. */
function clean<T>(v: T): T | undefined {
  if (Array.isArray(v)) {
    const a = v.map((x) => clean(x)).filter((x) => x !== undefined);
    return (a.length ? a : undefined) as T | undefined;
  }
  if (v && typeof v === "object") {
    const o: Json = {};
    for (const [k, x] of Object.entries(v as Json)) {
      const c = clean(x);
      if (c !== undefined) o[k] = c;
    }
    return (Object.keys(o).length ? o : undefined) as T | undefined;
  }
  return v;
}

export interface TranslateOptions {
  files?: LocalFiles;
  /** Name of the files dir for messages ("-d DIR"). */
  filesDirName?: string;
}

export async function translateButane(text: string, opts: TranslateOptions = {}): Promise<TranslateResult> {
  const reports: Report[] = [];
  let doc;
  try {
    doc = parseButaneYaml(text);
  } catch (e) {
    if (e instanceof ButaneYamlError) return { reports: [{ kind: "error", path: "$", message: e.message, position: e.position }] };
    throw e;
  }
  const at = (path: string): Position | undefined => {
    for (let p = path; ; p = p.slice(0, p.lastIndexOf("."))) {
      const pos = doc.positions.get(p);
      if (pos || !p.includes(".")) return pos;
    }
  };
  const report = (kind: Report["kind"], path: string, message: string) => reports.push({ kind, path, message, position: at(path) });
  const atKey = (path: string): Position | undefined => doc.keyPositions.get(path) ?? at(path);
  const raw = doc.value as Json | null;
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    report("error", "$", "the config must be a YAML mapping with variant and version");
    return { reports };
  }
  const variant = raw.variant;
  const version = raw.version;
  const supported = Object.entries(BUTANE_VERSIONS).flatMap(([v, m]) => Object.keys(m).map((x) => `${v} ${x}`)).join(", ");
  if (typeof variant !== "string" || !(variant in BUTANE_VERSIONS)) {
    report("error", "$.variant", `unknown variant ${JSON.stringify(variant ?? null)}; supported: ${supported}`);
    return { reports };
  }
  const versions = BUTANE_VERSIONS[variant as Variant] as Record<string, string>;
  if (typeof version !== "string" || !(version in versions)) {
    report("error", "$.version", `unknown ${variant} version ${JSON.stringify(version ?? null)}; supported: ${supported}`);
    return { reports };
  }
  const ignitionVersion = versions[version]!;
  const schema = butaneSchema(ignitionVersion === "3.4.0");
  for (const p of unusedKeys(schema, raw)) reports.push({ kind: "warning", path: p, message: `unused key ${p.slice(p.lastIndexOf(".") + 1)}`, position: atKey(p) });
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    for (const i of parsed.error.issues) report("error", ["$", ...i.path].join("."), i.message);
    return { reports };
  }
  const cfg = parsed.data;
  for (const s of REFUSED_SECTIONS) {
    const [a, b] = s.split(".");
    const v = b ? (cfg as Json)[a!] && ((cfg as Json)[a!] as Json)[b] : (cfg as Json)[a!];
    if (v !== undefined && !(Array.isArray(v) && v.length === 0)) report("error", `$.${s}`, `${s} is not supported by acl yet: it needs acl's disk stage (or kernel arguments); build the layout into the image spec instead`);
  }
  if (reports.some((r) => r.kind === "error")) return { reports };
  try {
    const config = await translate(cfg, ignitionVersion, { ...opts, report });
    if (reports.some((r) => r.kind === "error")) return { reports };
    return { config, ignitionVersion, reports };
  } catch (e) {
    if (e instanceof ButaneError) {
      reports.push({ ...e.report, position: e.report.position ?? at(e.report.path) });
      return { reports };
    }
    throw e;
  }
}

interface Ctx extends TranslateOptions {
  report: (kind: Report["kind"], path: string, message: string) => void;
}

/** A local path, checked: relative, inside the files dir. */
function localPath(ctx: Ctx, rel: string, path: string): string {
  if (!ctx.files) throw new ButaneError({ kind: "error", path, message: `local file ${JSON.stringify(rel)} needs a files dir: pass -d DIR (--files-dir)` });
  // relative to the files dir, "/x" included; only a path that climbs out of it is refused
  const n = posix.normalize(posix.join(".", rel));
  if (n === ".." || n.startsWith("../")) {
    throw new ButaneError({ kind: "error", path, message: `local path ${JSON.stringify(rel)} is outside the files dir${ctx.filesDirName ? ` ${ctx.filesDirName}` : ""}` });
  }
  return n;
}

async function readLocal(ctx: Ctx, rel: string, path: string): Promise<Uint8Array> {
  const n = localPath(ctx, rel, path);
  try {
    return await ctx.files!.read(n);
  } catch (e) {
    throw new ButaneError({ kind: "error", path, message: `cannot read local file ${JSON.stringify(rel)}: ${(e as Error).message}` });
  }
}

/** A Butane resource as an Ignition one; inline and local become data URLs. */
async function resource(ctx: Ctx, r: ButaneResource, path: string, allowCompression: boolean): Promise<Json> {
  const given = (["inline", "local", "source"] as const).filter((k) => r[k] !== undefined);
  if (given.length > 1) throw new ButaneError({ kind: "error", path: `${path}.${given.at(-1)}`, message: `only one of inline, local and source may be given (here: ${given.join(", ")})` });
  if (r.compression !== undefined && r.compression !== "" && r.compression !== "gzip")
    throw new ButaneError({ kind: "error", path: `${path}.compression`, message: `compression ${JSON.stringify(r.compression)} is not one Ignition knows: use "gzip" or leave it out` });
  let source = r.source;
  let compression = r.compression;
  if (r.inline !== undefined || r.local !== undefined) {
    const data = r.inline !== undefined ? Buffer.from(r.inline, "utf8") : await readLocal(ctx, r.local!, `${path}.local`);
    // a compression the author names is kept (the data is taken as already compressed); "" or none lets butane choose
    const auto = allowCompression && !r.compression;
    const enc = toDataUrl(data, { allowCompression: auto });
    source = enc.source;
    compression = auto ? enc.compression : r.compression;
  }
  return {
    compression,
    httpHeaders: r.http_headers?.map((h) => ({ name: h.name, value: h.value })),
    source,
    verification: r.verification ? { hash: r.verification.hash } : undefined,
  };
}

function nodeBase(n: { path: string; overwrite?: boolean; user?: { id?: number; name?: string }; group?: { id?: number; name?: string } }): Json {
  return {
    group: n.group ? { id: n.group.id, name: n.group.name } : undefined,
    overwrite: n.overwrite,
    path: n.path,
    user: n.user ? { id: n.user.id, name: n.user.name } : undefined,
  };
}

/**
 * A mode people mean (butane's test): each more privileged class (other →
 * group → user) has every bit of the less privileged ones, no w or x without
 * r, no x after a class that had r without x, some r; setuid/setgid/sticky
 * only where they make sense for a file or a folder.
 */
export function typicalMode(m: number, dir: boolean): boolean {
  if (m === 0) return true;
  if (m & ~0o7777) return false;
  const cls = [m & 7, (m >> 3) & 7, (m >> 6) & 7];
  for (let i = 1; i < 3; i++) if ((cls[i]! & cls[i - 1]!) !== cls[i - 1]) return false;
  let rWithoutX = false;
  for (const c of cls) {
    if (c & 1 && rWithoutX) return false;
    if (c & 4 && !(c & 1)) rWithoutX = true;
    if (c & 3 && !(c & 4)) return false;
  }
  if (!cls.some((c) => c & 4)) return false;
  const anyW = cls.some((c) => c & 2);
  const anyX = cls.some((c) => c & 1);
  const [suid, sgid, sticky] = [m & 0o4000, m & 0o2000, m & 0o1000];
  if (dir) return anyX && !suid && (!(sgid || sticky) || anyW);
  return (!(suid || sgid) || (anyX && !(cls[0]! & 2))) && !sticky;
}

/** Butane's warning for a mode written in decimal that only makes sense read as octal (644 for 0644). */
function checkMode(ctx: Ctx, mode: number | undefined, path: string, dir = false): void {
  if (mode === undefined || typicalMode(mode, dir)) return;
  const digits = String(mode);
  if (/^[0-7]+$/.test(digits) && mode <= 7777 && typicalMode(parseInt(digits, 8), dir))
    ctx.report("warning", path, `mode ${digits} is decimal (0o${mode.toString(8)}); as octal it would be a sensible mode: write 0${digits}`);
}

/** systemd-escape --path: the unit name of a mount point. */
export function mountUnitName(path: string, suffix: "mount" | "swap"): string {
  const p = posix.normalize(path).replace(/^\/+|\/+$/g, "");
  if (!p) return `-.${suffix}`;
  // as Go's unit-name escaping does it: lowercase hex without padding, and only a leading "." of the whole name escaped
  const esc = p
    .split("/")
    .map((seg, si) =>
      Array.from(Buffer.from(seg, "utf8"))
        .map((b, i) => {
          const c = String.fromCharCode(b);
          if (/[A-Za-z0-9:_]/.test(c) || (c === "." && !(si === 0 && i === 0))) return c;
          return `\\x${b.toString(16)}`;
        })
        .join(""),
    )
    .join("-");
  return `${esc}.${suffix}`;
}

/** The unit butane writes for `with_mount_unit` (see docs/provisioning.md); no newline after the last line. */
export function mountUnit(fs: { device: string; path?: string; format?: string; mount_options?: string[] }): { name: string; contents: string } {
  const options = fs.mount_options?.length ? [`Options=${fs.mount_options.join(",")}`] : [];
  if (fs.format === "swap") {
    return {
      name: mountUnitName(fs.device, "swap"),
      contents: ["# Generated by Butane", "[Swap]", `What=${fs.device}`, ...options, "", "[Install]", "RequiredBy=swap.target"].join("\n"),
    };
  }
  const fsck = `systemd-fsck@${mountUnitName(fs.device, "mount").replace(/\.mount$/, "")}.service`;
  return {
    name: mountUnitName(fs.path!, "mount"),
    contents: [
      "# Generated by Butane", "[Unit]", `Requires=${fsck}`, `After=${fsck}`, "",
      "[Mount]", `Where=${fs.path}`, `What=${fs.device}`, `Type=${fs.format}`, ...options, "",
      "[Install]", "RequiredBy=local-fs.target",
    ].join("\n"),
  };
}

type Entry = { kind: "file" | "directory" | "link"; json: Json; from: string; filled: boolean };

async function translate(cfg: ButaneConfig, ignitionVersion: string, ctx: Ctx): Promise<Json> {
  const ign = cfg.ignition;
  const files: Json[] = [];
  const directories: Json[] = [];
  const links: Json[] = [];
  /** Every path so far, for trees (which fill entries without contents, and collide with the rest). */
  const byPath = new Map<string, Entry>();

  const node = (n: { path: string; user?: { id?: number; name?: string }; group?: { id?: number; name?: string } }, p: string) => {
    if (!posix.isAbsolute(n.path)) throw new ButaneError({ kind: "error", path: `${p}.path`, message: `path ${JSON.stringify(n.path)} must be absolute` });
    for (const k of ["user", "group"] as const) {
      if (n[k]?.id !== undefined && n[k]?.name !== undefined) throw new ButaneError({ kind: "error", path: `${p}.${k}`, message: `${k}: give its id or its name, not both` });
    }
  };
  const listDup = (list: { path: string }[], what: string) => {
    const seen = new Set<string>();
    for (const [i, x] of list.entries()) {
      if (seen.has(x.path)) throw new ButaneError({ kind: "error", path: `$.storage.${what}.${i}`, message: `a second ${what} entry for ${x.path}` });
      seen.add(x.path);
    }
  };
  listDup(cfg.storage?.files ?? [], "files");
  listDup(cfg.storage?.directories ?? [], "directories");
  listDup(cfg.storage?.links ?? [], "links");

  for (const [i, f] of (cfg.storage?.files ?? []).entries()) {
    const p = `$.storage.files.${i}`;
    node(f, p);
    checkMode(ctx, f.mode, `${p}.mode`);
    const append: Json[] = [];
    for (const [j, a] of (f.append ?? []).entries()) append.push(await resource(ctx, a, `${p}.append.${j}`, true));
    const hasContents = f.contents?.source !== undefined || f.contents?.inline !== undefined || f.contents?.local !== undefined;
    const json: Json = { ...nodeBase(f), append, contents: f.contents ? await resource(ctx, f.contents, `${p}.contents`, true) : undefined, mode: f.mode };
    files.push(json);
    byPath.set(posix.normalize(f.path), { kind: "file", json, from: p, filled: hasContents });
  }
  for (const [i, d] of (cfg.storage?.directories ?? []).entries()) {
    const p = `$.storage.directories.${i}`;
    node(d, p);
    checkMode(ctx, d.mode, `${p}.mode`, true);
    const json: Json = { ...nodeBase(d), mode: d.mode };
    directories.push(json);
    byPath.set(posix.normalize(d.path), { kind: "directory", json, from: p, filled: true });
  }
  for (const [i, l] of (cfg.storage?.links ?? []).entries()) {
    const p = `$.storage.links.${i}`;
    node(l, p);
    const json: Json = { ...nodeBase(l), hard: l.hard, target: l.target };
    links.push(json);
    byPath.set(posix.normalize(l.path), { kind: "link", json, from: p, filled: l.target !== undefined });
  }
  for (const [i, t] of (cfg.storage?.trees ?? []).entries()) {
    const p = `$.storage.trees.${i}`;
    const fail = (message: string): never => {
      throw new ButaneError({ kind: "error", path: p, message });
    };
    if (t.local === undefined) fail("a tree needs local: the folder in the files dir to copy");
    let root: string;
    try {
      root = localPath(ctx, t.local!, p);
    } catch (e) {
      throw e instanceof ButaneError ? new ButaneError({ ...e.report, path: p }) : e;
    }
    if (!(await ctx.files!.isDirectory(root))) fail(`local tree ${JSON.stringify(t.local)} is not a folder in the files dir`);
    const base = t.path ?? "/";
    for (const e of await ctx.files!.walk(root)) {
      if (e.kind === "dir") continue;
      const dest = posix.join(base, e.rel);
      const prior = byPath.get(dest);
      const kind = e.kind === "link" ? "link" : "file";
      if (prior && (prior.filled || prior.kind !== kind)) fail(`the tree's ${e.rel} would write ${dest}, which ${prior.from} already ${prior.filled ? "sets" : `declares as a ${prior.kind}`}`);
      if (e.kind === "link") {
        if (prior) prior.json.target = e.target;
        else links.push({ path: dest, target: e.target });
      } else {
        const data = await ctx.files!.read(posix.join(root, e.rel));
        const mode = e.mode & 0o111 ? 0o755 : 0o644;
        if (prior) {
          const c = (prior.json.contents as Json | undefined) ?? {};
          const named = typeof c.compression === "string" && c.compression !== "";
          const enc = toDataUrl(data, { allowCompression: !named });
          prior.json.contents = { compression: named ? c.compression : enc.compression, httpHeaders: c.httpHeaders, source: enc.source, verification: c.verification };
          prior.json.mode ??= mode;
        } else {
          const enc = toDataUrl(data, { allowCompression: true });
          files.push({ path: dest, contents: { compression: enc.compression, source: enc.source }, mode });
        }
      }
      byPath.set(dest, { kind, json: prior?.json ?? {}, from: p, filled: true });
    }
  }

  const filesystems: Json[] = [];
  const generated: Json[] = [];
  for (const [i, fs] of (cfg.storage?.filesystems ?? []).entries()) {
    const p = `$.storage.filesystems.${i}`;
    filesystems.push({
      device: fs.device, format: fs.format, label: fs.label, mountOptions: fs.mount_options, options: fs.options,
      path: fs.path, uuid: fs.uuid, wipeFilesystem: fs.wipe_filesystem,
    });
    if (fs.with_mount_unit) {
      if (!fs.format) throw new ButaneError({ kind: "error", path: `${p}.format`, message: "with_mount_unit needs the filesystem's format" });
      if (fs.format !== "swap" && !fs.path) throw new ButaneError({ kind: "error", path: `${p}.path`, message: "with_mount_unit needs a path to mount it at (unless the format is swap)" });
      const u = mountUnit(fs);
      generated.push({ contents: u.contents, enabled: true, name: u.name });
    }
  }
  const units: Json[] = [...generated];
  for (const [i, u] of (cfg.systemd?.units ?? []).entries()) {
    const p = `$.systemd.units.${i}`;
    const local = (u as { contents_local?: string }).contents_local;
    if (local !== undefined && u.contents !== undefined) throw new ButaneError({ kind: "error", path: `${p}.contents_local`, message: "give contents or contents_local, not both" });
    const contents = local !== undefined ? Buffer.from(await readLocal(ctx, local, `${p}.contents_local`)).toString("utf8") : u.contents;
    const dropins: Json[] = [];
    for (const [j, d] of (u.dropins ?? []).entries()) {
      const dl = (d as { contents_local?: string }).contents_local;
      if (dl !== undefined && d.contents !== undefined) throw new ButaneError({ kind: "error", path: `${p}.dropins.${j}.contents_local`, message: "give contents or contents_local, not both" });
      dropins.push({ contents: dl !== undefined ? Buffer.from(await readLocal(ctx, dl, `${p}.dropins.${j}.contents_local`)).toString("utf8") : d.contents, name: d.name });
    }
    const mine: Json = { contents, dropins, enabled: u.enabled, mask: u.mask, name: u.name };
    // a unit the config also lists by the generated mount unit's name: what the author set wins
    const gen = units.find((x) => generated.includes(x) && x.name === u.name);
    if (gen) {
      const set = (v: unknown) => v !== undefined && !(Array.isArray(v) && v.length === 0);
      const merged: Json = {};
      for (const k of ["contents", "dropins", "enabled", "mask", "name"]) merged[k] = set(mine[k]) ? mine[k] : gen[k];
      units[units.indexOf(gen)] = merged;
      generated[generated.indexOf(gen)] = merged;
    } else units.push(mine);
  }
  const users: Json[] = [];
  for (const [i, u] of (cfg.passwd?.users ?? []).entries()) {
    const keys = [...(u.ssh_authorized_keys ?? [])];
    const localKeys = (u as { ssh_authorized_keys_local?: string[] }).ssh_authorized_keys_local ?? [];
    if (localKeys.length && !ctx.files) throw new ButaneError({ kind: "error", path: `$.passwd.users.${i}.ssh_authorized_keys_local`, message: "local key files need a files dir: pass -d DIR (--files-dir)" });
    for (const [j, k] of localKeys.entries()) {
      const text = Buffer.from(await readLocal(ctx, k, `$.passwd.users.${i}.ssh_authorized_keys_local.${j}`)).toString("utf8");
      keys.push(...text.split(/\r?\n/).filter((l) => l !== ""));
    }
    users.push({
      gecos: u.gecos, groups: u.groups, homeDir: u.home_dir, name: u.name, noCreateHome: u.no_create_home, noLogInit: u.no_log_init,
      noUserGroup: u.no_user_group, passwordHash: u.password_hash, primaryGroup: u.primary_group,
      sshAuthorizedKeys: keys, shell: u.shell, shouldExist: u.should_exist, system: u.system, uid: u.uid,
    });
  }
  const groups = (cfg.passwd?.groups ?? []).map((g) => ({ gid: g.gid, name: g.name, passwordHash: g.password_hash, shouldExist: g.should_exist, system: g.system }));

  // a config merged or replacing this one must itself be a JSON config
  const configResource = async (r: ButaneResource, p: string): Promise<Json> => {
    // inline text must be an Ignition config (butane checks it; a local file is taken as it is)
    if (r.inline !== undefined) {
      let v: unknown;
      try {
        v = JSON.parse(r.inline);
      } catch {
        v = undefined;
      }
      const version = v && typeof v === "object" && !Array.isArray(v) ? ((v as Json).ignition as Json | undefined)?.version : undefined;
      if (typeof version !== "string") throw new ButaneError({ kind: "error", path: `${p}.inline`, message: "the inline config to merge or replace with is not an Ignition config (JSON with ignition.version)" });
      if (version !== ignitionVersion) ctx.report("warning", `${p}.inline`, `the inline config is Ignition ${version}; this config is ${ignitionVersion}`);
    }
    return resource(ctx, r, p, true);
  };
  const merge: Json[] = [];
  for (const [i, r] of (ign?.config?.merge ?? []).entries()) merge.push(await configResource(r, `$.ignition.config.merge.${i}`));
  const cas: Json[] = [];
  for (const [i, r] of (ign?.security?.tls?.certificate_authorities ?? []).entries()) cas.push(await resource(ctx, r, `$.ignition.security.tls.certificate_authorities.${i}`, true));
  const out: Json = {
    ignition: {
      config: { merge, replace: ign?.config?.replace ? await configResource(ign.config.replace, "$.ignition.config.replace") : undefined },
      proxy: ign?.proxy ? { httpProxy: ign.proxy.http_proxy, httpsProxy: ign.proxy.https_proxy, noProxy: ign.proxy.no_proxy } : undefined,
      security: { tls: { certificateAuthorities: cas } },
      timeouts: ign?.timeouts ? { httpResponseHeaders: ign.timeouts.http_response_headers, httpTotal: ign.timeouts.http_total } : undefined,
      version: ignitionVersion,
    },
    passwd: { groups, users },
    storage: { directories, files, filesystems, links },
    systemd: { units },
  };
  return clean(out) as Json;
}

/** JSON as Go's encoding/json writes it (butane's bytes): <, > and & escaped, U+2028/2029 too. */
export function goJson(v: unknown, pretty = false): string {
  const s = pretty ? JSON.stringify(v, null, 2) : JSON.stringify(v);
  // JSON.stringify writes \b and \f; Go writes \u0008 and \u000c
  return `${s.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`).replace(/\\(.)/g, (m, c: string) => (c === "b" ? "\\u0008" : c === "f" ? "\\u000c" : m))}\n`;
}
