import { Flags } from "@oclif/core";
import { AclCommand } from "../../lib/base-command.js";
import { generateKeys, KEY_TYPES, type GenerateKeysResult, type KeyType } from "../../services/keys.js";

export default class KeysGenerate extends AclCommand<GenerateKeysResult> {
  static override summary = "Generate a signing key pair (Ed25519 by default)";
  static override description =
    "Generate a signing key pair: acl-signing.key (PKCS#8 PEM, mode 0600) and acl-signing.pub (SPKI PEM)";

  static override examples = [
    "<%= config.bin %> keys generate --out keys/",
    "<%= config.bin %> keys generate --out keys/ --type rsa --force --json",
  ];

  static override flags = {
    out: Flags.string({ description: "folder to write acl-signing.key and acl-signing.pub into", required: true }),
    type: Flags.string({ description: "key type", options: [...KEY_TYPES], default: "ed25519" }),
    force: Flags.boolean({ description: "overwrite an existing key pair", default: false }),
  };

  async run(): Promise<GenerateKeysResult> {
    const { flags } = await this.parse(KeysGenerate);
    const r = await generateKeys({ outDir: flags.out, type: flags.type as KeyType, force: flags.force });
    if (!this.jsonEnabled()) {
      this.log(`private key: ${r.privateKey} (mode 0600; keep it secret, never ship it)`);
      this.log(`public key:  ${r.publicKey}`);
      this.log(`key id:      ${r.keyId} (${r.type})`);
    }
    return r;
  }
}
