#!/usr/bin/env node
// Run every bench/*.mjs in turn (sorted by name) and print their figures.
//
//   node bench/run.js            # all benches
//   node bench/run.js verity     # only those whose file name contains "verity"
//
// Each bench is a standalone script that prints its own figures; this runner
// adds a header per bench, the time each took, and a closing summary. The exit
// code is non-zero when any bench failed.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2);
const benches = readdirSync(here)
  .filter((f) => f.endsWith(".mjs"))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();

if (benches.length === 0) {
  console.error(`bench/run.js: no bench/*.mjs matches ${filters.length ? filters.join(", ") : "(none present)"}`);
  process.exit(2);
}

const results = [];
for (const f of benches) {
  console.log(`\n=== ${f} ===`);
  const t = performance.now();
  const r = spawnSync(process.execPath, [join(here, f)], { stdio: "inherit", cwd: join(here, "..") });
  const secs = (performance.now() - t) / 1000;
  const status = r.error ? `error: ${r.error.message}` : r.status === 0 ? "ok" : `exit ${r.status ?? r.signal}`;
  results.push({ f, secs, status });
}

console.log("\n=== summary ===");
for (const { f, secs, status } of results) console.log(`  ${f.padEnd(24)} ${status.padEnd(10)} ${secs.toFixed(1)} s`);
const failed = results.filter((r) => r.status !== "ok").length;
console.log(`${results.length - failed} bench(es) ok, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
