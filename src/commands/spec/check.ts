import { Args } from "@oclif/core";
import { AclCommand } from "../../lib/base-command.js";
import { checkSpec, type SpecCheckResult } from "../../services/spec-check.js";

export default class SpecCheck extends AclCommand<SpecCheckResult> {
  static override summary = "Validate an image spec without building it";
  static override args = { spec: Args.string({ description: "image spec (TOML)", required: true }) };
  async run() {
    const { args } = await this.parse(SpecCheck);
    const r = await checkSpec(args.spec);
    if (!this.jsonEnabled()) this.log(`${args.spec}: ok (${r.name} ${r.version}, ${r.microarch}, sources: ${r.sources.join(", ")})`);
    return r;
  }
}
