/**
 * sha256 of many (large) files at once: each file is hashed in a worker
 * thread, a few at a time, so a build's multi-GB disks are hashed on every
 * core instead of one after another on the main thread.
 */
import { Worker } from "node:worker_threads";
import { availableParallelism } from "node:os";

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const { createReadStream } = require("node:fs");
const h = createHash("sha256");
createReadStream(workerData, { highWaterMark: 1 << 20 })
  .on("data", (c) => h.update(c))
  .on("error", (e) => parentPort.postMessage({ error: e.message }))
  .on("end", () => parentPort.postMessage({ digest: h.digest("hex") }));
`;

function hashInWorker(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: path });
    w.once("message", (m: { digest?: string; error?: string }) => {
      void w.terminate();
      if (m.digest) resolve(m.digest);
      else reject(new Error(`cannot hash ${path}: ${m.error}`));
    });
    w.once("error", reject);
  });
}

/** sha256 (hex) of each path, in the order given. */
export async function sha256Files(paths: readonly string[], parallel = Math.max(1, Math.min(4, availableParallelism()))): Promise<string[]> {
  const out: string[] = new Array(paths.length);
  let next = 0;
  const lane = async () => {
    while (next < paths.length) {
      const i = next++;
      out[i] = await hashInWorker(paths[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, paths.length) }, lane));
  return out;
}
