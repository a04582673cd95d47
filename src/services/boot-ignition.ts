/**
 * `acl boot-test --ignition`: what the guest must show after Ignition applied
 * a config. From the config, a list of probes (handed to the guest through
 * fw_cfg) and what each answer must be; the guest's boot check answers each
 * with an ACL-IGN line of facts (data/guest/boot-check.sh), and the judge here
 * compares. Pure: config and console lines in, verdict out.
 */
import { createHash } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { fromDataUrl } from "../formats/butane/dataurl.js";

/** Where QEMU's platform in Ignition reads the user config. */
export const CONFIG_FW_CFG = "opt/com.coreos/config";
/** Where the boot check reads the probes. */
export const PROBES_FW_CFG = "opt/dev.acl/ignition-probes";

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

type Owner = { id?: number; name?: string };
export type IgnitionExpect =
  | { kind: "file"; path: string; mode: number; user: Owner; group: Owner; sha256?: string }
  | { kind: "dir"; path: string; mode: number; user: Owner; group: Owner }
  | { kind: "link"; path: string; target: string }
  | { kind: "hardlink"; path: string; target: string }
  | { kind: "user"; name: string; uid?: number; home?: string; shell?: string; groups: string[]; keys: string[] }
  | { kind: "group"; name: string; gid?: number }
  | { kind: "unit"; name: string; enabled?: boolean; mask?: boolean; sha256?: string }
  | { kind: "dropin"; unit: string; name: string; sha256?: string };

export interface IgnitionPlan {
  /** The probe file the guest reads, one probe per line. */
  probes: string;
  expect: IgnitionExpect[];
  /** What the config asks for that the probes do not cover (paths with spaces). */
  skipped: string[];
}

const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

/** A resource's bytes when they are in the config (a data URL), else undefined. */
function resourceBytes(r: Json | undefined): Buffer | undefined {
  if (!r || r.source === undefined || r.source === null) return Buffer.alloc(0);
  if (typeof r.source !== "string") return undefined;
  const b = fromDataUrl(r.source);
  if (!b) return undefined;
  return r.compression === "gzip" ? gunzipSync(b) : b;
}

const owner = (n: Json | undefined): Owner => ({ id: n?.id ?? undefined, name: n?.name ?? undefined });
const plain = (p: string) => /^\/[^\s]*$/.test(p);

/** Probes for everything a config writes that the guest can show. */
export function planIgnitionProbes(cfg: Json): IgnitionPlan {
  const expect: IgnitionExpect[] = [];
  const skipped: string[] = [];
  const path = (p: string, what: string) => (plain(p) ? true : (skipped.push(`${what} ${JSON.stringify(p)}`), false));
  const s = cfg.storage ?? {};
  for (const f of s.files ?? []) {
    if (!path(f.path, "file")) continue;
    const parts = [resourceBytes(f.contents), ...(f.append ?? []).map(resourceBytes)];
    const content = parts.every((x) => x !== undefined) ? Buffer.concat(parts as Buffer[]) : undefined;
    // Ignition 2.14 (spec 3.3) applies the permission bits only
    expect.push({ kind: "file", path: f.path, mode: (f.mode ?? 0o644) & 0o777, user: owner(f.user), group: owner(f.group), sha256: content && sha(content) });
  }
  for (const d of s.directories ?? []) if (path(d.path, "directory")) expect.push({ kind: "dir", path: d.path, mode: (d.mode ?? 0o755) & 0o777, user: owner(d.user), group: owner(d.group) });
  for (const l of s.links ?? []) {
    if (!path(l.path, "link") || (l.hard && !path(l.target, "link target"))) continue;
    expect.push({ kind: l.hard ? "hardlink" : "link", path: l.path, target: l.target });
  }
  for (const u of cfg.passwd?.users ?? []) {
    if (!/^[A-Za-z0-9._-]+$/.test(u.name)) { skipped.push(`user ${JSON.stringify(u.name)}`); continue; }
    expect.push({ kind: "user", name: u.name, uid: u.uid, home: u.homeDir, shell: u.shell, groups: u.groups ?? [], keys: (u.sshAuthorizedKeys ?? []).map((k: string) => k.trim()).filter(Boolean) });
  }
  for (const g of cfg.passwd?.groups ?? []) {
    if (!/^[A-Za-z0-9._-]+$/.test(g.name)) { skipped.push(`group ${JSON.stringify(g.name)}`); continue; }
    expect.push({ kind: "group", name: g.name, gid: g.gid });
  }
  for (const u of cfg.systemd?.units ?? []) {
    if (u.enabled !== undefined || u.mask || u.contents !== undefined) {
      expect.push({ kind: "unit", name: u.name, enabled: u.enabled, mask: u.mask || undefined, sha256: u.contents !== undefined && !u.mask ? sha(u.contents) : undefined });
    }
    for (const d of u.dropins ?? []) expect.push({ kind: "dropin", unit: u.name, name: d.name, sha256: d.contents !== undefined ? sha(d.contents) : undefined });
  }
  return { probes: probeFile(expect), expect, skipped };
}

