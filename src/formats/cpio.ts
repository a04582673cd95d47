/**
 * cpio "newc" (SVR4, magic 070701) codec: pure bytes in / bytes out.
 *
 * Layout of one entry: a 110-byte ASCII header (magic + 13 fields of 8
 * uppercase hex digits), the NUL-terminated path padded so that header+name
 * is a multiple of 4, then the file data padded to a multiple of 4. The
 * archive ends with an entry named "TRAILER!!!". The Linux kernel unpacks
 * this format as an initramfs (Documentation/driver-api/early-userspace).
 *
 * The writer is reproducible by construction: entries are sorted by path
 * (bytewise, so parents precede children), owners are 0:0, every mtime is
 * the one given, and inode numbers are the 1-based position in that order.
 */

export const NEWC_MAGIC = "070701";
/** Same layout with a checksum field (sum of data bytes); read, never written. */
export const NEWC_CRC_MAGIC = "070702";
export const HEADER_SIZE = 110;
export const TRAILER_NAME = "TRAILER!!!";
const FIELD_COUNT = 13;
const ALIGN = 4;

/** File-type bits of st_mode (S_IFMT and friends). */
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export type CpioType = "file" | "dir" | "symlink" | "char" | "block" | "fifo";

const TYPE_BITS: Record<CpioType, number> = {
  file: S_IFREG,
  dir: S_IFDIR,
  symlink: S_IFLNK,
  char: S_IFCHR,
  block: S_IFBLK,
  fifo: S_IFIFO,
};

export interface CpioEntry {
  /** Path inside the archive, relative ("bin/sh"), no leading "./" or "/". */
  path: string;
  type: CpioType;
  /** Permission bits (0o7777 mask); the type bits come from `type`. */
  perm: number;
  /** File contents (type "file"). */
  data?: Uint8Array;
  /** Link target (type "symlink"). */
  target?: string;
  /** Device numbers (types "char" and "block"). */
  rdevMajor?: number;
  rdevMinor?: number;
}

/** An entry as read back, with every header field. */
export interface CpioRecord extends CpioEntry {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  devMajor: number;
  devMinor: number;
  rdevMajor: number;
  rdevMinor: number;
  data: Uint8Array;
}

export interface EncodeOptions {
  /** Modification time of every entry (seconds since the epoch; SOURCE_DATE_EPOCH). */
  mtime: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: false });

function normalisePath(p: string): string {
  let s = p;
  while (s.startsWith("./")) s = s.slice(2);
  s = s.replace(/^\/+/, "").replace(/\/+$/, "");
  if (s === "" || s === ".") return ".";
  if (s.split("/").some((c) => c === ".." || c === "" || c === ".")) {
    throw new RangeError(`cpio: invalid path '${p}' (empty, '.' or '..' component)`);
  }
  return s;
}

function hex8(n: number, field: string): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`cpio: field ${field}=${n} does not fit 32 bits`);
  }
  return n.toString(16).toUpperCase().padStart(8, "0");
}

const pad = (n: number) => (ALIGN - (n % ALIGN)) % ALIGN;

