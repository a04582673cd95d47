/**
 * Signature primitives shared by `signOutput` and `acl verify`: key ids,
 * deterministic signing and verification. No I/O: callers load the PEM.
 *
 * - Ed25519 (default): pure EdDSA over the message (RFC 8032), 64 raw bytes.
 *   `openssl pkeyutl -verify -pubin -inkey PUB -rawin -in FILE -sigfile SIG`.
 * - RSA: RSASSA-PKCS1-v1_5 with SHA-256 (deterministic, unlike PSS, so the
 *   outputs stay reproducible). `openssl dgst -sha256 -verify PUB -signature SIG FILE`.
 *
 * The key id is the lowercase hex sha256 of the public key's SPKI DER, the
 * same value as `openssl pkey -pubin -in PUB -outform DER | sha256sum`.
 */
import { createHash, createPublicKey, sign, verify, type KeyObject } from "node:crypto";

export const KEY_TYPES = ["ed25519", "rsa"] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/** Bits for newly generated RSA keys. */
export const RSA_MODULUS_BITS = 3072;
/** Smallest RSA modulus acl accepts for signing or verifying. */
export const RSA_MIN_BITS = 2048;

export class KeyTypeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KeyTypeError";
  }
}

/** The acl key type of a key object; throws KeyTypeError for types acl does not sign with. */
export function keyTypeOf(key: KeyObject): KeyType {
  const t = key.asymmetricKeyType;
  if (t === "ed25519") return "ed25519";
  if (t === "rsa") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < RSA_MIN_BITS) throw new KeyTypeError(`RSA key has ${bits} bits; at least ${RSA_MIN_BITS} are required`);
    return "rsa";
  }
  throw new KeyTypeError(`unsupported key type '${t ?? key.type}': acl signs with ed25519 or rsa keys`);
}

/** SPKI DER of the public half of a key (private or public key object). */
export function spkiDer(key: KeyObject): Buffer {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  return pub.export({ format: "der", type: "spki" });
}

/** SPKI PEM of the public half of a key. */
export function spkiPem(key: KeyObject): string {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  return String(pub.export({ format: "pem", type: "spki" }));
}

/** Key id: hex sha256 of the SPKI DER. */
export function keyId(key: KeyObject): string {
  return createHash("sha256").update(spkiDer(key)).digest("hex");
}

function digestFor(type: KeyType): string | null {
  return type === "ed25519" ? null : "sha256";
}

/** Deterministic signature of `data` (raw bytes: 64 for Ed25519, modulus-sized for RSA). */
export function signBytes(privateKey: KeyObject, data: Uint8Array): Buffer {
  if (privateKey.type !== "private") throw new KeyTypeError("signing needs a private key");
  return sign(digestFor(keyTypeOf(privateKey)), data, privateKey);
}

/** True when `sig` is a valid signature of `data` by the key (false for any malformed signature). */
export function verifyBytes(publicKey: KeyObject, data: Uint8Array, sig: Uint8Array): boolean {
  try {
    return verify(digestFor(keyTypeOf(publicKey)), data, publicKey, sig);
  } catch {
    return false;
  }
}
