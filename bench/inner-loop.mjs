#!/usr/bin/env node
// The author's inner loop, measured with the real CLI on this machine:
//   cold build (--no-cache: every stage runs; downloaded packages are reused), no-op rebuild,
//   and a rebuild after one overlay line changed (boot times: bench/boot.mjs). Each figure is printed next
//   to its target, as a ratio to the cold build of the same run where two things are compared,
//   so a busy machine still gives a true reading.
// Usage: node bench/inner-loop.mjs [minimal|container-host]...   (default: both)
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const REPO = resolve(import.meta.dirname, "..");
const ACL = join(REPO, "bin/acl");
const images = process.argv.slice(2).length ? process.argv.slice(2) : ["minimal", "container-host"];
const env = { ...process.env, SOURCE_DATE_EPOCH: "1700000000" };

function timed(args) {
  const t = process.hrtime.bigint();
  const r = spawnSync(ACL, args, { env, encoding: "utf8", maxBuffer: 64 << 20 });
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`acl ${args.join(" ")} failed (${r.status}):\n${r.stderr.slice(-3000)}`);
  return { s, stdout: r.stdout };
}

const rows = [];
const row = (image, figure, seconds, target, ratioTo) =>
  rows.push({ image, figure, seconds, target, ratio: ratioTo ? seconds / ratioTo : undefined, met: target === undefined ? undefined : seconds <= target });

for (const image of images) {
  // a private copy of the spec and what it names, so the edit touches nothing in the checkout
  const work = mkdtempSync(join(tmpdir(), `acl-bench-${image}-`));
  try {
    cpSync(join(REPO, "images"), join(work, "images"), { recursive: true });
    cpSync(join(REPO, "butane"), join(work, "butane"), { recursive: true });
    const spec = join(work, "images", `${image}.toml`);
    const out = join(work, "out");
    const cold = timed(["build", spec, "--out", out, "--no-cache", "--json"]).s;
    row(image, "cold build (--no-cache)", cold);
    const again = timed(["build", spec, "--out", out, "--json"]);
    const noop = JSON.parse(again.stdout);
    row(image, "no-op rebuild", again.s, 2, cold);
    const cachedStages = noop.stages.filter((x) => x.cached).map((x) => x.stage);
    // one line of one overlay file (or of an extra file when the spec has no overlay)
    const overlay = join(work, "images", image, "overlay");
    let edited;
    try {
      const files = execFileSync("find", [overlay, "-type", "f"], { encoding: "utf8" }).trim().split("\n").filter(Boolean).sort();
      edited = files[0];
    } catch {
      edited = undefined;
    }
    if (edited) {
      writeFileSync(edited, readFileSync(edited, "utf8") + "# bench edit\n");
      const edit = timed(["build", spec, "--out", out, "--json"]);
      row(image, "one overlay line changed", edit.s, 15, cold);
    }
    console.error(`${image}: no-op build reported cached: ${cachedStages.join(", ")}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

console.log("image           figure                              seconds  target  ratio to cold  met");
for (const r of rows) {
  console.log(
    `${r.image.padEnd(15)} ${r.figure.padEnd(35)} ${r.seconds.toFixed(1).padStart(7)}  ${(r.target === undefined ? "" : `≤ ${r.target}`).padEnd(6)}  ${(r.ratio === undefined ? "" : r.ratio.toFixed(3)).padStart(13)}  ${r.met === undefined ? "" : r.met ? "yes" : "no"}`,
  );
}
