/**
 * Apply one container layer (a tar stream, optionally gzip or zstd compressed)
 * onto a root directory, the way an overlay filesystem would stack it:
 * regular files, directories, symlinks, hard links, devices and FIFOs with
 * their modes (setuid/setgid/sticky included), owners, mtimes and xattrs
 * (PAX `SCHILY.xattr.*` / `LIBARCHIVE.xattr.*`), plus OCI whiteouts:
 *   - `.wh.NAME` removes NAME as left by lower layers;
 *   - `.wh..wh..opq` makes its directory opaque: everything lower layers put
 *     there is removed, whatever this same layer adds stays, in any entry order.
 *
 * Safety: entries are confined to rootDir. A leading `/` is stripped (OCI
 * paths are relative); a `..` that climbs above the root, a write whose parent
 * path passes through a symlink, and a hard link whose target is outside the
 * tree or reached through a symlink are refused with a UserError that names
 * the archive and the entry. Symlinks are never followed when writing: every
 * parent component is checked with lstat, files are opened with O_NOFOLLOW and
 * an existing entry is unlinked before it is replaced.
 */
import { createHash, type Hash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import * as zlib from "node:zlib";
import * as tar from "tar-stream";
import { run, runBytes } from "../../../adapters/exec.js";
import { AclError, UserError } from "../../../errors.js";

/** Programs applying a layer may run: zstd layers, device nodes, extended attributes. */
export const LAYER_TOOLS = ["zstd", "mknod", "setfattr"] as const;

export interface LayerStats {
  /** Tar entries read (whiteouts included). */
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  /** Character/block devices and FIFOs. */
  specials: number;
  /** `.wh.NAME` markers. */
  whiteouts: number;
  /** `.wh..wh..opq` markers. */
  opaqueDirs: number;
  /** Extended attributes set. */
  xattrs: number;
  /** Bytes of regular file content written. */
  bytes: number;
  /** Entries skipped by the filter option. */
  skipped: number;
  /** Compression found on the stream. */
  compression: "none" | "gzip" | "zstd";
  /** sha256 of the uncompressed tar stream ("sha256:HEX", the OCI diff_id). */
  diffId: string;
}

export interface ApplyLayerOptions {
  /** Apply uid/gid from the archive (default: when running as root). */
  ownership?: boolean;
  /** Name of the archive (and layer) used in error messages. */
  label?: string;
  /** Return false to skip an entry (path relative to the root, no leading slash). */
  filter?: (relPath: string, entry: { type: string; size: number; linkname: string }) => boolean;
}

/** Magic numbers used to sniff the layer compression. */
const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_MARKER = ".wh..wh..opq";
const TAR_BLOCK = 512;
const MODE_MASK = 0o7777;

/** Apply one layer tar stream onto rootDir; see the module comment. */
export async function applyLayerTar(
  stream: Readable,
  rootDir: string,
  opts: ApplyLayerOptions = {},
): Promise<LayerStats> {
  const label = opts.label ?? "layer tar";
  const root = path.resolve(rootDir);
  const rootSt = fs.lstatSync(root, { throwIfNoEntry: false });
  if (!rootSt || !rootSt.isDirectory()) {
    throw new UserError(`target root '${root}' is not a directory`, { hint: "create it first" });
  }
  const ownership = opts.ownership ?? process.getuid?.() === 0;

  const { compression, tarStream } = await decompress(stream, label);
  const tap = new PaxTap();
  const extract = tar.extract();
  const stats: LayerStats = {
    entries: 0,
    files: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    specials: 0,
    whiteouts: 0,
    opaqueDirs: 0,
    xattrs: 0,
    bytes: 0,
    skipped: 0,
    compression,
    diffId: "",
  };
  const layer = new LayerWriter(root, label, ownership, stats);

  const fail = (err: Error) => {
    extract.destroy(err);
  };
  tarStream.on("error", fail);
  tap.on("error", fail);
  tarStream.pipe(tap).pipe(extract as unknown as NodeJS.WritableStream);

  let current = "";
  try {
    for await (const entry of extract) {
      const header = entry.header as TarHeader;
      current = header.name;
      const rawPax = header.pax ? tap.takePax() : undefined;
      stats.entries++;
      const rel = layer.normalize(header.name, header.name);
      if (rel !== "" && opts.filter && !opts.filter(rel, { type: header.type ?? "file", size: header.size ?? 0, linkname: header.linkname ?? "" })) {
        stats.skipped++;
        await drain(entry);
        continue;
      }
      await layer.apply(header, rel, entry as unknown as AsyncIterable<Uint8Array>, rawPax);
      await drain(entry);
    }
    layer.finish();
  } catch (err) {
    tarStream.destroy();
    stream.destroy();
    if (err instanceof AclError) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    const errPath = (err as NodeJS.ErrnoException).path;
    if (typeof errPath === "string" && (errPath === root || errPath.startsWith(root + "/"))) {
      throw new UserError(`${label}: entry '${current}' could not be written: ${msg}`, {
        file: label,
        hint: "check free space and permissions where the tree is built (acl builds as root)",
      });
    }
    throw new UserError(`${label}: cannot read the layer: ${msg}`, {
      file: label,
      hint: "the archive is truncated or is not a tar layer; re-export it",
    });
  }
  stats.diffId = `sha256:${tap.digest()}`;
  return stats;
}

/** tar-stream's header plus the decoded PAX records it attaches. */
type TarHeader = Omit<tar.Header, "pax"> & { pax?: Record<string, string> | null };

async function drain(entry: AsyncIterable<unknown>): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  for await (const _chunk of entry) {
    /* discard */
  }
}

