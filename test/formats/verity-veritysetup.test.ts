/**
 * dm-verity against the real tool: veritysetup accepts what appendVerity
 * writes (and rejects it after one flipped byte), and what veritysetup
 * formats is read by our decoder and equals our tree byte for byte.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { createCipheriv, createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, openSync, readSync, writeSync, closeSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { appendVerity, hashLeaves, readSuperblock, verifyTree, verityFileSize } from "../../src/stages/usr/verity.js";
import { computeTree, decodeSuperblock, deriveSalt, deriveUuid, hashBlocksInto, treeOffset } from "../../src/formats/verity.js";
import { UserError } from "../../src/errors.js";
import type { VerityInfo } from "../../src/pipeline/manifest.js";

const PATH = `${process.env.PATH ?? "/usr/bin:/bin"}:/usr/sbin:/sbin`;
let dir: string;

function veritysetup(args: string[]): { code: number; out: string } {
  const r = spawnSync("veritysetup", args, { env: { ...process.env, PATH, LC_ALL: "C" }, encoding: "utf8" });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** Deterministic pseudo-random bytes (AES-256-CTR keystream of a seed). */
function pseudoRandom(seed: string, size: number): Buffer {
  const key = createHash("sha256").update(seed).digest();
  const c = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
}

function flipByte(file: string, offset: number): void {
  const fd = openSync(file, "r+");
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, offset);
  b[0] = b[0]! ^ 0x01;
  writeSync(fd, b, 0, 1, offset);
  closeSync(fd);
}

function verifyArgs(file: string, info: VerityInfo): string[] {
  return ["verify", file, file, info.rootHash, `--hash-offset=${info.hashOffset}`];
}

/** Field values from `veritysetup dump` (the tool's own reading of a superblock). */
function dump(file: string, hashOffset: number): Record<string, string> {
  const r = veritysetup(["dump", file, `--hash-offset=${hashOffset}`]);
  expect(r.code, r.out).toBe(0);
  const fields: Record<string, string> = {};
  for (const line of r.out.split("\n")) {
    const m = /^([A-Za-z ]+):\s+(\S+)\s*$/.exec(line);
    if (m) fields[m[1]!.trim()] = m[2]!;
  }
  return fields;
}

