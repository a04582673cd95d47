/**
 * Disk assembly: GPT + ESP (FAT32) + USR-A (the /usr payload: filesystem and
 * verity tree) + empty USR-B + OEM and ROOT (ext4), written into a sparse raw
 * file, then converted to qcow2 (qemu-img) and a fixed VHD (the raw file
 * copied with its holes, plus the footer qemu-img makes for that size). No loop devices, no mounts:
 * every filesystem is made as an image file and copied in at its offset.
 *
 * Reproducible: GUIDs, volume ids, filesystem UUIDs and hash seeds derive
 * from name + version; file times come from SOURCE_DATE_EPOCH (mtools reads
 * it, mke2fs gets E2FSPROGS_FAKE_TIME and debugfs resets the times it copies
 * from the host); the VHD footer's timestamp and UUID are rewritten.
 */
import { lstat, mkdir, open, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run, tools, type Requirement, type RunOptions, type RunResult } from "../../adapters/exec.js";
import { UserError } from "../../errors.js";
import { encodeGpt, formatAttributes } from "../../formats/gpt.js";
import { VHD_FOOTER_SIZE, withDeterministicFooter } from "../../formats/vhd-footer.js";
import { silentReporter, type Reporter } from "../../output/reporter.js";
import type { Manifest } from "../../pipeline/manifest.js";
import { walk as walkTree } from "../../util/fs.js";
import { sha256Composed, type Piece } from "../../util/hash.js";
import { dataExtents, EXTENT_TOOLS } from "./extents.js";
import { formatMiB, MiB } from "../../util/size.js";
import { deriveGuid, layoutTable, planDiskLayout, type DiskLayout, type DiskSizes, type LayoutPartition } from "./layout.js";

export type DiskFormat = "raw" | "qcow2" | "vhd";
/**
 * The manifest's `disk` record: LBAs in sectors of `sectorSize`, attributes as
 * 16 hex digits (as `sgdisk -i` prints them), `used` = payload bytes in a /usr slot.
 */
export type DiskInfo = NonNullable<Manifest["disk"]>;

export const DISK_FILE_NAMES: Readonly<Record<DiskFormat, string>> = { raw: "disk.raw", qcow2: "disk.qcow2", vhd: "disk.vhd" };
const KIND: Readonly<Record<DiskFormat, "disk-raw" | "disk-qcow2" | "disk-vhd">> = { raw: "disk-raw", qcow2: "disk-qcow2", vhd: "disk-vhd" };

export interface AssembleDiskOptions {
  /** Scratch folder (created; partition images and the raw disk are built here). */
  workDir: string;
  /** Where the finished disk files are moved (created). */
  outDir: string;
  name: string;
  version: string;
  sourceDateEpoch: number;
  /** File: /usr filesystem followed by its verity hash tree. */
  usrPayload: string;
  /** Tree of files for the ESP. */
  espDir?: string;
  oemDir?: string;
  /** Initial content of ROOT. */
  rootDir?: string;
  sizes: DiskSizes;
  formats: DiskFormat[];
  reporter?: Reporter;
}

export interface SlotFill {
  number: number;
  label: string;
  usedBytes: number;
  sizeBytes: number;
  /** Percent of the slot in use, one decimal. */
  percent: number;
}

export interface AssembleDiskResult {
  /** With the sha256 of the raw disk and the fixed VHD (from the raw disk's data ranges; qcow2's is left to the caller). */
  files: { kind: "disk-raw" | "disk-qcow2" | "disk-vhd"; path: string; sha256?: string }[];
  disk: DiskInfo;
  layout: DiskLayout;
  slots: SlotFill[];
  /** Wall time of the whole assembly and the part spent inside external tool calls (for the bench). */
  timing: { totalMs: number; toolMs: number; toolCalls: number };
}

/** Tools the disk stage calls (qemu-img for every format: it maps the sparse files' data). */
export function diskRequirements(): Requirement[] {
  return [...tools("mkfs.vfat", "mmd", "mcopy", "mkfs.ext4", "debugfs", "cp"), ...EXTENT_TOOLS];
}

const CHUNK = 4 * MiB;
const SPARSE_BLOCK = 64 * 1024;

