import { Args, Flags } from "@oclif/core";
import { AclCommand } from "../lib/base-command.js";
import { build, type BuildResult } from "../services/build.js";
import { formatMiB } from "../util/size.js";

export default class Build extends AclCommand<Omit<BuildResult, "manifest"> & { manifest: string; name: string; version: string; rootHash: string; artifacts: BuildResult["manifest"]["artifacts"] }> {
  static override summary = "Build an image from a TOML spec";
  static override description =
    "Builds the image described by SPEC (for example images/minimal.toml) into out/NAME: a dm-verity protected /usr image, kernel and initramfs, GPT disks (raw, qcow2, vhd), an update payload, an SPDX SBOM and manifest.json; signed when a key is given. Stages are cached by content; the output is published by rename, so a failed build never leaves a half-written output.";
  static override examples = [
    "<%= config.bin %> build images/minimal.toml",
    "<%= config.bin %> build images/container-host.toml --sign-key keys/acl-signing.key --out /srv/images/ch",
    "ACL_SECUREBOOT_PASSPHRASE=snakeoil <%= config.bin %> build images/minimal.toml --secureboot-key /usr/share/ovmf/PkKek-1-snakeoil.key --secureboot-cert /usr/share/ovmf/PkKek-1-snakeoil.pem",
  ];
  static override args = {
    spec: Args.string({ description: "image spec (TOML)", required: true }),
  };
  static override flags = {
    out: Flags.string({ char: "o", description: "output folder (default: out/NAME)" }),
    "sign-key": Flags.string({ description: "private key (PEM) to sign the artifacts with; overrides [signing] key" }),
    "secureboot-key": Flags.string({ description: "Secure Boot signing key (RSA PEM); overrides [secureboot] key. An encrypted key reads its passphrase from $ACL_SECUREBOOT_PASSPHRASE or --secureboot-passphrase-file" }),
    "secureboot-cert": Flags.string({ description: "certificate of the Secure Boot key (PEM or DER); overrides [secureboot] certificate" }),
    "secureboot-passphrase-file": Flags.string({ description: "file whose first line is the Secure Boot key's passphrase (never pass the passphrase itself on the command line)" }),
    "cache-dir": Flags.string({ description: "stage cache folder (default: $ACL_CACHE_DIR or ~/.cache/acl)" }),
    "no-cache": Flags.boolean({ description: "rebuild every stage (the cache is refreshed)" }),
    "keep-work": Flags.boolean({ description: "keep the temporary build folder when the build fails" }),
    "no-wait": Flags.boolean({ description: "when another build is writing the same output folder, stop at once naming it (by default the build waits for it)" }),
  };

  async run() {
    const { args, flags } = await this.parse(Build);
    const res = await build({
      specPath: args.spec,
      outDir: flags.out,
      signKey: flags["sign-key"],
      secureBoot: {
        key: flags["secureboot-key"],
        cert: flags["secureboot-cert"],
        passphraseFile: flags["secureboot-passphrase-file"],
        passphraseEnv: process.env.ACL_SECUREBOOT_PASSPHRASE,
      },
      cacheDir: flags["cache-dir"],
      noCache: flags["no-cache"],
      keepWork: flags["keep-work"],
      noWait: flags["no-wait"],
      sourceDateEpoch: process.env.SOURCE_DATE_EPOCH,
      reporter: this.reporter(),
    });
    const m = res.manifest;
    if (!this.jsonEnabled()) {
      const total = res.stages.reduce((a, s) => a + s.ms, 0);
      if (res.upToDate) this.log(`${m.name} ${m.version} (${m.microarch}) is up to date in ${res.outDir}: nothing to do`);
      else this.log(`built ${m.name} ${m.version} (${m.microarch}) in ${(total / 1000).toFixed(1)} s → ${res.outDir}`);
      this.log(`  /usr root hash ${m.verity.rootHash}`);
      for (const a of m.artifacts) this.log(`  ${a.path.padEnd(28)} ${a.kind.padEnd(14)} ${formatMiB(a.size).padStart(12)}`);
      if (res.signed) this.log("  signed: SHA256SUMS, SHA256SUMS.sig, provenance.intoto.json, acl-signing.pub");
      if (m.boot?.secureBoot) this.log(`  Secure Boot: ${m.boot.secureBoot.signed.length} EFI binaries signed for ${m.boot.secureBoot.certificate.subject}; enroll secureboot/db.der or db.esl`);
    }
    return {
      outDir: res.outDir,
      stages: res.stages,
      upToDate: res.upToDate,
      signed: res.signed,
      manifest: `${res.outDir}/manifest.json`,
      name: m.name,
      version: m.version,
      rootHash: m.verity.rootHash,
      artifacts: m.artifacts,
    };
  }
}
