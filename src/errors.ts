/**
 * Typed errors and the one way acl reports a failure. Every failure a user
 * can cause is a UserError with a hint (what to do next), naming the file and
 * the spec key when there are any; a wrong invocation is a UsageError (exit
 * 2); a failing external tool is an ExternalToolError that carries the argv,
 * exit code and the tail of stderr; a file-system error about a path (missing,
 * a folder where a file was expected, permission, no space) is reported as a
 * user error naming the path. Anything else is a bug: exit 70, said so, with
 * where to report it.
 */
import { shellQuote } from "./util/shell.js";

export const ISSUE_TRACKER = "https://github.com/acl-project/acl/issues";
/** Exit codes: 1 for a problem the user can fix, 2 for a wrong invocation, 70 (EX_SOFTWARE) for a bug in acl. */
export const EXIT_USER = 1;
export const EXIT_USAGE = 2;
export const EXIT_BUG = 70;

export class AclError extends Error {
  /** Process exit code used by the CLI for this error. */
  readonly exitCode: number = EXIT_USER;
}

export interface UserErrorOptions {
  hint?: string;
  /** File the problem is in, when there is one. */
  file?: string;
  /** Spec key the problem is at ("partitions.esp", "sources[1].path"), when there is one. */
  key?: string;
}

export class UserError extends AclError {
  readonly hint?: string;
  readonly file?: string;
  readonly key?: string;
  constructor(message: string, opts: UserErrorOptions = {}) {
    super(message);
    this.name = "UserError";
    this.hint = opts.hint;
    this.file = opts.file;
    this.key = opts.key;
  }
}

/** The command line itself is wrong: an unknown flag, a missing argument, an unknown command. */
export class UsageError extends UserError {
  override readonly exitCode: number = EXIT_USAGE;
  constructor(message: string, opts: UserErrorOptions = {}) {
    super(message, opts);
    this.name = "UsageError";
  }
}

export class ExternalToolError extends AclError {
  readonly argv: readonly string[];
  readonly code: number | null;
  readonly stderrTail: string;
  /** The whole stderr, for callers that turn known failures into UserErrors. */
  readonly stderr: string;
  readonly hint?: string;
  constructor(argv: readonly string[], code: number | null, stderr: string, hint?: string) {
    const tail = stderr.trim().split("\n").slice(-15).join("\n");
    super(`command failed (exit ${code ?? "signal"}): ${shellQuote(argv)}` + (tail ? `\n--- stderr (last lines) ---\n${tail}` : ""));
    this.name = "ExternalToolError";
    this.argv = argv;
    this.code = code;
    this.stderrTail = tail;
    this.stderr = stderr;
    this.hint = hint;
  }
}

export class BugError extends AclError {
  override readonly exitCode: number = EXIT_BUG;
  constructor(message: string) {
    super(`internal error (a bug in acl): ${message}`);
    this.name = "BugError";
  }
}

/** What the CLI prints for a failure (and, with --json, the `error` object). */
export interface ErrorReport {
  kind: string;
  message: string;
  hint?: string;
  file?: string;
  key?: string;
  exitCode: number;
}

/**
 * errno codes about a path the user gave or a folder acl writes into: the
 * reason in words (for "cannot read X: …"), the message naming the path, the fix.
 */
