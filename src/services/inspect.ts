/**
 * `acl inspect DISK`: read a disk image (raw, qcow2 or VHD) without mounting
 * it and report its GPT, the A/B slot states, which slot the boot loader
 * would pick, and for each /usr slot the filesystem and the dm-verity root
 * hash computed from the tree stored behind it.
 */
import { mkdtemp, open, rm, stat, type FileHandle } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../adapters/exec.js";
import { UserError, fsReason } from "../errors.js";
import {
  chooseSlot,
  decodeGpt,
  formatAttributes,
  getSlotState,
  TYPE_GUIDS,
  TYPE_NAMES,
  type SectorSize,
  type SlotState,
} from "../formats/gpt.js";
import { decodeErofsSuperblock, EROFS_SUPER_OFFSET, EROFS_SUPER_SIZE, isErofsSuperblock } from "../formats/erofs.js";
import { decodeSquashfsSuperblock, isSquashfsSuperblock, SQUASHFS_SUPER_SIZE } from "../formats/squashfs.js";
import { decodeVhdFooter, VHD_COOKIE, VHD_DISK_TYPES, VHD_FOOTER_SIZE } from "../formats/vhd-footer.js";
import { readRange } from "../util/fs.js";
import { MiB, roundUp } from "../util/size.js";
import { readBootState } from "./update/state.js";
import { readVerityRoot, treeLayout, treeOffset, VERITY_SIGNATURE, VERITY_SUPERBLOCK_SIZE, VerityFormatError, type VerityParams } from "../formats/verity.js";

export type DiskFileFormat = "raw" | "qcow2" | "vhd";

export interface InspectOptions {
  path: string;
  /** Default: detected from the file's magic numbers. */
  format?: DiskFileFormat | "auto";
}

export interface UsrSlotContent {
  /** The /usr filesystem, or null when no filesystem superblock was found (an empty slot). */
  filesystem: "erofs" | "squashfs" | null;
  fsBytes?: number;
  /** Bytes in use: filesystem + verity superblock + tree. */
  usedBytes: number;
  /** Percent of the partition in use, one decimal. */
  percent: number;
  verity?: VerityParams;
  /** A verity signature with a superblock behind it that does not decode. */
  verityProblem?: string;
}

export interface InspectPartition {
  number: number;
  label: string;
  typeGuid: string;
  typeName: string;
  partGuid: string;
  firstLba: number;
  lastLba: number;
  sizeBytes: number;
  /** 16 hex digits, as `sgdisk -i` prints them. */
  attributes: string;
  /** A/B state, for /usr-type partitions. */
  slot?: SlotState;
  usr?: UsrSlotContent;
}

export interface InspectResult {
  path: string;
  format: DiskFileFormat;
  /** Virtual disk size. */
  sizeBytes: number;
  sectorSize: SectorSize;
  diskGuid: string;
  firstUsableLba: number;
  lastUsableLba: number;
  partitions: InspectPartition[];
  /** The slot GRUB gptprio would boot next, or null if none is bootable. */
  boot: { number: number; label: string; decrementTries: boolean } | null;
  /** Damage found in the table (empty when `sgdisk -v` would be happy with the headers). */
  problems: string[];
  /** The A/B boot entries on the ESP (acl disks): systemd-boot's order, its next choice, and where the GPT bits disagree. */
  bootEntries?: {
    entries: { file: string; slot?: string; state: string; left?: number; done?: number; version?: string; title?: string; skipped?: string }[];
    next: string | null;
    nextSlot?: string;
    disagreements: string[];
  };
  /** For a VHD: its footer. */
  vhd?: { diskType: number; currentSize: number; timestamp: number; uniqueId: string; creatorApp: string };
}

const HEAD_TAIL_BYTES = MiB;
const QCOW_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]);

/** A read-only view of the disk bytes: the first `size` bytes of a file. */
interface DiskView {
  fh: FileHandle;
  size: number;
}

/** Bytes of the disk view, never past its end (a fixed VHD's footer is not disk). */
async function readAt(v: DiskView, offset: number, length: number): Promise<Buffer> {
  return readRange(v.fh, offset, Math.max(0, Math.min(length, v.size - offset)));
}

