import { AclCommand } from "../lib/base-command.js";
import { readFileSync } from "node:fs";

export default class Version extends AclCommand<{ version: string; node: string }> {
  static override description = "Print acl's version and the Node.js it runs on";
  async run() {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    const result = { version: pkg.version, node: process.version };
    if (!this.jsonEnabled()) this.log(`acl ${result.version} (node ${result.node})`);
    return result;
  }
}
