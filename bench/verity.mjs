#!/usr/bin/env node
// dm-verity: acl's appendVerity (TypeScript, worker threads) against
// `veritysetup format` on the same 512 MiB file of deterministic random data.
// Prints both times and the ratio theirs/ours (target >= 1.0).
//
//   npx tsc -p . && node bench/verity.mjs
//
// Environment: BENCH_VERITY_MIB (default 512), BENCH_VERITY_ROUNDS (default 3),
// BENCH_TMPDIR (default the OS temp dir). Both sides start from the same
// synced file; both end with an fsync of the result (veritysetup always
// fsyncs its hash device), so page-cache flushing of the data is not timed.
import { spawnSync } from "node:child_process";
import { createCipheriv, createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const stageJs = join(root, "dist/stages/usr/verity.js");
if (!existsSync(stageJs)) {
  console.error(`bench/verity: ${stageJs} is missing; compile first: npx tsc -p .`);
  process.exit(2);
}
const { appendVerity } = await import(pathToFileURL(stageJs).href);
const { deriveSalt, deriveUuid } = await import(pathToFileURL(join(root, "dist/formats/verity.js")).href);

const MIB = Number(process.env.BENCH_VERITY_MIB ?? 512);
const ROUNDS = Math.max(1, Number(process.env.BENCH_VERITY_ROUNDS ?? 3));
const size = MIB * 1024 * 1024;
const PATH = `${process.env.PATH ?? "/usr/bin:/bin"}:/usr/sbin:/sbin`;

const probe = spawnSync("veritysetup", ["--version"], { env: { ...process.env, PATH }, encoding: "utf8" });
if (probe.error || probe.status !== 0) {
  console.error("bench/verity: veritysetup is missing (apt-get install cryptsetup-bin)");
  process.exit(2);
}

const dir = mkdtempSync(join(process.env.BENCH_TMPDIR ?? tmpdir(), "acl-bench-verity-"));
const ours = join(dir, "ours.img");
const theirs = join(dir, "theirs.img");
const salt = deriveSalt("bench", "1");
const uuid = deriveUuid("bench", "1");

/** Write `size` bytes of AES-256-CTR keystream (seeded) to both files. */
async function makeData() {
  const key = createHash("sha256").update("acl-bench-verity").digest();
  const cipher = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  const zero = Buffer.alloc(8 * 1024 * 1024);
  const a = await open(ours, "w");
  const b = await open(theirs, "w");
  for (let pos = 0; pos < size; pos += zero.length) {
    const chunk = cipher.update(zero.subarray(0, Math.min(zero.length, size - pos)));
    await a.write(chunk, 0, chunk.length, pos);
    await b.write(chunk, 0, chunk.length, pos);
  }
  await a.sync();
  await b.sync();
  await a.close();
  await b.close();
}

/** Cut a file back to its data and flush, so every round starts alike. */
async function reset(file) {
  const fh = await open(file, "r+");
  await fh.truncate(size);
  await fh.sync();
  await fh.close();
}

async function runOurs() {
  await reset(ours);
  const cpu0 = process.cpuUsage();
  const t = performance.now();
  const info = await appendVerity(ours, { salt, uuid });
  const fh = await open(ours, "r+");
  await fh.sync();
  await fh.close();
  const ms = performance.now() - t;
  // getrusage(RUSAGE_SELF) counts every thread of this process, workers included.
  const cpu = process.cpuUsage(cpu0);
  return { ms, cpuMs: (cpu.user + cpu.system) / 1000, rootHash: info.rootHash };
}

async function runTheirs() {
  await reset(theirs);
  const args = [
    "format", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096",
    `--data-blocks=${size / 4096}`, `--hash-offset=${size}`, `--salt=${salt.toString("hex")}`, `--uuid=${uuid}`,
    theirs, theirs,
  ];
  // The shell's `times` prints the CPU time of its children (user, system) on its second line.
  const t = performance.now();
  const r = spawnSync("sh", ["-c", 'veritysetup "$@" || exit $?; times >&2', "sh", ...args], {
    env: { ...process.env, PATH, LC_ALL: "C" },
    encoding: "utf8",
  });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`veritysetup ${args.join(" ")} failed:\n${r.stderr}`);
  const secs = (r.stderr.trim().split("\n").at(-1) ?? "").match(/(\d+)m([\d.]+)s/g) ?? [];
  const cpuMs = secs.reduce((sum, x) => {
    const [, m, sec] = /(\d+)m([\d.]+)s/.exec(x);
    return sum + (Number(m) * 60 + Number(sec)) * 1000;
  }, 0);
  return { ms, cpuMs, rootHash: /Root hash:\s+([0-9a-f]{64})/.exec(r.stdout)?.[1] };
}

async function sha256File(file) {
  const fh = await open(file, "r");
  const h = createHash("sha256");
  for await (const chunk of fh.createReadStream()) h.update(chunk);
  return h.digest("hex");
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

try {
  await makeData();
  const o = [];
  const t = [];
  const oc = [];
  const tc = [];
  let rootOurs;
  let rootTheirs;
  // Alternate the two so that load from other processes hits both alike.
  for (let i = 0; i < ROUNDS; i++) {
    const a = await runTheirs();
    const b = await runOurs();
    t.push(a.ms);
    o.push(b.ms);
    tc.push(a.cpuMs);
    oc.push(b.cpuMs);
    rootTheirs = a.rootHash;
    rootOurs = b.rootHash;
  }
  const same = rootOurs === rootTheirs && (await sha256File(ours)) === (await sha256File(theirs));
  const mo = median(o);
  const mt = median(t);
  const fmt = (xs) => xs.map((x) => x.toFixed(0)).join(", ");
  console.log(`verity: ${MIB} MiB, sha256, 4096-byte blocks, ${ROUNDS} round(s), median wall time`);
  console.log(`  veritysetup format   ${mt.toFixed(0)} ms  (${(MIB / (mt / 1000)).toFixed(0)} MiB/s; runs: ${fmt(t)}; CPU ms: ${fmt(tc)})`);
  console.log(`  acl appendVerity     ${mo.toFixed(0)} ms  (${(MIB / (mo / 1000)).toFixed(0)} MiB/s; runs: ${fmt(o)}; CPU ms: ${fmt(oc)})`);
  console.log(`  ratio theirs/ours    ${(mt / mo).toFixed(2)}x  (target >= 1.00)`);
  console.log(`  identical output     ${same ? "yes" : "NO"} (root ${rootOurs})`);
  if (!same) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
