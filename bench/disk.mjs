#!/usr/bin/env node
/**
 * Bench: disk assembly (GPT + ESP + USR-A + OEM + ROOT -> raw, qcow2, fixed VHD)
 * wall time vs the sum of the external tool calls it makes (mkfs.vfat, mtools,
 * mkfs.ext4, debugfs, qemu-img). The ratio shows what acl's own work costs
 * (GPT encoding, sparse copies, footer rewrite, process spawning).
 *
 * Runs the built CLI code: `npx tsc -p . && node bench/disk.mjs`.
 * Options: --payload FILE (a real USR payload; default: two synthetic
 * erofs+verity payloads, "small" and "large"), --runs N (default 3),
 * --json (figures as JSON on stdout).
 */
import { mkdtemp, mkdir, rm, stat, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const dist = new URL("../dist/", import.meta.url);
const { assembleDisk } = await import(new URL("stages/disk/assemble.js", dist).href);
const { run, toolPath } = await import(new URL("adapters/exec.js", dist).href);
process.env.PATH = toolPath();

const { values } = parseArgs({ options: { payload: { type: "string" }, runs: { type: "string", default: "3" }, json: { type: "boolean", default: false } } });
const runs = Math.max(1, Number(values.runs));
const MiB = 1024 * 1024;

const dir = await mkdtemp(join(tmpdir(), "acl-bench-disk-"));
try {
  const cases = [];
  if (values.payload) {
    cases.push({ name: "given", payload: values.payload });
  } else {
    cases.push({ name: "small", payload: await makePayload("small", 24 * MiB) });
    cases.push({ name: "large", payload: await makePayload("large", 160 * MiB) });
  }
  const esp = join(dir, "esp");
  await mkdir(join(esp, "EFI/BOOT"), { recursive: true });
  await writeFile(join(esp, "EFI/BOOT/BOOTX64.EFI"), randomBytes(12 * MiB));
  const root = join(dir, "root/etc");
  await mkdir(root, { recursive: true });
  await writeFile(join(root, "motd"), "bench\n");

  const results = [];
  for (const c of cases) {
    const size = (await stat(c.payload)).size;
    const usrMiB = Math.ceil((size * 1.25) / MiB) + 8;
    const samples = [];
    for (let i = 0; i < runs; i++) {
      const r = await assembleDisk({
        workDir: join(dir, `work-${c.name}-${i}`),
        outDir: join(dir, `out-${c.name}-${i}`),
        name: `bench-${c.name}`,
        version: "1.0.0",
        sourceDateEpoch: 1_700_000_000,
        usrPayload: c.payload,
        espDir: esp,
        rootDir: join(dir, "root"),
        sizes: { espMiB: 64, usrMiB, oemMiB: 16, rootMiB: 64 },
        formats: ["raw", "qcow2", "vhd"],
      });
      samples.push(r.timing);
      await rm(join(dir, `out-${c.name}-${i}`), { recursive: true, force: true });
      await rm(join(dir, `work-${c.name}-${i}`), { recursive: true, force: true });
    }
    const med = (k) => [...samples.map((s) => s[k])].sort((a, b) => a - b)[Math.floor(samples.length / 2)];
    const totalMs = med("totalMs");
    const toolMs = med("toolMs");
    results.push({
      case: c.name,
      payloadMiB: +(size / MiB).toFixed(1),
      diskMiB: 1 + 64 + 2 * usrMiB + 16 + 64 + 1,
      runs,
      toolCalls: samples[0].toolCalls,
      totalMs: Math.round(totalMs),
      toolMs: Math.round(toolMs),
      ownMs: Math.round(totalMs - toolMs),
      ratio: +(totalMs / toolMs).toFixed(2),
    });
  }
  if (values.json) process.stdout.write(JSON.stringify({ bench: "disk", results }, null, 2) + "\n");
  else {
    console.log("disk assembly (median of %d runs): total wall time vs the sum of its tool calls", runs);
    console.log("(acl = total - tools: GPT, sparse copies, VHD footer, spawning; the host tools are checked once per build, before the first stage)");
    console.log("case    payload  disk     calls  total ms  tools ms  acl ms  ratio");
    for (const r of results)
      console.log(
        `${r.case.padEnd(7)} ${String(r.payloadMiB).padStart(5)} MiB ${String(r.diskMiB).padStart(4)} MiB ${String(r.toolCalls).padStart(5)} ${String(r.totalMs).padStart(9)} ${String(r.toolMs).padStart(9)} ${String(r.ownMs).padStart(7)} ${r.ratio.toFixed(2).padStart(6)}`,
      );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}

/** A synthetic USR payload: erofs over `bytes` of incompressible data + verity tree. */
async function makePayload(name, bytes) {
  const tree = join(dir, `tree-${name}`);
  await mkdir(join(tree, "lib"), { recursive: true });
  for (let i = 0, left = bytes; left > 0; i++, left -= 8 * MiB) await writeFile(join(tree, "lib", `blob${i}`), randomBytes(Math.min(8 * MiB, left)));
  const img = join(dir, `usr-${name}.payload`);
  await run(["mkfs.erofs", "-T0", "--all-root", "-Eforce-inode-compact", img, tree]);
  const fsBytes = (await stat(img)).size;
  await run(["veritysetup", "format", img, img, "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096", `--data-blocks=${fsBytes / 4096}`, `--hash-offset=${fsBytes}`]);
  await rm(tree, { recursive: true, force: true });
  return img;
}
