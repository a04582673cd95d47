/**
 * The only module that runs external programs (through execa). Every call is
 * an argv array; a failure becomes an ExternalToolError that shows a
 * copy-pasteable command and the tail of stderr.
 */
import { execa } from "execa";
import { ExternalToolError, UserError } from "../errors.js";

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
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) throw new Error("run: empty argv");
  const r = await execa(file, args, {
    cwd: opts.cwd,
    env: { LC_ALL: "C", ...opts.env },
    input: opts.input,
    reject: false,
    timeout: opts.timeoutMs,
    stripFinalNewline: false,
    maxBuffer: 1024 * 1024 * 512,
  });
  if (r.failed && (r.exitCode === undefined || !(opts.okCodes ?? [0]).includes(r.exitCode))) {
    if ((r as { code?: string }).code === "ENOENT") {
      throw new UserError(`required tool '${file}' is not installed`, {
        hint: `${toolHint(file)} (or run ./scripts/setup.sh)`,
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
    env: { LC_ALL: "C", ...opts.env },
    input: opts.input,
    reject: false,
    encoding: "buffer",
    maxBuffer: 1024 * 1024 * 1024,
  });
  if (r.failed) {
    throw new ExternalToolError(argv, r.exitCode ?? null, Buffer.from(r.stderr as Uint8Array).toString(), opts.hint);
  }
  return Buffer.from(r.stdout as Uint8Array);
}

/** Map of tools to the Debian package that provides them. */
export const TOOL_PACKAGES: Record<string, string> = {
  mmdebstrap: "mmdebstrap",
  "mkfs.erofs": "erofs-utils",
  "dump.erofs": "erofs-utils",
  "fsck.erofs": "erofs-utils",
  mksquashfs: "squashfs-tools",
  veritysetup: "cryptsetup-bin",
  sgdisk: "gdisk",
  sfdisk: "fdisk",
  "mkfs.vfat": "dosfstools",
  mcopy: "mtools",
  mmd: "mtools",
  "mkfs.ext4": "e2fsprogs",
  debugfs: "e2fsprogs",
  "qemu-img": "qemu-utils",
  "qemu-system-x86_64": "qemu-system-x86",
  dockerd: "docker.io",
  "dpkg-deb": "dpkg",
  depmod: "kmod",
  objcopy: "binutils",
  openssl: "openssl",
  "ignition-validate": "ignition",
  shellcheck: "shellcheck",
};

export function toolHint(tool: string): string {
  const pkg = TOOL_PACKAGES[tool];
  return pkg ? `install it with: apt-get install ${pkg}` : `install '${tool}'`;
}

/** Fail early, before the first stage, when a required tool is missing. */
export async function requireTools(tools: readonly string[]): Promise<void> {
  // one shell checks them all: a shell per tool costs far more than the lookups
  const r = await execa("sh", ["-c", 'for t in "$@"; do command -v "$t" >/dev/null 2>&1 || echo "$t"; done', "sh", ...tools], {
    reject: false,
    env: { PATH: toolPath() },
  });
  const missing = String(r.stdout).split("\n").filter(Boolean);
  if (missing.length) {
    const pkgs = [...new Set(missing.map((t) => TOOL_PACKAGES[t] ?? t))].sort();
    throw new UserError(`missing required tools: ${missing.join(", ")}`, {
      hint: `apt-get install ${pkgs.join(" ")}   (or run ./scripts/setup.sh)`,
    });
  }
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
  const r = await execa(tool, args, { reject: false, all: true, env: { LC_ALL: "C" } });
  const line = String(r.all ?? "").split("\n").find((l) => l.trim()) ?? "unknown";
  versionCache.set(key, line.trim());
  return line.trim();
}
