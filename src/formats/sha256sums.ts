/**
 * The `SHA256SUMS` file as GNU coreutils `sha256sum` writes and checks it:
 * one line per file, `<64 lowercase hex>  <path>\n` (two spaces: text mode;
 * `sha256sum` also accepts ` *` for binary mode). acl writes the lines sorted
 * by the path's UTF-8 bytes, so the file is reproducible.
 *
 * coreutils escapes names holding a newline or backslash with a leading `\`;
 * acl never writes such names (encode refuses them) and decode rejects them.
 */

export const SHA256SUMS_FILE = "SHA256SUMS";

export interface SumEntry {
  /** Relative POSIX path inside the output folder. */
  path: string;
  /** 64 lowercase hex digits. */
  sha256: string;
}

export class Sha256SumsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Sha256SumsError";
  }
}

const HEX64 = /^[0-9a-f]{64}$/;

/** Byte-wise order of UTF-8 paths (independent of locale and of JS UTF-16 order). */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** A path acl can list: relative, no `..` component, no characters coreutils would escape. */
export function checkSumPath(path: string): string | undefined {
  if (path.length === 0) return "empty path";
  if (/[\n\r\\]/.test(path)) return "path contains a newline, carriage return or backslash";
  if (path.startsWith("/")) return "path is absolute";
  if (path.split("/").some((c) => c === ".." || c === "" || c === ".")) return "path has an empty, '.' or '..' component";
  return undefined;
}

export function encodeSha256Sums(entries: readonly SumEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => comparePaths(a.path, b.path));
  let out = "";
  for (let i = 0; i < sorted.length; i++) {
    const e = sorted[i]!;
    const bad = checkSumPath(e.path);
    if (bad) throw new Sha256SumsError(`cannot list '${e.path}': ${bad}`);
    if (!HEX64.test(e.sha256)) throw new Sha256SumsError(`'${e.path}': sha256 '${e.sha256}' is not 64 lowercase hex digits`);
    if (i > 0 && sorted[i - 1]!.path === e.path) throw new Sha256SumsError(`'${e.path}' is listed twice`);
    out += `${e.sha256}  ${e.path}\n`;
  }
  return Buffer.from(out, "utf8");
}

/**
 * Parse a SHA256SUMS file. Accepts text (`  `) and binary (` *`) markers and
 * upper-case hex (normalised to lower case); rejects escaped names, unsafe
 * paths, duplicates and any malformed line, naming the line number.
 */
export function decodeSha256Sums(bytes: Uint8Array): SumEntry[] {
  const text = Buffer.from(bytes).toString("utf8");
  if (text.length > 0 && !text.endsWith("\n")) throw new Sha256SumsError("last line is not terminated by a newline");
  const lines = text.length ? text.slice(0, -1).split("\n") : [];
  const seen = new Set<string>();
  const out: SumEntry[] = [];
  lines.forEach((line, i) => {
    const n = i + 1;
    if (line.startsWith("\\")) throw new Sha256SumsError(`line ${n}: escaped file names are not supported`);
    const m = /^([0-9a-fA-F]{64}) ([ *])(.+)$/.exec(line);
    if (!m) throw new Sha256SumsError(`line ${n}: expected '<64 hex digits>  <path>', got '${line.slice(0, 80)}'`);
    const path = m[3]!;
    const bad = checkSumPath(path);
    if (bad) throw new Sha256SumsError(`line ${n}: '${path}': ${bad}`);
    if (seen.has(path)) throw new Sha256SumsError(`line ${n}: '${path}' is listed twice`);
    seen.add(path);
    out.push({ path, sha256: m[1]!.toLowerCase() });
  });
  return out;
}
