/**
 * Butane's data URL rule for inline and local contents (pure).
 *
 * The plain form percent-encodes every byte except RFC 2396's unreserved
 * characters; the `;base64,` form is used when it is strictly shorter; and
 * where compression is allowed, gzip + base64 (with `compression: "gzip"`)
 * is used when its length plus 4 is still shorter than the best of the other
 * two. When compression was allowed but not chosen, `compression: ""` is
 * written, so Ignition does not guess.
 */
import { gzipSync } from "node:zlib";

/** RFC 2396 unreserved: alphanumerics and - _ . ! ~ * ' ( ) */
const UNRESERVED = /^[A-Za-z0-9\-_.!~*'()]$/;

export function percentEncode(data: Uint8Array): string {
  let out = "";
  for (const b of data) {
    const c = String.fromCharCode(b);
    out += b < 0x80 && UNRESERVED.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export interface EncodedContents {
  source: string;
  /** "gzip", "" (compression allowed, not used) or undefined (not allowed, e.g. systemd or config resources). */
  compression?: "gzip" | "";
}

/** The data URL butane writes for these bytes. */
export function toDataUrl(data: Uint8Array, opts: { allowCompression: boolean }): EncodedContents {
  const plain = `data:,${percentEncode(data)}`;
  const b64 = `data:;base64,${Buffer.from(data).toString("base64")}`;
  const best = b64.length < plain.length ? b64 : plain;
  if (!opts.allowCompression) return { source: best };
  const gz = `data:;base64,${gzipSync(data, { level: 9 }).toString("base64")}`;
  if (gz.length + 4 < best.length) return { source: gz, compression: "gzip" };
  return { source: best, compression: "" };
}

/** Decode a data URL (plain or base64) to bytes; undefined when it is not one. */
export function fromDataUrl(url: string): Buffer | undefined {
  const m = /^data:([^,]*),(.*)$/s.exec(url);
  if (!m) return undefined;
  if (/;base64$/.test(m[1]!)) return Buffer.from(m[2]!, "base64");
  return Buffer.from(decodePercent(m[2]!));
}

function decodePercent(s: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "%" && /^[0-9A-Fa-f]{2}$/.test(s.slice(i + 1, i + 3))) {
      out.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(...Buffer.from(s[i]!, "utf8"));
  }
  return Uint8Array.from(out);
}