/** Sniff the first bytes and return the uncompressed tar stream. */
async function decompress(
  stream: Readable,
  label: string,
): Promise<{ compression: LayerStats["compression"]; tarStream: Readable }> {
  const it = stream[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headLen = 0;
  let done = false;
  while (headLen < 4) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    head.push(chunk);
    headLen += chunk.length;
  }
  const first = Buffer.concat(head);
  async function* rest(): AsyncGenerator<Buffer> {
    if (first.length) yield first;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    }
  }
  const raw = Readable.from(rest(), { objectMode: false });
  if (first.subarray(0, 2).equals(GZIP_MAGIC)) {
    const gunzip = zlib.createGunzip();
    raw.on("error", (e) => gunzip.destroy(e));
    return { compression: "gzip", tarStream: raw.pipe(gunzip) };
  }
  if (first.subarray(0, 4).equals(ZSTD_MAGIC)) {
    const z = zlib as unknown as { createZstdDecompress?: () => Transform };
    if (typeof z.createZstdDecompress === "function") {
      const unzstd = z.createZstdDecompress();
      raw.on("error", (e) => unzstd.destroy(e));
      return { compression: "zstd", tarStream: raw.pipe(unzstd) };
    }
    // Older Node without zlib zstd: the zstd CLI (whole layer in memory).
    const chunks: Buffer[] = [];
    for await (const c of raw) chunks.push(c as Buffer);
    const out = await runBytes(["zstd", "-d", "-c", "-q"], {
      input: Buffer.concat(chunks),
      hint: `${label}: could not decompress a zstd layer`,
    });
    return { compression: "zstd", tarStream: Readable.from([out]) };
  }
  return { compression: "none", tarStream: raw };
}

/**
 * A pass-through that follows the tar block structure to keep the raw bytes
 * of local PAX headers (tar-stream decodes PAX values as UTF-8, which loses
 * binary xattr values such as security.capability) and hashes the stream.
 * It yields one record map per local PAX header, in order; tar-stream sets
 * `header.pax` on exactly the entries that follow one.
 */
