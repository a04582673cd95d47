/**
 * Worker thread for the dm-verity leaf level: hashes runs of data blocks that
 * the main thread has read into shared buffers and writes the digests
 * straight into a shared leaf-digest array. No file I/O here.
 *
 * Self-contained on purpose (only node: imports): under the test runner this
 * file is loaded as TypeScript by Node's type stripping, where relative `.js`
 * imports would not resolve. The hashing rule is the one in verity.ts
 * (sha256(salt ‖ block), hash type 1); tests compare both paths with
 * veritysetup.
 */
import { hash } from "node:crypto";
import { parentPort, workerData } from "node:worker_threads";

export interface VerityWorkerData {
  /** Shared input buffers, one per in-flight chunk. */
  slots: SharedArrayBuffer[];
  /** Shared output: 32 bytes per data block. */
  digests: SharedArrayBuffer;
  salt: Uint8Array;
  blockSize: number;
}

export interface VerityWorkerRequest {
  slot: number;
  firstBlock: number;
  count: number;
}

export interface VerityWorkerReply {
  /** Sent once, when the worker is listening. */
  ready?: true;
  slot?: number;
  error?: string;
}

const DIGEST_SIZE = 32;

if (parentPort) {
  const port = parentPort;
  const wd = workerData as VerityWorkerData;
  const slots = wd.slots.map((s) => new Uint8Array(s));
  const out = new Uint8Array(wd.digests);
  const bs = wd.blockSize;
  const saltLen = wd.salt.length;
  const scratch = Buffer.allocUnsafe(saltLen + bs);
  scratch.set(wd.salt, 0);
  port.on("message", (req: VerityWorkerRequest) => {
    try {
      const data = slots[req.slot]!;
      for (let i = 0; i < req.count; i++) {
        scratch.set(data.subarray(i * bs, (i + 1) * bs), saltLen);
        out.set(hash("sha256", scratch, "buffer"), (req.firstBlock + i) * DIGEST_SIZE);
      }
      port.postMessage({ slot: req.slot } satisfies VerityWorkerReply);
    } catch (e) {
      port.postMessage({ slot: req.slot, error: String((e as Error)?.stack ?? e) } satisfies VerityWorkerReply);
    }
  });
  port.postMessage({ ready: true } satisfies VerityWorkerReply);
}
