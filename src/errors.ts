/**
 * Typed errors. Every failure a user can cause is a UserError with a hint
 * (what to do next); a failing external tool is an ExternalToolError that
 * carries the argv, exit code and the tail of stderr; anything else is a bug.
 */
export class AclError extends Error {
  /** Process exit code used by the CLI for this error. */
  readonly exitCode: number = 1;
}

export class UserError extends AclError {
  readonly hint?: string;
  /** File the problem is in, when there is one. */
  readonly file?: string;
  constructor(message: string, opts: { hint?: string; file?: string } = {}) {
    super(message);
    this.name = "UserError";
    this.hint = opts.hint;
    this.file = opts.file;
  }
}

export class ExternalToolError extends AclError {
  readonly argv: readonly string[];
  readonly code: number | null;
  readonly stderrTail: string;
  /** The whole stderr, for callers that turn known failures into UserErrors. */
  readonly stderr: string;
  constructor(argv: readonly string[], code: number | null, stderr: string, hint?: string) {
    const tail = stderr.trim().split("\n").slice(-15).join("\n");
    super(
      `command failed (exit ${code ?? "signal"}): ${shellQuote(argv)}` +
        (tail ? `\n--- stderr (last lines) ---\n${tail}` : "") +
        (hint ? `\nhint: ${hint}` : ""),
    );
    this.name = "ExternalToolError";
    this.argv = argv;
    this.code = code;
    this.stderrTail = tail;
    this.stderr = stderr;
  }
}

export class BugError extends AclError {
  constructor(message: string) {
    super(`internal error (a bug in acl, please report it): ${message}`);
    this.name = "BugError";
  }
}

/** Quote an argv so that it can be pasted into a POSIX shell. */
export function shellQuote(argv: readonly string[]): string {
  return argv
    .map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))
    .join(" ");
}

/** Render any error for a human on stderr: message, then hint. */
export function formatError(err: unknown): string {
  if (err instanceof UserError) {
    const where = err.file && !err.message.includes(err.file) ? `${err.file}: ` : "";
    return `error: ${where}${err.message}` + (err.hint ? `\nhint: ${err.hint}` : "");
  }
  if (err instanceof AclError) return `error: ${err.message}`;
  if (err instanceof Error) return `error: ${err.message}`;
  return `error: ${String(err)}`;
}
