/**
 * `acl keys generate`: a signing key pair as PEM files. The private key is
 * PKCS#8 (mode 0600), the public key SPKI; both are written to a temporary
 * name first and renamed into place, so a failed run never leaves half a key.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { chmod, rename, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { UserError, fsReason } from "../errors.js";
import { keyId, RSA_MODULUS_BITS, spkiPem, type KeyType } from "../formats/signature.js";

export { KEY_TYPES, type KeyType } from "../formats/signature.js";
import { PRIVATE_KEY_FILE, PUBLIC_KEY_FILE } from "../stages/release/sign.js";
import { makeDir } from "../util/fs.js";
import { exists } from "../util/fs.js";

export interface GenerateKeysOptions {
  outDir: string;
  type?: KeyType;
  /** Overwrite existing key files. */
  force?: boolean;
}

export interface GenerateKeysResult {
  type: KeyType;
  /** sha256 (hex) of the public key's SPKI DER. */
  keyId: string;
  privateKey: string;
  publicKey: string;
}

function generate(type: KeyType): { privateKey: KeyObject; publicKey: KeyObject } {
  return type === "ed25519" ? generateKeyPairSync("ed25519") : generateKeyPairSync("rsa", { modulusLength: RSA_MODULUS_BITS, publicExponent: 0x10001 });
}

export async function generateKeys(opts: GenerateKeysOptions): Promise<GenerateKeysResult> {
  const type = opts.type ?? "ed25519";
  const dir = resolve(opts.outDir);
  const privPath = join(dir, PRIVATE_KEY_FILE);
  const pubPath = join(dir, PUBLIC_KEY_FILE);
  if (!opts.force) {
    const present = [];
    for (const p of [privPath, pubPath]) if (await exists(p)) present.push(p);
    if (present.length) {
      throw new UserError(`refusing to overwrite ${present.join(" and ")}`, {
        file: present[0],
        hint: "pass --force to replace the key pair (outputs signed with the old key will no longer verify with the new one), or choose another --out",
      });
    }
  }
  try {
    await makeDir(dir, 0o700);
  } catch (e) {
    throw new UserError(`cannot create ${dir}: ${fsReason(e)}`, { file: dir, hint: "choose a writable --out folder" });
  }

  const { privateKey, publicKey } = generate(type);
  const privPem = String(privateKey.export({ format: "pem", type: "pkcs8" }));
  const pubPem = spkiPem(publicKey);
  const tmpPriv = `${privPath}.tmp-${process.pid}`;
  const tmpPub = `${pubPath}.tmp-${process.pid}`;
  try {
    // 'wx' + mode: the secret is never readable by others, not even briefly.
    await writeFile(tmpPriv, privPem, { mode: 0o600, flag: "wx" });
    await chmod(tmpPriv, 0o600); // in case the umask removed bits we want (never adds)
    await writeFile(tmpPub, pubPem, { mode: 0o644, flag: "wx" });
    await rename(tmpPriv, privPath);
    await rename(tmpPub, pubPath);
  } catch (e) {
    await rm(tmpPriv, { force: true });
    await rm(tmpPub, { force: true });
    throw new UserError(`cannot write keys into ${dir}: ${fsReason(e)}`, {
      file: dir,
      hint: "check that the folder is writable",
    });
  }
  return { type, keyId: keyId(publicKey), privateKey: privPath, publicKey: pubPath };
}
