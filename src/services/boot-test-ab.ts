/**
 * A/B scenarios for `acl boot-test --case ab-*`: apply update payloads to a
 * copy of the built disk (the offline updater), boot it under UEFI with
 * reboots allowed and one writable OVMF vars copy for the whole scenario, and
 * judge both what the guest printed (which slot each boot ran, blessing,
 * health, the final checks) and what the disk holds afterwards (the ESP's
 * entries, systemd-boot's next choice, the GPT bits).
 *
 *   ab-update       each payload in turn boots, is blessed, and becomes the slot that boots next
 *   ab-bad-verity   the first payload's slot is corrupted after it is written: it fails
 *                   dm-verity on every try, then the old slot boots by itself
 *   ab-bad-health   the first payload (an image whose health check fails) is tried
 *                   until its tries run out, then the old slot boots by itself
 *   ab-interrupt    the image's own updater (/usr/lib/acl/acl-update) applies the first
 *                   payload from a second disk, and QEMU is killed at several points of
 *                   it: each time the old slot boots next; then a full apply succeeds and
 *                   the new slot boots and is blessed
 */
import { open } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../adapters/exec.js";
import { bootQemu, prepareOvmfVars } from "../adapters/qemu.js";
import type { BootCase, CpuModel, Level } from "../config/qemu-cases.js";
import { UserError } from "../errors.js";
import { SLOTS, type Slot } from "../formats/boot-entries.js";
import type { SlotState } from "../formats/gpt.js";
import { BOOT_CHECK_REQUEST } from "../stages/rootfs/guest-checks.js";
import { applyUpdate, chooseTarget, type ApplyResult } from "./update/apply.js";
import { readBootState, type BootState } from "./update/state.js";
import { judge, parseConsole, type BootRun, type GuestCheck } from "./boot-judge.js";

export type AbBreak = "none" | "verity" | "health" | "interrupt";

/** Where the interrupt scenario kills QEMU: a line the on-node updater prints, and how long after it. */
export const INTERRUPT_POINTS: readonly { what: string; line: RegExp; afterMs: number }[] = [
  { what: "after its checks, before the first write", line: /acl-ab: payload ok:/, afterMs: 0 },
  { what: "while writing the slot", line: /acl-ab: writing USR-[AB] /, afterMs: 400 },
  { what: "while copying the UKI to the ESP", line: /acl-ab: copying the UKI/, afterMs: 150 },
];
export const APPLY_REQUEST = "acl.boot-check.apply=/dev/vdb";

/** One boot of a scenario, as the console showed it. */
export interface AbBoot {
  slot?: Slot;
  /** The entry this boot left good (blessed, or already good). */
  blessed?: string;
  healthFailed?: string;
  verityCorrupted: boolean;
}

/** Split a scenario's console into boots (each starts where the kernel does) and read what each did. Pure. */
export function parseAbBoots(lines: readonly { text: string }[], uuids: Record<Slot, string>): AbBoot[] {
  const boots: AbBoot[] = [];
  let cur: AbBoot | undefined;
  for (const { text } of lines) {
    if (/Linux version \S+/.test(text) || !cur) {
      cur = { verityCorrupted: false };
      boots.push(cur);
    }
    const u = /acl-init: usr slot \S+ \(PARTUUID=([0-9a-fA-F-]{36})\)/.exec(text);
    if (u) cur.slot = SLOTS.find((s) => uuids[s].toLowerCase() === u[1]!.toLowerCase());
    // busybox images say so when they bless; on systemd images bless-boot is silent, and the sync after it
    // names the running slot's entry: uncounted means good
    const b = /acl-ab: blessed (\S+)/.exec(text) ?? /acl-ab: gpt in step: USR-[AB] (acl-[AB]\.efi) \(running\)/.exec(text);
    if (b) cur.blessed = b[1];
    const h = /acl-ab: health check failed:\s*(.*?):/.exec(text);
    if (h) cur.healthFailed = h[1]!.trim();
    if (/device-mapper: verity: .*corrupted/.test(text)) cur.verityCorrupted = true;
  }
  // text before the first kernel (firmware, loader) is not a boot of its own
  return boots.filter((x, i) => i > 0 || x.slot || x.blessed || x.verityCorrupted);
}

