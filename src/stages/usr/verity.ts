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
import { UserError } from "../../errors.js";
import type { VerityInfo } from "../../pipeline/manifest.js";
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
  isValidBlockSize,
  treeLayout,
  treeOffset,
  uuidToBytes,
} from "../../formats/verity.js";
import { CTRL_ABORT, CTRL_DONE_CHUNKS, CTRL_LENGTH, hashClaimedChunks, type LeafJob, type VerityWorkerReply } from "../../formats/verity-worker.js";
import { MiB } from "../../util/size.js";

export interface HashOptions {
  /** Worker threads for the leaf level (default: one per core besides the calling thread's, at most 8; 0 = hash in this thread only). */
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

/** Inputs up to this size are hashed by the calling thread alone: starting a worker would cost more. */
const INLINE_LIMIT = 16 * MiB;
/** Bytes per unit of work (a worker message, or one step of the calling thread). */
const CHUNK_BYTES = MiB;
/** Chunks the calling thread hashes between turns of its event loop. */
const CALLER_RUN_CHUNKS = 4;
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
    const leaves = await hashLeavesOf(file, fh, dataBlocks, dbs, opts.salt, opts);
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
    const leaves = await hashLeavesOf(file, fh, info.dataBlocks, dbs, salt, opts);
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

/** hashLeaves, with a read failure reported against the file. */
async function hashLeavesOf(file: string, fh: FileHandle, dataBlocks: number, blockSize: number, salt: Uint8Array, opts: HashOptions): Promise<Uint8Array> {
  try {
    return await hashLeaves(fh, dataBlocks, blockSize, salt, opts);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`reading ${file} for dm-verity failed: ${(e as Error).message.split("\n")[0]}`, {
      file,
      hint: "was the file changed or truncated while acl was hashing it? rebuild the /usr image",
    });
  }
}

/** sha256(salt ‖ block) of each of the first `dataBlocks` blocks of the file, concatenated. */
export async function hashLeaves(fh: FileHandle, dataBlocks: number, blockSize: number, salt: Uint8Array, opts: HashOptions = {}): Promise<Uint8Array> {
  const total = dataBlocks * blockSize;
  const callerHashes = opts.callerHashes ?? true;
  let nWorkers = Math.min(opts.workers ?? defaultWorkers(total, callerHashes), MAX_WORKERS, Math.ceil(total / CHUNK_BYTES));
  if (!callerHashes) nWorkers = Math.max(1, nWorkers);
  return hashLeavesShared(fh, dataBlocks, blockSize, salt, Math.max(0, nWorkers), callerHashes);
}

/**
 * Worker threads to start: one per core besides the calling thread's, none
 * for small inputs. On a saturated machine they still do no harm: with the
 * shared-counter design a worker only costs its start-up (measured on a busy
 * 2-core box: same CPU time as one thread, slightly shorter wall time).
 */
function defaultWorkers(total: number, callerHashes: boolean): number {
  const cores = availableParallelism();
  if (!callerHashes) return Math.max(1, cores);
  if (total <= INLINE_LIMIT) return 0;
  return Math.max(0, cores - 1);
}

function workerUrl(): URL {
  const js = new URL("../../formats/verity-worker.js", import.meta.url);
  if (existsSync(fileURLToPath(js))) return js;
  // Running from the TypeScript sources (tests): Node strips the types itself.
  return new URL("../../formats/verity-worker.ts", import.meta.url);
}

/** Atomics.waitAsync (ES2024; present in Node 20+, missing from the ES2023 lib typings this project compiles with). */
type WaitAsyncResult = { async: false; value: "not-equal" | "timed-out" } | { async: true; value: Promise<"ok" | "timed-out"> };
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, index: number, value: number, timeoutMs: number): WaitAsyncResult }).waitAsync;

/**
 * Worker threads and the calling thread claim 1 MiB chunks from a shared
 * counter and each read and hash their own; nobody waits on anybody per
 * chunk. A worker takes ~50-200 ms to start on a busy machine; the calling
 * thread has started hashing by then (small images are done before any
 * worker is up, and those late workers are not waited for). With no workers
 * this is the plain single-thread loop.
 */
async function hashLeavesShared(
  fh: FileHandle,
  dataBlocks: number,
  blockSize: number,
  salt: Uint8Array,
  nWorkers: number,
  callerHashes: boolean,
): Promise<Uint8Array> {
  const chunkBlocks = Math.max(1, Math.floor(CHUNK_BYTES / blockSize));
  const nChunks = Math.ceil(dataBlocks / chunkBlocks);
  const ctrlBuf = new SharedArrayBuffer(CTRL_LENGTH * Int32Array.BYTES_PER_ELEMENT);
  const ctrl = new Int32Array(ctrlBuf);
  const job: LeafJob = {
    fd: fh.fd,
    ctrl: ctrlBuf,
    digests: new SharedArrayBuffer(dataBlocks * SHA256_DIGEST_SIZE),
    salt: Uint8Array.from(salt),
    blockSize,
    dataBlocks,
    chunkBlocks,
  };
  const url = workerUrl();
  const workers: Worker[] = [];
  let failure: Error | undefined;
  const fail = (e: Error): void => {
    failure ??= e;
    Atomics.store(ctrl, CTRL_ABORT, 1);
    Atomics.notify(ctrl, CTRL_DONE_CHUNKS);
  };
  try {
    for (let w = 0; w < nWorkers; w++) {
      const worker = new Worker(url, { workerData: { verityLeafJob: job } });
      let replied = false;
      worker.on("message", (m: VerityWorkerReply) => {
        replied = true;
        if (m.error) fail(new Error(`verity worker failed: ${m.error}`));
      });
      worker.on("error", fail);
      // Dying without a word (out of memory, killed) could leave a claimed chunk undone forever.
      worker.on("exit", (code) => {
        if (!replied) fail(new Error(`verity worker exited with code ${code} before finishing`));
      });
      workers.push(worker);
    }
    if (callerHashes) {
      // Short runs, so that this thread's event loop keeps turning.
      while (!hashClaimedChunks(job, CALLER_RUN_CHUNKS).exhausted) await new Promise((r) => setImmediate(r));
    }
    for (;;) {
      if (failure) throw failure;
      const done = Atomics.load(ctrl, CTRL_DONE_CHUNKS);
      if (done >= nChunks) break;
      const w = waitAsync(ctrl, CTRL_DONE_CHUNKS, done, 1000);
      if (w.async) await w.value;
    }
    if (failure) throw failure;
    return new Uint8Array(job.digests);
  } catch (e) {
    fail(e as Error);
    throw e;
  } finally {
    // A worker still booting would hold up an awaited terminate(); let it end in the background.
    for (const w of workers) {
      w.removeAllListeners("exit");
      w.unref();
      w.terminate().catch(() => undefined);
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
