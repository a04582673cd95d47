/**
 * systemd-boot 252's rules for type-2 entries (UKIs in EFI/Linux), as pure
 * functions: the boot counter in a file name, the entry order, which entry
 * boots next, and how acl keeps the GPT slot attributes in step with them.
 *
 * Read in systemd 252's src/boot/efi/boot.c (config_entry_parse_tries,
 * config_entry_compare, config_default_entry_select) and
 * src/fundamental/string-util-fundamental.c (strverscmp_improved); the code
 * here is our own. acl names its entries `acl-A.efi` / `acl-B.efi`, with
 * `+LEFT-DONE` before `.efi` while an entry is on trial.
 */
import type { SlotState } from "./gpt.js";

export type Slot = "A" | "B";
export const SLOTS: readonly Slot[] = ["A", "B"];
/** Where systemd-boot looks for UKIs on the ESP. */
export const ENTRY_DIR = "EFI/Linux";

export interface Counter {
  left: number;
  done: number;
}

/** The parts of a boot entry file name: `base+LEFT-DONE.efi`, counter optional. */
export interface ParsedName {
  base: string;
  counter?: Counter;
}

const EFI_SUFFIX = ".efi";

/**
 * Parse the counter as systemd-boot does: scanning back from before the
 * suffix, digits, at most one '-', then '+'. Anything else means "no counter"
 * (the entry is good and never counted).
 */
export function parseEntryName(file: string): ParsedName {
  const lower = file.toLowerCase();
  const stem = lower.endsWith(EFI_SUFFIX) ? file.slice(0, -EFI_SUFFIX.length) : file;
  const m = /^(.*)\+(\d+)(?:-(\d+))?$/.exec(stem);
  if (!m) return { base: stem };
  const left = Number(m[2]);
  const done = m[3] === undefined ? 0 : Number(m[3]);
  if (!Number.isSafeInteger(left) || !Number.isSafeInteger(done)) return { base: stem };
  return { base: m[1]!, counter: { left, done } };
}

/** The name systemd-boot renames an entry to just before booting it (unchanged when it has no counter). */
export function nextTryName(file: string): string {
  const p = parseEntryName(file);
  if (!p.counter) return file;
  return `${p.base}+${Math.max(0, p.counter.left - 1)}-${p.counter.done + 1}${EFI_SUFFIX}`;
}

/** The name systemd-bless-boot gives a counted entry once the boot is good. */
export function blessedName(file: string): string {
  return `${parseEntryName(file).base}${EFI_SUFFIX}`;
}

/** acl's entry file name for a slot, with a counter while on trial. */
export function slotEntryName(slot: Slot, counter?: Counter): string {
  return `acl-${slot}${counter ? `+${counter.left}-${counter.done}` : ""}${EFI_SUFFIX}`;
}

/** The slot an acl entry file boots, or undefined for a file that is not one of acl's entries. */
export function entrySlot(file: string): Slot | undefined {
  const m = /^acl-([AB])$/i.exec(parseEntryName(file).base);
  return m ? (m[1]!.toUpperCase() as Slot) : undefined;
}

function isVersionChar(c: string): boolean {
  return /[A-Za-z0-9~^.-]/.test(c);
}
const isDigit = (c: string | undefined) => c !== undefined && c >= "0" && c <= "9";
const isAlpha = (c: string | undefined) => c !== undefined && /[A-Za-z]/.test(c);
const cmp = (a: number, b: number): -1 | 0 | 1 => (a < b ? -1 : a > b ? 1 : 0);
const strCmp = (a: string, b: string): -1 | 0 | 1 => (a < b ? -1 : a > b ? 1 : 0);

/**
 * systemd's version comparison (`systemd-analyze compare-versions`): '~' sorts
 * before everything (pre-releases), '-' separates version and release, '^'
 * marks a patched release, '.' separates parts; digit runs compare as numbers
 * (leading zeros ignored) and beat letter runs. Returns -1, 0 or 1.
 */
export function compareVersions(a: string | undefined, b: string | undefined): -1 | 0 | 1 {
  if (!a || !b) return strCmp(a ?? "", b ?? "");
  let i = 0;
  let j = 0;
  const at = (s: string, k: number) => (k < s.length ? s[k]! : "\0");
  for (;;) {
    while (i < a.length && !isVersionChar(a[i]!)) i++;
    while (j < b.length && !isVersionChar(b[j]!)) j++;
    if (at(a, i) === "~" || at(b, j) === "~") {
      const r = cmp(at(a, i) === "~" ? 0 : 1, at(b, j) === "~" ? 0 : 1);
      if (r) return r;
      i++;
      j++;
    }
    if (i >= a.length || j >= b.length) return cmp(i >= a.length ? 0 : 1, j >= b.length ? 0 : 1);
    for (const sep of ["-", "^", "."]) {
      if (at(a, i) === sep || at(b, j) === sep) {
        const r = cmp(at(a, i) === sep ? 0 : 1, at(b, j) === sep ? 0 : 1);
        if (r) return r;
        i++;
        j++;
      }
    }
    if (isDigit(a[i]) || isDigit(b[j])) {
      let ii = i;
      let jj = j;
      while (isDigit(a[ii])) ii++;
      while (isDigit(b[jj])) jj++;
      const r = cmp(ii > i ? 1 : 0, jj > j ? 1 : 0);
      if (r) return r;
      while (a[i] === "0") i++;
      while (b[j] === "0") j++;
      const l = cmp(ii - i, jj - j);
      if (l) return l;
      const s = strCmp(a.slice(i, ii), b.slice(j, jj));
      if (s) return s;
      i = ii;
      j = jj;
    } else {
      let ii = i;
      let jj = j;
      while (isAlpha(a[ii])) ii++;
      while (isAlpha(b[jj])) jj++;
      const n = Math.min(ii - i, jj - j);
      const s = strCmp(a.slice(i, i + n), b.slice(j, j + n));
      if (s) return s;
      const l = cmp(ii - i, jj - j);
      if (l) return l;
      i = ii;
      j = jj;
    }
  }
}

