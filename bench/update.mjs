#!/usr/bin/env node
// A/B update bench, for one image (default container-host; BENCH_UPDATE_IMAGE=minimal for a quick run):
//   1. apply the next version's payload offline (`acl update apply` on a raw disk);
//   2. apply it on the node (the image's /usr/lib/acl/acl-update, payload on a second disk), under
//      QEMU TCG with UEFI, timed from the updater's first line to its last on the console;
//   3. rollback: a broken update (one flipped byte in the new /usr, 1 try), from QEMU start to the old
//      slot's userspace, against a plain UEFI boot of the same disk in the same run.
//
//   npx tsc -p . && node bench/update.mjs
//
// It builds images/NAME.toml and a copy at version "<version>.1" (in .cache/bench/), both signed with a
// key made once in .cache/bench/keys; acl's stage cache makes repeated runs cheap.
// Knobs: BENCH_UPDATE_IMAGE, BENCH_UPDATE_TIMEOUT (seconds per boot, default 600).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

const repo = resolve(import.meta.dirname, "..");
const dist = (p) => join(repo, "dist", p);
if (!existsSync(dist("services/update/apply.js"))) {
  console.error("bench/update.mjs: dist/ is missing; run `npx tsc -p .` first");
  process.exit(2);
}
const { applyUpdate } = await import(dist("services/update/apply.js"));
const { readBootState } = await import(dist("services/update/state.js"));
const { bootQemu, prepareOvmfVars } = await import(dist("adapters/qemu.js"));
const { BOOT_CHECK_REQUEST } = await import(dist("stages/rootfs/guest-checks.js"));
const { APPLY_REQUEST, corruptSlot } = await import(dist("services/boot-test-ab.js"));
const { loadCpuModels, defaultModelFor } = await import(dist("config/qemu-cases.js"));

const name = process.env.BENCH_UPDATE_IMAGE ?? "container-host";
const timeoutMs = Number(process.env.BENCH_UPDATE_TIMEOUT ?? 600) * 1000;
const bench = join(repo, ".cache/bench");
mkdirSync(bench, { recursive: true });
const acl = (...args) => execFileSync(process.execPath, [join(repo, "bin/run.js"), ...args], { cwd: repo, stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, SOURCE_DATE_EPOCH: "1700000000" } }).toString();

const keys = join(bench, "keys");
if (!existsSync(join(keys, "acl-signing.pub"))) acl("keys", "generate", "--out", keys);
const specPath = join(repo, "images", `${name}.toml`);
const spec = readFileSync(specPath, "utf8");
const version = /^version = "([^"]+)"/m.exec(spec)[1];
const next = `${version}.1`;
// the same spec one version later; relative paths made absolute, since the copy lives elsewhere
const nextSpec = join(bench, `${name}-${next}.toml`);
writeFileSync(nextSpec, spec.replace(/^version = "[^"]+"/m, `version = "${next}"`).replace(/^(path|source) = "([^/"][^"]*)"/gm, (_m, k, p) => `${k} = "${join(dirname(specPath), p)}"`));
const t0 = performance.now();
const outA = join(bench, `${name}-${version}`);
const outB = join(bench, `${name}-${next}`);
acl("build", specPath, "--sign-key", join(keys, "acl-signing.key"), "--out", outA);
acl("build", nextSpec, "--sign-key", join(keys, "acl-signing.key"), "--out", outB);
console.log(`built ${name} ${version} and ${next} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
const payload = join(outB, `${name}-${next}.update`);
const payloadMiB = statSync(payload).size / 2 ** 20;

const scratch = mkdtempSync(join(tmpdir(), "acl-bench-update-"));
const fresh = (n) => {
  const d = join(scratch, `${n}.raw`);
  execFileSync("cp", ["--sparse=always", join(outA, "disk.raw"), d]);
  return d;
};
const models = await loadCpuModels();
const cpu = defaultModelFor(models, JSON.parse(readFileSync(join(outA, "manifest.json"), "utf8")).microarch).name;
let nBoot = 0;
async function boot(disk, vars, extra = {}) {
  return bootQemu({ disk, diskFormat: "raw", cpu, firmware: "uefi", ovmfVars: vars, allowReboot: true, serialLog: join(scratch, `boot-${nBoot++}.log`), timeoutMs, ...extra });
}
const at = (q, re) => q.lines.find((l) => re.test(l.text))?.ms;

try {
  // 1. offline
  const d1 = fresh("offline");
  const t = performance.now();
  const r = await applyUpdate({ disk: d1, payload, key: join(keys, "acl-signing.pub") });
  const offMs = performance.now() - t;
  console.log(`offline apply: ${(offMs / 1000).toFixed(2)} s for a ${payloadMiB.toFixed(1)} MiB payload (${(payloadMiB / (offMs / 1000)).toFixed(0)} MiB/s), slot ${r.slot}`);

  // 2. on the node
  const d2 = fresh("node");
  const vars2 = join(scratch, "vars-node.fd");
  await prepareOvmfVars(vars2);
  const pd = join(scratch, "payload.raw");
  execFileSync("cp", [payload, pd]);
  truncateSync(pd, Math.ceil(statSync(pd).size / 512) * 512);
  const q2 = await boot(d2, vars2, { extraDisks: [pd], smbiosStrings: [BOOT_CHECK_REQUEST, APPLY_REQUEST] });
  const start = at(q2, /acl-ab: checking /);
  const end = at(q2, /acl-ab: installed /);
  if (start === undefined || end === undefined) throw new Error(`the on-node apply did not finish; last lines:\n${q2.lines.slice(-15).map((l) => l.text).join("\n")}`);
  const written = at(q2, /acl-ab: USR-[AB] written/);
  console.log(`on-node apply (TCG): ${((end - start) / 1000).toFixed(1)} s (checks ${((at(q2, /acl-ab: payload ok/) - start) / 1000).toFixed(1)} s, write + read back ${((written - at(q2, /acl-ab: payload ok/)) / 1000).toFixed(1)} s); offline/on-node ratio ${(offMs / (end - start)).toFixed(2)}`);

  // 3. rollback: the old slot's normal boot, then a broken update with one try
  const d3 = fresh("rollback");
  const vars3 = join(scratch, "vars-rollback.fd");
  await prepareOvmfVars(vars3);
  const plain = await boot(d3, vars3, { smbiosStrings: [BOOT_CHECK_REQUEST] });
  const plainMs = at(plain, /ACL-CHECK userspace/);
  await applyUpdate({ disk: d3, payload, key: join(keys, "acl-signing.pub"), tries: 1 });
  await corruptSlot(d3, await readBootState(d3), "B");
  const q3 = await boot(d3, vars3, { smbiosStrings: [BOOT_CHECK_REQUEST] });
  const back = q3.lines.find((l) => /acl-init: usr slot .*PARTUUID=7130c94a/i.test(l.text));
  const backMs = at(q3, /ACL-CHECK userspace/);
  if (!back || backMs === undefined) throw new Error("the old slot did not come back");
  console.log(`rollback (TCG, 1 try, dm-verity panic + panic=10): old slot A in userspace ${(backMs / 1000).toFixed(1)} s after booting the broken update; a plain boot: ${(plainMs / 1000).toFixed(1)} s; ratio ${(backMs / plainMs).toFixed(2)}`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
