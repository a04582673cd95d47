import { Args, Flags } from "@oclif/core";
import { AclCommand } from "../../lib/base-command.js";
import { applyUpdate, DEFAULT_TRIES, type ApplyResult } from "../../services/update/apply.js";

export default class UpdateApply extends AclCommand<ApplyResult> {
  static override summary = "Apply a signed update payload to a disk's idle A/B slot";
  static override description =
    "Verifies PAYLOAD (signature by --key, every section's sha256) and refuses another image's payload, a downgrade (unless --allow-downgrade), a microarch above the installed image's and a /usr that does not fit. Then writes the idle /usr slot, checks it against the root hash, and installs the slot's UKI with --tries boot tries as the last step, so an interruption at any point leaves the current slot booting. Prints what boots next. Raw disks only (convert qcow2 with qemu-img).";
  static override examples = [
    "<%= config.bin %> update apply out/minimal/disk.raw out/minimal-v2/minimal-1.1.0.update --key keys/acl-signing.pub",
    "<%= config.bin %> update apply disk.raw minimal-1.0.0.update --key acl-signing.pub --allow-downgrade --tries 1",
  ];
  static override args = {
    disk: Args.string({ description: "raw disk image (disk.raw)", required: true }),
    payload: Args.string({ description: "update payload (NAME-VERSION.update)", required: true }),
  };
  static override flags = {
    key: Flags.string({ description: "public key (PEM) the payload must be signed by", required: true }),
    "allow-downgrade": Flags.boolean({ description: "install a version older than (or the same as) the installed one" }),
    tries: Flags.integer({ description: "boot tries before the new slot counts as bad", default: DEFAULT_TRIES, min: 1, max: 15 }),
  };

  async run(): Promise<ApplyResult> {
    const { args, flags } = await this.parse(UpdateApply);
    const r = await applyUpdate({ disk: args.disk, payload: args.payload, key: flags.key, allowDowngrade: flags["allow-downgrade"], tries: flags.tries });
    if (!this.jsonEnabled()) {
      this.log(`applied ${r.name} ${r.version} to slot ${r.slot} in ${(r.ms / 1000).toFixed(1)} s (slot ${r.from.slot}, ${r.from.version ?? "?"}, stays the fallback)${r.downgrade ? " [downgrade]" : ""}`);
      this.log(`  installed EFI/Linux/${r.entry}: ${r.tries} tries`);
      this.log(`  boots next: ${r.next.entry}${r.next.slot ? ` (slot ${r.next.slot}, ${r.next.version ?? "?"})` : ""}`);
    }
    return r;
  }
}