/** A probe as the guest reads it; its first words name the answer ("file /etc/motd", "dropin UNIT NAME"). */
export function probeLine(e: IgnitionExpect): string {
  switch (e.kind) {
    case "file": case "dir": case "link": return `${e.kind} ${e.path}`;
    case "hardlink": return `hardlink ${e.path} ${e.target}`;
    case "user": case "group": case "unit": return `${e.kind} ${e.name}`;
    case "dropin": return `dropin ${e.unit} ${e.name}`;
  }
}

/** What names an answer: a hard link is answered under its path, like a file. */
export function probeKey(e: IgnitionExpect): string {
  return e.kind === "hardlink" ? `hardlink ${e.path}` : probeLine(e);
}

const probeFile = (expect: readonly IgnitionExpect[]) => expect.map((e) => `${probeLine(e)}\n`).join("");

/**
 * The image's base config (base.d) under a user config, as Ignition merges
 * them: what the user config names is judged by it alone, the rest by the base.
 */
export function withBase(user: IgnitionPlan, base: IgnitionPlan): IgnitionPlan {
  const named = new Set(user.expect.map(probeKey));
  const expect = [...user.expect, ...base.expect.filter((e) => !named.has(probeKey(e)))];
  return { probes: probeFile(expect), expect, skipped: [...user.skipped, ...base.skipped] };
}

/** The ACL-IGN answers on a console, by probe ("file /etc/motd" → the words after it). */
export function parseIgnitionAnswers(lines: readonly string[]): { answers: Map<string, string[]>; keys: Map<string, Set<string>>; done?: number } {
  const answers = new Map<string, string[]>();
  const keys = new Map<string, Set<string>>();
  let done: number | undefined;
  for (const text of lines) {
    const m = /ACL-IGN (\S+) (.*)$/.exec(text);
    if (!m) continue;
    const w = m[2]!.trim().split(/\s+/);
    const kind = m[1]!;
    if (kind === "done") done = Number(w[0]);
    else if (kind === "key") (keys.get(w[0]!) ?? keys.set(w[0]!, new Set()).get(w[0]!)!).add(w[1]!);
    else if (kind === "dropin") answers.set(`dropin ${w[0]} ${w[1]}`, w.slice(2));
    else answers.set(`${kind} ${w[0]}`, w.slice(1));
  }
  return { answers, keys, done };
}

function ownerProblem(what: string, want: Owner, uid: string, name: string): string | undefined {
  if (want.id !== undefined) return String(want.id) === uid ? undefined : `${what} is ${uid}, the config says ${want.id}`;
  if (want.name !== undefined) return want.name === name ? undefined : `${what} is ${name}, the config says ${want.name}`;
  return uid === "0" ? undefined : `${what} is ${uid}, Ignition's default is root`;
}