export async function inspectDisk(opts: InspectOptions): Promise<InspectResult> {
  const st = await stat(opts.path).catch(() => undefined);
  if (st && !st.isFile()) {
    throw new UserError(`${opts.path} is ${st.isDirectory() ? "a folder" : "not a regular file"}, not a disk image`, {
      file: opts.path,
      hint: "pass a disk image such as out/minimal/disk.raw (or disk.qcow2, disk.vhd)",
    });
  }
  let fh: FileHandle;
  try {
    fh = await open(opts.path, "r");
  } catch (e) {
    throw new UserError(`cannot open disk image ${opts.path}: ${fsReason(e)}`, {
      file: opts.path,
      hint: "pass a disk.raw, disk.qcow2 or disk.vhd from an acl output folder",
    });
  }
  let tmp: string | undefined;
  try {
    const fileSize = (await fh.stat()).size;
    const head = Buffer.alloc(Math.min(4, fileSize));
    await fh.read(head, 0, head.length, 0);
    const tailBytes = Buffer.alloc(fileSize >= VHD_FOOTER_SIZE ? VHD_FOOTER_SIZE : 0);
    if (tailBytes.length) await fh.read(tailBytes, 0, VHD_FOOTER_SIZE, fileSize - VHD_FOOTER_SIZE);
    const isQcow = head.length === 4 && head.equals(QCOW_MAGIC);
    const isVhd = tailBytes.length > 0 && tailBytes.toString("latin1", 0, 8) === VHD_COOKIE;
    const format: DiskFileFormat = !opts.format || opts.format === "auto" ? (isQcow ? "qcow2" : isVhd ? "vhd" : "raw") : opts.format;

    let view: DiskView = { fh, size: fileSize };
    let rawPath = opts.path;
    let vhd: InspectResult["vhd"];
    if (format === "qcow2" || (format === "vhd" && isVhd && decodeVhdFooter(tailBytes, { verifyChecksum: false }).diskType !== VHD_DISK_TYPES.fixed)) {
      // let qemu-img expand the image into a temporary sparse raw file
      tmp = await mkdtemp(join(tmpdir(), "acl-inspect-"));
      const raw = join(tmp, "disk.raw");
      await run(["qemu-img", "convert", "-f", format === "qcow2" ? "qcow2" : "vpc", "-O", "raw", opts.path, raw], {
        hint: `is ${opts.path} really a ${format} image?`,
      });
      rawPath = raw;
      const rfh = await open(raw, "r");
      view = { fh: rfh, size: (await rfh.stat()).size };
    }
    if (format === "vhd") {
      if (!isVhd) throw new UserError(`${opts.path} has no VHD footer ("conectix" in its last 512 bytes)`, { file: opts.path, hint: "drop --format vhd, or pass a VHD" });
      const f = decodeVhdFooter(tailBytes);
      vhd = { diskType: f.diskType, currentSize: Number(f.currentSize), timestamp: f.timestamp, uniqueId: f.uniqueId, creatorApp: f.creatorApp };
      if (f.diskType === VHD_DISK_TYPES.fixed) view = { fh, size: fileSize - VHD_FOOTER_SIZE };
    }
    try {
      const r = await inspectView(view, opts.path, format);
      const bootEntries = await readEntries(r, rawPath, view.size);
      return { ...r, ...(bootEntries ? { bootEntries } : {}), ...(vhd ? { vhd } : {}) };
    } finally {
      if (view.fh !== fh) await view.fh.close();
    }
  } finally {
    await fh.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}

/** The ESP's boot entries, for disks with an ESP and both /usr slots (acl's A/B layout). */
async function readEntries(r: InspectResult, rawPath: string, size: number): Promise<InspectResult["bootEntries"]> {
  const labels = new Set(r.partitions.map((p) => p.label));
  if (!labels.has("USR-A") || !labels.has("USR-B") || !r.partitions.some((p) => p.typeGuid === TYPE_GUIDS.efiSystem)) return undefined;
  const st = await readBootState(rawPath, size);
  return {
    entries: st.entries.map((e) => ({ file: e.file, slot: e.slot, state: e.state, left: e.left, done: e.done, version: e.version, title: e.title, skipped: e.skipped })),
    next: st.next?.file ?? null,
    nextSlot: st.next?.slot,
    disagreements: st.disagreements,
  };
}

async function inspectView(v: DiskView, path: string, format: DiskFileFormat): Promise<InspectResult> {
  const head = await readAt(v, 0, HEAD_TAIL_BYTES);
  const tailLen = Math.min(HEAD_TAIL_BYTES, v.size);
  const tail = await readAt(v, v.size - tailLen, tailLen);
  const gpt = decodeGpt({ head, tail, diskSizeBytes: v.size });
  const ss = gpt.sectorSize;
  const partitions: InspectPartition[] = [];
  for (const p of [...gpt.partitions].sort((a, b) => a.number - b.number)) {
    const sizeBytes = Number(p.lastLba - p.firstLba + 1n) * ss;
    const ip: InspectPartition = {
      number: p.number,
      label: p.name,
      typeGuid: p.typeGuid,
      typeName: TYPE_NAMES[p.typeGuid] ?? "unknown",
      partGuid: p.partGuid,
      firstLba: Number(p.firstLba),
      lastLba: Number(p.lastLba),
      sizeBytes,
      attributes: formatAttributes(p.attributes),
    };
    if (p.typeGuid === TYPE_GUIDS.coreosUsr) {
      ip.slot = getSlotState(p.attributes);
      ip.usr = await readUsrSlot(v, Number(p.firstLba) * ss, sizeBytes);
    }
    partitions.push(ip);
  }
  const choice = chooseSlot(gpt.partitions);
  return {
    path,
    format,
    sizeBytes: v.size,
    sectorSize: ss,
    diskGuid: gpt.diskGuid,
    firstUsableLba: Number(gpt.firstUsableLba),
    lastUsableLba: Number(gpt.lastUsableLba),
    partitions,
    boot: choice ? { number: choice.partition.number, label: choice.partition.name, decrementTries: choice.decrementTries } : null,
    problems: gpt.problems,
  };
}

/**
 * A /usr slot: erofs (superblock at byte 1024) or squashfs (at byte 0) at its
 * start gives the filesystem size; the verity superblock sits at that size
 * rounded up to 4 KiB (or to 1 MiB), the tree behind it; the root hash is the
 * digest of the top block.
 */
async function readUsrSlot(v: DiskView, offset: number, sizeBytes: number): Promise<UsrSlotContent> {
  const head = await readAt(v, offset, EROFS_SUPER_OFFSET + EROFS_SUPER_SIZE);
  const pct = (used: number) => Math.round((used / sizeBytes) * 1000) / 10;
  let filesystem: "erofs" | "squashfs";
  let fsBytes: number;
  const erofs = head.subarray(EROFS_SUPER_OFFSET);
  try {
    if (erofs.length >= EROFS_SUPER_SIZE && isErofsSuperblock(erofs)) {
      filesystem = "erofs";
      fsBytes = decodeErofsSuperblock(erofs).sizeBytes;
    } else if (head.length >= SQUASHFS_SUPER_SIZE && isSquashfsSuperblock(head)) {
      filesystem = "squashfs";
      fsBytes = Number(decodeSquashfsSuperblock(head).bytesUsed);
    } else return { filesystem: null, usedBytes: 0, percent: 0 };
  } catch {
    // a magic number with nonsense behind it: not a filesystem acl wrote
    return { filesystem: null, usedBytes: 0, percent: 0 };
  }
  const candidates = [...new Set([roundUp(fsBytes, 4096), roundUp(fsBytes, MiB)])];
  let damaged: string | undefined;
  for (const hashOffset of candidates) {
    if (hashOffset + VERITY_SUPERBLOCK_SIZE > sizeBytes) continue;
    const raw = await readAt(v, offset + hashOffset, VERITY_SUPERBLOCK_SIZE);
    if (!raw.subarray(0, 8).equals(VERITY_SIGNATURE)) continue;
    let got: Awaited<ReturnType<typeof readVerityRoot>>;
    try {
      got = await readVerityRoot((o, n) => readAt(v, offset + o, n), hashOffset);
    } catch (e) {
      if (!(e instanceof VerityFormatError)) throw e;
      // the signature is there and what follows is not a superblock veritysetup wrote: said, not fatal
      damaged = `the verity superblock at ${hashOffset} is damaged: ${e.message}`;
      continue;
    }
    const { sb: vsb, root: rootHash } = got;
    const dataBlocks = Number(vsb.dataBlocks);
    const layout = treeLayout(dataBlocks, vsb.hashBlockSize);
    const treeStart = treeOffset(hashOffset, vsb.hashBlockSize);
    const usedBytes = treeStart + layout.totalBlocks * vsb.hashBlockSize;
    return {
      filesystem,
      fsBytes,
      usedBytes,
      percent: pct(usedBytes),
      verity: {
        rootHash: rootHash.toString("hex"),
        salt: vsb.salt.toString("hex"),
        hashOffset,
        dataBlocks,
        dataBlockSize: vsb.dataBlockSize,
        hashBlockSize: vsb.hashBlockSize,
        hashType: vsb.hashType,
        algorithm: vsb.algorithm,
        uuid: vsb.uuid,
      },
    };
  }
  return { filesystem, fsBytes, usedBytes: fsBytes, percent: pct(fsBytes), ...(damaged ? { verityProblem: damaged } : {}) };
}
