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
  for (const p of unusedKeys(schema, raw)) report("warning", p, `unused key ${p.slice(p.lastIndexOf(".") + 1)}`);
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
    const config = await translate(cfg, ignitionVersion, { ...opts, report, plainIntegers: doc.plainIntegers });
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
  plainIntegers: ReadonlySet<string>;
}

/** A local path, checked: relative, inside the files dir. */
function localPath(ctx: Ctx, rel: string, path: string): string {
  if (!ctx.files) throw new ButaneError({ kind: "error", path, message: `local file ${JSON.stringify(rel)} needs a files dir: pass -d DIR (--files-dir)` });
  const n = posix.normalize(rel);
  if (posix.isAbsolute(rel) || n === ".." || n.startsWith("../")) {
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
  const given = [r.source !== undefined && "source", r.inline !== undefined && "inline", r.local !== undefined && "local"].filter(Boolean);
  if (given.length > 1) throw new ButaneError({ kind: "error", path: `${path}.${given[1]}`, message: `only one of source, inline and local may be set (found ${given.join(", ")})` });
  let source = r.source;
  let compression = r.compression;
  if (r.inline !== undefined || r.local !== undefined) {
    if (r.compression !== undefined) throw new ButaneError({ kind: "error", path: `${path}.compression`, message: "compression cannot be set with inline or local contents (butane chooses it)" });
    const data = r.inline !== undefined ? Buffer.from(r.inline, "utf8") : await readLocal(ctx, r.local!, `${path}.local`);
    const enc = toDataUrl(data, { allowCompression });
    source = enc.source;
    compression = enc.compression;
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

/** Butane's warning for a mode that is only reasonable read as octal (644 written for 0644). */
function checkMode(ctx: Ctx, mode: number | undefined, path: string): void {
  if (mode === undefined || !ctx.plainIntegers.has(path)) return;
  const digits = String(mode);
  if (!/^[0-7]{3,4}$/.test(digits)) return;
  const asOctal = parseInt(digits, 8);
  if (asOctal !== mode) ctx.report("warning", path, `unreasonable mode would be reasonable if specified in octal; remember to add a leading zero (0${digits} is ${asOctal})`);
}

/** systemd-escape --path: the unit name of a mount point. */
export function mountUnitName(path: string, suffix: "mount" | "swap"): string {
  const p = posix.normalize(path).replace(/^\/+|\/+$/g, "");
  if (!p) return `-.${suffix}`;
  const esc = p
    .split("/")
    .map((seg) =>
      Array.from(Buffer.from(seg, "utf8"))
        .map((b, i) => {
          const c = String.fromCharCode(b);
          if (/[A-Za-z0-9:_]/.test(c) || (c === "." && i > 0)) return c;
          return `\\x${b.toString(16).padStart(2, "0")}`;
        })
        .join(""),
    )
    .join("-");
  return `${esc}.${suffix}`;
}

/** The unit butane writes for `with_mount_unit` (see docs/provisioning.md). */
export function mountUnit(fs: { device: string; path?: string; format?: string; mount_options?: string[] }, variant34: boolean): { name: string; contents: string } {
  if (fs.format === "swap") {
    const name = mountUnitName(fs.device, "swap");
    return {
      name,
      contents: ["# Generated by Butane", "[Swap]", `What=${fs.device}`, "", "[Install]", "RequiredBy=swap.target", ""].join("\n"),
    };
  }
  const name = mountUnitName(fs.path!, "mount");
  const lines = [
    "# Generated by Butane",
    "[Unit]",
    "Requires=systemd-fsck@" + mountUnitName(fs.device, "mount").replace(/\.mount$/, "") + ".service",
    "After=systemd-fsck@" + mountUnitName(fs.device, "mount").replace(/\.mount$/, "") + ".service",
    "",
    "[Mount]",
    `Where=${fs.path}`,
    `What=${fs.device}`,
    `Type=${fs.format ?? "none"}`,
    ...(fs.mount_options?.length ? [`Options=${fs.mount_options.join(",")}`] : []),
    "",
    "[Install]",
    "RequiredBy=local-fs.target",
    "",
  ];
  void variant34;
  return { name, contents: lines.join("\n") };
}

async function translate(cfg: ButaneConfig, ignitionVersion: string, ctx: Ctx): Promise<Json> {
  const v34 = ignitionVersion === "3.4.0";
  const ign = cfg.ignition;
  const files: Json[] = [];
  const directories: Json[] = [];
  const links: Json[] = [];
  const units: Json[] = [];
  const seen = new Map<string, string>(); // path → what made it (for tree conflicts)

  for (const [i, f] of (cfg.storage?.files ?? []).entries()) {
    const p = `$.storage.files.${i}`;
    checkMode(ctx, f.mode, `${p}.mode`);
    const append: Json[] = [];
    for (const [j, a] of (f.append ?? []).entries()) append.push(await resource(ctx, a, `${p}.append.${j}`, true));
    files.push({
      ...nodeBase(f),
      append,
      contents: f.contents ? await resource(ctx, f.contents, `${p}.contents`, true) : undefined,
      mode: f.mode,
    });
    seen.set(posix.normalize(f.path), p);
  }
  for (const [i, d] of (cfg.storage?.directories ?? []).entries()) {
    checkMode(ctx, d.mode, `$.storage.directories.${i}.mode`);
    directories.push({ ...nodeBase(d), mode: d.mode });
    seen.set(posix.normalize(d.path), `$.storage.directories.${i}`);
  }
  for (const [i, l] of (cfg.storage?.links ?? []).entries()) {
    if (l.target === undefined) throw new ButaneError({ kind: "error", path: `$.storage.links.${i}.target`, message: "a link needs a target" });
    links.push({ ...nodeBase(l), hard: l.hard, target: l.target });
    seen.set(posix.normalize(l.path), `$.storage.links.${i}`);
  }
  for (const [i, t] of (cfg.storage?.trees ?? []).entries()) {
    const p = `$.storage.trees.${i}`;
    const root = localPath(ctx, t.local, `${p}.local`);
    if (!(await ctx.files!.isDirectory(root))) throw new ButaneError({ kind: "error", path: `${p}.local`, message: `local tree ${JSON.stringify(t.local)} is not a directory in the files dir` });
    const base = t.path ?? "/";
    for (const e of await ctx.files!.walk(root)) {
      const dest = posix.join(base, e.rel);
      if (e.kind === "dir") continue;
      const prior = seen.get(dest);
      if (prior) throw new ButaneError({ kind: "error", path: `${p}.local`, message: `the tree's ${e.rel} writes ${dest}, which ${prior} already sets` });
      seen.set(dest, p);
      if (e.kind === "link") {
        links.push({ path: dest, target: e.target });
      } else {
        const data = await ctx.files!.read(posix.join(root, e.rel));
        const enc = toDataUrl(data, { allowCompression: true });
        files.push({ path: dest, contents: { compression: enc.compression, source: enc.source }, mode: e.mode & 0o111 ? 0o755 : 0o644 });
      }
    }
  }
  const filesystems: Json[] = [];
  for (const [i, fs] of (cfg.storage?.filesystems ?? []).entries()) {
    filesystems.push({
      device: fs.device, format: fs.format, label: fs.label, mountOptions: fs.mount_options, options: fs.options,
      path: fs.path, uuid: fs.uuid, wipeFilesystem: fs.wipe_filesystem,
    });
    if (fs.with_mount_unit) {
      if (fs.format !== "swap" && !fs.path) throw new ButaneError({ kind: "error", path: `$.storage.filesystems.${i}.path`, message: "with_mount_unit needs a path (where to mount it)" });
      const u = mountUnit(fs, v34);
      units.push({ contents: u.contents, enabled: true, name: u.name });
    }
  }
  for (const [i, u] of (cfg.systemd?.units ?? []).entries()) {
    const p = `$.systemd.units.${i}`;
    const local = (u as { contents_local?: string }).contents_local;
    if (local !== undefined && u.contents !== undefined) throw new ButaneError({ kind: "error", path: `${p}.contents_local`, message: "contents and contents_local cannot both be set" });
    const contents = local !== undefined ? Buffer.from(await readLocal(ctx, local, `${p}.contents_local`)).toString("utf8") : u.contents;
    const dropins: Json[] = [];
    for (const [j, d] of (u.dropins ?? []).entries()) {
      const dl = (d as { contents_local?: string }).contents_local;
      if (dl !== undefined && d.contents !== undefined) throw new ButaneError({ kind: "error", path: `${p}.dropins.${j}.contents_local`, message: "contents and contents_local cannot both be set" });
      dropins.push({ contents: dl !== undefined ? Buffer.from(await readLocal(ctx, dl, `${p}.dropins.${j}.contents_local`)).toString("utf8") : d.contents, name: d.name });
    }
    units.push({ contents, dropins, enabled: u.enabled, mask: u.mask, name: u.name });
  }
  const users: Json[] = [];
  for (const [i, u] of (cfg.passwd?.users ?? []).entries()) {
    const keys = [...(u.ssh_authorized_keys ?? [])];
    for (const [j, k] of ((u as { ssh_authorized_keys_local?: string[] }).ssh_authorized_keys_local ?? []).entries()) {
      const text = Buffer.from(await readLocal(ctx, k, `$.passwd.users.${i}.ssh_authorized_keys_local.${j}`)).toString("utf8");
      keys.push(...text.split(/\r?\n/).filter((l) => l !== ""));
    }
    users.push({
      gecos: u.gecos, groups: u.groups, homeDir: u.home_dir, name: u.name, noCreateHome: u.no_create_home, noLogInit: u.no_log_init,
      noUserGroup: u.no_user_group, passwordHash: u.password_hash, primaryGroup: u.primary_group, shouldExist: u.should_exist,
      sshAuthorizedKeys: keys, shell: u.shell, system: u.system, uid: u.uid,
    });
  }
  const groups = (cfg.passwd?.groups ?? []).map((g) => ({ gid: g.gid, name: g.name, passwordHash: g.password_hash, shouldExist: g.should_exist, system: g.system }));

  const merge: Json[] = [];
  for (const [i, r] of (ign?.config?.merge ?? []).entries()) merge.push(await resource(ctx, r, `$.ignition.config.merge.${i}`, true));
  const cas: Json[] = [];
  for (const [i, r] of (ign?.security?.tls?.certificate_authorities ?? []).entries()) cas.push(await resource(ctx, r, `$.ignition.security.tls.certificate_authorities.${i}`, true));
  const out: Json = {
    ignition: {
      config: { merge, replace: ign?.config?.replace ? await resource(ctx, ign.config.replace, "$.ignition.config.replace", true) : undefined },
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
