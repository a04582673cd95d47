/**
 * Base class for every acl command: --json (oclif's enableJsonFlag), a
 * reporter on stderr, and every failure, oclif's parse errors included,
 * reported through lib/cli-errors.ts: a clear message and hint, exit 1 (user),
 * 2 (usage) or 70 (bug), never a stack trace (ACL_DEBUG=1 shows it).
 */
import { Command } from "@oclif/core";
import { createReporter, type Reporter } from "../output/reporter.js";
import { isOclifExit, reportFailure } from "./cli-errors.js";

export abstract class AclCommand<T> extends Command {
  static override enableJsonFlag = true;

  protected reporter(): Reporter {
    return createReporter(this.jsonEnabled() ? "json" : undefined);
  }

  abstract override run(): Promise<T>;

  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    if (isOclifExit(err)) throw err;
    const ctor = this.constructor as typeof Command;
    const example = ctor.examples?.[0];
    const exampleText = typeof example === "string" ? example : example?.command;
    const exit = reportFailure(err, this.jsonEnabled(), { id: this.id, example: exampleText?.replace(/<%= config\.bin %>/g, this.config.bin) });
    process.exitCode = exit;
    return this.exit(exit);
  }
}
