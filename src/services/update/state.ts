/**
 * The A/B boot state of a raw disk image, read without mounting: the GPT
 * (our codec), the boot entries on the ESP (mtools) with what their UKIs'
 * .osrel and .cmdline say, the order systemd-boot 252 puts them in, the one
 * it boots next, and whether the GPT slot attributes say the same.
 */
import { open, type FileHandle } from "node:fs/promises";
import { FatImage } from "../../adapters/fat.js";
import { UserError, fsReason } from "../../errors.js";
import {
  ENTRY_DIR,
  entryFromOsRelease,
  entrySlot,
  entryState,
  orderEntries,
  parseEntryName,
  parseOsRelease,
  slotStatesFor,
  SLOTS,
  type BootEntry,
  type EntryState,
  type Slot,
} from "../../formats/boot-entries.js";
import { decodeGpt, getSlotState, TYPE_GUIDS, type DecodedGpt, type GptPartition, type SlotState } from "../../formats/gpt.js";
import { peSectionData, PeFormatError } from "../../formats/pe.js";
import { readRange } from "../../util/fs.js";
import { MiB } from "../../util/size.js";

export interface EntryInfo extends BootEntry {
  /** The acl slot the name says, if it is one of acl's entries. */
  slot?: Slot;
  state: EntryState;
  left?: number;
  done?: number;
  size: number;
  /** Fields of the UKI's .osrel that acl reads. */
  imageId?: string;
  microarch?: string;
  /** The slot the UKI's command line boots (by PARTUUID), when it names one of this disk's slots. */
  cmdlineSlot?: Slot;
  rootHash?: string;
  /** Why systemd-boot would skip it, when it would. */
  skipped?: string;
}

export interface SlotInfo {
  slot: Slot;
  partition: GptPartition;
  offset: number;
  sizeBytes: number;
  gpt: SlotState;
  /** What the GPT bits should be, given the ESP. */
  expected: SlotState;
}

export interface BootState {
  disk: string;
  gpt: DecodedGpt;
  esp: { partition: GptPartition; offset: number; sizeBytes: number };
  /** Every file in EFI/Linux, in systemd-boot's order (skipped ones last). */
  entries: EntryInfo[];
  /** The entry systemd-boot boots next by its own rule. */
  next?: EntryInfo;
  slots: Record<Slot, SlotInfo>;
  /** Differences between the ESP and the GPT bits, and entries that do not boot what their name says. */
  disagreements: string[];
}

export const USR_LABELS: Record<Slot, string> = { A: "USR-A", B: "USR-B" };

/** The GPT of a raw disk image from its first and last MiB. */
export async function readGpt(disk: string, sizeBytes?: number): Promise<DecodedGpt> {
  let fh: FileHandle;
  try {
    fh = await open(disk, "r");
  } catch (e) {
    throw new UserError(`cannot open disk image ${disk}: ${fsReason(e)}`, { file: disk, hint: "pass a disk.raw from an acl output folder" });
  }
  try {
    const size = sizeBytes ?? (await fh.stat()).size;
    const n = Math.min(MiB, size);
    const head = await readRange(fh, 0, n);
    if (head.subarray(0, 4).equals(Buffer.from([0x51, 0x46, 0x49, 0xfb])))
      throw new UserError(`${disk} is a qcow2 image; A/B updates are applied to raw disks`, {
        file: disk,
        hint: `convert it: qemu-img convert -O raw ${disk} disk.raw (and back with -O qcow2 after the update)`,
      });
    const tail = await readRange(fh, size - n, n);
    return decodeGpt({ head, tail, diskSizeBytes: size });
  } finally {
    await fh.close();
  }
}

function slotPartitions(gpt: DecodedGpt, disk: string): Record<Slot, GptPartition> {
  const out: Partial<Record<Slot, GptPartition>> = {};
  for (const s of SLOTS) {
    const p = gpt.partitions.find((x) => x.name === USR_LABELS[s] && x.typeGuid === TYPE_GUIDS.coreosUsr);
    if (!p) throw new UserError(`${disk} has no ${USR_LABELS[s]} partition (of the /usr type): it is not an A/B disk acl made`, { file: disk });
    out[s] = p;
  }
  return out as Record<Slot, GptPartition>;
}