export async function assembleDisk(opts: AssembleDiskOptions): Promise<AssembleDiskResult> {
  const t0 = performance.now();
  const rep = opts.reporter ?? silentReporter;
  const formats = [...new Set(opts.formats)];
  if (formats.length === 0) throw new UserError("no disk formats requested", { hint: "ask for at least one of raw, qcow2, vhd" });
  if (!Number.isInteger(opts.sourceDateEpoch) || opts.sourceDateEpoch < 0)
    throw new UserError(`SOURCE_DATE_EPOCH ${opts.sourceDateEpoch} is not a whole number of seconds`, { hint: "set SOURCE_DATE_EPOCH to a Unix time" });

  let toolMs = 0;
  let toolCalls = 0;
  const tool = async (argv: string[], o: RunOptions = {}): Promise<RunResult> => {
    const s = performance.now();
    try {
      return await run(argv, { ...o, env: { TZ: "UTC", SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch), ...o.env } });
    } finally {
      toolMs += performance.now() - s;
      toolCalls++;
    }
  };

  const layout = planDiskLayout({ name: opts.name, version: opts.version, sizes: opts.sizes });
  const byRole = (role: LayoutPartition["role"]) => layout.partitions.find((p) => p.role === role);
  const usrA = byRole("usr-a")!;
  const usrB = byRole("usr-b")!;

  // --- does /usr fit its slot?
  let payloadSize: number;
  try {
    payloadSize = (await stat(opts.usrPayload)).size;
  } catch {
    throw new UserError(`USR payload ${opts.usrPayload} does not exist`, { file: opts.usrPayload, hint: "build the /usr image and verity tree first" });
  }
  const slots: SlotFill[] = [usrA, usrB].map((p) => {
    const used = p === usrA ? payloadSize : 0;
    return { number: p.number, label: p.name, usedBytes: used, sizeBytes: p.sizeBytes, percent: Math.round((used / p.sizeBytes) * 1000) / 10 };
  });
  const fillText = slots.map((s) => `${s.label} ${mib(s.usedBytes)} of ${mib(s.sizeBytes)} (${s.percent}%)`).join(", ");
  if (payloadSize > usrA.sizeBytes) {
    const need = Math.ceil(payloadSize / MiB);
    throw new UserError(
      `the /usr payload (${mib(payloadSize)}, filesystem + verity tree) does not fit the USR-A slot (${mib(usrA.sizeBytes)}): ${fillText}`,
      { file: opts.usrPayload, hint: `raise 'partitions.usr' in the spec to at least "${need}MiB" (both slots grow), or make /usr smaller` },
    );
  }
  rep.info(`slots: ${fillText}`);

  await mkdir(opts.workDir, { recursive: true });
  await mkdir(opts.outDir, { recursive: true });
  const rawPath = join(opts.workDir, DISK_FILE_NAMES.raw);
  await rm(rawPath, { force: true });

  // --- partition images
  const esp = byRole("esp")!;
  let st = rep.stage("disk: ESP (FAT32)", mib(esp.sizeBytes));
  const espImg = join(opts.workDir, "esp.img");
  await makeEsp(espImg, esp, opts, tool);
  st.end();

  st = rep.stage("disk: OEM and ROOT (ext4)");
  const oem = byRole("oem")!;
  const root = byRole("root")!;
  const oemImg = join(opts.workDir, "oem.img");
  const rootImg = join(opts.workDir, "root.img");
  await makeExt4(oemImg, oem, opts.oemDir, "OEM", opts, tool);
  await makeExt4(rootImg, root, opts.rootDir, "ROOT", opts, tool);
  st.end();

  // --- the raw disk: GPT at both ends, each partition at its offset
  st = rep.stage("disk: raw", mib(layout.sizeBytes));
  const gpt = encodeGpt(layoutTable(layout), layout.sizeBytes, layout.sectorSize);
  const fh = await open(rawPath, "w+");
  try {
    await fh.truncate(layout.sizeBytes);
    await fh.write(gpt.primary, 0, gpt.primary.length, 0);
    await fh.write(gpt.backup, 0, gpt.backup.length, Number(gpt.backupOffset));
    await copyInto(espImg, fh, esp.offsetBytes);
    await copyInto(opts.usrPayload, fh, usrA.offsetBytes);
    await copyInto(oemImg, fh, oem.offsetBytes);
    await copyInto(rootImg, fh, root.offsetBytes);
  } finally {
    await fh.close();
  }
  await Promise.all([espImg, oemImg, rootImg].map((f) => rm(f, { force: true })));
  st.end();

  // --- conversions, while a worker hashes the raw disk's data ranges (its holes are never read)
  const pieces: Piece[] = (await dataExtents(rawPath)).map((e) => ({ offset: e.start, file: rawPath, start: e.start, length: e.length }));
  let footer: Buffer | undefined;
  if (formats.includes("vhd")) {
    const vhdEmpty = join(opts.workDir, "footer.vhd");
    // a fixed VHD is the raw disk followed by a 512-byte footer: the footer qemu-img writes for an
    // empty fixed VHD of that size (made deterministic); its sha256 continues the raw disk's
    await tool(["qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=fixed,force_size=on", vhdEmpty, String(layout.sizeBytes)]);
    footer = await fixVhdFooter(vhdEmpty, layout.sizeBytes, opts);
    await rm(vhdEmpty, { force: true });
  }
  const digests = sha256Composed(layout.sizeBytes, pieces, footer);
  // a failed conversion must not leave the worker's rejection unheard
  digests.catch(() => undefined);
  // qcow2 and VHD side by side: qemu-img converts while cp copies the raw disk's data
  const qcow2 = async (): Promise<{ format: DiskFormat; path: string } | undefined> => {
    if (!formats.includes("qcow2")) return undefined;
    const p = join(opts.workDir, DISK_FILE_NAMES.qcow2);
    await rm(p, { force: true });
    await tool(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1", rawPath, p]);
    return { format: "qcow2", path: p };
  };
  const fixedVhd = async (): Promise<{ format: DiskFormat; path: string } | undefined> => {
    if (!footer) return undefined;
    const p = join(opts.workDir, DISK_FILE_NAMES.vhd);
    await rm(p, { force: true });
    // the raw disk copied with its holes, and the footer
    await tool(["cp", "--sparse=always", "--reflink=auto", rawPath, p]);
    const fv = await open(p, "r+");
    try {
      await fv.write(footer, 0, VHD_FOOTER_SIZE, layout.sizeBytes);
    } finally {
      await fv.close();
    }
    return { format: "vhd", path: p };
  };
  const conversions = formats.filter((f) => f !== "raw").map((f) => (f === "vhd" ? "fixed VHD" : f));
  const conv = conversions.length ? rep.stage(`disk: ${conversions.join(" and ")}`) : undefined;
  const produced: { format: DiskFormat; path: string; sha256?: string }[] = (await Promise.all([qcow2(), fixedVhd()])).filter((x) => x !== undefined);
  conv?.end();
  const { sha256: rawSha256, withTail: vhdSha256 } = await digests;
  const vhd = produced.find((f) => f.format === "vhd");
  if (vhd) vhd.sha256 = vhdSha256;
  if (formats.includes("raw")) produced.unshift({ format: "raw", path: rawPath, sha256: rawSha256 });

  const files: AssembleDiskResult["files"] = [];
  for (const f of produced) {
    const dest = join(opts.outDir, DISK_FILE_NAMES[f.format]);
    await moveFile(f.path, dest, tool);
    files.push({ kind: KIND[f.format], path: dest, ...(f.sha256 ? { sha256: f.sha256 } : {}) });
  }
  if (!formats.includes("raw")) await rm(rawPath, { force: true });

  const disk: DiskInfo = {
    sectorSize: layout.sectorSize,
    diskGuid: layout.diskGuid,
    sizeBytes: layout.sizeBytes,
    partitions: layout.partitions.map((p) => {
      const slot = slots.find((s) => s.number === p.number);
      return {
        number: p.number,
        label: p.name,
        typeGuid: p.typeGuid,
        partGuid: p.partGuid,
        firstLba: Number(p.firstLba),
        lastLba: Number(p.lastLba),
        attributes: formatAttributes(p.attributes),
        ...(slot ? { used: slot.usedBytes } : {}),
      };
    }),
  };
  return { files, disk, layout, slots, timing: { totalMs: performance.now() - t0, toolMs, toolCalls } };
}

