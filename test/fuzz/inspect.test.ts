/**
 * `acl inspect` (the service behind it) on acl's own minimal disk made
 * hostile: its GPT, the /usr slot's erofs and verity superblocks and the
 * ESP's FAT damaged or lying, the raw file cut short or grown, the VHD's
 * footer and the qcow2's header changed. Each run ends with the disk
 * decoded or an error acl reports as the user's (never exit 70), in bounded
 * time. The mutations go into a working copy and are undone after each run.
 */
import { execa } from "execa";
import { mkdtemp, open, rm, stat, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SB } from "../../src/formats/verity.js";
import { acl } from "../helpers/cli.js";
import { inspectDisk, type InspectResult } from "../../src/services/inspect.js";
import { builtImage } from "../helpers/images.js";
import { budget, expectClearError, outcome, type Mutation, mutations, fuzzTime } from "./fuzz.js";

let out: string;
let tmp: string;
let clean: InspectResult;

beforeAll(async () => {
  out = await builtImage("minimal");
  tmp = await mkdtemp(join(tmpdir(), "acl-fuzz-inspect-"));
  clean = await inspectDisk({ path: join(out, "disk.raw") });
}, 20 * 60_000);
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** A working copy of one of the output's disks. */
async function working(name: string): Promise<{ path: string; size: number; reset(): Promise<void> }> {
  const path = join(tmp, name);
  const reset = async () => {
    await execa("cp", ["--sparse=always", join(out, name), path]);
  };
  await reset();
  return { path, size: (await stat(path)).size, reset };
}

/**
 * Write the mutations into the file in place; returns how to undo them (the
 * bytes it overwrote; a cut or a growth is undone by truncating back, or by
 * copying the file again when data was cut off).
 */
async function mutateInPlace(path: string, size: number, ms: readonly Mutation[], recopy: () => Promise<void>): Promise<() => Promise<void>> {
  const saved: { at: number; bytes: Buffer }[] = [];
  let cut = false;
  let length = size;
  const fh = await open(path, "r+");
  try {
    for (const m of ms) {
      if (m.kind === "cut") {
        length = Math.min(length, m.length);
        await fh.truncate(length);
        cut = true;
        continue;
      }
      if (m.kind === "grow") {
        await fh.write(Buffer.from(m.bytes), 0, m.bytes.length, length);
        length += m.bytes.length;
        continue;
      }
      if (m.at >= length) continue;
      const old = Buffer.alloc(8);
      const { bytesRead } = await fh.read(old, 0, 8, m.at);
      saved.push({ at: m.at, bytes: old.subarray(0, bytesRead) });
      const b = Buffer.from(old); // whole 8 bytes; only those inside the file are written back
      if (m.kind === "flip") b[0]! ^= 1 << m.bit;
      else if (m.kind === "byte") b[0] = m.value;
      else if (m.kind === "octal") b.write(m.digits.slice(0, 8), 0, "latin1");
      else {
        const v = BigInt.asUintN(m.width * 8, m.value);
        if (m.width === 8) m.be ? b.writeBigUInt64BE(v) : b.writeBigUInt64LE(v);
        else m.be ? b.writeUInt32BE(Number(v)) : b.writeUInt32LE(Number(v));
      }
      const width = m.kind === "field" ? m.width : m.kind === "octal" ? Math.min(8, m.digits.length) : 1;
      await fh.write(b, 0, Math.min(bytesRead, width), m.at);
    }
  } finally {
    await fh.close();
  }
  return async () => {
    if (cut) return recopy();
    await truncate(path, size);
    const h = await open(path, "r+");
    try {
      for (const s of saved.reverse()) await h.write(s.bytes, 0, s.bytes.length, s.at);
    } finally {
      await h.close();
    }
  };
}

/** Where a disk reader looks: the GPT at both ends, USR-A's superblocks, the ESP's boot sector, FATs and root folder. */
function hotRanges(size: number, delta = 0): [number, number][] {
  const ss = clean.sectorSize;
  const hot: [number, number][] = [
    [0, 34 * ss],
    [size - 33 * ss - delta, size - delta],
  ];
  for (const p of clean.partitions) {
    const at = p.firstLba * ss;
    if (p.label === "USR-A") {
      hot.push([at + 1024, at + 1024 + 128]);
      if (p.usr?.verity) hot.push([at + p.usr.verity.hashOffset, at + p.usr.verity.hashOffset + 512]);
    }
    if (p.typeName.includes("EFI")) hot.push([at, at + 128 * 1024]);
  }
  return hot;
}

async function inspectRuns(name: string, runs: number, extraHot: (size: number) => [number, number][] = () => []) {
  const disk = await working(name);
  await fc.assert(
    fc.asyncProperty(mutations(disk.size, [...hotRanges(disk.size, name.endsWith(".vhd") ? 512 : 0), ...extraHot(disk.size)], 4), async (ms) => {
      const undo = await mutateInPlace(disk.path, disk.size, ms, disk.reset);
      try {
        const r = await outcome(() => inspectDisk({ path: disk.path }), 60_000);
        if (!r.ok) expectClearError(r.error, `acl inspect ${name} after ${JSON.stringify(ms, (_k, v) => (typeof v === "bigint" ? `${v}n` : v))}`);
      } finally {
        await undo();
      }
    }),
    budget(runs),
  );
}

describe("found by fuzzing, kept as regressions", () => {
  it("a verity superblock whose block size lies: inspect names the damage (it was exit 70, 'unsupported verity block sizes')", async () => {
    const disk = await working("disk.raw");
    const usrA = clean.partitions.find((p) => p.label === "USR-A")!;
    const at = usrA.firstLba * clean.sectorSize + usrA.usr!.verity!.hashOffset + SB.dataBlockSize;
    const fh = await open(disk.path, "r+");
    try {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(4097);
      await fh.write(b, 0, 4, at);
    } finally {
      await fh.close();
    }
    const r = await inspectDisk({ path: disk.path });
    const slot = r.partitions.find((p) => p.label === "USR-A")!;
    expect(slot.usr?.verity).toBeUndefined();
    expect(slot.usr?.verityProblem).toMatch(/^the verity superblock at \d+ is damaged: unsupported verity block sizes 4097\/4096/);
    const cli = await acl(["inspect", disk.path]);
    expect(cli.exitCode, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(/verity: the verity superblock at \d+ is damaged/);
  }, 120_000);
});

describe("acl inspect on damaged and lying disks", () => {
  it("raw", () => inspectRuns("disk.raw", 60), fuzzTime(20 * 60_000));
  it("fixed VHD: its footer too", () => inspectRuns("disk.vhd", 25, (size) => [[size - 512, size]]), fuzzTime(20 * 60_000));
  it("qcow2: its header (qemu-img expands what it accepts)", () => inspectRuns("disk.qcow2", 12, () => [[0, 512]]), fuzzTime(20 * 60_000));
});
