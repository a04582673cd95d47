/**
 * dm-verity stage: pad a filesystem image to whole blocks and append the
 * verity superblock and hash tree after it, in the same file, the way Flatcar
 * runs `veritysetup format --hash-offset=<fs size> --data-blocks=N`.
 * `verifyTree` re-checks such a file (for `acl inspect` / `acl verify`).
 *
 * The leaf level (one sha256 per 4 KiB data block) is the heavy part: it is
 * hashed by worker threads fed through shared buffers, with the calling
 * thread taking chunks too; the upper levels are a 128th of that and are done
 * in the calling thread by the codec (src/formats/verity.ts).
 */
import { open, type FileHandle } from "node:fs/promises";
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { UserError } from "../errors.js";
import type { VerityInfo } from "../pipeline/manifest.js";
import {
  SHA256_DIGEST_SIZE,
  VERITY_ALGORITHM,
  VERITY_DEFAULT_BLOCK_SIZE,
  VERITY_HASH_TYPE_NORMAL,
  VERITY_MAX_SALT_SIZE,
  VERITY_SB_VERSION,
  VERITY_SUPERBLOCK_SIZE,
  VerityFormatError,
  computeTree,
  decodeSuperblock,
  encodeSuperblock,
  hashBlocksInto,
  isValidBlockSize,
  treeLayout,
  treeOffset,
  uuidToBytes,
} from "../formats/verity.js";
import type { VerityWorkerData, VerityWorkerReply, VerityWorkerRequest } from "../formats/verity-worker.js";

export { deriveSalt, deriveUuid } from "../formats/verity.js";

export interface HashOptions {
  /** Worker threads for the leaf level (default: available cores, at most 8; 0 = hash in this thread). */
  workers?: number;
  /** Whether the calling thread hashes chunks alongside the workers (default true; false is for tests). */
  callerHashes?: boolean;
}

export interface AppendVerityOptions extends HashOptions {
  /** Use deriveSalt(name, version). At most 256 bytes. */
  salt: Buffer;
  /** Superblock UUID; use deriveUuid(name, version). */
  uuid: string;
  dataBlockSize?: number;
  hashBlockSize?: number;
}

/** Inputs below this size are hashed in the calling thread: starting workers would cost more. */
const INLINE_LIMIT = 16 * 1024 * 1024;
/** Bytes per unit of work (a worker message, or one step of the calling thread). */
const CHUNK_BYTES = 1024 * 1024;
/** In-flight chunks per worker: one being hashed, the next ones read ahead. */
const SLOTS_PER_WORKER = 3;
const MAX_WORKERS = 8;

/**
 * Append the verity superblock and tree to `file` (padded first to a whole
 * number of data blocks) and return what the manifest records.
 */
export async function appendVerity(file: string, opts: AppendVerityOptions): Promise<VerityInfo> {
  const dbs = opts.dataBlockSize ?? VERITY_DEFAULT_BLOCK_SIZE;
  const hbs = opts.hashBlockSize ?? VERITY_DEFAULT_BLOCK_SIZE;
  checkParams(file, opts.salt, opts.uuid, dbs, hbs);
  const fh = await openOrExplain(file, "r+");
  try {
    const { size } = await fh.stat();
    if (size === 0) {
      throw new UserError(`${file} is empty: there is no filesystem to protect with dm-verity`, {
        file,
        hint: "check the /usr image stage; it should have produced an erofs or squashfs image",
      });
    }
    const hashOffset = Math.ceil(size / dbs) * dbs;
    if (hashOffset !== size) await fh.truncate(hashOffset);
    const dataBlocks = hashOffset / dbs;
    const leaves = await hashLeaves(fh, dataBlocks, dbs, opts.salt, opts);
    const { tree, rootHash } = computeTree(leaves, { salt: opts.salt, dataBlocks, hashBlockSize: hbs });
    const sb = encodeSuperblock({
      version: VERITY_SB_VERSION,
      hashType: VERITY_HASH_TYPE_NORMAL,
      uuid: opts.uuid,
      algorithm: VERITY_ALGORITHM,
      dataBlockSize: dbs,
      hashBlockSize: hbs,
      dataBlocks: BigInt(dataBlocks),
      salt: opts.salt,
    });
    const start = treeOffset(hashOffset, hbs);
    const head = Buffer.alloc(start - hashOffset);
    sb.copy(head, 0);
    await writeAll(fh, head, hashOffset);
    await writeAll(fh, tree, start);
    await fh.truncate(start + tree.length);
    return {
      rootHash: rootHash.toString("hex"),
      salt: opts.salt.toString("hex"),
      hashOffset,
      dataBlocks,
      dataBlockSize: dbs,
      hashBlockSize: hbs,
      algorithm: VERITY_ALGORITHM,
      hashType: VERITY_HASH_TYPE_NORMAL,
      uuid: opts.uuid.toLowerCase(),
    };
  } finally {
    await fh.close();
  }
}