const show = (s: SlotState) => `${s.priority}/${s.tries}/${s.successful ? 1 : 0}`;
const same = (a: SlotState, b: SlotState) => a.priority === b.priority && a.tries === b.tries && a.successful === b.successful;

/** What the disk must hold after a step: `boots` is the slot systemd-boot picks next, `bad` the one found bad. Pure. */
export function judgeDisk(state: Pick<BootState, "entries" | "next" | "slots" | "disagreements">, want: { boots: Slot; bad?: Slot; tries?: number }): string[] {
  const problems: string[] = [];
  // bootable slots count down to priority 1: the good slot is 2 above another good one, 1 above a bad one
  const top = want.bad ? 1 : 2;
  if (state.next?.slot !== want.boots) problems.push(`systemd-boot would boot ${state.next?.file ?? "nothing"}, expected slot ${want.boots}`);
  const good = state.entries.find((e) => e.slot === want.boots);
  if (good?.state !== "good") problems.push(`slot ${want.boots}'s entry is ${good ? `${good.file} (${good.state})` : "missing"}, expected good`);
  if (!same(state.slots[want.boots].gpt, { priority: top, tries: 0, successful: true })) problems.push(`GPT of slot ${want.boots} is ${show(state.slots[want.boots].gpt)} (priority/tries/successful), expected ${top}/0/1`);
  if (want.bad) {
    const bad = state.entries.find((e) => e.slot === want.bad);
    if (bad?.state !== "bad" || (want.tries !== undefined && bad.done !== want.tries)) problems.push(`slot ${want.bad}'s entry is ${bad?.file ?? "missing"}, expected bad after ${want.tries} tries (+0-${want.tries})`);
    if (!same(state.slots[want.bad].gpt, { priority: 0, tries: 0, successful: false })) problems.push(`GPT of slot ${want.bad} is ${show(state.slots[want.bad].gpt)}, expected 0/0/0 (bad)`);
  }
  for (const d of state.disagreements) problems.push(`ESP and GPT disagree: ${d}`);
  return problems;
}

/** Flip one byte of the slot's /usr data (the erofs superblock block) in a raw disk. */
export async function corruptSlot(disk: string, state: BootState, slot: Slot): Promise<void> {
  const at = state.slots[slot].offset + 1024;
  const fh = await open(disk, "r+");
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] = b[0]! ^ 0xff;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

export interface AbScenario {
  id: string;
  bootCase: BootCase;
  cpu: CpuModel;
  /** The built disk (raw or qcow2): copied, never written. */
  disk: { path: string; kind: string };
  payloads: string[];
  key: string;
  tries: number;
  dir: string;
  timeoutMs: number;
  accel: "tcg" | "kvm";
  imageLevel: Level;
  serialLog: string;
}

