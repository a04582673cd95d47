/**
 * `acl update apply DISK PAYLOAD --key PUB`: an A/B update of a raw disk
 * image, offline. Every check runs before the first write; then, in an order
 * where an interruption at any point leaves the current slot booting:
 *
 *   1. the idle slot's GPT bits are cleared (it is about to hold nothing bootable)
 *   2. the idle slot's old entries are removed from the ESP
 *   3. the new /usr is written into the idle slot, flushed, read back and checked
 *      (sha256 of every byte, and the verity top block against the root hash)
 *   4. on a downgrade (or any install that would not sort first), the current
 *      entry is renamed `+0-0`: systemd-boot then ranks it last but still boots
 *      it when the new entry runs out of tries
 *   5. the new UKI is copied to `EFI/Linux/.acl-X.new` (invisible to systemd-boot)
 *      and renamed `acl-X+N-0.efi`: the one step that makes it bootable
 *   6. the GPT bits of both slots are set to what the ESP now means
 */
import { createHash } from "node:crypto";
import { open, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createReadStream } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FatImage } from "../../adapters/fat.js";
import { UserError } from "../../errors.js";
import {
  compareVersions,
  ENTRY_DIR,
  entrySlot,
  nextBootEntry,
  orderEntries,
  slotEntryName,
  slotStatesFor,
  SLOTS,
  type BootEntry,
  type Slot,
} from "../../formats/boot-entries.js";
import { attributePatches, decodeGpt, setSlotState } from "../../formats/gpt.js";
import { microarchRank } from "../../formats/microarch.js";
import { readVerityRoot, VerityFormatError } from "../../formats/verity.js";
import { readFileRange, readRange } from "../../util/fs.js";
import { formatMiB, MiB } from "../../util/size.js";
import { peCertificateTable } from "../../formats/pe.js";
import { ESP_LOADERS } from "../../stages/boot/esp.js";
import { describeUki, readBootState, USR_LABELS, type BootState, type EntryInfo } from "./state.js";
import { rangeSha256, verifyPayload, type VerifiedPayload } from "./payload.js";

export const DEFAULT_TRIES = 3;

export interface ApplyOptions {
  disk: string;
  payload: string;
  key: string;
  allowDowngrade?: boolean;
  tries?: number;
  /** Called before each write step (tests stop here to prove interruption safety). */
  onStep?: (step: ApplyStep) => void | Promise<void>;
}

export type ApplyStep = "clear-gpt" | "remove-old-entry" | "write-slot" | "demote-current" | "copy-entry" | "install-entry" | "set-gpt";

export interface ApplyResult {
  disk: string;
  name: string;
  version: string;
  from: { slot: Slot; version?: string };
  slot: Slot;
  entry: string;
  tries: number;
  downgrade: boolean;
  /** The entry systemd-boot boots next, and its slot. */
  next: { entry: string; slot?: Slot; version?: string };
  bytesWritten: number;
  ms: number;
}

/** The slot to keep (the best good entry) and the one to write. */
export function chooseTarget(state: BootState): { keep: EntryInfo; target: Slot } {
  const keep = state.entries.find((e) => e.slot && !e.skipped && (e.state === "good" || e.state === "fallback"));
  if (!keep)
    throw new UserError(`${state.disk} has no good boot entry to keep as the fallback (${state.entries.map((e) => e.file).join(", ") || "EFI/Linux is empty"})`, {
      file: state.disk,
      hint: "boot the disk until an entry is blessed, or rebuild it; `acl inspect DISK` shows the entries",
    });
  return { keep, target: keep.slot === "A" ? "B" : "A" };
}

/** Every refusal, before a byte is written. */
export function checkCompatible(state: BootState, keep: EntryInfo, target: Slot, p: VerifiedPayload, allowDowngrade: boolean): { downgrade: boolean } {
  const m = p.meta;
  const refuse = (why: string, hint?: string) => new UserError(`update refused: ${why}; ${state.disk} was not changed`, { file: p.path, hint });
  if (keep.imageId !== m.name) throw refuse(`the payload is for image '${m.name}', the disk runs '${keep.imageId ?? "unknown"}'`, "apply a payload built from the same image spec name");
  const cmp = compareVersions(m.version, keep.version);
  const downgrade = cmp <= 0;
  if (downgrade && !allowDowngrade)
    throw refuse(
      cmp === 0 ? `version ${m.version} is already installed (slot ${keep.slot})` : `${m.version} is older than the installed ${keep.version} (slot ${keep.slot})`,
      "pass --allow-downgrade to install it anyway",
    );
  if (m.minVersion && keep.version && compareVersions(keep.version, m.minVersion) < 0)
    throw refuse(`the payload updates only from ${m.minVersion} or later; the disk runs ${keep.version}`, `update to ${m.minVersion} first`);
  if (keep.microarch && microarchRank(m.microarch) > microarchRank(keep.microarch))
    throw refuse(`the payload needs ${m.microarch}, the installed image needs only ${keep.microarch}: the machine's CPU may not have ${m.microarch}`, "build the update for the installed image's microarch");
  const usr = p.section("usr");
  const slot = state.slots[target];
  if (usr.size > slot.sizeBytes)
    throw refuse(`the new /usr is ${formatMiB(usr.size)}, ${USR_LABELS[target]} holds ${formatMiB(slot.sizeBytes)}`, "make the image smaller (or build new disks with a larger partitions.usr)");
  return { downgrade };
}

