#!/usr/bin/env node
// Boot bench: time from QEMU start to userspace (the first ACL-CHECK line) for
// direct-kernel and UEFI (OVMF -> systemd-boot -> UKI) boots, and, for systemd
// images, to multi-user; then a 4-model matrix run the way `acl boot-test` runs
// it (2 at a time) against the slowest single boot in it.
//
//   npx tsc -p . && node bench/boot.mjs [OUT_DIR]
//
// OUT_DIR defaults to out/minimal, else the image the boot tests build
// (.cache/boot-test-images/v3-busybox: `npx vitest run test/boot/boot-test.test.ts`).
// Knobs: BENCH_BOOT_ROUNDS (default 2), BENCH_BOOT_TIMEOUT (seconds, default 300).
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const repo = resolve(import.meta.dirname, "..");
const dist = (p) => join(repo, "dist", p);
if (!existsSync(dist("adapters/qemu.js"))) {
  console.error("bench/boot.mjs: dist/ is missing; run `npx tsc -p .` first");
  process.exit(2);
}
const { bootQemu, createOverlay, prepareOvmfVars } = await import(dist("adapters/qemu.js"));
const { parseConsole } = await import(dist("services/boot-test.js"));
const { BOOT_CHECK_REQUEST } = await import(dist("stages/rootfs/guest-checks.js"));
const { readManifest } = await import(dist("pipeline/manifest.js"));
const { loadCpuModels, defaultModelFor } = await import(dist("config/qemu-cases.js"));

const candidates = [process.argv[2], join(repo, "out/minimal"), join(repo, ".cache/boot-test-images/v3-busybox")].filter(Boolean);
const outDir = candidates.find((d) => existsSync(join(d, "manifest.json")));
if (!outDir) {
  console.error(`bench/boot.mjs: no built image (looked in ${candidates.join(", ")}); run acl build or the boot tests first`);
  process.exit(2);
}
const m = await readManifest(outDir);
const art = (kind) => {
  const a = m.artifacts.find((x) => x.kind === kind);
  return a ? join(outDir, a.path) : undefined;
};
const disk = art("disk-raw") ?? art("disk-qcow2");
const diskFormat = art("disk-raw") ? "raw" : "qcow2";
const rounds = Number(process.env.BENCH_BOOT_ROUNDS ?? 2);
const timeoutMs = Number(process.env.BENCH_BOOT_TIMEOUT ?? 300) * 1000;
const models = await loadCpuModels();
const at = defaultModelFor(models, m.microarch);
if (!at) {
  console.error(`bench/boot.mjs: no QEMU TCG model reaches ${m.microarch}`);
  process.exit(2);
}
const scratch = mkdtempSync(join(tmpdir(), "acl-bench-boot-"));
let n = 0;

async function boot(cpu, firmware) {
  const dir = join(scratch, String(n++));
  const { mkdirSync } = await import("node:fs");
  mkdirSync(dir);
  const overlay = join(dir, "disk.qcow2");
  await createOverlay(disk, overlay, diskFormat);
  let ovmfVars;
  if (firmware === "uefi") {
    ovmfVars = join(dir, "VARS.fd");
    await prepareOvmfVars(ovmfVars);
  }
  const q = await bootQemu({
    disk: overlay, diskFormat: "qcow2", cpu, firmware, ovmfVars,
    kernel: art("kernel"), initrd: art("initramfs"), append: m.kernel?.cmdline,
    smbiosStrings: [BOOT_CHECK_REQUEST], serialLog: join(dir, "serial.log"), timeoutMs,
  });
  const f = parseConsole(q.lines);
  const multiUser = q.lines.find((l) => /ACL-CHECK multi-user ok/.test(l.text))?.ms;
  const initStart = q.lines.find((l) => /acl-init: started/.test(l.text))?.ms;
  if (f.userspaceMs === undefined) throw new Error(`${cpu} ${firmware}: never reached userspace (last: ${f.lastMarker})`);
  return { userspace: f.userspaceMs, multiUser, initStart, total: q.durationMs };
}

const s = (ms) => (ms === undefined ? "-" : `${(ms / 1000).toFixed(2)} s`);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`image ${m.name} ${m.version} (${m.microarch}) from ${outDir}; CPU ${at.name}; ${rounds} round(s); TCG, -smp 2`);
try {
  const targets = { userspace: 4000, multiUser: 15000 };
  for (const fw of ["direct", "uefi"]) {
    const rs = [];
    for (let i = 0; i < rounds; i++) rs.push(await boot(at.name, fw));
    const u = median(rs.map((r) => r.userspace));
    const mu = rs[0].multiUser === undefined ? undefined : median(rs.map((r) => r.multiUser));
    console.log(
      `  ${fw.padEnd(6)}: initramfs /init at ${s(median(rs.map((r) => r.initStart ?? 0)))}, userspace at ${s(u)}` +
        (mu !== undefined ? `, multi-user at ${s(mu)}` : "") +
        `, power-off at ${s(median(rs.map((r) => r.total)))}` +
        `  (target userspace <= ${s(targets.userspace)}${mu !== undefined ? `, multi-user <= ${s(targets.multiUser)}` : ""})`,
    );
  }
  // 4-model matrix, two at a time as acl boot-test runs it
  const matrix = models.models.filter((x) => x.level === m.microarch).slice(0, 4).map((x) => x.name);
  const t0 = performance.now();
  const singles = [];
  let next = 0;
  await Promise.all([0, 1].map(async () => {
    while (next < matrix.length) {
      const cpu = matrix[next++];
      const r = await boot(cpu, "direct");
      singles.push({ cpu, ms: r.total });
    }
  }));
  const wall = performance.now() - t0;
  const slowest = Math.max(...singles.map((x) => x.ms));
  console.log(`  matrix (${matrix.join(", ")}; direct, 2 at a time): wall ${s(wall)}; slowest single boot ${s(slowest)}; ratio wall/slowest ${(wall / slowest).toFixed(2)} (ideal with 2 slots: ${(Math.ceil(matrix.length / 2)).toFixed(2)})`);
  for (const x of singles) console.log(`    ${x.cpu.padEnd(18)} ${s(x.ms)}`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