class PaxTap extends Transform {
  private readonly queue: Map<string, Buffer>[] = [];
  private readonly hash: Hash = createHash("sha256");
  private header = Buffer.alloc(TAR_BLOCK);
  private headerLen = 0;
  /** Bytes of entry data (plus padding) still to pass before the next header. */
  private skip = 0;
  /** Collecting a PAX header body. */
  private pax: Buffer[] | null = null;
  private paxLeft = 0;
  private paxPad = 0;
  /** `size` from the last local PAX header, applied to the next entry. */
  private nextSize: number | null = null;
  /** A local PAX header was seen and its entry has not come yet. */
  private paxPending = false;

  takePax(): Map<string, Buffer> | undefined {
    return this.queue.shift();
  }

  digest(): string {
    return this.hash.digest("hex");
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    let pos = 0;
    while (pos < chunk.length) {
      if (this.pax) {
        const n = Math.min(this.paxLeft, chunk.length - pos);
        this.pax.push(chunk.subarray(pos, pos + n));
        this.paxLeft -= n;
        pos += n;
        if (this.paxLeft === 0) {
          this.queue.push(this.parsePax(Buffer.concat(this.pax)));
          this.pax = null;
          this.skip = this.paxPad;
        }
        continue;
      }
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - pos);
        this.skip -= n;
        pos += n;
        continue;
      }
      const n = Math.min(TAR_BLOCK - this.headerLen, chunk.length - pos);
      chunk.copy(this.header, this.headerLen, pos, pos + n);
      this.headerLen += n;
      pos += n;
      if (this.headerLen === TAR_BLOCK) {
        this.headerLen = 0;
        this.onHeader(this.header);
      }
    }
    cb(null, chunk);
  }

  private onHeader(h: Buffer): void {
    if (h.every((b) => b === 0)) return;
    const typeflag = String.fromCharCode(h[156]);
    let size = parseTarNumber(h.subarray(124, 136));
    const padded = (s: number) => Math.ceil(s / TAR_BLOCK) * TAR_BLOCK;
    if (typeflag === "x") {
      // Like tar-stream, a second PAX header before the entry replaces the first.
      if (this.paxPending) this.queue.pop();
      this.paxPending = true;
      this.nextSize = null;
      this.pax = [];
      this.paxLeft = size;
      this.paxPad = padded(size) - size;
      if (size === 0) {
        this.queue.push(new Map());
        this.pax = null;
      }
      return;
    }
    if (typeflag === "g" || typeflag === "L" || typeflag === "K") {
      this.skip = padded(size);
      return;
    }
    this.paxPending = false;
    if (this.nextSize !== null) {
      size = this.nextSize;
      this.nextSize = null;
    }
    // Same rule as tar-stream: every entry but a directory is followed by `size` bytes.
    this.skip = typeflag === "5" ? 0 : padded(size);
  }

  private parsePax(body: Buffer): Map<string, Buffer> {
    const out = new Map<string, Buffer>();
    let pos = 0;
    while (pos < body.length) {
      const sp = body.indexOf(0x20, pos);
      if (sp < 0) break;
      const len = parseInt(body.subarray(pos, sp).toString("latin1"), 10);
      if (!len || pos + len > body.length) break;
      const rec = body.subarray(sp + 1, pos + len - 1); // drop trailing "\n"
      const eq = rec.indexOf(0x3d);
      if (eq > 0) {
        const key = rec.subarray(0, eq).toString("utf8");
        const value = rec.subarray(eq + 1);
        if (key === "size") this.nextSize = parseInt(value.toString("latin1"), 10);
        out.set(key, Buffer.from(value));
      }
      pos += len;
    }
    return out;
  }
}

function parseTarNumber(field: Buffer): number {
  if (field[0] & 0x80) {
    // base-256 (GNU) big-endian, first byte's high bit is the marker.
    let v = field[0] & 0x7f;
    for (let i = 1; i < field.length; i++) v = v * 256 + field[i];
    return v;
  }
  const s = field.toString("latin1").replace(/\0.*$/s, "").trim();
  return s ? parseInt(s, 8) : 0;
}

