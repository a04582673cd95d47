/**
 * Reading a boot's serial console and judging it: pure functions shared by
 * the plain boot cases (boot-test.ts) and the A/B scenarios (boot-test-ab.ts).
 */
import type { QemuBootResult, Firmware } from "../adapters/qemu.js";
import type { BootCase, Level } from "../config/qemu-cases.js";
import { highestMicroarch } from "../formats/microarch.js";

export type Expectation = "boot" | "refuse-cpu" | "refuse-verity" | "refuse-signature" | "ab-update" | "ab-fallback";

/** What a Secure Boot run must also show: the kernel saw Secure Boot on; with a vTPM, PCR 11 equals the manifest's. */
export interface TrustedBootExpectation {
  secureBoot: boolean;
  /** Expected sha256 PCR 11 (hex), when the run has a TPM. */
  pcr11?: string;
}

export interface GuestCheck {
  name: string;
  status: string;
  detail: string;
}

export interface BootRun {
  id: string;
  case: string;
  cpu: string;
  cpuLevel: Level;
  firmware: Firmware;
  expected: Expectation;
  passed: boolean;
  /** Why it failed, or what it proved. */
  reason: string;
  durationMs: number;
  /** ms from QEMU start to the first ACL-CHECK line (userspace), when reached. */
  userspaceMs?: number;
  lastMarker?: string;
  checks: GuestCheck[];
  log?: string;
}

// --- what the guest printed ------------------------------------------------------

export interface ConsoleFacts {
  checks: GuestCheck[];
  done: boolean;
  /** The CPU gate's refusal line, if printed. */
  refusal?: { level: string; missing: string[] };
  powerDown: boolean;
  panic?: string;
  verityCorruption?: string;
  verityRestart: boolean;
  lastMarker?: string;
  userspaceMs?: number;
  /** glibc-hwcaps levels the guest's ld.so reported as supported. */
  hwcaps?: string[];
  /** The kernel's "secureboot: …" line (console or the guest's dmesg check). */
  secureBoot?: string;
  /** The first line where firmware or the boot loader refused an image (Access Denied, Security Violation). */
  firmwareRefusal?: string;
  /** The kernel started (the EFI stub or Linux printed). */
  kernelStarted: boolean;
}

const MARKER = /(acl-init: .*|ACL-CHECK .*|acl: this image requires.*|Kernel panic - not syncing.*|Run \/init as init process|EFI stub: .*|Linux version \S+)/;