/** An os-release file as key/value pairs (shell-style quoting, comments skipped). */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2]!.trim();
    if ((v.startsWith('"') && v.endsWith('"') && v.length >= 2) || (v.startsWith("'") && v.endsWith("'") && v.length >= 2)) {
      const q = v[0];
      v = v.slice(1, -1);
      if (q === '"') v = v.replace(/\\([\\"$`])/g, "$1");
    }
    out[m[1]!] = v;
  }
  return out;
}

/** One type-2 entry as systemd-boot sees it. */
export interface BootEntry {
  /** File name in EFI/Linux (systemd-boot's entry id, case-folded when compared). */
  file: string;
  /** IMAGE_ID, else ID; undefined = the UKI has no usable .osrel and systemd-boot skips it. */
  sortKey?: string;
  /** IMAGE_VERSION, else VERSION, VERSION_ID, BUILD_ID. */
  version?: string;
  /** PRETTY_NAME etc. for display. */
  title?: string;
}

/** The sort key, version and title systemd-boot takes from a UKI's .osrel. */
export function entryFromOsRelease(file: string, osrel: string | undefined): BootEntry {
  if (osrel === undefined) return { file };
  const o = parseOsRelease(osrel);
  const name = o.PRETTY_NAME ?? o.NAME;
  // boot.c: an entry needs a name (PRETTY_NAME or NAME) and an id (IMAGE_ID or ID)
  const sortKey = name ? (o.IMAGE_ID ?? o.ID) : undefined;
  return { file, sortKey, version: o.IMAGE_VERSION ?? o.VERSION ?? o.VERSION_ID ?? o.BUILD_ID, title: name };
}

/** systemd-boot 252's entry order (config_entry_compare); entries without a sort key are skipped as it skips them. */
export function orderEntries<T extends BootEntry>(entries: readonly T[]): T[] {
  const usable = entries.filter((e) => e.sortKey !== undefined && e.file.toLowerCase().endsWith(EFI_SUFFIX));
  const left = (e: T) => parseEntryName(e.file).counter?.left;
  return [...usable].sort((a, b): number => {
    const ca = parseEntryName(a.file).counter;
    const cb = parseEntryName(b.file).counter;
    let r: number = cmp(left(a) === 0 ? 1 : 0, left(b) === 0 ? 1 : 0);
    if (r) return r;
    r = strCmp(a.sortKey!, b.sortKey!);
    if (r) return r;
    r = -compareVersions(a.version, b.version);
    if (r) return r;
    r = -compareVersions(a.file.toLowerCase(), b.file.toLowerCase());
    if (r) return r;
    if (!ca || !cb) return 0;
    r = -cmp(ca.left, cb.left);
    if (r) return r;
    return cmp(ca.done, cb.done);
  });
}

/** The entry systemd-boot boots when no EFI variable (one-shot, default) and no loader.conf default names one. */
export function nextBootEntry<T extends BootEntry>(entries: readonly T[]): T | undefined {
  return orderEntries(entries)[0];
}

/**
 * good: no counter (blessed, or never counted); trying: tries left;
 * bad: no tries left after at least one try; fallback: no tries left and none
 * done, acl's mark for the newer entry a downgrade ranked below the older one
 * (systemd-boot sorts it last but still boots it when everything else is bad).
 */
export type EntryState = "good" | "trying" | "bad" | "fallback";

export function entryState(file: string): EntryState {
  const c = parseEntryName(file).counter;
  if (!c) return "good";
  if (c.left > 0) return "trying";
  return c.done === 0 ? "fallback" : "bad";
}

/** Flatcar's gptprio holds tries in 4 bits. */
export const MAX_GPT_TRIES = 15;

/**
 * The GPT attributes that say what the ESP says, for each slot: bootable
 * entries (good, trying, fallback) get priorities counting down to 1 in
 * systemd-boot's order (so a fresh disk's slot A has Flatcar's priority 1 and
 * a newly installed update priority 2 above it); bad or absent entries 0.
 * Good and fallback mean successful, trying means tries = LEFT. So gptprio
 * (highest priority among successful or tried slots) picks the same slot as
 * systemd-boot, before and after a try runs out.
 */
export function slotStatesFor(entries: readonly BootEntry[]): Record<Slot, SlotState> {
  const states: Record<Slot, SlotState> = {
    A: { priority: 0, tries: 0, successful: false },
    B: { priority: 0, tries: 0, successful: false },
  };
  const seen = new Set<Slot>();
  const bootable: BootEntry[] = [];
  for (const e of orderEntries(entries.filter((x) => entrySlot(x.file)))) {
    const slot = entrySlot(e.file)!;
    if (seen.has(slot)) continue;
    seen.add(slot);
    if (entryState(e.file) !== "bad") bootable.push(e);
  }
  for (const [i, e] of bootable.entries()) {
    const state = entryState(e.file);
    states[entrySlot(e.file)!] = {
      priority: bootable.length - i,
      tries: state === "trying" ? Math.min(parseEntryName(e.file).counter!.left, MAX_GPT_TRIES) : 0,
      successful: state === "good" || state === "fallback",
    };
  }
  return states;
}