/** Extended attributes of an entry, from its raw PAX records. */
function xattrsOf(raw: Map<string, Buffer> | undefined): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  if (!raw) return out;
  for (const [key, value] of raw) {
    if (key.startsWith("SCHILY.xattr.")) out.set(key.slice("SCHILY.xattr.".length), value);
    else if (key.startsWith("LIBARCHIVE.xattr.")) {
      const name = decodeURIComponent(key.slice("LIBARCHIVE.xattr.".length));
      out.set(name, Buffer.from(value.toString("latin1"), "base64"));
    }
  }
  return out;
}

type PathState = fs.Stats | undefined;

class LayerWriter {
  /** Paths this layer wrote (and their ancestors): whiteouts never remove them. */
  private readonly written = new Set<string>();
  /** Directories verified as real directories (not symlinks) in this layer. */
  private readonly realDirs = new Set<string>([""]);
  /** Directory mtimes, applied at the end (writing children changes them). */
  private readonly dirTimes = new Map<string, Date>();

  constructor(
    private readonly root: string,
    private readonly label: string,
    private readonly ownership: boolean,
    private readonly stats: LayerStats,
  ) {}

  private abs(rel: string): string {
    return rel === "" ? this.root : `${this.root}/${rel}`;
  }

  private reject(entry: string, why: string, hint?: string): never {
    throw new UserError(`${this.label}: entry '${entry}' ${why}`, {
      file: this.label,
      hint: hint ?? "the archive is unsafe or corrupt; rebuild it from a trusted source",
    });
  }

  /** Normalize an archive path to "a/b/c" (root is ""); refuse escapes. */
  normalize(name: string, entry: string): string {
    if (name.includes("\0")) this.reject(entry, "has a NUL byte in its path");
    const parts: string[] = [];
    for (const seg of name.split("/")) {
      if (seg === "" || seg === ".") continue;
      if (seg === "..") {
        if (parts.length === 0) this.reject(entry, "escapes the root with '..'");
        parts.pop();
      } else parts.push(seg);
    }
    return parts.join("/");
  }

  private markWritten(rel: string): void {
    let p = rel;
    while (p !== "" && !this.written.has(p)) {
      this.written.add(p);
      const i = p.lastIndexOf("/");
      p = i < 0 ? "" : p.slice(0, i);
    }
  }

  private forget(rel: string): void {
    // A directory is being replaced or removed: drop it and its subtree from the cache.
    for (const d of this.realDirs) {
      if (d !== "" && (d === rel || d.startsWith(rel + "/"))) this.realDirs.delete(d);
    }
  }

  /**
   * Check every parent component of rel with lstat; create missing ones as
   * 0755 directories when `create`. Returns false when a parent is missing
   * and not created. Refuses symlinks and non-directories.
   */
  private parents(rel: string, entry: string, create: boolean, what = "writes through"): boolean {
    const parts = rel.split("/");
    let cur = "";
    for (let i = 0; i < parts.length - 1; i++) {
      cur = cur ? `${cur}/${parts[i]}` : parts[i];
      if (this.realDirs.has(cur)) continue;
      const st = fs.lstatSync(this.abs(cur), { throwIfNoEntry: false });
      if (!st) {
        if (!create) return false;
        fs.mkdirSync(this.abs(cur), { mode: 0o755 });
        this.markWritten(cur);
      } else if (st.isSymbolicLink()) {
        this.reject(entry, `${what} the symlink '${cur}'`, "entries may not be written through symlinks; the layer is unsafe");
      } else if (!st.isDirectory()) {
        this.reject(entry, `has a parent '${cur}' that is not a directory`);
      }
      this.realDirs.add(cur);
    }
    return true;
  }

  /** Remove whatever is at rel so that a new entry can take its place. */
  private clear(rel: string, st: PathState): void {
    if (!st) return;
    if (st.isDirectory()) {
      this.forget(rel);
      fs.rmSync(this.abs(rel), { recursive: true, force: true });
    } else fs.unlinkSync(this.abs(rel));
  }