/** Compare the guest's answers with the plan: the problems found (empty: all applied). */
export function judgeIgnition(plan: IgnitionPlan, lines: readonly string[]): string[] {
  const { answers, keys, done } = parseIgnitionAnswers(lines);
  if (done === undefined) return [plan.expect.length ? "the guest answered no Ignition probes (no ACL-IGN done line)" : "no ACL-IGN done line"];
  if (done !== plan.expect.length) return [`the guest answered ${done} of ${plan.expect.length} probes`];
  const p: string[] = [];
  const oct = (m: number) => m.toString(8).padStart(4, "0");
  for (const e of plan.expect) {
    const key = probeKey(e);
    const a = answers.get(key);
    if (!a) { p.push(`${key}: no answer`); continue; }
    if (a[0] === "missing") { p.push(`${key}: missing on the guest`); continue; }
    switch (e.kind) {
      case "file":
      case "dir": {
        const [mode, uid, gid, uname, gname, digest] = a;
        if (parseInt(mode!, 8) !== e.mode) p.push(`${key}: mode ${oct(parseInt(mode!, 8))}, the config says ${oct(e.mode)}`);
        for (const x of [ownerProblem(`${key}: owner`, e.user, uid!, uname!), ownerProblem(`${key}: group`, e.group, gid!, gname!)]) if (x) p.push(x);
        if (e.kind === "file" && e.sha256 && digest !== e.sha256) p.push(`${key}: content differs from the config (sha256 ${digest?.slice(0, 12)}…, want ${e.sha256.slice(0, 12)}…)`);
        break;
      }
      case "link":
        if (a[0] !== e.target) p.push(`${key}: points to ${a[0]}, the config says ${e.target}`);
        break;
      case "hardlink":
        if (a[0] !== a[1]) p.push(`${key}: not the same inode as ${e.target}`);
        break;
      case "user": {
        const [uid, , home, shell, groups] = a;
        if (e.uid !== undefined && String(e.uid) !== uid) p.push(`${key}: uid ${uid}, the config says ${e.uid}`);
        if (e.home && e.home !== home) p.push(`${key}: home ${home}, the config says ${e.home}`);
        if (e.shell && e.shell !== shell) p.push(`${key}: shell ${shell}, the config says ${e.shell}`);
        const member = new Set((groups ?? "").split(","));
        for (const g of e.groups) if (!member.has(g)) p.push(`${key}: not in group ${g}`);
        if (e.keys.length) {
          const file = answers.get(`keysfile ${e.name}`);
          const got = keys.get(e.name) ?? new Set();
          const absent = e.keys.filter((k) => !got.has(sha(k)));
          if (!file) p.push(`${key}: no ~/.ssh/authorized_keys`);
          else {
            if (parseInt(file[0]!, 8) !== 0o600) p.push(`${key}: authorized_keys has mode ${file[0]}, sshd wants 0600`);
            if (file[1] !== uid) p.push(`${key}: authorized_keys is owned by uid ${file[1]}, not the user (${uid})`);
          }
          if (absent.length) p.push(`${key}: ${absent.length} of ${e.keys.length} ssh keys not in authorized_keys`);
        }
        break;
      }
      case "group":
        if (e.gid !== undefined && String(e.gid) !== a[0]) p.push(`${key}: gid ${a[0]}, the config says ${e.gid}`);
        break;
      case "unit": {
        const [en, state, result, left, digest] = a;
        if (e.mask) {
          if (en !== "masked") p.push(`${key}: ${en}, the config masks it`);
          break;
        }
        if (e.enabled === true) {
          if (en !== "enabled") p.push(`${key}: ${en}, the config enables it`);
          // running, or a oneshot that ran and succeeded
          else if (!(state === "active" || (state === "inactive" && result === "success" && left !== "0"))) p.push(`${key}: enabled but ${state}/${result}`);
        }
        if (e.enabled === false && en !== "disabled") p.push(`${key}: ${en}, the config disables it`);
        if (e.sha256 && digest !== e.sha256) p.push(`${key}: /etc/systemd/system/${e.name} differs from the config`);
        break;
      }
      case "dropin": {
        const [digest, loaded] = a;
        if (e.sha256 && digest !== e.sha256) p.push(`${key}: content differs from the config`);
        if (loaded !== "loaded") p.push(`${key}: systemd does not load it`);
        break;
      }
    }
  }
  return p;
}

/** What the initramfs said about Ignition on one boot. */
export function ignitionBootMarkers(lines: readonly string[]): { ran: boolean; done: boolean; skipped: boolean; failure?: string } {
  const has = (re: RegExp) => lines.find((l) => re.test(l));
  return {
    ran: Boolean(has(/acl-init: ignition: first boot; /)),
    done: Boolean(has(/acl-init: ignition: first boot done/)),
    skipped: Boolean(has(/acl-init: ignition: not the first boot/)),
    failure: has(/acl-init: FATAL: Ignition failed/)?.replace(/^.*acl-init: FATAL: /, "").trim(),
  };
}
