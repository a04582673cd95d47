import { Args, Flags } from "@oclif/core";
import { AclCommand } from "../lib/base-command.js";
import { verifyOutput, type VerifyResult } from "../services/verify.js";

export default class Verify extends AclCommand<VerifyResult> {
  static override summary = "Check a signed build's signature and every digest";
  static override description =
    "Verify a signed build output: SHA256SUMS signature, manifest digest, every artifact's size and sha256, and the signed provenance";

  static override examples = [
    "<%= config.bin %> verify out/minimal --key keys/acl-signing.pub",
    "<%= config.bin %> verify out/minimal --key keys/acl-signing.pub --json",
  ];

  static override args = {
    out_dir: Args.string({ description: "output folder of `acl build` (holds manifest.json and SHA256SUMS)", required: true }),
  };

  static override flags = {
    key: Flags.string({ description: "trusted public key (acl-signing.pub, SPKI PEM)", required: true }),
  };

  async run(): Promise<VerifyResult> {
    const { args, flags } = await this.parse(Verify);
    const r = await verifyOutput({ outDir: args.out_dir, keyPath: flags.key, reporter: this.reporter() });
    if (!this.jsonEnabled()) {
      for (const c of r.checks) this.log(`ok  ${c.name.padEnd(28)} ${c.detail}`);
      this.log(`verified ${r.name} ${r.version}: ${r.artifacts} artifacts, ${r.bytes} bytes, key ${r.keyId} (${r.keyType})`);
    }
    return r;
  }
}