  /** Remove what lower layers left at rel, keeping what this layer wrote. */
  private removeLower(rel: string): void {
    const st = fs.lstatSync(this.abs(rel), { throwIfNoEntry: false });
    if (!st) return;
    if (!this.written.has(rel)) {
      this.clear(rel, st);
      this.dirTimes.delete(rel);
      return;
    }
    if (st.isDirectory()) {
      for (const name of fs.readdirSync(this.abs(rel)).sort()) this.removeLower(rel ? `${rel}/${name}` : name);
    }
  }

  async apply(
    h: TarHeader,
    rel: string,
    data: AsyncIterable<Uint8Array>,
    rawPax: Map<string, Buffer> | undefined,
  ): Promise<void> {
    const entry = h.name;
    const base = rel.slice(rel.lastIndexOf("/") + 1);
    // tar-stream gives null for typeflags it does not know (GNU sparse 'S', volume labels 'V', ...).
    if (h.type == null) this.reject(entry, "has an unsupported tar entry type (GNU sparse file or volume label?)", "re-create the layer without --sparse");
    const type = h.type;
    if (h.pax && Object.keys(h.pax).some((k) => k.startsWith("GNU.sparse."))) {
      this.reject(entry, "is a GNU sparse file (PAX GNU.sparse records), which acl does not read", "re-create the layer without --sparse");
    }

    if (base.startsWith(WHITEOUT_PREFIX)) {
      const dir = rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "";
      if (!this.parents(rel, entry, false, "whites out through")) return;
      if (base === OPAQUE_MARKER) {
        this.stats.opaqueDirs++;
        const st = fs.lstatSync(this.abs(dir), { throwIfNoEntry: false });
        if (!st?.isDirectory()) return;
        for (const name of fs.readdirSync(this.abs(dir)).sort()) this.removeLower(dir ? `${dir}/${name}` : name);
      } else {
        this.stats.whiteouts++;
        const name = base.slice(WHITEOUT_PREFIX.length);
        if (name === "" || name === "." || name === "..") this.reject(entry, "is a malformed whiteout");
        this.removeLower(dir ? `${dir}/${name}` : name);
      }
      return;
    }

    if (rel === "") {
      // The root itself: only metadata, and only for a directory entry.
      if (type !== "directory") this.reject(entry, "replaces the root with a non-directory");
      this.stats.dirs++;
      await this.meta(rel, entry, h, rawPax, true);
      return;
    }

    this.parents(rel, entry, true);
    const abs = this.abs(rel);
    const existing = fs.lstatSync(abs, { throwIfNoEntry: false });

    switch (type) {
      case "directory": {
        if (!existing?.isDirectory()) {
          this.clear(rel, existing);
          fs.mkdirSync(abs, { mode: 0o700 });
        }
        this.realDirs.add(rel);
        this.markWritten(rel);
        this.stats.dirs++;
        await this.meta(rel, entry, h, rawPax, true);
        return;
      }
      case "file":
      case "contiguous-file": {
        this.clear(rel, existing);
        const fd = fs.openSync(
          abs,
          fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
          0o600,
        );
        try {
          for await (const chunk of data) {
            const b = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
            let off = 0;
            while (off < b.length) off += fs.writeSync(fd, b, off, b.length - off);
            this.stats.bytes += b.length;
          }
        } finally {
          fs.closeSync(fd);
        }
        this.markWritten(rel);
        this.stats.files++;
        await this.meta(rel, entry, h, rawPax, false);
        return;
      }
      case "symlink": {
        const target = h.linkname ?? "";
        if (target === "") this.reject(entry, "is a symlink with an empty target");
        this.clear(rel, existing);
        fs.symlinkSync(target, abs);
        this.markWritten(rel);
        this.stats.symlinks++;
        await this.meta(rel, entry, h, rawPax, false, true);
        return;
      }
      case "link": {
        const linkname = h.linkname ?? "";
        const parts: string[] = [];
        for (const seg of linkname.split("/")) {
          if (seg === "" || seg === ".") continue;
          if (seg === "..") {
            if (parts.length === 0) this.reject(entry, `is a hard link to '${linkname}', outside the tree`);
            parts.pop();
          } else parts.push(seg);
        }
        const target = parts.join("/");
        if (target === "") this.reject(entry, `is a hard link to the root`);
        if (target === rel) return; // a link to itself: nothing to do
        if (!this.parents(target, entry, false, `is a hard link to '${linkname}' through`)) {
          this.reject(entry, `is a hard link to '${linkname}', which does not exist`);
        }
        const tst = fs.lstatSync(this.abs(target), { throwIfNoEntry: false });
        if (!tst) this.reject(entry, `is a hard link to '${linkname}', which does not exist`);
        if (tst.isDirectory()) this.reject(entry, `is a hard link to the directory '${linkname}'`);
        this.clear(rel, existing);
        fs.linkSync(this.abs(target), abs);
        this.markWritten(rel);
        this.stats.hardlinks++;
        return;
      }
      case "character-device":
      case "block-device":
      case "fifo": {
        this.clear(rel, existing);
        const kind = type === "fifo" ? ["p"] : [type === "character-device" ? "c" : "b", String(h.devmajor ?? 0), String(h.devminor ?? 0)];
        await run(["mknod", "-m", "0600", abs, ...kind], { hint: `${this.label}: creating '${entry}'` });
        this.markWritten(rel);
        this.stats.specials++;
        await this.meta(rel, entry, h, rawPax, false);
        return;
      }
      default:
        this.reject(entry, `has an unsupported tar entry type '${String(type)}'`);
    }
  }

