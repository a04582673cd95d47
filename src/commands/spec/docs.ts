import { Flags } from "@oclif/core";
import { AclCommand } from "../../lib/base-command.js";
import { renderSpecDocs } from "../../services/spec-docs.js";
import { writeSpecDocs } from "../../services/spec-check.js";

export default class SpecDocs extends AclCommand<{ path?: string; bytes: number }> {
  static override summary = "Print the image spec reference (docs/spec.md)";
  static override description =
    "Prints every spec key with its type, default and description, generated from the schema acl validates specs with, as Markdown. With --write it writes the file instead (docs/spec.md is kept in step this way).";
  static override examples = ["<%= config.bin %> spec docs | less", "<%= config.bin %> spec docs --write docs/spec.md"];
  static override flags = {
    write: Flags.string({ description: "write the reference to this file (e.g. docs/spec.md) instead of stdout" }),
  };
  async run() {
    const { flags } = await this.parse(SpecDocs);
    const text = renderSpecDocs();
    if (flags.write) {
      await writeSpecDocs(flags.write, text);
      if (!this.jsonEnabled()) this.log(`wrote ${flags.write}`);
      return { path: flags.write, bytes: text.length };
    }
    if (!this.jsonEnabled()) process.stdout.write(text);
    return { bytes: text.length };
  }
}
