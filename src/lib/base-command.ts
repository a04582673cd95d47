/**
 * Base class for every acl command: --json (oclif's enableJsonFlag), a
 * reporter on stderr, and typed errors turned into a clear message and a
 * non-zero exit, never a stack trace (ACL_DEBUG=1 shows it).
 */
import { Command } from "@oclif/core";
import { AclError, formatError, UserError } from "../errors.js";
import { createReporter, type Reporter } from "../output/reporter.js";
import { toolPath } from "../adapters/exec.js";

export abstract class AclCommand<T> extends Command {
  static override enableJsonFlag = true;

  protected reporter(): Reporter {
    return createReporter(this.jsonEnabled() ? "json" : undefined);
  }

  override async init(): Promise<void> {
    process.env.PATH = toolPath();
    await super.init();
  }

  abstract override run(): Promise<T>;

  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    // oclif's own parse errors (unknown flag, missing arg) keep their handling
    if (!(err instanceof AclError) && err.oclif) return super.catch(err);
    if (process.env.ACL_DEBUG && err.stack) process.stderr.write(err.stack + "\n");
    const exit = err instanceof AclError ? err.exitCode : 70;
    if (this.jsonEnabled()) {
      const payload = {
        error: {
          kind: err.name,
          message: err.message,
          hint: err instanceof UserError ? err.hint : undefined,
          file: err instanceof UserError ? err.file : undefined,
        },
      };
      process.stdout.write(JSON.stringify(payload, null, 2) + "\n");
    } else {
      process.stderr.write(formatError(err) + "\n");
    }
    process.exitCode = exit;
    return this.exit(exit);
  }
}
