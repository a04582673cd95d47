/**
 * sha256, the one set of helpers: of bytes, of one file streamed (constant
 * memory, with progress), of many large files in worker threads (a build's
 * multi-GB disks hashed on every core), and of a folder's whole content.
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

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const { createReadStream, openSync, readSync, closeSync } = require("node:fs");
const h = createHash("sha256");
createReadStream(workerData.path, { highWaterMark: 1 << 20 })
  .on("data", (c) => h.update(c))
  .on("error", (e) => parentPort.postMessage({ error: e.message }))
  .on("end", () => {
    const t = workerData.tail;
    let withTail;
    if (t) {
      // the same bytes followed by a tail read from another file: the hash state continues
      const b = Buffer.alloc(t.length);
      const fd = openSync(t.file, "r");
      try { readSync(fd, b, 0, t.length, t.offset); } finally { closeSync(fd); }
      withTail = h.copy().update(b).digest("hex");
    }
    parentPort.postMessage({ digest: h.digest("hex"), withTail });
  });
`;

function hashInWorker(path: string, tail?: { file: string; offset: number; length: number }): Promise<{ digest: string; withTail?: string }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, tail } });
    w.once("message", (m: { digest?: string; withTail?: string; error?: string }) => {
      void w.terminate();
      if (m.digest) resolve({ digest: m.digest, withTail: m.withTail });
      else reject(new Error(`cannot hash ${path}: ${m.error}`));
    });
    w.once("error", reject);
  });
}

/** sha256 (hex) of each path, in the order given, a few files at a time in worker threads. */
export async function sha256Files(paths: readonly string[], parallel = Math.max(1, Math.min(4, availableParallelism()))): Promise<string[]> {
  return mapLimit(paths, parallel, async (p) => (await hashInWorker(p)).digest);
}

/**
 * sha256 of `path`, and of `path` followed by the last `tailLength` bytes
 * of `extended` (a file that is `path` plus that tail, such as a fixed VHD
 * and its raw disk): one read of the shared bytes for both digests.
 */
export async function sha256FileAndExtension(path: string, extended: string, tailLength: number): Promise<{ sha256: string; extendedSha256: string }> {
  const size = (await stat(path)).size;
  if ((await stat(extended)).size !== size + tailLength) throw new Error(`${extended} is not ${path} plus ${tailLength} bytes`);
  const r = await hashInWorker(path, { file: extended, offset: size, length: tailLength });
  return { sha256: r.digest, extendedSha256: r.withTail! };
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
