/**
 * Worker thread for the dm-verity leaf level: sha256(salt ‖ block) for runs
 * of data blocks, written straight into a shared leaf-digest array.
 *
 * Work is claimed chunk by chunk from a shared counter (Atomics), so threads
 * never wait on each other or on messages: each one claims a chunk, reads it
 * with a positional read from the file descriptor the stage opened (the only
 * I/O here; the stage owns opening and closing it), hashes it, counts it done,
 * and claims the next. The calling thread runs the same loop.
 *
 * Self-contained on purpose (only node: imports): under the test runner this
 * file is loaded as TypeScript by Node's type stripping, where relative `.js`
 * imports would not resolve. The hashing rule is the one in verity.ts
 * (hash type 1); tests compare both paths with veritysetup.
 */
import { hash } from "node:crypto";
import { readSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";

/** Indexes into the shared control array (Int32). */
export const CTRL_NEXT_CHUNK = 0;
export const CTRL_DONE_CHUNKS = 1;
/** Set to 1 by anyone who fails, so the others stop claiming. */
export const CTRL_ABORT = 2;
export const CTRL_LENGTH = 3;

export interface LeafJob {
  /** Readable file descriptor of the data. */
  fd: number;
  /** Shared Int32Array(CTRL_LENGTH) over this buffer. */
  ctrl: SharedArrayBuffer;
  /** Shared output: 32 bytes per data block. */
  digests: SharedArrayBuffer;
  salt: Uint8Array;
  blockSize: number;
  dataBlocks: number;
  chunkBlocks: number;
}

export interface VerityWorkerReply {
  /** Chunks this worker hashed; sent when no chunk is left. */
  done?: number;
  error?: string;
}

const DIGEST_SIZE = 32;

/** Per-thread read buffer, reused across calls: fresh 1 MiB buffers cost page faults and GC. */
let readBuffer: Buffer | undefined;
function chunkBuffer(bytes: number): Buffer {
  if (!readBuffer || readBuffer.length < bytes) readBuffer = Buffer.allocUnsafeSlow(bytes);
  return readBuffer;
}

/**
 * Claim and hash chunks until none is left, or until `maxChunks` were done
 * (the calling thread works in short runs so that its event loop keeps
 * turning). Returns how many chunks this call hashed and whether the work
 * ran out.
 */
export function hashClaimedChunks(job: LeafJob, maxChunks = Infinity): { hashed: number; exhausted: boolean } {
  const ctrl = new Int32Array(job.ctrl);
  const out = Buffer.from(job.digests);
  const { blockSize: bs, chunkBlocks, dataBlocks } = job;
  const nChunks = Math.ceil(dataBlocks / chunkBlocks);
  const buf = chunkBuffer(chunkBlocks * bs);
  const saltLen = job.salt.length;
  const scratch = Buffer.allocUnsafe(saltLen + bs);
  scratch.set(job.salt, 0);
  let hashed = 0;
  while (hashed < maxChunks) {
    if (Atomics.load(ctrl, CTRL_ABORT)) return { hashed, exhausted: true };
    const c = Atomics.add(ctrl, CTRL_NEXT_CHUNK, 1);
    if (c >= nChunks) return { hashed, exhausted: true };
    const first = c * chunkBlocks;
    const count = Math.min(chunkBlocks, dataBlocks - first);
    const len = count * bs;
    let got = 0;
    while (got < len) {
      const n = readSync(job.fd, buf, got, len - got, first * bs + got);
      if (n === 0) throw new Error(`unexpected end of file at offset ${first * bs + got}`);
      got += n;
    }
    for (let i = 0; i < count; i++) {
      scratch.set(buf.subarray(i * bs, (i + 1) * bs), saltLen);
      // A "binary" (latin1) string result is cheaper than a Buffer (no ArrayBuffer per digest for the GC).
      out.write(hash("sha256", scratch, "binary"), (first + i) * DIGEST_SIZE, DIGEST_SIZE, "binary");
    }
    hashed++;
    Atomics.add(ctrl, CTRL_DONE_CHUNKS, 1);
    Atomics.notify(ctrl, CTRL_DONE_CHUNKS);
  }
  return { hashed, exhausted: false };
}

if (parentPort && (workerData as { verityLeafJob?: LeafJob } | null)?.verityLeafJob) {
  const job = (workerData as { verityLeafJob: LeafJob }).verityLeafJob;
  try {
    parentPort.postMessage({ done: hashClaimedChunks(job).hashed } satisfies VerityWorkerReply);
  } catch (e) {
    Atomics.store(new Int32Array(job.ctrl), CTRL_ABORT, 1);
    Atomics.notify(new Int32Array(job.ctrl), CTRL_DONE_CHUNKS);
    parentPort.postMessage({ error: String((e as Error)?.stack ?? e) } satisfies VerityWorkerReply);
  }
}