export type VerifyResult =
  | { ok: true }
  | {
      ok: false;
      /** What is wrong, in one sentence. */
      reason: string;
      /** First data block whose digest does not match the stored tree, when that is the problem. */
      dataBlock?: number;
    };

/**
 * Check a file made by `appendVerity` (or by veritysetup with the tree after
 * the data) against recorded values: superblock fields, every stored hash
 * block, and the root hash.
 */
export async function verifyTree(file: string, info: VerityInfo, opts: HashOptions = {}): Promise<VerifyResult> {
  const fh = await openOrExplain(file, "r");
  try {
    const { size } = await fh.stat();
    const dbs = info.dataBlockSize;
    const hbs = info.hashBlockSize;
    if (!isValidBlockSize(dbs) || !isValidBlockSize(hbs)) return { ok: false, reason: `invalid block sizes ${dbs}/${hbs} in the recorded verity values` };
    if (info.hashOffset < info.dataBlocks * dbs) {
      return { ok: false, reason: `hash offset ${info.hashOffset} lies inside the ${info.dataBlocks} data blocks` };
    }
    const layout = treeLayout(info.dataBlocks, hbs);
    const start = treeOffset(info.hashOffset, hbs);
    const need = start + layout.totalBlocks * hbs;
    if (size < need) return { ok: false, reason: `file is ${size} bytes; data, superblock and tree need ${need}` };

    const sbBytes = Buffer.alloc(VERITY_SUPERBLOCK_SIZE);
    await readAll(fh, sbBytes, info.hashOffset);
    let sb;
    try {
      sb = decodeSuperblock(sbBytes);
    } catch (e) {
      return { ok: false, reason: `superblock at offset ${info.hashOffset}: ${(e as Error).message}` };
    }
    const mismatch: string[] = [];
    if (sb.hashType !== info.hashType) mismatch.push(`hash type ${sb.hashType} != ${info.hashType}`);
    if (sb.algorithm !== info.algorithm) mismatch.push(`algorithm ${sb.algorithm} != ${info.algorithm}`);
    if (sb.dataBlockSize !== dbs) mismatch.push(`data block size ${sb.dataBlockSize} != ${dbs}`);
    if (sb.hashBlockSize !== hbs) mismatch.push(`hash block size ${sb.hashBlockSize} != ${hbs}`);
    if (sb.dataBlocks !== BigInt(info.dataBlocks)) mismatch.push(`data blocks ${sb.dataBlocks} != ${info.dataBlocks}`);
    if (sb.salt.toString("hex") !== info.salt.toLowerCase()) mismatch.push(`salt ${sb.salt.toString("hex")} != ${info.salt}`);
    if (sb.uuid !== info.uuid.toLowerCase()) mismatch.push(`uuid ${sb.uuid} != ${info.uuid}`);
    if (mismatch.length) return { ok: false, reason: `superblock does not match the recorded values: ${mismatch.join("; ")}` };

    const salt = sb.salt;
    const leaves = await hashLeaves(fh, info.dataBlocks, dbs, salt, opts);
    const { tree, rootHash } = computeTree(leaves, { salt, dataBlocks: info.dataBlocks, hashBlockSize: hbs });
    const stored = Buffer.alloc(tree.length);
    await readAll(fh, stored, start);
    // Compare from the leaves up, so a changed data block is named as such.
    for (let level = 0; level < layout.levels; level++) {
      const from = layout.levelStart[level]! * hbs;
      const to = from + layout.levelBlocks[level]! * hbs;
      const at = firstDifference(stored.subarray(from, to), tree.subarray(from, to));
      if (at < 0) continue;
      if (level === 0) return { ok: false, reason: "data does not match the stored hash tree", dataBlock: Math.floor(at / SHA256_DIGEST_SIZE) };
      return { ok: false, reason: `stored hash tree is inconsistent at level ${level} (byte ${from + at} of the tree)` };
    }
    if (rootHash.toString("hex") !== info.rootHash.toLowerCase()) {
      return { ok: false, reason: `root hash is ${rootHash.toString("hex")}, expected ${info.rootHash}` };
    }
    return { ok: true };
  } finally {
    await fh.close();
  }
}