  /** Owner, mode, xattrs, then mtime (in that order: chown clears setuid and capabilities). */
  private async meta(
    rel: string,
    entry: string,
    h: TarHeader,
    rawPax: Map<string, Buffer> | undefined,
    isDir: boolean,
    isSymlink = false,
  ): Promise<void> {
    const abs = this.abs(rel);
    const pax = h.pax ?? {};
    if (this.ownership) {
      const uid = pax.uid !== undefined ? Number(pax.uid) : (h.uid ?? 0);
      const gid = pax.gid !== undefined ? Number(pax.gid) : (h.gid ?? 0);
      fs.lchownSync(abs, uid, gid);
    }
    if (!isSymlink) fs.chmodSync(abs, (h.mode ?? (isDir ? 0o755 : 0o644)) & MODE_MASK);
    for (const [name, value] of xattrsOf(rawPax)) {
      try {
        await run(["setfattr", "-h", "-n", name, "-v", `0x${value.toString("hex")}`, abs]);
      } catch (err) {
        if (err instanceof UserError) throw err; // setfattr missing
        this.reject(
          entry,
          `has the xattr '${name}', which could not be set: ${(err as Error).message.split("\n").slice(-2).join(" ")}`,
          "the build filesystem must support this xattr namespace (user.* and security.* need ext4/xfs/tmpfs with xattrs)",
        );
      }
      this.stats.xattrs++;
    }
    const mtime = pax.mtime !== undefined ? new Date(Number(pax.mtime) * 1000) : (h.mtime ?? new Date(0));
    if (isDir) this.dirTimes.set(rel, mtime);
    else fs.lutimesSync(abs, mtime, mtime);
  }

  /** Set directory mtimes, deepest first, re-checking that no parent became a symlink. */
  finish(): void {
    const dirs = [...this.dirTimes.keys()].sort((a, b) => b.split("/").length - a.split("/").length || (a < b ? -1 : 1));
    for (const rel of dirs) {
      if (!this.safeDir(rel)) continue;
      const t = this.dirTimes.get(rel)!;
      fs.lutimesSync(this.abs(rel), t, t);
    }
  }

  private safeDir(rel: string): boolean {
    let cur = "";
    for (const seg of rel === "" ? [] : rel.split("/")) {
      cur = cur ? `${cur}/${seg}` : seg;
      const st = fs.lstatSync(this.abs(cur), { throwIfNoEntry: false });
      if (!st || !st.isDirectory()) return false;
    }
    return true;
  }
}
