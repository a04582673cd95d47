import { Flags } from "@oclif/core";
import { AclCommand } from "../../lib/base-command.js";
import { renderSpecDocs } from "../../services/spec-docs.js";
import { writeSpecDocs } from "../../services/spec-check.js";

export default class SpecDocs extends AclCommand<{ path?: string; bytes: number }> {
  static override summary = "Print (or write) the image spec reference generated from the schema";
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