/** What acl needs from a UKI: .osrel fields, the slot its command line boots, its root hash. */
export function describeUki(bytes: Buffer, slotUuids: Record<Slot, string>): Pick<EntryInfo, "sortKey" | "version" | "title" | "imageId" | "microarch" | "cmdlineSlot" | "rootHash" | "skipped"> {
  let osrel: string | undefined;
  let cmdline: string | undefined;
  try {
    osrel = peSectionData(bytes, ".osrel")?.toString("utf8").replace(/\0+$/, "");
    cmdline = peSectionData(bytes, ".cmdline")?.toString("utf8").replace(/\0+$/, "");
  } catch (e) {
    if (e instanceof PeFormatError) return { skipped: `not a PE image (${e.message})` };
    throw e;
  }
  const e = entryFromOsRelease("x.efi", osrel);
  const o = osrel === undefined ? {} : parseOsRelease(osrel);
  const uuid = /verity\.usr=PARTUUID=([0-9a-fA-F-]{36})/.exec(cmdline ?? "")?.[1]?.toLowerCase();
  const cmdlineSlot = SLOTS.find((s) => slotUuids[s].toLowerCase() === uuid);
  return {
    sortKey: e.sortKey,
    version: e.version,
    title: e.title,
    imageId: o.IMAGE_ID ?? o.ID,
    microarch: o.ACL_MICROARCH,
    cmdlineSlot,
    rootHash: /verity\.usrhash=([0-9a-f]{64})/.exec(cmdline ?? "")?.[1],
    skipped: osrel === undefined ? "no .osrel section" : e.sortKey === undefined ? "its .osrel has no name or id" : undefined,
  };
}

const sameState = (a: SlotState, b: SlotState) => a.priority === b.priority && a.tries === b.tries && a.successful === b.successful;
const showState = (s: SlotState) => `priority ${s.priority}, tries ${s.tries}, successful ${s.successful ? 1 : 0}`;

/** `sizeBytes`: the disk's size when the file is longer (a fixed VHD's footer follows the disk). */
export async function readBootState(disk: string, sizeBytes?: number): Promise<BootState> {
  const gpt = await readGpt(disk, sizeBytes);
  const ss = gpt.sectorSize;
  const espPart = gpt.partitions.find((p) => p.typeGuid === TYPE_GUIDS.efiSystem);
  if (!espPart) throw new UserError(`${disk} has no EFI system partition`, { file: disk });
  const esp = { partition: espPart, offset: Number(espPart.firstLba) * ss, sizeBytes: Number(espPart.lastLba - espPart.firstLba + 1n) * ss };
  const parts = slotPartitions(gpt, disk);
  const uuids = { A: parts.A.partGuid, B: parts.B.partGuid };
  const fat = new FatImage(disk, esp.offset);
  const entries: EntryInfo[] = [];
  for (const f of await fat.list(ENTRY_DIR)) {
    if (!f.name.toLowerCase().endsWith(".efi") || f.name.startsWith(".")) continue;
    const c = parseEntryName(f.name).counter;
    const info = describeUki(await fat.read(`${ENTRY_DIR}/${f.name}`), uuids);
    entries.push({ file: f.name, slot: entrySlot(f.name), state: entryState(f.name), left: c?.left, done: c?.done, size: f.size, ...info });
  }
  const ordered = orderEntries(entries);
  const rest = entries.filter((e) => !ordered.includes(e));
  const expected = slotStatesFor(entries);
  const slots = {} as Record<Slot, SlotInfo>;
  const disagreements: string[] = [];
  for (const s of SLOTS) {
    const p = parts[s];
    const info: SlotInfo = {
      slot: s,
      partition: p,
      offset: Number(p.firstLba) * ss,
      sizeBytes: Number(p.lastLba - p.firstLba + 1n) * ss,
      gpt: getSlotState(p.attributes),
      expected: expected[s],
    };
    slots[s] = info;
    if (!sameState(info.gpt, info.expected)) {
      const e = entries.find((x) => x.slot === s);
      const why = e?.state === "bad" || (e?.state === "trying" && info.gpt.tries > (e.left ?? 0)) ? " (a try ended before userspace could record it)" : "";
      disagreements.push(`${USR_LABELS[s]}: GPT says ${showState(info.gpt)}; the ESP (${e ? e.file : "no entry"}) means ${showState(info.expected)}${why}`);
    }
  }
  for (const e of entries) {
    if (e.slot && e.cmdlineSlot && e.slot !== e.cmdlineSlot) disagreements.push(`${e.file} is named for slot ${e.slot} but its command line boots slot ${e.cmdlineSlot}`);
    if (e.slot && entries.filter((x) => x.slot === e.slot).length > 1) disagreements.push(`slot ${e.slot} has more than one entry (${entries.filter((x) => x.slot === e.slot).map((x) => x.file).join(", ")})`);
  }
  return { disk, gpt, esp, entries: [...ordered, ...rest], next: ordered[0], slots, disagreements: [...new Set(disagreements)] };
}