async function writeRange(disk: string, offset: number, src: string, start: number, size: number): Promise<void> {
  const fh = await open(disk, "r+");
  try {
    let at = offset;
    for await (const c of createReadStream(src, { start, end: start + size - 1, highWaterMark: 4 * MiB })) {
      const b = c as Buffer;
      let done = 0;
      while (done < b.length) done += (await fh.write(b, done, b.length - done, at + done)).bytesWritten;
      at += b.length;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * A disk whose boot loader is Secure Boot signed runs where firmware checks
 * signatures: an unsigned UKI would not be started there, and the node would
 * stop in its firmware rather than fall back. Refuse it before any write.
 */
async function checkSecureBootReady(fat: FatImage, ukiBytes: Uint8Array, target: Slot, opts: { disk: string; payload: string }): Promise<void> {
  const loader = await fat.read(ESP_LOADERS[0]).catch(() => undefined);
  if (!loader || !peCertificateTable(loader)) return;
  if (peCertificateTable(ukiBytes)) return;
  throw new UserError(`update refused: the disk's boot loader is Secure Boot signed, but the payload's UKI for slot ${target} is not; firmware with Secure Boot on would refuse to start it; ${opts.disk} was not changed`, {
    file: opts.payload,
    hint: "build the update with --secureboot-key and --secureboot-cert (or [secureboot] key and certificate in its spec)",
  });
}

/** The verity top block at the slot's hash offset must digest to the root hash the UKI names. */
async function checkVerityRoot(disk: string, slotOffset: number, p: VerifiedPayload): Promise<void> {
  const v = p.meta.verity;
  let root: string;
  try {
    root = (await readVerityRoot((o, n) => readFileRange(disk, slotOffset + o, n), v.hashOffset)).root.toString("hex");
  } catch (e) {
    if (!(e instanceof VerityFormatError)) throw e;
    throw new UserError(`the written slot's verity superblock does not read back (${e.message}): the disk may be failing`, { file: disk });
  }
  if (root !== v.rootHash) throw new UserError(`the written slot's verity root is ${root}, not ${v.rootHash}: the disk may be failing`, { file: disk });
}

/** Set the slot bits of USR-A/USR-B (those given) in both GPT copies; one read of the table, patched in place. */
async function writeGptStates(disk: string, states: Partial<Record<Slot, Parameters<typeof setSlotState>[1]>>, state: BootState): Promise<void> {
  const fh = await open(disk, "r+");
  try {
    const size = (await fh.stat()).size;
    const n = Math.min(MiB, size);
    const table = { head: await readRange(fh, 0, n), tail: await readRange(fh, size - n, n), diskSizeBytes: size };
    const current = decodeGpt(table);
    const changes = new Map<number, bigint>();
    for (const s of SLOTS) {
      const want = states[s];
      if (!want) continue;
      const p = current.partitions.find((x) => x.number === state.slots[s].partition.number)!;
      changes.set(p.number, setSlotState(p.attributes, want));
    }
    for (const patch of attributePatches(table, changes)) await fh.write(patch.bytes, 0, patch.bytes.length, Number(patch.offset));
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function applyUpdate(opts: ApplyOptions): Promise<ApplyResult> {
  const t0 = Date.now();
  const tries = opts.tries ?? DEFAULT_TRIES;
  if (!Number.isInteger(tries) || tries < 1 || tries > 15) throw new UserError(`--tries ${tries} is out of range`, { hint: "pass --tries between 1 and 15 (the GPT holds tries in 4 bits)" });
  const state = await readBootState(opts.disk);
  if (state.gpt.problems.length) throw new UserError(`update refused: the GPT of ${opts.disk} needs repair (${state.gpt.problems.join("; ")}); the disk was not changed`, { file: opts.disk, hint: "`sgdisk -v DISK` shows the damage" });
  const payload = await verifyPayload(opts.payload, opts.key);
  const { keep, target } = chooseTarget(state);
  const { downgrade } = checkCompatible(state, keep, target, payload, opts.allowDowngrade ?? false);
  const fat = new FatImage(opts.disk, state.esp.offset);
  const uki = payload.section(`uki-${target}`);
  const tmp = await mkdtemp(join(tmpdir(), "acl-update-"));
  try {
    // the payload's UKI for the target slot must boot that slot of this disk with this /usr
    const ukiFile = join(tmp, "uki.efi");
    const ukiBytes = await readFileRange(opts.payload, uki.offset, uki.size);
    // read again after the check: it must still be the signed bytes (the usr section is checked on the disk after writing)
    if (createHash("sha256").update(ukiBytes).digest("hex") !== uki.sha256)
      throw new UserError(`update refused: ${opts.payload} changed while it was being applied; ${opts.disk} was not changed`, { file: opts.payload });
    const d = describeUki(ukiBytes, { A: state.slots.A.partition.partGuid, B: state.slots.B.partition.partGuid });
    await checkSecureBootReady(fat, ukiBytes, target, opts);
    if (d.cmdlineSlot !== target || d.rootHash !== payload.meta.verity.rootHash)
      throw new UserError(`update refused: the payload's UKI for slot ${target} does not boot ${USR_LABELS[target]} of this disk with the payload's root hash; ${opts.disk} was not changed`, {
        file: opts.payload,
        hint: "the disk's slot PARTUUIDs differ from the ones acl builds with",
      });
    await writeFile(ukiFile, ukiBytes);
    const oldEntries = state.entries.filter((e) => e.slot === target);
    const free = (await fat.freeBytes()) + oldEntries.reduce((a, e) => a + e.size, 0);
    if (uki.size + 64 * 1024 > free)
      throw new UserError(`update refused: the ESP has ${formatMiB(free)} free once slot ${target}'s old entry is gone, the new UKI needs ${formatMiB(uki.size)}; ${opts.disk} was not changed`, {
        file: opts.disk,
        hint: "rebuild the disk with a larger partitions.esp",
      });
    const step = async (s: ApplyStep) => opts.onStep?.(s);

    await step("clear-gpt");
    await writeGptStates(opts.disk, { [target]: { priority: 0, tries: 0, successful: false } }, state);
    await step("remove-old-entry");
    for (const e of oldEntries) await fat.remove(`${ENTRY_DIR}/${e.file}`);
    const staged = (await fat.list(ENTRY_DIR)).find((f) => f.name.toLowerCase() === `.acl-${target}.new`.toLowerCase());
    if (staged) await fat.remove(`${ENTRY_DIR}/${staged.name}`);

    await step("write-slot");
    const usr = payload.section("usr");
    const slot = state.slots[target];
    await writeRange(opts.disk, slot.offset, opts.payload, usr.offset, usr.size);
    const written = await rangeSha256(opts.disk, slot.offset, usr.size);
    if (written !== usr.sha256) throw new UserError(`${USR_LABELS[target]} reads back with sha256 ${written}, not ${usr.sha256}: the disk may be failing; slot ${keep.slot} still boots`, { file: opts.disk });
    await checkVerityRoot(opts.disk, slot.offset, payload);

    const entry = slotEntryName(target, { left: tries, done: 0 });
    const newEntry: BootEntry = { file: entry, sortKey: d.sortKey, version: d.version };
    const others = state.entries.filter((e) => e.slot !== target);
    const demoted = slotEntryName(keep.slot!, { left: 0, done: 0 });
    let after: BootEntry[] = [newEntry, ...others];
    if (orderEntries(after)[0]?.file !== entry && keep.file !== demoted) {
      await step("demote-current");
      await fat.rename(`${ENTRY_DIR}/${keep.file}`, demoted);
      after = [newEntry, ...others.map((e) => (e === keep ? { ...e, file: demoted } : e))];
    }
    await step("copy-entry");
    await fat.write(ukiFile, `${ENTRY_DIR}/.acl-${target}.new`);
    await step("install-entry");
    await fat.rename(`${ENTRY_DIR}/.acl-${target}.new`, entry);

    // the ESP now holds exactly `after`: the GPT follows it, and it says what boots next
    await step("set-gpt");
    await writeGptStates(opts.disk, slotStatesFor(after), state);
    const next = nextBootEntry(after);
    return {
      disk: opts.disk,
      name: payload.meta.name,
      version: payload.meta.version,
      from: { slot: keep.slot!, version: keep.version },
      slot: target,
      entry,
      tries,
      downgrade,
      next: { entry: next?.file ?? "(none)", slot: next ? entrySlot(next.file) : undefined, version: next?.version },
      bytesWritten: usr.size + uki.size,
      ms: Date.now() - t0,
    };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
