#!/usr/bin/env node
// Time per build stage for both shipped images, cold (empty stage cache, .deb cache kept so
// the network is not measured twice) and warm (nothing changed: rootfs and /usr come from the
// cache). Runs the real CLI: `node bin/run.js build SPEC --json`, reading its stage events.
//
//   node bench/build.mjs                 # minimal and container-host
//   BENCH_IMAGES=minimal node bench/build.mjs
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, mkdirSync, readdirSync, cpSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..");
const images = (process.env.BENCH_IMAGES ?? "minimal,container-host").split(",");
const tmp = mkdtempSync(join(tmpdir(), "acl-bench-build-"));
const shared = join(repo, ".cache/bench-debs");

function build(image, cache, out) {
  const t = performance.now();
  const r = spawnSync(process.execPath, [join(repo, "bin/run.js"), "build", `images/${image}.toml`, "--out", out, "--json"], {
    cwd: repo,
    env: { ...process.env, ACL_CACHE_DIR: cache, SOURCE_DATE_EPOCH: "1700000000" },
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  const wall = (performance.now() - t) / 1000;
  if (r.status !== 0) throw new Error(`build ${image} failed:\n${(r.stderr ?? "").slice(-3000)}`);
  const stages = r.stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l))
    .filter((e) => e.event === "stage-end");
  return { wall, stages };
}

const rows = [];
try {
  for (const image of images) {
    const cache = join(tmp, `cache-${image}`);
    mkdirSync(cache, { recursive: true });
    // keep downloads out of the figure: seed the .deb and kernel caches from earlier runs
    for (const sub of ["debs", "kernel"]) if (existsSync(join(shared, sub))) cpSync(join(shared, sub), join(cache, sub), { recursive: true });
    const cold = build(image, cache, join(tmp, `${image}-cold`));
    const warm = build(image, cache, join(tmp, `${image}-warm`));
    mkdirSync(shared, { recursive: true });
    for (const sub of ["debs", "kernel"]) if (existsSync(join(cache, sub))) cpSync(join(cache, sub), join(shared, sub), { recursive: true });
    rows.push({ image, cold, warm });
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

for (const { image, cold, warm } of rows) {
  console.log(`\n${image}: cold ${cold.wall.toFixed(1)} s, warm ${warm.wall.toFixed(1)} s (wall, including CLI start)`);
  console.log(`  ${"stage".padEnd(20)} ${"cold s".padStart(8)} ${"warm s".padStart(8)}  warm cached`);
  const names = [...new Set([...cold.stages.map((s) => s.stage), ...warm.stages.map((s) => s.stage)])];
  for (const n of names) {
    const c = cold.stages.find((s) => s.stage === n);
    const w = warm.stages.find((s) => s.stage === n);
    console.log(`  ${n.padEnd(20)} ${c ? (c.ms / 1000).toFixed(2).padStart(8) : "".padStart(8)} ${w ? (w.ms / 1000).toFixed(2).padStart(8) : "".padStart(8)}  ${w?.cached ? "yes" : ""}`);
  }
}
