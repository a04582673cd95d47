/**
 * The initramfs: a reproducible newc archive (our cpio writer, gzip -n
 * equivalent) with busybox-static, the kernel modules the early boot needs
 * (closure from modules.dep), veritysetup and blkid with their shared
 * libraries (ldd closure), and the generated /init.
 */
import { createHash } from "node:crypto";
import { readFile, lstat, writeFile, mkdir, rename } from "node:fs/promises";
import { dirname, join, posix } from "node:path";
import { gunzipSync, gzipSync, zstdDecompressSync, constants as zc } from "node:zlib";
import { run, runBytes, tools, type Requirement } from "../../adapters/exec.js";
import { UserError } from "../../errors.js";
import { encodeCpio, type CpioEntry } from "../../formats/cpio.js";
import { elfInterpreter } from "../../formats/elf.js";
import type { Microarch } from "../../formats/microarch.js";
import type { Reporter } from "../../output/reporter.js";
import { renderInitScript, type CorruptionPolicy, type InitKind } from "./init-script.js";

/**
 * Modules /init loads on every boot (virtio/NVMe storage, device-mapper,
 * erofs). Missing ones are fine when built in or absent from the flavour.
 */
export const BOOT_MODULES = ["virtio_pci", "virtio_blk", "nvme", "dm_mod", "dm_verity", "erofs", "ext4"] as const;
/**
 * Loaded only when /init sees the hardware (each insmod costs time under
 * emulation): Hyper-V storage on Azure (DMI vendor "Microsoft Corporation"),
 * virtio-scsi (a virtio device of type 8), AHCI (a PCI SATA controller,
 * class 0x0106; not in Debian's -cloud flavour).
 */
export const HARDWARE_MODULES = {
  hyperv: ["hv_storvsc", "sd_mod"],
  virtioScsi: ["virtio_scsi", "sd_mod"],
  ahci: ["ahci", "sd_mod"],
} as const;
/**
 * Loaded by /init only in an image with [ignition]: the ESP's FAT (its first-boot flag; FAT's
 * code page and UTF-8 tables as Debian's defaults name them) and, for platform qemu, fw_cfg.
 */
export const IGNITION_MODULES = ["vfat", "nls_cp437", "nls_ascii", "nls_utf8"] as const;
export const FW_CFG_MODULE = "qemu_fw_cfg";
/** Shipped too, loaded only when needed (squashfs when /usr is not erofs; the Ignition ones). */
export const ON_DEMAND_MODULES = ["squashfs", "overlay", ...IGNITION_MODULES, FW_CFG_MODULE] as const;
export const INITRAMFS_MODULES = [
  ...BOOT_MODULES, ...HARDWARE_MODULES.hyperv, ...HARDWARE_MODULES.virtioScsi, ...HARDWARE_MODULES.ahci, ...ON_DEMAND_MODULES,
].filter((m, i, a) => a.indexOf(m) === i);
/** Without these (as module or built in) no acl image can boot. */
export const ESSENTIAL_MODULES = ["dm_mod", "dm_verity", "erofs", "ext4"] as const;

export const HOST_BUSYBOX = "/bin/busybox";
export const HOST_BINARIES = { veritysetup: "/usr/sbin/veritysetup", blkid: "/usr/sbin/blkid" } as const;

/** What building an initramfs takes from the host: the binaries it copies in, ldd for their libraries, xz for .ko.xz modules. */
export const INITRAMFS_REQUIREMENTS: readonly Requirement[] = [
  { file: HOST_BUSYBOX, package: "busybox-static" },
  { file: HOST_BINARIES.veritysetup, package: "cryptsetup-bin" },
  { file: HOST_BINARIES.blkid, package: "util-linux" },
  ...tools("ldd", "xz"),
];

export interface BuildInitramfsOptions {
  release: string;
  /** Tree holding usr/lib/modules/<release> with modules.dep. */
  rootDir: string;
  microarch: Microarch;
  corruption: CorruptionPolicy;
  init: InitKind;
  outFile: string;
  sourceDateEpoch: number;
  /** Default "gzip". */
  compression?: "gzip" | "none";
  /** The image runs Ignition on first boot, reading these platforms in order. */
  ignition?: { platforms: readonly string[] };
  reporter?: Reporter;
}

export interface InitramfsResult {
  path: string;
  sha256: string;
  size: number;
  /** Module names included, in dependency order. */
  modules: string[];
  /** The ones /init loads on every boot, in load order. */
  bootModules: string[];
}

/** Module name as the kernel knows it: basename without .ko[.xz|.zst|.gz], dashes as underscores. */
export function moduleName(path: string): string {
  return posix.basename(path).replace(/\.ko(\.(xz|zst|gz))?$/, "").replace(/-/g, "_");
}

/** Parse modules.dep: module path -> its dependency paths (full closure, as depmod writes it). */
export function parseModulesDep(text: string): Map<string, string[]> {
  const deps = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const i = line.indexOf(":");
    if (i < 0) continue;
    const mod = line.slice(0, i).trim();
    const rest = line.slice(i + 1).trim();
    deps.set(mod, rest ? rest.split(/\s+/) : []);
  }
  return deps;
}

