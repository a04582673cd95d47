import { Args } from "@oclif/core";
import { AclCommand } from "../../lib/base-command.js";
import { checkSpec, type SpecCheckResult } from "../../services/spec-check.js";

export default class SpecCheck extends AclCommand<SpecCheckResult> {
  static override summary = "Validate an image spec without building it";
  static override description =
    "Loads SPEC the way `acl build` does and runs every check the spec alone decides: TOML syntax (with line and column), unknown keys (with the nearest valid one), types, sizes (a unit, whole MiB, each partition's minimum), file modes, referenced files and folders, users and groups, the signing key and the kernel package. A problem exits 1 naming the file, the key and the fix; nothing is built.";
  static override examples = ["<%= config.bin %> spec check images/minimal.toml", "<%= config.bin %> spec check images/container-host.toml --json"];
  static override args = { spec: Args.string({ description: "image spec (TOML)", required: true }) };
  async run() {
    const { args } = await this.parse(SpecCheck);
    const r = await checkSpec(args.spec, { passphraseEnv: process.env.ACL_SECUREBOOT_PASSPHRASE });
    if (!this.jsonEnabled()) this.log(`${args.spec}: ok (${r.name} ${r.version}, ${r.microarch}, sources: ${r.sources.join(", ")})`);
    return r;
  }
}
