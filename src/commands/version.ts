import { AclCommand } from "../lib/base-command.js";
import { versionInfo, type VersionResult } from "../services/version.js";

export default class Version extends AclCommand<VersionResult> {
  static override summary = "Print acl's version";
  static override description = "Print acl's version and the Node.js it runs on.";
  static override examples = ["<%= config.bin %> version", "<%= config.bin %> version --json"];
  async run() {
    const result = await versionInfo();
    if (!this.jsonEnabled()) this.log(`acl ${result.version} (node ${result.node})`);
    return result;
  }
}
