/**
 * The only module that runs external programs (through execa). Every call is
 * an argv array; a failure becomes an ExternalToolError that shows a
 * copy-pasteable command and the tail of stderr.
 */
import { execa } from "execa";
import { access } from "node:fs/promises";
import { ExternalToolError, UserError } from "../errors.js";
import { GiB, MiB } from "../util/size.js";

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  input?: string | Buffer;
  /** Hint shown when the command fails. */
  hint?: string;
  /** Exit codes that count as success (default [0]). */
  okCodes?: number[];
  timeoutMs?: number;
  /** Return stdout as a Buffer instead of a string. */
  binary?: boolean;
  /**
   * Give `input` through a pipe(2), for tools that open /dev/stdin by name
   * (sbsign --key /dev/stdin): Node's stdin is a socket, which cannot be
   * opened that way. Used for secrets, which must never touch a disk.
   */
  inputPipe?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  if (!argv[0]) throw new Error("run: empty argv");
  const [file, ...args] = opts.inputPipe ? ["sh", "-c", 'cat | "$@"', "sh", ...argv] : argv;
  const r = await execa(file!, args, {
    cwd: opts.cwd,
    env: { PATH: toolPath(), LC_ALL: "C", ...opts.env },
    input: opts.input,
    reject: false,
    timeout: opts.timeoutMs,
    stripFinalNewline: false,
    maxBuffer: 512 * MiB,
  });
  if (r.failed && (r.exitCode === undefined || !(opts.okCodes ?? [0]).includes(r.exitCode))) {
    if ((r as { code?: string }).code === "ENOENT" || (opts.inputPipe && r.exitCode === 127)) {
      throw new UserError(`required tool '${argv[0]}' is not installed`, {
        hint: `${toolHint(argv[0]!)} (or run ./scripts/setup.sh)`,
      });
    }
    throw new ExternalToolError(argv, r.exitCode ?? null, String(r.stderr ?? "") + (r.timedOut ? "\n(timed out)" : ""), opts.hint);
  }
  return { stdout: String(r.stdout ?? ""), stderr: String(r.stderr ?? ""), exitCode: r.exitCode ?? 0 };
}

/** Run and return stdout as raw bytes. */
export async function runBytes(argv: readonly string[], opts: RunOptions = {}): Promise<Buffer> {
  const [file, ...args] = argv;
  if (!file) throw new Error("runBytes: empty argv");
  const r = await execa(file, args, {
    cwd: opts.cwd,
    env: { PATH: toolPath(), LC_ALL: "C", ...opts.env },
    input: opts.input,
    reject: false,
    encoding: "buffer",
    maxBuffer: GiB,
  });
  if (r.failed) {
    throw new ExternalToolError(argv, r.exitCode ?? null, Buffer.from(r.stderr as Uint8Array).toString(), opts.hint);
  }
  return Buffer.from(r.stdout as Uint8Array);
}

/** The Debian package of every host program acl runs (and of the test oracles). */
export const TOOL_PACKAGES = {
  mmdebstrap: "mmdebstrap",
  "apt-get": "apt",
  "apt-cache": "apt",
  "dpkg-deb": "dpkg",
  "dpkg-query": "dpkg",
  depmod: "kmod",
  busybox: "busybox-static",
  ldd: "libc-bin",
  xz: "xz-utils",
  zstd: "zstd",
  mknod: "coreutils",
  setfattr: "attr",
  sh: "dash",
  awk: "mawk",
  cp: "coreutils",
  git: "git",
  "mkfs.erofs": "erofs-utils",
  "dump.erofs": "erofs-utils",
  "fsck.erofs": "erofs-utils",
  mksquashfs: "squashfs-tools",
  unsquashfs: "squashfs-tools",
  veritysetup: "cryptsetup-bin",
  blkid: "util-linux",
  sgdisk: "gdisk",
  sfdisk: "fdisk",
  "mkfs.vfat": "dosfstools",
  mcopy: "mtools",
  mmd: "mtools",
  mdir: "mtools",
  mren: "mtools",
  mdel: "mtools",
  minfo: "mtools",
  cgpt: "cgpt",
  bootctl: "systemd-boot",
  "systemd-analyze": "systemd",
  "mkfs.ext4": "e2fsprogs",
  debugfs: "e2fsprogs",
  objcopy: "binutils",
  readelf: "binutils",
  "qemu-img": "qemu-utils",
  "qemu-io": "qemu-utils",
  "qemu-system-x86_64": "qemu-system-x86",
  dockerd: "docker.io",
  skopeo: "skopeo",
  openssl: "openssl",
  sbsign: "sbsigntool",
  sbverify: "sbsigntool",
  faketime: "faketime",
  "cert-to-efi-sig-list": "efitools",
  "sign-efi-sig-list": "efitools",
  swtpm: "swtpm",
  swtpm_setup: "swtpm-tools",
  "ignition-validate": "ignition",
  shellcheck: "shellcheck",
  dnf: "dnf",
  rpm: "rpm",
} as const satisfies Record<string, string>;
export type HostTool = keyof typeof TOOL_PACKAGES;