/**
 * Load order for the wanted modules: each module after its dependencies.
 * Returns module paths (relative to the release dir), the names that are
 * built in, and the names that exist nowhere.
 */
export function moduleClosure(
  dep: Map<string, string[]>,
  builtin: ReadonlySet<string>,
  wanted: readonly string[],
): { order: string[]; builtin: string[]; missing: string[] } {
  const byName = new Map<string, string>();
  for (const p of dep.keys()) byName.set(moduleName(p), p);
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (p: string, stack: string[]) => {
    if (seen.has(p)) return;
    if (stack.includes(p)) throw new UserError(`modules.dep has a dependency cycle: ${[...stack, p].join(" -> ")}`);
    // depmod lists the closure with the deepest dependency last; visit each first
    for (const d of [...(dep.get(p) ?? [])].reverse()) visit(d, [...stack, p]);
    seen.add(p);
    order.push(p);
  };
  const isBuiltin: string[] = [];
  const missing: string[] = [];
  for (const w of wanted) {
    const p = byName.get(w.replace(/-/g, "_"));
    if (p) visit(p, []);
    else if (builtin.has(w.replace(/-/g, "_"))) isBuiltin.push(w);
    else missing.push(w);
  }
  return { order, builtin: isBuiltin, missing };
}

/** Parse `ldd` output into the absolute paths of the libraries and the loader. */
export function parseLdd(text: string): string[] {
  const out = new Set<string>();
  for (const line of text.split("\n")) {
    const arrow = /=>\s+(\/\S+)\s+\(/.exec(line);
    if (arrow) out.add(arrow[1]!);
    else {
      const direct = /^\s*(\/\S+)\s+\(/.exec(line);
      if (direct) out.add(direct[1]!);
    }
    if (/not found/.test(line)) throw new UserError(`a library is missing on the build host: ${line.trim()}`);
  }
  return [...out].sort();
}

async function decompressModule(path: string): Promise<Buffer> {
  if (path.endsWith(".ko")) return readFile(path);
  if (path.endsWith(".ko.zst")) return zstdDecompressSync(await readFile(path));
  if (path.endsWith(".ko.gz")) return gunzipSync(await readFile(path));
  if (path.endsWith(".ko.xz")) return runBytes(["xz", "-dc", path], { hint: "install xz-utils" });
  throw new UserError(`unknown kernel module format: ${path}`);
}

/** Add every parent directory of a path as a 0755 directory entry. */
function addParents(dirs: Set<string>, p: string): void {
  let d = posix.dirname(p);
  while (d !== "." && d !== "/" && d !== "") {
    dirs.add(d);
    d = posix.dirname(d);
  }
}

/** The archive before compression (what the initramfs stage's cache id is made from) and what it holds. */
export interface InitramfsArchive {
  /** The uncompressed newc archive. */
  cpio: Uint8Array;
  modules: string[];
  bootModules: string[];
}

/** Build the uncompressed archive: reads the host binaries and the tree's modules, renders /init. */
export async function collectInitramfs(opts: Omit<BuildInitramfsOptions, "outFile" | "compression">): Promise<InitramfsArchive> {
  const files: CpioEntry[] = [];
  const dirs = new Set<string>(["dev", "proc", "sys", "run", "tmp", "sysroot", "etc", "bin", "sbin", "lib", "lib64"]);
  const add = (e: CpioEntry) => {
    addParents(dirs, e.path);
    files.push(e);
  };

  // busybox-static and its applets
  const busybox = await readFile(HOST_BUSYBOX);
  if (elfInterpreter(busybox) !== null) {
    throw new UserError(`${HOST_BUSYBOX} is not a static binary`, { hint: "apt-get install busybox-static (replaces the dynamic busybox)" });
  }
  add({ path: "bin/busybox", type: "file", perm: 0o755, data: busybox });
  const applets = (await run([HOST_BUSYBOX, "--list"])).stdout.split("\n").map((s) => s.trim()).filter((s) => /^[A-Za-z0-9_.[\]-]+$/.test(s) && s !== "busybox");
  for (const a of applets) add({ path: `bin/${a}`, type: "symlink", perm: 0o777, target: "busybox" });

  // veritysetup and blkid with their shared libraries, at the paths ldd names
  const libs = new Set<string>();
  for (const [name, hostPath] of Object.entries(HOST_BINARIES)) {
    try {
      await lstat(hostPath);
    } catch {
      throw new UserError(`${hostPath} is missing on the build host`, { hint: name === "veritysetup" ? "apt-get install cryptsetup-bin" : "apt-get install util-linux" });
    }
    add({ path: `sbin/${name}`, type: "file", perm: 0o755, data: await readFile(hostPath) });
    for (const l of parseLdd((await run(["ldd", hostPath])).stdout)) libs.add(l);
  }
  for (const l of [...libs].sort()) {
    add({ path: l.replace(/^\/+/, ""), type: "file", perm: 0o755, data: await readFile(l) });
  }

  // kernel modules: closure from modules.dep
  const modDir = join(opts.rootDir, "usr/lib/modules", opts.release);
  let depText: string;
  try {
    depText = await readFile(join(modDir, "modules.dep"), "utf8");
  } catch {
    throw new UserError(`no modules.dep in ${modDir}`, { hint: "install the kernel first (installKernel runs depmod)" });
  }
  const builtinText = await readFile(join(modDir, "modules.builtin"), "utf8").catch(() => "");
  const builtin = new Set(builtinText.split("\n").filter(Boolean).map(moduleName));
  const closure = moduleClosure(parseModulesDep(depText), builtin, INITRAMFS_MODULES);
  const absent = ESSENTIAL_MODULES.filter((m) => closure.missing.includes(m));
  if (absent.length) {
    throw new UserError(`kernel ${opts.release} has neither a module nor a built-in driver for: ${absent.join(", ")}`, {
      hint: "choose a kernel flavour with dm-verity, erofs and ext4 support (Debian's cloud-amd64 has them)",
    });
  }
  const plain = (p: string) => p.replace(/\.(xz|zst|gz)$/, "");
  for (const p of closure.order) {
    add({ path: `lib/modules/${opts.release}/${plain(p)}`, type: "file", perm: 0o644, data: await decompressModule(join(modDir, p)) });
  }
  const dep = parseModulesDep(depText);
  const loadOrder = moduleClosure(dep, builtin, BOOT_MODULES).order.map(plain);
  const squashfsOrder = moduleClosure(dep, builtin, ["squashfs"]).order.map(plain);
  // a group whose driver (first name) the kernel lacks is empty: nothing to load for that hardware
  const group = (names: readonly string[]) => {
    const c = moduleClosure(dep, builtin, names);
    return c.missing.includes(names[0]!) ? [] : c.order.map(plain);
  };
  const hardware = { hyperv: group(HARDWARE_MODULES.hyperv), virtioScsi: group(HARDWARE_MODULES.virtioScsi), ahci: group(HARDWARE_MODULES.ahci) };
  let ignition: { platforms: readonly string[]; modules: string[] } | undefined;
  if (opts.ignition) {
    const names = [...IGNITION_MODULES, ...(opts.ignition.platforms.includes("qemu") ? [FW_CFG_MODULE] : [])];
    const c = moduleClosure(dep, builtin, names);
    // a missing vfat means the flag cannot be read: every boot would be a first boot, or none
    if (c.missing.includes("vfat")) throw new UserError(`kernel ${opts.release} has no vfat (as a module or built in): the initramfs cannot read Ignition's first-boot flag on the ESP`, { hint: "use a kernel package with FAT support, such as linux-image-cloud-amd64" });
    ignition = { platforms: opts.ignition.platforms, modules: c.order.map(plain) };
  }

  add({
    path: "init",
    type: "file",
    perm: 0o755,
    data: new TextEncoder().encode(
      renderInitScript({ release: opts.release, microarch: opts.microarch, corruption: opts.corruption, init: opts.init, modules: loadOrder, hardwareModules: hardware, squashfsModules: squashfsOrder, ignition }),
    ),
  });
  add({ path: "etc/initrd-release", type: "file", perm: 0o644, data: new TextEncoder().encode(`NAME="acl initramfs"\nID=acl-initrd\n`) });
  add({ path: "dev/console", type: "char", perm: 0o600, rdevMajor: 5, rdevMinor: 1 });
  add({ path: "dev/null", type: "char", perm: 0o666, rdevMajor: 1, rdevMinor: 3 });
  const entries: CpioEntry[] = [
    ...[...dirs].filter((d) => !files.some((f) => f.path === d)).map((d): CpioEntry => ({ path: d, type: "dir", perm: d === "tmp" ? 0o1777 : 0o755 })),
    ...files,
  ];
  if (closure.missing.length) opts.reporter?.info(`initramfs: not in kernel ${opts.release}: ${closure.missing.join(", ")}`);
  return { cpio: encodeCpio(entries, { mtime: opts.sourceDateEpoch }), modules: closure.order.map(moduleName), bootModules: loadOrder.map(moduleName) };
}

/** Compress an archive (zlib's gzip header has mtime 0 and no name: the same bytes `gzip -n` aims for) and write it, by rename. */
export async function writeInitramfs(archive: InitramfsArchive, outFile: string, compression: "gzip" | "none" = "gzip"): Promise<InitramfsResult> {
  const bytes = compression === "gzip" ? gzipSync(archive.cpio, { level: zc.Z_BEST_COMPRESSION }) : Buffer.from(archive.cpio);
  await mkdir(dirname(outFile), { recursive: true });
  const tmp = `${outFile}.tmp-${process.pid}`;
  await writeFile(tmp, bytes);
  await rename(tmp, outFile);
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  return { path: outFile, sha256, size: bytes.length, modules: archive.modules, bootModules: archive.bootModules };
}

/** Collect and write in one step (the boot tests' images). */
export async function buildInitramfs(opts: BuildInitramfsOptions): Promise<InitramfsResult> {
  return writeInitramfs(await collectInitramfs(opts), opts.outFile, opts.compression);
}