/** Read the facts a judge needs out of console lines. Pure. */
export function parseConsole(lines: readonly { ms: number; text: string }[]): ConsoleFacts {
  const f: ConsoleFacts = { checks: [], done: false, powerDown: false, verityRestart: false, kernelStarted: false };
  for (const { ms, text } of lines) {
    const m = MARKER.exec(text);
    if (m) f.lastMarker = m[1]!.trim();
    const c = /ACL-CHECK (\S+)(?: (\S+))?(?: (.*))?$/.exec(text);
    if (c) {
      if (f.userspaceMs === undefined) f.userspaceMs = ms;
      if (c[1] === "done") f.done = true;
      else {
        f.checks.push({ name: c[1]!, status: c[2] ?? "", detail: (c[3] ?? "").trim() });
        // a skipped check (no glibc loader in the image: a static userland) reports no levels to compare
        if (c[1] === "hwcaps" && c[2] === "ok") {
          const s = /supported:\s*(.*)$/.exec(c[3] ?? "");
          f.hwcaps = s ? s[1]!.split(/\s+/).filter((x) => /^x86-64-v\d$/.test(x)) : [];
        }
      }
    }
    const sb = /\bsecureboot: (.*)$/.exec(text);
    if (sb && !f.secureBoot) f.secureBoot = sb[1]!.trim();
    if (c?.[1] === "secureboot" && !f.secureBoot && !/not reported/.test(c[3] ?? "")) f.secureBoot = (c[3] ?? "").trim();
    // the firmware's refusal of one of the disk's images; OVMF also refuses its own EFI shell (from Fv(…)) under Secure Boot, which proves nothing
    if (!f.firmwareRefusal && /(BdsDxe: failed to (?:load|start)|Error loading) .*: (?:Access Denied|Security Violation)/i.test(text) && !/ from Fv\(|"EFI Internal Shell"/.test(text)) f.firmwareRefusal = text.trim();
    if (/EFI stub: |Linux version \S+/.test(text)) f.kernelStarted = true;
    const r = /acl: this image requires (\S+); this CPU lacks:\s*(.*)$/.exec(text);
    if (r) f.refusal = { level: r[1]!, missing: r[2]!.trim().split(/\s+/).filter(Boolean) };
    if (/reboot: Power down/.test(text)) f.powerDown = true;
    const p = /Kernel panic - not syncing: (.*)$/.exec(text);
    if (p && !f.panic) f.panic = p[1]!.trim();
    const v = /(device-mapper: verity: .*(?:is corrupted|corrupted).*)$/.exec(text);
    if (v && !f.verityCorruption) f.verityCorruption = v[1]!.trim();
    if (/Restarting system with command 'dm-verity device corrupted'/.test(text)) f.verityRestart = true;
  }
  return f;
}

/** The highest x86-64-vN in a list, or "x86-64" when none. */
export const highestLevel = highestMicroarch;

/** Judge one run. Pure: console facts + QEMU's ending in, verdict out. */
export function judge(opts: {
  expected: Expectation;
  facts: ConsoleFacts;
  qemu: Pick<QemuBootResult, "exitCode" | "timedOut" | "stoppedBy" | "durationMs">;
  imageLevel: Level;
  cpuLevel: Level;
  bootCase: BootCase;
  trusted?: TrustedBootExpectation;
}): { passed: boolean; reason: string } {
  const { facts: f, qemu: q } = opts;
  const last = f.lastMarker ? `; last seen: "${f.lastMarker}"` : "; nothing recognisable on the console";
  if (q.timedOut) return { passed: false, reason: `timed out after ${Math.round(q.durationMs / 1000)} s${last}` };
  if (opts.expected === "refuse-cpu") {
    if (!f.refusal) return { passed: false, reason: `expected the CPU refusal line for ${opts.imageLevel} on a ${opts.cpuLevel} CPU${last}` };
    if (f.refusal.level !== opts.imageLevel) return { passed: false, reason: `refusal names ${f.refusal.level}, image is ${opts.imageLevel}` };
    if (!f.refusal.missing.length) return { passed: false, reason: "refusal line lists no missing features" };
    if (f.checks.length) return { passed: false, reason: "reached userspace on a CPU below the image's level" };
    if (f.panic) return { passed: false, reason: `kernel panic instead of a clean power-off: ${f.panic}` };
    if (!f.powerDown || q.exitCode !== 0) return { passed: false, reason: `refused but did not power off cleanly (qemu exit ${q.exitCode})` };
    return { passed: true, reason: `refused cleanly: lacks ${f.refusal.missing.join(" ")}` };
  }
  if (opts.expected === "refuse-signature") {
    if (f.kernelStarted || f.checks.length) return { passed: false, reason: `an image the firmware should refuse started${last}` };
    if (!f.firmwareRefusal) return { passed: false, reason: `no refusal by the firmware or the boot loader${last}` };
    return { passed: true, reason: `refused before the kernel: ${f.firmwareRefusal}` };
  }
  if (opts.expected === "refuse-verity") {
    const forbidden = opts.bootCase.checks.forbidden.filter((n) => (n === "done" ? f.done : f.checks.some((c) => c.name === n)));
    if (forbidden.length) return { passed: false, reason: `tampered /usr reached: ${forbidden.map((n) => `ACL-CHECK ${n}`).join(", ")}` };
    if (!f.verityCorruption) return { passed: false, reason: `no dm-verity corruption message${last}` };
    if (f.panic && /dm-verity/.test(f.panic)) return { passed: true, reason: `dm-verity refused: ${f.verityCorruption}; kernel panic (${f.panic})` };
    if (f.verityRestart) return { passed: true, reason: `dm-verity refused: ${f.verityCorruption}; restart` };
    return { passed: false, reason: `corruption seen but no panic/restart per policy${last}` };
  }
  // expected boot
  if (f.refusal) return { passed: false, reason: `refused: requires ${f.refusal.level}, lacks ${f.refusal.missing.join(" ")} (the CPU table says ${opts.cpuLevel})` };
  if (f.panic) return { passed: false, reason: `kernel panic: ${f.panic}${last}` };
  if (f.userspaceMs === undefined) return { passed: false, reason: `never reached userspace${last}` };
  if (!f.done) return { passed: false, reason: `checks did not finish${last}` };
  const pid1 = f.checks.find((c) => c.name === "userspace")?.detail ?? "";
  const kind = /pid1=systemd/.test(pid1) ? "systemd" : "busybox";
  const required = [...opts.bootCase.checks.common, ...opts.bootCase.checks[kind]];
  const problems: string[] = [];
  for (const name of required) {
    const c = f.checks.find((x) => x.name === name);
    if (!c) problems.push(`${name}: not reported`);
    else if (c.status === "skip" && name === "hwcaps") continue;
    else if (c.status !== "ok") problems.push(`${name}: ${c.status} ${c.detail}`.trim());
  }
  for (const c of f.checks) if (c.status === "fail" && !required.includes(c.name)) problems.push(`${c.name}: fail ${c.detail}`.trim());
  if (f.hwcaps) {
    const got = highestLevel(f.hwcaps);
    if (got !== opts.cpuLevel) problems.push(`hwcaps: ld.so supports up to ${got}, the CPU table says ${opts.cpuLevel}`);
  }
  if (!f.powerDown || q.exitCode !== 0) problems.push(`did not power off cleanly (qemu exit ${q.exitCode})`);
  const proved: string[] = [];
  if (opts.trusted?.secureBoot) {
    if (!/Secure boot enabled/i.test(f.secureBoot ?? "")) problems.push(`the kernel did not report Secure Boot enabled (it said: ${f.secureBoot ?? "nothing"})`);
    else proved.push("Secure Boot enabled");
  }
  if (opts.trusted?.pcr11) {
    const c = f.checks.find((x) => x.name === "pcr11");
    const got = c?.status === "ok" ? c.detail.trim().toLowerCase() : undefined;
    if (!got) problems.push(`no PCR 11 from the TPM (${c ? `${c.status} ${c.detail}` : "not reported"})`);
    else if (got !== opts.trusted.pcr11.toLowerCase()) problems.push(`PCR 11 is ${got}, the manifest predicts ${opts.trusted.pcr11}`);
    else proved.push(`PCR 11 = manifest (${got.slice(0, 16)}…)`);
  }
  if (problems.length) return { passed: false, reason: problems.join("; ") };
  return { passed: true, reason: `${kind}: ${required.length} checks ok${f.hwcaps ? `, hwcaps ${highestLevel(f.hwcaps)}` : ""}${proved.length ? `; ${proved.join(", ")}` : ""}` };
}