function firstDifference(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  const step = 4096;
  for (let off = 0; off < a.length; off += step) {
    if (!a.subarray(off, off + step).equals(b.subarray(off, off + step))) {
      for (let i = off; i < Math.min(off + step, a.length); i++) if (a[i] !== b[i]) return i;
    }
  }
  return -1;
}

function checkParams(file: string, salt: Buffer, uuid: string, dbs: number, hbs: number): void {
  if (salt.length > VERITY_MAX_SALT_SIZE) {
    throw new UserError(`verity salt for ${file} is ${salt.length} bytes; at most ${VERITY_MAX_SALT_SIZE} fit`, { file, hint: "use deriveSalt(name, version), 32 bytes" });
  }
  try {
    uuidToBytes(uuid);
  } catch (e) {
    throw new UserError(`verity uuid for ${file}: ${(e as Error).message}`, { file, hint: "use deriveUuid(name, version)" });
  }
  for (const [key, v] of [["dataBlockSize", dbs], ["hashBlockSize", hbs]] as const) {
    if (!isValidBlockSize(v) || v > 65536) {
      throw new UserError(`verity ${key} ${v} is not supported`, { file, hint: "use 4096 (the default), as Flatcar does" });
    }
  }
}

async function openOrExplain(file: string, flags: "r" | "r+"): Promise<FileHandle> {
  try {
    return await open(file, flags);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`cannot open ${file} for dm-verity (${code ?? (e as Error).message})`, {
      file,
      hint: code === "ENOENT" ? "the /usr image is missing; rebuild it" : "check the file's permissions",
    });
  }
}

async function writeAll(fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}

async function readAll(fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw new UserError(`unexpected end of file at offset ${position + done} while reading for dm-verity`);
    done += bytesRead;
  }
}

/** sha256(salt ‖ block) of each of the first `dataBlocks` blocks of the file, concatenated. */
export async function hashLeaves(fh: FileHandle, dataBlocks: number, blockSize: number, salt: Uint8Array, opts: HashOptions = {}): Promise<Uint8Array> {
  const total = dataBlocks * blockSize;
  const nWorkers = Math.min(opts.workers ?? Math.min(availableParallelism(), MAX_WORKERS), Math.ceil(total / CHUNK_BYTES));
  const callerHashes = opts.callerHashes ?? true;
  if ((total <= INLINE_LIMIT && callerHashes) || nWorkers <= 0) {
    const out = Buffer.alloc(dataBlocks * SHA256_DIGEST_SIZE);
    const buf = Buffer.allocUnsafe(Math.min(total, CHUNK_BYTES));
    for (let pos = 0; pos < total; pos += buf.length) {
      const len = Math.min(buf.length, total - pos);
      const view = buf.subarray(0, len);
      await readAll(fh, view, pos);
      hashBlocksInto(view, blockSize, salt, out, (pos / blockSize) * SHA256_DIGEST_SIZE);
    }
    return out;
  }
  return hashLeavesInWorkers(fh, dataBlocks, blockSize, salt, nWorkers, callerHashes);
}

function workerUrl(): URL {
  const js = new URL("../formats/verity-worker.js", import.meta.url);
  if (existsSync(fileURLToPath(js))) return js;
  // Running from the TypeScript sources (tests): Node strips the types itself.
  return new URL("../formats/verity-worker.ts", import.meta.url);
}

interface PoolEntry {
  worker: Worker;
  slotViews: Uint8Array[];
  ready: Promise<void>;
  /** Replies come back in request order, so a FIFO of waiters is enough. */
  pending: { resolve: () => void; reject: (e: Error) => void }[];
}

/**
 * Chunks are handed out from one counter to the worker threads and to the
 * calling thread, which hashes too: a worker takes ~50-200 ms to start on a
 * busy machine, and the calling thread has the work done by then for small
 * images. Each worker keeps SLOTS_PER_WORKER chunks in flight, so the
 * calling thread's own hashing (~1 ms per chunk) does not leave them idle.
 */