type Tool = (argv: string[], o?: RunOptions) => Promise<RunResult>;

const mib = formatMiB;

/** Sorted recursive walk: directories (parents first) and files, paths relative to `dir`. */
async function walk(dir: string): Promise<{ dirs: string[]; files: string[]; other: string[]; bytes: number }> {
  const out = { dirs: [] as string[], files: [] as string[], other: [] as string[], bytes: 0 };
  try {
    for await (const e of walkTree(dir)) {
      if (e.stat.isDirectory()) out.dirs.push(e.rel);
      else if (e.stat.isFile()) {
        out.files.push(e.rel);
        out.bytes += e.stat.size;
      } else out.other.push(e.rel);
    }
  } catch (e) {
    throw new UserError(`cannot read ${dir}: ${(e as Error).message}`, { file: dir });
  }
  return out;
}

async function makeEsp(img: string, part: LayoutPartition, opts: AssembleDiskOptions, tool: Tool): Promise<void> {
  await rm(img, { force: true });
  const fh = await open(img, "w");
  await fh.truncate(part.sizeBytes);
  await fh.close();
  const volumeId = deriveGuid("esp-volume-id", opts.name, opts.version).slice(0, 8);
  // a small ESP gets one 512-byte sector per cluster so that it still has the 65525
  // clusters FAT32 needs; from 512 MiB on, mkfs.vfat's own choice works
  const cluster = part.sizeBytes < 512 * MiB ? ["-s", "1"] : [];
  await tool(["mkfs.vfat", "--invariant", "-F", "32", ...cluster, "-S", "512", "-n", "EFI-SYSTEM", "-i", volumeId, img]);
  if (!opts.espDir) return;
  const tree = await walk(opts.espDir);
  if (tree.other.length)
    throw new UserError(`the ESP tree has entries FAT cannot hold (symlinks, devices): ${tree.other.slice(0, 5).join(", ")}`, {
      file: opts.espDir,
      hint: "put only regular files and directories on the ESP",
    });
  // FAT compares names case-insensitively and forbids some characters; mtools
  // would ask on stdin about a clash, so refuse such trees up front
  const seen = new Map<string, string>();
  for (const rel of [...tree.dirs, ...tree.files]) {
    const base = rel.slice(rel.lastIndexOf("/") + 1);
    if (/[\x00-\x1f"*:<>?\\|]/.test(base))
      throw new UserError(`ESP file name '${rel}' has a character FAT cannot store (one of " * : < > ? \\ | or a control character)`, {
        file: opts.espDir,
        hint: "rename the file in the ESP tree",
      });
    const key = rel.toLowerCase();
    const other = seen.get(key);
    if (other !== undefined)
      throw new UserError(`ESP names '${other}' and '${rel}' differ only in case, which FAT cannot tell apart`, { file: opts.espDir, hint: "rename one of them" });
    seen.set(key, rel);
  }
  if (tree.bytes > part.sizeBytes * 0.95)
    throw new UserError(`the ESP content (${mib(tree.bytes)}) does not fit the ${mib(part.sizeBytes)} EFI-SYSTEM partition`, {
      file: opts.espDir,
      hint: `raise 'partitions.esp' in the spec to at least "${Math.ceil((tree.bytes * 1.1) / MiB) + 1}MiB"`,
    });
  const target = (rel: string) => "::/" + rel.split("/").join("/");
  if (tree.dirs.length) await tool(["mmd", "-i", img, ...tree.dirs.map(target)]);
  // one mcopy per directory, files in sorted order; no -m: mtools stamps SOURCE_DATE_EPOCH
  const groups = new Map<string, string[]>();
  for (const f of tree.files) {
    const d = f.includes("/") ? f.slice(0, f.lastIndexOf("/")) : "";
    groups.set(d, [...(groups.get(d) ?? []), join(opts.espDir, f)]);
  }
  for (const [d, list] of groups) {
    await tool(["mcopy", "-i", img, "-Q", ...list, d ? target(d) + "/" : "::/"], {
      input: "", // never wait at a prompt
      hint: "the ESP may be too small for its content, or two names differ only in case",
    });
  }
}

async function makeExt4(img: string, part: LayoutPartition, dir: string | undefined, label: string, opts: AssembleDiskOptions, tool: Tool): Promise<void> {
  await rm(img, { force: true });
  const fh = await open(img, "w");
  await fh.truncate(part.sizeBytes);
  await fh.close();
  const uuid = deriveGuid("ext4-uuid", opts.name, opts.version, label).toLowerCase();
  const seed = deriveGuid("ext4-hash-seed", opts.name, opts.version, label).toLowerCase();
  const env = { E2FSPROGS_FAKE_TIME: String(opts.sourceDateEpoch) };
  let tree: Awaited<ReturnType<typeof walk>> | undefined;
  if (dir) {
    tree = await walk(dir);
    if (tree.bytes > part.sizeBytes * 0.9)
      throw new UserError(`the ${label} content (${mib(tree.bytes)}) does not fit the ${mib(part.sizeBytes)} ${label} partition`, {
        file: dir,
        hint: `raise 'partitions.${label.toLowerCase()}' in the spec to at least "${Math.ceil((tree.bytes * 1.2) / MiB) + 4}MiB"`,
      });
  }
  await tool(
    [
      "mkfs.ext4", "-q", "-F", "-b", "4096", "-L", label, "-U", uuid,
      "-E", `hash_seed=${seed},root_owner=0:0`,
      ...(dir ? ["-d", dir] : []),
      img,
    ],
    { env, hint: `the ${label} partition may be too small for its content` },
  );
  if (!tree) return;
  // mke2fs -d copies atime and ctime (and mtime) from the host files: reset
  // atime/ctime to SOURCE_DATE_EPOCH and clamp mtime to it.
  const epoch = opts.sourceDateEpoch;
  const lines = [`set_inode_field / atime @${epoch}`, `set_inode_field / ctime @${epoch}`, `set_inode_field / mtime @${epoch}`];
  const all = [...tree.dirs, ...tree.files, ...tree.other].sort();
  for (const rel of all) {
    if (/["\n\\]/.test(rel))
      throw new UserError(`cannot place '${rel}' reproducibly: its name contains a quote, backslash or newline`, { file: dir, hint: "rename the file" });
    const p = `"/${rel}"`;
    lines.push(`set_inode_field ${p} atime @${epoch}`, `set_inode_field ${p} ctime @${epoch}`);
    const m = Math.floor((await lstat(join(dir!, rel))).mtimeMs / 1000);
    if (m > epoch) lines.push(`set_inode_field ${p} mtime @${epoch}`);
  }
  const cmdFile = `${img}.debugfs`;
  await writeFile(cmdFile, lines.join("\n") + "\n");
  const r = await tool(["debugfs", "-w", "-f", cmdFile, img], { env });
  await rm(cmdFile, { force: true });
  const bad = r.stderr.split("\n").filter((l) => l.trim() && !l.startsWith("debugfs "));
  if (bad.length) throw new UserError(`debugfs could not reset file times in ${label}: ${bad.slice(0, 3).join("; ")}`, { file: dir });
}

/** Copy `src` into `dst` at `offset`: only its data ranges, skipping all-zero blocks in them, so the raw file stays sparse. */
async function copyInto(src: string, dst: import("node:fs/promises").FileHandle, offset: number): Promise<void> {
  const fh = await open(src, "r");
  const buf = Buffer.alloc(CHUNK);
  try {
    for (const e of await dataExtents(src)) {
      for (let pos = e.start; pos < e.start + e.length; ) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(CHUNK, e.start + e.length - pos), pos);
        if (bytesRead === 0) throw new UserError(`${src} ends at byte ${pos}, inside the data range qemu-img map reported`, { file: src });
        // write runs of non-zero 64 KiB blocks; holes stay holes
        let runStart = -1;
        for (let b = 0; b <= bytesRead; b += SPARSE_BLOCK) {
          const end = Math.min(b + SPARSE_BLOCK, bytesRead);
          const zero = b >= bytesRead || isZero(buf.subarray(b, end));
          if (!zero && runStart < 0) runStart = b;
          if (zero && runStart >= 0) {
            await dst.write(buf, runStart, b - runStart, offset + pos + runStart);
            runStart = -1;
          }
        }
        if (runStart >= 0) await dst.write(buf, runStart, bytesRead - runStart, offset + pos + runStart);
        pos += bytesRead;
      }
    }
  } finally {
    await fh.close();
  }
}

const ZEROS = Buffer.alloc(SPARSE_BLOCK);

/** All-zero test through memcmp (Buffer.equals) against a zero block. */
function isZero(b: Buffer): boolean {
  return b.length <= ZEROS.length ? b.equals(ZEROS.subarray(0, b.length)) : b.every((x) => x === 0);
}

/** Make the footer qemu-img wrote deterministic, in place; returns it. */
async function fixVhdFooter(path: string, diskBytes: number, opts: AssembleDiskOptions): Promise<Buffer> {
  const fh = await open(path, "r+");
  try {
    const { size } = await fh.stat();
    if (size !== diskBytes + VHD_FOOTER_SIZE)
      throw new UserError(`qemu-img wrote a ${size}-byte VHD for a ${diskBytes}-byte disk; a fixed VHD must be the disk plus a 512-byte footer`, {
        file: path,
        hint: "check that this qemu-img supports -o subformat=fixed,force_size=on",
      });
    const footer = Buffer.alloc(VHD_FOOTER_SIZE);
    await fh.read(footer, 0, VHD_FOOTER_SIZE, diskBytes);
    const fixed = withDeterministicFooter(footer, {
      unixSeconds: opts.sourceDateEpoch,
      uniqueId: deriveGuid("vhd", opts.name, opts.version).toLowerCase(),
    });
    await fh.write(fixed, 0, VHD_FOOTER_SIZE, diskBytes);
    return fixed;
  } finally {
    await fh.close();
  }
}

async function moveFile(src: string, dest: string, tool: Tool): Promise<void> {
  await rm(dest, { force: true });
  try {
    await rename(src, dest);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw e;
    await tool(["cp", "--sparse=always", src, dest]);
    await rm(src, { force: true });
  }
}