function compareBytes(a: string, b: string): number {
  const x = enc.encode(a);
  const y = enc.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

function header(fields: number[], names: string[]): string {
  return NEWC_MAGIC + fields.map((v, i) => hex8(v, names[i]!)).join("");
}

const FIELD_NAMES = [
  "ino", "mode", "uid", "gid", "nlink", "mtime", "filesize",
  "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check",
];

/**
 * Encode entries as a newc archive. Entries are sorted by path; duplicate
 * paths are an error. Missing parent directories are not invented: pass
 * them explicitly (the kernel and `cpio -i -d` both cope either way).
 */
export function encodeCpio(entries: readonly CpioEntry[], opts: EncodeOptions): Uint8Array {
  const sorted = entries
    .map((e) => ({ ...e, path: normalisePath(e.path) }))
    .sort((a, b) => compareBytes(a.path, b.path));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.path === sorted[i - 1]!.path) throw new RangeError(`cpio: duplicate path '${sorted[i]!.path}'`);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const push = (b: Uint8Array) => {
    chunks.push(b);
    total += b.length;
  };
  const zeros = new Uint8Array(ALIGN);
  const writeEntry = (ino: number, mode: number, nlink: number, mtime: number, name: string, body: Uint8Array, rmaj: number, rmin: number) => {
    const nameBytes = enc.encode(name);
    const namesize = nameBytes.length + 1;
    const h = header([ino, mode, 0, 0, nlink, mtime, body.length, 0, 0, rmaj, rmin, namesize, 0], FIELD_NAMES);
    push(enc.encode(h));
    push(nameBytes);
    push(new Uint8Array(1));
    push(zeros.subarray(0, pad(HEADER_SIZE + namesize)));
    push(body);
    push(zeros.subarray(0, pad(body.length)));
  };
  sorted.forEach((e, i) => {
    if ((e.perm & ~0o7777) !== 0) throw new RangeError(`cpio: '${e.path}': perm ${e.perm.toString(8)} has bits outside 07777`);
    const mode = TYPE_BITS[e.type] | e.perm;
    let body: Uint8Array = new Uint8Array(0);
    if (e.type === "file") body = e.data ?? new Uint8Array(0);
    else if (e.type === "symlink") {
      if (!e.target) throw new RangeError(`cpio: symlink '${e.path}' has no target`);
      body = enc.encode(e.target);
    } else if (e.data && e.data.length) throw new RangeError(`cpio: '${e.path}' of type ${e.type} cannot carry data`);
    const isDev = e.type === "char" || e.type === "block";
    writeEntry(i + 1, mode, e.type === "dir" ? 2 : 1, opts.mtime, e.path, body, isDev ? (e.rdevMajor ?? 0) : 0, isDev ? (e.rdevMinor ?? 0) : 0);
  });
  writeEntry(0, 0, 1, 0, TRAILER_NAME, new Uint8Array(0), 0, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

function typeOf(mode: number): CpioType | undefined {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "dir";
    case S_IFLNK: return "symlink";
    case S_IFCHR: return "char";
    case S_IFBLK: return "block";
    case S_IFIFO: return "fifo";
    default: return undefined;
  }
}

/**
 * Decode a newc (070701) or newc-crc (070702) archive up to its trailer.
 * Bytes after the trailer (zero padding, or a further concatenated archive)
 * are ignored; `decodeCpioAll` reads concatenated archives.
 */
export function decodeCpio(bytes: Uint8Array): { records: CpioRecord[]; end: number } {
  const records: CpioRecord[] = [];
  let off = 0;
  for (;;) {
    if (off + HEADER_SIZE > bytes.length) throw new RangeError(`cpio: truncated header at offset ${off}`);
    const h = dec.decode(bytes.subarray(off, off + HEADER_SIZE));
    const magic = h.slice(0, 6);
    if (magic !== NEWC_MAGIC && magic !== NEWC_CRC_MAGIC) {
      throw new RangeError(`cpio: bad magic '${magic}' at offset ${off} (only newc 070701/070702 is supported)`);
    }
    const f: number[] = [];
    for (let i = 0; i < FIELD_COUNT; i++) {
      const s = h.slice(6 + i * 8, 14 + i * 8);
      if (!/^[0-9A-Fa-f]{8}$/.test(s)) throw new RangeError(`cpio: bad hex field ${FIELD_NAMES[i]} '${s}' at offset ${off}`);
      f.push(parseInt(s, 16));
    }
    const [ino, mode, uid, gid, nlink, mtime, filesize, devMajor, devMinor, rdevMajor, rdevMinor, namesize] = f as [
      number, number, number, number, number, number, number, number, number, number, number, number,
    ];
    const nameStart = off + HEADER_SIZE;
    if (namesize < 1 || nameStart + namesize > bytes.length) throw new RangeError(`cpio: bad name size at offset ${off}`);
    const name = dec.decode(bytes.subarray(nameStart, nameStart + namesize - 1));
    const dataStart = nameStart + namesize + pad(HEADER_SIZE + namesize);
    if (dataStart + filesize > bytes.length) throw new RangeError(`cpio: entry '${name}' data runs past the end`);
    const data = bytes.subarray(dataStart, dataStart + filesize);
    off = dataStart + filesize + pad(filesize);
    if (name === TRAILER_NAME) return { records, end: off };
    const type = typeOf(mode);
    if (!type) throw new RangeError(`cpio: entry '${name}' has unsupported mode ${mode.toString(8)}`);
    const rec: CpioRecord = {
      path: normalisePath(name),
      type,
      perm: mode & 0o7777,
      ino, mode, uid, gid, nlink, mtime, devMajor, devMinor, rdevMajor, rdevMinor,
      data,
    };
    if (type === "symlink") rec.target = dec.decode(data);
    records.push(rec);
  }
}

/** Decode concatenated newc archives (as the kernel accepts), skipping zero padding between them. */
export function decodeCpioAll(bytes: Uint8Array): CpioRecord[] {
  const out: CpioRecord[] = [];
  let off = 0;
  while (off < bytes.length) {
    while (off < bytes.length && bytes[off] === 0) off++;
    if (off >= bytes.length) break;
    const { records, end } = decodeCpio(bytes.subarray(off));
    out.push(...records);
    off += end;
  }
  return out;
}