const ERRNO: Readonly<Record<string, { reason: string; message: (path: string) => string; hint: string }>> = {
  ENOENT: { reason: "it does not exist", message: (p) => `${p} does not exist`, hint: "check the path" },
  ENOTDIR: { reason: "a part of the path is not a folder", message: (p) => `${p}: a part of this path is not a folder`, hint: "check the path" },
  EISDIR: { reason: "it is a folder, not a file", message: (p) => `${p} is a folder, but a file was expected here`, hint: "pass the path of a file" },
  EACCES: { reason: "permission denied", message: (p) => `permission denied: ${p}`, hint: "check the permissions of the path (acl builds run as root)" },
  EPERM: { reason: "operation not permitted", message: (p) => `operation not permitted on ${p}`, hint: "check the permissions and attributes of the path (acl builds run as root)" },
  EROFS: { reason: "the file system is read-only", message: (p) => `${p} is on a read-only file system`, hint: "choose a writable folder" },
  ENOSPC: { reason: "no space left on the device", message: (p) => `no space left on the device holding ${p}`, hint: "free space there, or choose a folder on a larger file system" },
  EDQUOT: { reason: "disk quota exceeded", message: (p) => `disk quota exceeded on the device holding ${p}`, hint: "free space there, or choose a folder on another file system" },
  EEXIST: { reason: "something of that name already exists", message: (p) => `${p} already exists`, hint: "remove it or choose another path" },
  ELOOP: { reason: "too many levels of symbolic links", message: (p) => `${p}: too many levels of symbolic links`, hint: "check the symbolic links on the path" },
  ENAMETOOLONG: { reason: "the name is too long", message: (p) => `${p}: file name too long`, hint: "use a shorter path" },
  EMFILE: { reason: "too many open files", message: (p) => `too many open files while opening ${p}`, hint: "raise the open-file limit (ulimit -n)" },
};

/** Why a file-system call failed, in words, with the errno code: "it does not exist (ENOENT)". */
export function fsReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined;
  const code = typeof e?.code === "string" ? e.code : undefined;
  if (code && ERRNO[code]) return `${ERRNO[code].reason} (${code})`;
  return code ?? (err instanceof Error ? err.message : String(err));
}

/** A Node.js file-system error that names a path, as a UserError; undefined for anything else. */
export function pathError(err: unknown): UserError | undefined {
  const e = err as NodeJS.ErrnoException | undefined;
  if (!e || typeof e !== "object" || typeof e.code !== "string") return undefined;
  const known = ERRNO[e.code];
  if (!known) return undefined;
  const path = e.path ?? (e as { dest?: string }).dest;
  if (!path) {
    if (e.code === "ENOSPC" || e.code === "EDQUOT")
      return new UserError(e.code === "ENOSPC" ? "no space left on device" : "disk quota exceeded", {
        hint: "free space where acl writes (the output folder, the cache folder, TMPDIR), or choose folders on a larger file system",
      });
    return undefined;
  }
  return new UserError(known.message(path), { file: path, hint: known.hint });
}

/** Turn any thrown value into what the CLI reports. */
export function errorReport(err: unknown): ErrorReport {
  const asPath = err instanceof AclError ? undefined : pathError(err);
  const e = asPath ?? err;
  if (e instanceof UserError) {
    return { kind: e.name, message: e.message, hint: e.hint, file: e.file, key: e.key, exitCode: e.exitCode };
  }
  if (e instanceof ExternalToolError) return { kind: e.name, message: e.message, hint: e.hint, exitCode: e.exitCode };
  if (e instanceof BugError) return { kind: e.name, message: e.message, hint: bugHint(), exitCode: e.exitCode };
  const message = e instanceof Error ? e.message : String(e);
  return { kind: "BugError", message: `internal error (a bug in acl): ${message}`, hint: bugHint(), exitCode: EXIT_BUG };
}

function bugHint(): string {
  return `please report it at ${ISSUE_TRACKER} with the command you ran and its output with ACL_DEBUG=1 (which shows the stack trace)`;
}

/** Render a report for a human on stderr: `error: …` then `hint: …`. */
export function formatErrorReport(r: ErrorReport): string {
  const where = r.file && !r.message.includes(r.file) ? `${r.file}: ` : "";
  return `error: ${where}${r.message}` + (r.hint ? `\nhint: ${r.hint}` : "");
}

/** The JSON printed on stdout for a failure with --json: one small object. */
export function errorJson(r: ErrorReport): string {
  const { kind, message, hint, file, key, exitCode } = r;
  return JSON.stringify({ error: { kind, message, hint, file, key, exitCode } }, null, 2) + "\n";
}
