/**
 * How the CLI reports a failure, in one place: oclif's own errors (a wrong
 * flag, a missing argument, an unknown command) become usage errors in acl's
 * style; everything else goes through errors.ts. With --json the report is one
 * small object on stdout and nothing else; without it, `error:`/`hint:` lines
 * on stderr. ACL_DEBUG=1 adds the stack trace (on stderr).
 */
import { errorJson, errorReport, formatErrorReport, UsageError, type ErrorReport } from "../errors.js";

interface OclifError extends Error {
  oclif?: { exit?: number };
  code?: string;
  args?: { name: string; description?: string }[];
}

/** oclif's "exit now" signal (this.exit), which carries a code and no message to print. */
export function isOclifExit(err: unknown): err is OclifError {
  return !!err && typeof err === "object" && (err as OclifError).code === "EEXIT";
}

/** An oclif parse or dispatch error as a UsageError; undefined for anything else. */
export function oclifUsageError(err: unknown, command?: { id?: string; example?: string }): UsageError | undefined {
  const e = err as OclifError;
  if (!e || typeof e !== "object" || !e.oclif || e.code === "EEXIT") return undefined;
  const lines = String(e.message ?? "")
    .split("\n")
    .map((l) => l.replace(/^\s*›?\s*/, "").trim())
    .filter((l) => l && !/^See more help with --help$/.test(l));
  let message = lines.join("; ");
  if (Array.isArray(e.args) && e.args.length) {
    const names = e.args.map((a) => `${a.name.toUpperCase()}${a.description ? `, ${a.description}` : ""}`);
    message = `missing required argument${names.length > 1 ? "s" : ""}: ${names.join("; ")}`;
  }
  const notFound = /^command (\S+) not found$/.exec(message);
  if (notFound) message = `'${notFound[1]!.replace(/:/g, " ")}' is not an acl command`;
  message = message.replace(/^./, (c) => c.toLowerCase());
  const help = command?.id ? `acl ${command.id.replace(/:/g, " ")} --help` : "acl --help";
  const hint = [command?.example ? `for example: ${command.example}` : undefined, `see \`${help}\``].filter(Boolean).join("; ");
  return new UsageError(message, { hint });
}

/** Print a failure the way the user asked for (JSON on stdout, or text on stderr) and return its exit code. */
export function reportFailure(err: unknown, json: boolean, command?: { id?: string; example?: string }): number {
  if (process.env.ACL_DEBUG && err instanceof Error && err.stack) process.stderr.write(err.stack + "\n");
  const r: ErrorReport = errorReport(oclifUsageError(err, command) ?? err);
  if (json) process.stdout.write(errorJson(r));
  else process.stderr.write(formatErrorReport(r) + "\n");
  return r.exitCode;
}

/** For bin/run.js: failures that happen outside a command (unknown command, load errors). */
export function handleTopLevelError(err: unknown): void {
  if (isOclifExit(err)) {
    process.exitCode = err.oclif?.exit ?? 0;
    return;
  }
  const argv = process.argv.slice(2);
  process.exitCode = reportFailure(err, argv.includes("--json") && !argv.slice(0, argv.indexOf("--json")).includes("--"));
}