export function toolHint(tool: string): string {
  const pkg = (TOOL_PACKAGES as Record<string, string>)[tool];
  return pkg ? `install it with: apt-get install ${pkg}` : `install '${tool}'`;
}

/** Something a stage needs on the build host: a program on PATH or a file, and the Debian package that provides it. */
export type Requirement = { tool: string; package: string } | { file: string; package: string };

/** Requirements for programs, with their packages from TOOL_PACKAGES. */
export function tools(...names: HostTool[]): Requirement[] {
  return names.map((tool) => ({ tool, package: TOOL_PACKAGES[tool] }));
}

/**
 * Check every requirement at once; one error lists all that are missing and
 * the `apt-get install` line that provides them.
 */
export async function checkRequirements(reqs: readonly Requirement[]): Promise<void> {
  const toolNames = [...new Set(reqs.flatMap((r) => ("tool" in r ? [r.tool] : [])))].sort();
  const files = [...new Set(reqs.flatMap((r) => ("file" in r ? [r.file] : [])))].sort();
  // one shell checks them all: a shell per tool costs far more than the lookups
  const r = await execa("sh", ["-c", 'for t in "$@"; do command -v "$t" >/dev/null 2>&1 || echo "$t"; done', "sh", ...toolNames], {
    reject: false,
    env: { PATH: toolPath() },
  });
  const missingTools = String(r.stdout).split("\n").filter(Boolean);
  const missingFiles = (await Promise.all(files.map(async (f) => ((await access(f).then(() => true, () => false)) ? undefined : f)))).filter(
    (f): f is string => f !== undefined,
  );
  if (!missingTools.length && !missingFiles.length) return;
  const pkgOf = (name: string) => reqs.find((q) => ("tool" in q ? q.tool : q.file) === name)?.package ?? name;
  const missing = [...missingTools, ...missingFiles];
  const pkgs = [...new Set(missing.map(pkgOf))].sort();
  throw new UserError(`missing on this machine: ${missing.map((m) => `${m} (${pkgOf(m)})`).join(", ")}`, {
    hint: `apt-get install ${pkgs.join(" ")}   (or run ./scripts/setup.sh)`,
  });
}

/** Fail early when a program is missing (for commands that are not builds, and tests). */
export async function requireTools(names: readonly string[]): Promise<void> {
  await checkRequirements(names.map((tool) => ({ tool, package: (TOOL_PACKAGES as Record<string, string>)[tool] ?? tool })));
}

/** PATH including sbin directories, where root tools live on Debian. */
export function toolPath(): string {
  const p = process.env.PATH ?? "/usr/bin:/bin";
  const extra = ["/usr/local/sbin", "/usr/sbin", "/sbin"].filter((d) => !p.split(":").includes(d));
  return [p, ...extra].join(":");
}

/** Version string of a tool (first line of `tool --version`), for stage ids and provenance. */
const versionCache = new Map<string, string>();
export async function toolVersion(tool: string, args: string[] = ["--version"]): Promise<string> {
  const key = `${tool} ${args.join(" ")}`;
  const hit = versionCache.get(key);
  if (hit !== undefined) return hit;
  const r = await execa(tool, args, { reject: false, all: true, env: { PATH: toolPath(), LC_ALL: "C" } });
  const line = String(r.all ?? "").split("\n").find((l) => l.trim()) ?? "unknown";
  versionCache.set(key, line.trim());
  return line.trim();
}