export async function runAbScenario(s: AbScenario): Promise<BootRun & { lines: string[] }> {
  const brk = (s.bootCase.meta.ab?.break ?? "none") as AbBreak;
  if (!s.payloads.length) throw new UserError(`case ${s.bootCase.name} needs an update payload: pass --payload FILE and --key PUB`);
  const disk = join(s.dir, "disk.raw");
  if (s.disk.kind === "disk-raw") await run(["cp", "--sparse=always", s.disk.path, disk]);
  else await run(["qemu-img", "convert", "-O", "raw", s.disk.path, disk]);
  const vars = join(s.dir, "OVMF_VARS.fd");
  await prepareOvmfVars(vars);
  if (brk === "interrupt") return runInterrupt(s, disk, vars);
  const steps = brk === "none" ? s.payloads : s.payloads.slice(0, 1);
  const problems: string[] = [];
  const proved: string[] = [];
  const allLines: string[] = [];
  let durationMs = 0;
  let checks: GuestCheck[] = [];
  let userspaceMs: number | undefined;
  for (const [i, payload] of steps.entries()) {
    const applied: ApplyResult = await applyUpdate({ disk, payload, key: s.key, tries: s.tries });
    const before = await readBootState(disk);
    if (brk === "verity") await corruptSlot(disk, before, applied.slot);
    const log = steps.length > 1 ? s.serialLog.replace(/\.log$/, `-${i + 1}.log`) : s.serialLog;
    const q = await bootQemu({
      disk, diskFormat: "raw", cpu: s.cpu.name, firmware: "uefi", ovmfVars: vars, allowReboot: true,
      smbiosStrings: [BOOT_CHECK_REQUEST], serialLog: log, timeoutMs: s.timeoutMs, accel: s.accel,
    });
    durationMs += q.durationMs;
    allLines.push(...q.lines.map((l) => l.text));
    const uuids = { A: before.slots.A.partition.partGuid, B: before.slots.B.partition.partGuid };
    const boots = parseAbBoots(q.lines, uuids);
    const seq = boots.map((b) => b.slot ?? "?").join(" ");
    const tag = `step ${i + 1} (${applied.version} → slot ${applied.slot})`;
    if (q.timedOut) {
      problems.push(`${tag}: timed out after ${Math.round(q.durationMs / 1000)} s; boots so far: ${seq || "none"}`);
      break;
    }
    // the last boot must be a healthy one that ran the checks and powered off
    const lastStart = q.lines.map((l) => /Linux version \S+/.test(l.text)).lastIndexOf(true);
    const facts = parseConsole(q.lines.slice(Math.max(0, lastStart)));
    checks = facts.checks;
    userspaceMs = facts.userspaceMs;
    const v = judge({ expected: "boot", facts, qemu: q, imageLevel: s.imageLevel, cpuLevel: s.cpu.level, bootCase: s.bootCase });
    if (!v.passed) problems.push(`${tag}: last boot: ${v.reason}`);
    const after = await readBootState(disk);
    if (brk === "none") {
      if (seq !== applied.slot) problems.push(`${tag}: boots were [${seq}], expected one boot of slot ${applied.slot}`);
      if (boots.at(-1)?.blessed !== `acl-${applied.slot}.efi`) problems.push(`${tag}: slot ${applied.slot}'s boot was not blessed`);
      problems.push(...judgeDisk(after, { boots: applied.slot }).map((p) => `${tag}: ${p}`));
      proved.push(`${applied.version} booted from slot ${applied.slot} and was blessed`);
    } else {
      const expected = [...Array<Slot>(s.tries).fill(applied.slot), applied.from.slot].join(" ");
      if (seq !== expected) problems.push(`${tag}: boots were [${seq}], expected [${expected}] (${s.tries} tries of slot ${applied.slot}, then slot ${applied.from.slot})`);
      const failedTries = boots.filter((b) => b.slot === applied.slot);
      const why = brk === "verity" ? (b: (typeof boots)[number]) => b.verityCorrupted : (b: (typeof boots)[number]) => b.healthFailed !== undefined;
      if (failedTries.some((b) => !why(b))) problems.push(`${tag}: not every try of slot ${applied.slot} failed by ${brk === "verity" ? "dm-verity corruption" : "a failed health check"}`);
      if (failedTries.some((b) => b.blessed)) problems.push(`${tag}: a failing try of slot ${applied.slot} was blessed`);
      problems.push(...judgeDisk(after, { boots: applied.from.slot, bad: applied.slot, tries: s.tries }).map((p) => `${tag}: ${p}`));
      proved.push(`slot ${applied.slot} (${applied.version}) failed ${s.tries} tries by ${brk === "verity" ? "dm-verity" : "health check"}, slot ${applied.from.slot} booted by itself and ${applied.slot} is recorded bad`);
    }
  }
  return {
    id: s.id, case: s.bootCase.name, cpu: s.cpu.name, cpuLevel: s.cpu.level, firmware: "uefi",
    expected: brk === "none" ? "ab-update" : "ab-fallback",
    passed: problems.length === 0,
    reason: problems.length ? problems.join("; ") : proved.join("; "),
    durationMs, userspaceMs, checks, lines: allLines,
  };
}

