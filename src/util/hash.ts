/**
 * sha256, the one set of helpers: of bytes, of one file streamed (constant
 * memory, with progress), of many large files in worker threads (a build's
 * artifacts hashed on every core), of a sparse file composed of pieces (a
 * disk, hashed from its partitions without reading its holes), and of a
 * folder's whole content.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, readlink, stat } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { walk } from "./fs.js";
import { mapLimit } from "./pool.js";
import { MiB } from "./size.js";

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export interface FileDigest {
  size: number;
  sha256: string;
}

const STREAM_CHUNK = 4 * MiB;

/** Streaming sha256 and size of one file. */
export async function sha256File(path: string, onBytes?: (n: number) => void): Promise<FileDigest> {
  const h = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: STREAM_CHUNK })) {
    const b = chunk as Buffer;
    h.update(b);
    size += b.length;
    onBytes?.(b.length);
  }
  return { size, sha256: h.digest("hex") };
}

/** sha256 (hex) of each path, in the order given, a few files at a time in worker threads. */
export async function sha256Files(paths: readonly string[], parallel = Math.max(1, Math.min(4, availableParallelism()))): Promise<string[]> {
  // a file is the composed file of one piece: itself
  return mapLimit(paths, parallel, async (p) => {
    try {
      return (await sha256Composed((await stat(p)).size, [{ offset: 0, file: p }])).sha256;
    } catch (e) {
      throw new Error(`cannot hash ${p}: ${(e as Error).message}`);
    }
  });
}

/** A run of bytes at an offset of a composed file: bytes given, or `length` bytes of a file from `start` (default: all of it). */
export type Piece = { offset: number } & ({ bytes: Uint8Array } | { file: string; start?: number; length?: number });

const COMPOSED_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const { openSync, readSync, closeSync } = require("node:fs");
const { size, pieces, tail } = workerData;
const h = createHash("sha256");
const zeros = Buffer.alloc(4 << 20);
const buf = Buffer.alloc(4 << 20);
let pos = 0;
const zeroTo = (end) => {
  while (pos < end) { const n = Math.min(zeros.length, end - pos); h.update(zeros.subarray(0, n)); pos += n; }
};
try {
  for (const p of pieces) {
    if (p.offset < pos) throw new Error("pieces overlap at byte " + p.offset);
    zeroTo(p.offset);
    if (p.bytes) { h.update(p.bytes); pos += p.bytes.length; continue; }
    const fd = openSync(p.file, "r");
    try {
      let at = p.start ?? 0;
      let left = p.length ?? Infinity;
      while (left > 0) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, left), at);
        if (n === 0) {
          if (left === Infinity) break;
          throw new Error(p.file + " ends before byte " + (at + left));
        }
        h.update(buf.subarray(0, n)); pos += n; at += n; left -= n;
      }
    } finally { closeSync(fd); }
  }
  if (pos > size) throw new Error("pieces end at byte " + pos + ", past the size " + size);
  zeroTo(size);
  const withTail = tail ? h.copy().update(tail).digest("hex") : undefined;
  parentPort.postMessage({ digest: h.digest("hex"), withTail });
} catch (e) { parentPort.postMessage({ error: e.message }); }
`;

/**
 * sha256 of a file of `size` bytes made of `pieces` (non-overlapping) and zeros
 * everywhere else: a sparse disk hashed from its data ranges, its holes never read
 * (reading a hole of a file just written fills the page cache with zeroed pages:
 * about four times slower than hashing zeros). With `tail`, also the sha256
 * of the same bytes followed by it (a fixed VHD: the raw disk and its footer). In a worker
 * thread, so the caller can run a tool meanwhile.
 */
export function sha256Composed(size: number, pieces: readonly Piece[], tail?: Uint8Array): Promise<{ sha256: string; withTail?: string }> {
  const sorted = [...pieces].sort((a, b) => a.offset - b.offset);
  return new Promise((resolve, reject) => {
    const w = new Worker(COMPOSED_SOURCE, { eval: true, workerData: { size, pieces: sorted, tail } });
    w.once("message", (m: { digest?: string; withTail?: string; error?: string }) => {
      void w.terminate();
      if (m.digest) resolve({ sha256: m.digest, withTail: m.withTail });
      else reject(new Error(`cannot hash the composed file: ${m.error}`));
    });
    w.once("error", reject);
  });
}

/** Digest of a folder's content: paths, types, modes, owners, link targets and file bytes, in sorted order. */
export async function treeDigest(dir: string): Promise<string> {
  const h = createHash("sha256");
  for await (const e of walk(dir)) {
    const st = e.stat;
    h.update(`${e.rel}\0${st.mode}\0${st.uid}\0${st.gid}\0`);
    if (st.isSymbolicLink()) h.update(await readlink(join(dir, e.rel)));
    else if (st.isFile()) h.update(await readFile(join(dir, e.rel)));
    h.update("\n");
  }
  return h.digest("hex");
}