async function hashLeavesInWorkers(
  fh: FileHandle,
  dataBlocks: number,
  blockSize: number,
  salt: Uint8Array,
  nWorkers: number,
  callerHashes: boolean,
): Promise<Uint8Array> {
  const chunkBlocks = Math.max(1, Math.floor(CHUNK_BYTES / blockSize));
  const chunkBytes = chunkBlocks * blockSize;
  const nChunks = Math.ceil(dataBlocks / chunkBlocks);
  const digests = new SharedArrayBuffer(dataBlocks * SHA256_DIGEST_SIZE);
  const url = workerUrl();
  const pool: PoolEntry[] = [];
  let failure: Error | undefined;
  let next = 0;
  let markAllClaimed!: () => void;
  const allClaimed = new Promise<void>((resolve) => (markAllClaimed = resolve));
  /** The next chunk to hash, or -1 when every chunk has been handed out. */
  const claim = (): number => {
    if (next >= nChunks) {
      markAllClaimed();
      return -1;
    }
    return next++;
  };
  try {
    for (let w = 0; w < nWorkers; w++) {
      const slots = Array.from({ length: SLOTS_PER_WORKER }, () => new SharedArrayBuffer(chunkBytes));
      const data: VerityWorkerData = { slots, digests, salt: Uint8Array.from(salt), blockSize };
      let markReady!: () => void;
      const ready = new Promise<void>((resolve) => (markReady = resolve));
      const entry: PoolEntry = { worker: new Worker(url, { workerData: data }), slotViews: slots.map((s) => new Uint8Array(s)), ready, pending: [] };
      const fail = (e: Error): void => {
        failure ??= e;
        markReady();
        for (const p of entry.pending.splice(0)) p.reject(e);
      };
      entry.worker.on("message", (m: VerityWorkerReply) => {
        if (m.ready) return markReady();
        const p = entry.pending.shift();
        if (!m.error) return p?.resolve();
        const e = new Error(`verity worker failed: ${m.error}`);
        p?.reject(e);
        fail(e);
      });
      entry.worker.on("error", fail);
      entry.worker.on("exit", (code) => fail(new Error(`verity worker exited early with code ${code}`)));
      pool.push(entry);
    }

    const feedWorker = async (entry: PoolEntry, slot: number): Promise<void> => {
      // A worker that is still starting when the work runs out is not waited for.
      await Promise.race([entry.ready, allClaimed]);
      for (;;) {
        if (failure) throw failure;
        const c = claim();
        if (c < 0) return;
        const firstBlock = c * chunkBlocks;
        const count = Math.min(chunkBlocks, dataBlocks - firstBlock);
        await readAll(fh, entry.slotViews[slot]!.subarray(0, count * blockSize), firstBlock * blockSize);
        await new Promise<void>((resolve, reject) => {
          entry.pending.push({ resolve, reject });
          entry.worker.postMessage({ slot, firstBlock, count } satisfies VerityWorkerRequest);
        });
      }
    };
    const hashHere = async (): Promise<void> => {
      const out = new Uint8Array(digests);
      const buf = Buffer.allocUnsafe(chunkBytes);
      while (!failure) {
        const c = claim();
        if (c < 0) return;
        const firstBlock = c * chunkBlocks;
        const count = Math.min(chunkBlocks, dataBlocks - firstBlock);
        const view = buf.subarray(0, count * blockSize);
        await readAll(fh, view, firstBlock * blockSize);
        hashBlocksInto(view, blockSize, salt, out, firstBlock * SHA256_DIGEST_SIZE);
      }
    };
    await Promise.all([...(callerHashes ? [hashHere()] : []), ...pool.flatMap((entry) => Array.from({ length: SLOTS_PER_WORKER }, (_, slot) => feedWorker(entry, slot)))]);
    if (failure) throw failure;
    return new Uint8Array(digests);
  } finally {
    // A worker still booting would hold up an awaited terminate(); let it finish in the background.
    for (const p of pool) {
      p.worker.removeAllListeners("exit");
      p.worker.unref();
      p.worker.terminate().catch(() => undefined);
    }
  }
}

/** Read and decode the superblock of a file made by appendVerity or veritysetup. */
export async function readSuperblock(file: string, hashOffset: number) {
  const fh = await openOrExplain(file, "r");
  try {
    const b = Buffer.alloc(VERITY_SUPERBLOCK_SIZE);
    await readAll(fh, b, hashOffset);
    try {
      return decodeSuperblock(b);
    } catch (e) {
      if (e instanceof VerityFormatError) throw new UserError(`${file}: ${e.message} (at offset ${hashOffset})`, { file, hint: "is the hash offset right? it is the filesystem size recorded in manifest.json" });
      throw e;
    }
  } finally {
    await fh.close();
  }
}

/** Size in bytes the file has after appendVerity, for partition sizing. */
export function verityFileSize(fsSize: number, dataBlockSize = VERITY_DEFAULT_BLOCK_SIZE, hashBlockSize = VERITY_DEFAULT_BLOCK_SIZE): number {
  const hashOffset = Math.ceil(fsSize / dataBlockSize) * dataBlockSize;
  const layout = treeLayout(hashOffset / dataBlockSize, hashBlockSize);
  return treeOffset(hashOffset, hashBlockSize) + layout.totalBlocks * hashBlockSize;
}