/** The interrupt scenario (see the top of this file). */
async function runInterrupt(s: AbScenario, disk: string, vars: string): Promise<BootRun & { lines: string[] }> {
  // the payload as a second disk, padded to whole sectors (the updater reads its length from the signature block)
  const payloadDisk = join(s.dir, "payload.raw");
  await run(["cp", s.payloads[0]!, payloadDisk]);
  const fh = await open(payloadDisk, "r+");
  await fh.truncate(Math.ceil((await fh.stat()).size / 512) * 512);
  await fh.close();
  const before = await readBootState(disk);
  const from = chooseTarget(before).keep.slot!;
  const target: Slot = from === "A" ? "B" : "A";
  const uuids = { A: before.slots.A.partition.partGuid, B: before.slots.B.partition.partGuid };
  const problems: string[] = [];
  const proved: string[] = [];
  const allLines: string[] = [];
  let durationMs = 0;
  let n = 0;
  const boot = async (apply: boolean, stop?: (typeof INTERRUPT_POINTS)[number]) => {
    const q = await bootQemu({
      disk, diskFormat: "raw", cpu: s.cpu.name, firmware: "uefi", ovmfVars: vars, allowReboot: true,
      extraDisks: apply ? [payloadDisk] : [], smbiosStrings: apply ? [BOOT_CHECK_REQUEST, APPLY_REQUEST] : [BOOT_CHECK_REQUEST],
      serialLog: s.serialLog.replace(/\.log$/, `-${++n}.log`), timeoutMs: s.timeoutMs, accel: s.accel,
      ...(stop ? { stopOn: [stop.line], graceMs: stop.afterMs } : {}),
    });
    durationMs += q.durationMs;
    allLines.push(...q.lines.map((l) => l.text));
    return q;
  };
  const healthyBoot = async (tag: string, slot: Slot) => {
    const q = await boot(false);
    const boots = parseAbBoots(q.lines, uuids);
    const v = judge({ expected: "boot", facts: parseConsole(q.lines), qemu: q, imageLevel: s.imageLevel, cpuLevel: s.cpu.level, bootCase: s.bootCase });
    if (boots.map((b) => b.slot ?? "?").join(" ") !== slot) problems.push(`${tag}: boots were [${boots.map((b) => b.slot ?? "?").join(" ")}], expected slot ${slot} once`);
    else if (!v.passed) problems.push(`${tag}: ${v.reason}`);
    return q;
  };
  for (const point of INTERRUPT_POINTS) {
    const q = await boot(true, point);
    if (!q.stoppedBy) {
      problems.push(`the updater never printed ${point.line.source} (last: ${q.lines.filter((l) => /acl-ab:/.test(l.text)).at(-1)?.text ?? "nothing"})`);
      continue;
    }
    await healthyBoot(`killed ${point.what}`, from);
    const st = await readBootState(disk);
    if (st.next?.slot !== from) problems.push(`killed ${point.what}: systemd-boot would boot ${st.next?.file ?? "nothing"}, expected slot ${from}`);
    for (const d of st.disagreements) problems.push(`killed ${point.what}: ESP and GPT disagree: ${d}`);
    if (!problems.length) proved.push(`killed ${point.what}: slot ${from} booted`);
  }
  const q = await boot(true);
  const applied = parseConsole(q.lines).checks.find((c) => c.name === "update-apply");
  if (applied?.status !== "ok") problems.push(`the full on-node apply: ${applied ? `${applied.status} ${applied.detail}` : "no ACL-CHECK update-apply line"}`);
  else {
    const q2 = await healthyBoot("after the on-node apply", target);
    const b = parseAbBoots(q2.lines, uuids).at(-1);
    if (b?.blessed !== `acl-${target}.efi`) problems.push(`after the on-node apply: slot ${target}'s boot was not blessed`);
    problems.push(...judgeDisk(await readBootState(disk), { boots: target }).map((p) => `after the on-node apply: ${p}`));
    if (!problems.length) proved.push(`then the on-node apply succeeded and slot ${target} booted and was blessed`);
  }
  return {
    id: s.id, case: s.bootCase.name, cpu: s.cpu.name, cpuLevel: s.cpu.level, firmware: "uefi", expected: "ab-update",
    passed: problems.length === 0, reason: problems.length ? problems.join("; ") : proved.join("; "), durationMs, checks: [], lines: allLines,
  };
}
