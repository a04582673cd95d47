#!/usr/bin/env node
// The author's inner loop, measured with the real CLI on this machine:
//   cold build (--no-cache: every stage runs; downloaded packages are reused), no-op rebuild,
//   and a rebuild after one overlay line changed (boot times: bench/boot.mjs). Each figure is printed next
//   to its target, as a ratio to the cold build of the same run where two things are compared,
//   so a busy machine still gives a true reading. The edit's time per stage follows, and the same
//   edit redone by hand with the tools acl runs (cp, mkfs.erofs, veritysetup, dd, qemu-img, and
//   sha256sum): the floor for those steps alone, without acl's SBOM, audits, boot chain or manifest.
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
const breakdowns = [];

function sh(argv) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${argv.join(" ")} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** The overlay edit redone by hand from the same packages tree: seconds without and with the digests. */
async function handRun(work, overlay, out, specPath) {
  const { loadSpec } = await import(join(REPO, "dist/config/spec.js"));
  const usr = (await loadSpec(specPath)).usr;
  const cacheLs = JSON.parse(execFileSync(ACL, ["cache", "ls", "--json"], { env, encoding: "utf8" }));
  // the packages entry the edit build just used is the most recently used one
  const pkg = cacheLs.items.filter((i) => i.kind === "stage" && i.name === "packages").sort((a, b) => b.usedMs - a.usedMs)[0];
  if (!pkg) return undefined;
  const m = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8"));
  const usrA = m.disk.partitions.find((p) => p.label === "USR-A");
  const w = mkdtempSync(join(work, "hand-"));
  const t = process.hrtime.bigint();
  sh(["cp", "-a", "--reflink=auto", join(cacheLs.root, pkg.path, "tree"), join(w, "tree")]);
  sh(["cp", "-a", `${overlay}/.`, join(w, "tree")]);
  // the kernel's modules, from acl's unpacked copy of the package
  const modules = join(cacheLs.root, "kernel/unpacked", `${m.kernel.package}_${m.kernel.version}`, "lib/modules", m.kernel.release);
  sh(["mkdir", "-p", join(w, "tree/usr/lib/modules")]);
  sh(["cp", "-a", modules, join(w, "tree/usr/lib/modules/")]);
  sh(["mkfs.erofs", "--quiet", `-T${env.SOURCE_DATE_EPOCH}`, `-U${m.usr.uuid}`, "-Eforce-inode-compact", ...(usr.compression === "none" ? [] : [`-z${usr.compression}${usr.compression_level ? `,${usr.compression_level}` : ""}`]), join(w, "usr.img"), join(w, "tree/usr")]);
  const fsBytes = Number(sh(["stat", "-c", "%s", join(w, "usr.img")]).trim());
  sh(["veritysetup", "format", `--hash-offset=${Math.ceil(fsBytes / 4096) * 4096}`, join(w, "usr.img"), join(w, "usr.img")]);
  sh(["truncate", "-s", String(m.disk.sizeBytes), join(w, "disk.raw")]);
  sh(["dd", `if=${join(w, "usr.img")}`, `of=${join(w, "disk.raw")}`, "bs=4M", `seek=${usrA.firstLba * m.disk.sectorSize}`, "oflag=seek_bytes", "conv=sparse,notrunc", "status=none"]);
  sh(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", join(w, "disk.raw"), join(w, "disk.qcow2")]);
  sh(["cp", "--sparse=always", join(w, "disk.raw"), join(w, "disk.vhd")]);
  const tools = Number(process.hrtime.bigint() - t) / 1e9;
  sh(["sha256sum", ...["disk.raw", "disk.vhd", "disk.qcow2", "usr.img"].map((f) => join(w, f))]);
  const withDigests = Number(process.hrtime.bigint() - t) / 1e9;
  rmSync(w, { recursive: true, force: true });
  return { tools, withDigests };
}
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
      const stages = JSON.parse(edit.stdout).stages;
      breakdowns.push(`${image} edit by stage: ${stages.filter((x) => x.ms >= 50 || x.cached).map((x) => `${x.stage} ${(x.ms / 1000).toFixed(1)}${x.cached ? " (cached)" : ""}`).join(", ")}`);
      const hand = await handRun(work, overlay, out, spec);
      if (hand) {
        hand.ours = edit.s;
        breakdowns.push(
          `${image} the edit by hand (same packages tree and kernel modules; cp, mkfs.erofs, veritysetup, dd, qemu-img): ${hand.tools.toFixed(1)} s, ` +
            `with sha256sum of the disks and /usr: ${hand.withDigests.toFixed(1)} s; ours / hand-run: ${(edit.s / hand.tools).toFixed(2)} and ${(edit.s / hand.withDigests).toFixed(2)}`,
        );
      }
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
for (const b of breakdowns) console.log(b);
