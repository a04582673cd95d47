import { Args, Flags } from "@oclif/core";
import { AclCommand } from "../../lib/base-command.js";
import { verifyPayload, type UpdateMetadata } from "../../services/update/payload.js";

interface UpdateVerifyResult {
  path: string;
  keyId: string;
  size: number;
  meta: UpdateMetadata;
}

export default class UpdateVerify extends AclCommand<UpdateVerifyResult> {
  static override summary = "Check an update payload's signature and digests";
  static override description = "Verifies that PAYLOAD is signed by --key and that every section (both UKIs and the /usr content) matches the digest in its signed header; prints what it holds.";
  static override examples = ["<%= config.bin %> update verify out/minimal/minimal-1.0.0.update --key keys/acl-signing.pub"];
  static override args = { payload: Args.string({ description: "update payload (NAME-VERSION.update)", required: true }) };
  static override flags = { key: Flags.string({ description: "public key (PEM) the payload must be signed by", required: true }) };

  async run(): Promise<UpdateVerifyResult> {
    const { args, flags } = await this.parse(UpdateVerify);
    const p = await verifyPayload(args.payload, flags.key);
    const m = p.meta;
    if (!this.jsonEnabled()) {
      this.log(`ok: ${p.path}: ${m.name} ${m.version} (${m.microarch}), signed by ${p.keyId}`);
      this.log(`  /usr ${m.filesystem}, root hash ${m.verity.rootHash}${m.minVersion ? `, updates from ${m.minVersion} or later` : ""}`);
      for (const s of m.sections) this.log(`  ${s.name.padEnd(6)} ${String(s.size).padStart(11)} bytes  sha256 ${s.sha256}`);
    }
    return { path: p.path, keyId: p.keyId, size: p.size, meta: m };
  }
}