beforeAll(() => {
  const r = spawnSync("sh", ["-c", "command -v veritysetup"], { env: { PATH } });
  if (r.status !== 0) throw new Error("these tests need 'veritysetup' (apt-get install cryptsetup-bin)");
  dir = mkdtempSync(join(tmpdir(), "acl-verity-"));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("appendVerity output checked by veritysetup", () => {
  it("pads an unaligned image, appends superblock + tree, and veritysetup verify accepts it", async () => {
    const file = join(dir, "usr.img");
    const fsSize = 3 * 1024 * 1024 + 1234;
    writeFileSync(file, pseudoRandom("unaligned", fsSize));
    const salt = deriveSalt("test-image", "1.0.0");
    const uuid = deriveUuid("test-image", "1.0.0");
    const info = await appendVerity(file, { salt, uuid });
    const dataBlocks = Math.ceil(fsSize / 4096);
    expect(info).toMatchObject({
      salt: salt.toString("hex"),
      hashOffset: dataBlocks * 4096,
      dataBlocks,
      dataBlockSize: 4096,
      hashBlockSize: 4096,
      algorithm: "sha256",
      hashType: 1,
      uuid,
    });
    expect(statSync(file).size).toBe(verityFileSize(fsSize));
    // The padding is zeros and the data is untouched.
    const head = readFileSync(file).subarray(0, info.hashOffset);
    expect(head.subarray(0, fsSize).equals(pseudoRandom("unaligned", fsSize))).toBe(true);
    expect(head.subarray(fsSize).every((x) => x === 0)).toBe(true);

    const ok = veritysetup(verifyArgs(file, info));
    expect(ok.code, ok.out).toBe(0);
    const d = dump(file, info.hashOffset);
    expect(d).toMatchObject({
      UUID: uuid,
      "Hash type": "1",
      "Data blocks": String(dataBlocks),
      "Data block size": "4096",
      "Hash block size": "4096",
      "Hash algorithm": "sha256",
      Salt: salt.toString("hex"),
    });
    expect(await verifyTree(file, info)).toEqual({ ok: true });

    // A wrong root hash is refused by both.
    const wrong = { ...info, rootHash: "0".repeat(64) };
    expect(veritysetup(verifyArgs(file, wrong)).code).not.toBe(0);
    expect((await verifyTree(file, wrong)).ok).toBe(false);
  });

  it("one flipped data byte makes veritysetup verify and verifyTree fail", async () => {
    const file = join(dir, "flip-data.img");
    writeFileSync(file, pseudoRandom("flip", 2 * 1024 * 1024));
    const info = await appendVerity(file, { salt: deriveSalt("flip", "1"), uuid: deriveUuid("flip", "1") });
    expect(veritysetup(verifyArgs(file, info)).code).toBe(0);
    flipByte(file, 77 * 4096 + 100);
    const r = veritysetup(verifyArgs(file, info));
    expect(r.code, r.out).not.toBe(0);
    expect(r.out).toMatch(/Verification failed|failed/i);
    expect(await verifyTree(file, info)).toEqual({ ok: false, reason: "data does not match the stored hash tree", dataBlock: 77 });
  });

  it("one flipped tree byte makes veritysetup verify and verifyTree fail", async () => {
    const file = join(dir, "flip-tree.img");
    writeFileSync(file, pseudoRandom("flip-tree", 1024 * 1024));
    const info = await appendVerity(file, { salt: deriveSalt("flip-tree", "1"), uuid: deriveUuid("flip-tree", "1") });
    flipByte(file, treeOffset(info.hashOffset) + 5);
    expect(veritysetup(verifyArgs(file, info)).code).not.toBe(0);
    const v = await verifyTree(file, info);
    expect(v.ok).toBe(false);
    // A changed superblock is caught too.
    const file2 = join(dir, "flip-sb.img");
    writeFileSync(file2, pseudoRandom("flip-sb", 64 * 1024));
    const info2 = await appendVerity(file2, { salt: deriveSalt("flip-sb", "1"), uuid: deriveUuid("flip-sb", "1") });
    flipByte(file2, info2.hashOffset + 88); // first salt byte
    expect(veritysetup(verifyArgs(file2, info2)).code).not.toBe(0);
    expect(await verifyTree(file2, info2)).toMatchObject({ ok: false, reason: expect.stringMatching(/salt/) });
  });

  it("a one-block image (no tree levels) is accepted", async () => {
    const file = join(dir, "one.img");
    writeFileSync(file, Buffer.from("tiny filesystem"));
    const info = await appendVerity(file, { salt: deriveSalt("one", "1"), uuid: deriveUuid("one", "1") });
    expect(info.dataBlocks).toBe(1);
    expect(statSync(file).size).toBe(2 * 4096);
    const r = veritysetup(verifyArgs(file, info));
    expect(r.code, r.out).toBe(0);
    expect(await verifyTree(file, info)).toEqual({ ok: true });
  });

  it("worker threads, the calling thread, and both together give veritysetup's exact bytes on a 20 MiB image", async () => {
    const size = 20 * 1024 * 1024 + 4096 * 3;
    const data = pseudoRandom("workers", size);
    const salt = deriveSalt("workers", "7");
    const uuid = deriveUuid("workers", "7");
    const ours = join(dir, "w-ours.img");
    const inline = join(dir, "w-inline.img");
    const mixed = join(dir, "w-mixed.img");
    const theirs = join(dir, "w-theirs.img");
    for (const f of [ours, inline, mixed, theirs]) writeFileSync(f, data);
    // Workers only: every leaf digest comes from verity-worker.
    const a = await appendVerity(ours, { salt, uuid, workers: 2, callerHashes: false });
    const b = await appendVerity(inline, { salt, uuid, workers: 0 });
    const c = await appendVerity(mixed, { salt, uuid, workers: 1 });
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    const fmt = veritysetup([
      "format", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096",
      `--data-blocks=${size / 4096}`, `--hash-offset=${size}`, `--salt=${salt.toString("hex")}`, `--uuid=${uuid}`,
      theirs, theirs,
    ]);
    expect(fmt.code, fmt.out).toBe(0);
    expect(fmt.out).toContain(`Root hash:      \t${a.rootHash}`);
    const t = readFileSync(theirs);
    expect(readFileSync(ours).equals(t)).toBe(true);
    expect(readFileSync(inline).equals(t)).toBe(true);
    expect(readFileSync(mixed).equals(t)).toBe(true);
  });

  it("a read failure in a worker or in the calling thread rejects instead of hanging", async () => {
    const file = join(dir, "short.img");
    writeFileSync(file, pseudoRandom("short", 4 * 1024 * 1024));
    const fh = await open(file, "r");
    try {
      // Ask for more blocks than the file holds.
      await expect(hashLeaves(fh, 5000, 4096, Buffer.alloc(32), { workers: 1, callerHashes: false })).rejects.toThrow(/verity worker failed: .*unexpected end of file/s);
      await expect(hashLeaves(fh, 5000, 4096, Buffer.alloc(32), { workers: 0 })).rejects.toThrow(/unexpected end of file/);
      const ok = await hashLeaves(fh, 1024, 4096, Buffer.alloc(32), { workers: 2 });
      expect(ok.length).toBe(1024 * 32);
    } finally {
      await fh.close();
    }
  });

  it("refuses an empty or missing file with a UserError naming it", async () => {
    const empty = join(dir, "empty.img");
    writeFileSync(empty, "");
    const opts = { salt: deriveSalt("e", "1"), uuid: deriveUuid("e", "1") };
    await expect(appendVerity(empty, opts)).rejects.toThrow(UserError);
    await expect(appendVerity(empty, opts)).rejects.toThrow(/empty\.img is empty/);
    await expect(appendVerity(join(dir, "nope.img"), opts)).rejects.toThrow(/nope\.img.*ENOENT/);
    writeFileSync(empty, "x");
    await expect(appendVerity(empty, { ...opts, uuid: "zz" })).rejects.toThrow(/uuid/);
  });
});

describe("veritysetup format output read by our code", () => {
  it("decodes its superblock and recomputes its tree byte for byte", async () => {
    const file = join(dir, "vs.img");
    const blocks = 17000; // three levels: 133 + 2 + 1 hash blocks
    const data = pseudoRandom("theirs", blocks * 4096);
    writeFileSync(file, data);
    const salt = "5a17" + "00".repeat(6) + "ff"; // a short, odd salt
    const uuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    const r = veritysetup([
      "format", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096",
      `--data-blocks=${blocks}`, `--hash-offset=${blocks * 4096}`, `--salt=${salt}`, `--uuid=${uuid}`, file, file,
    ]);
    expect(r.code, r.out).toBe(0);
    const rootHash = /Root hash:\s+([0-9a-f]{64})/.exec(r.out)![1]!;
    const hashBlocks = Number(/Hash blocks:\s+(\d+)/.exec(r.out)![1]);
    expect(hashBlocks).toBe(136);

    const file_ = readFileSync(file);
    const sb = decodeSuperblock(file_.subarray(blocks * 4096, blocks * 4096 + 512));
    expect(sb).toEqual({
      version: 1,
      hashType: 1,
      uuid,
      algorithm: "sha256",
      dataBlockSize: 4096,
      hashBlockSize: 4096,
      dataBlocks: BigInt(blocks),
      salt: Buffer.from(salt, "hex"),
    });
    expect(await readSuperblock(file, blocks * 4096)).toEqual(sb);

    const leaves = Buffer.alloc(blocks * 32);
    hashBlocksInto(data, 4096, sb.salt, leaves);
    const ours = computeTree(leaves, { salt: sb.salt, dataBlocks: blocks });
    expect(ours.rootHash.toString("hex")).toBe(rootHash);
    expect(ours.layout.totalBlocks).toBe(hashBlocks);
    const start = treeOffset(blocks * 4096);
    const theirTree = file_.subarray(start);
    expect(theirTree.length).toBe(ours.tree.length);
    expect(theirTree.equals(ours.tree)).toBe(true);
    // The rest of the superblock's hash block is zero.
    expect(file_.subarray(blocks * 4096 + 512, start).every((x) => x === 0)).toBe(true);

    const info: VerityInfo = {
      rootHash, salt, hashOffset: blocks * 4096, dataBlocks: blocks, dataBlockSize: 4096, hashBlockSize: 4096,
      algorithm: "sha256", hashType: 1, uuid,
    };
    expect(await verifyTree(file, info, { workers: 2, callerHashes: false })).toEqual({ ok: true });
    const copy = join(dir, "vs-copy.img");
    copyFileSync(file, copy);
    flipByte(copy, 16999 * 4096);
    expect(await verifyTree(copy, info)).toMatchObject({ ok: false, dataBlock: 16999 });
  });

  it("reports a missing superblock as a UserError with a hint", async () => {
    const file = join(dir, "nosb.img");
    writeFileSync(file, Buffer.alloc(8192));
    await expect(readSuperblock(file, 4096)).rejects.toThrow(/nosb\.img: no verity superblock/);
  });
});
