/**
 * Secure Boot signing: the boot loader copies and every UKI are signed with
 * Debian's sbsigntool (Authenticode), and the certificate is turned into the
 * material a user enrolls in firmware (DER, an EFI signature list for db, and
 * a KEK-signed append update of db when a KEK key is given; efitools).
 *
 * The private key is read once (decrypted with its passphrase, which comes
 * from an environment variable or a file, never argv), kept in memory as
 * PKCS#8 PEM and piped to each tool on stdin (`--key /dev/stdin`): it is never
 * written to disk, so it cannot land in the output or the cache.
 *
 * sbsign is not reproducible on its own: OpenSSL puts the current time into
 * the PKCS#7 signingTime attribute. It runs under libfaketime frozen at the
 * build's SOURCE_DATE_EPOCH, so the same inputs give the same signed bytes
 * (and the signing time says when the sources were, not when the build ran).
 */
import { createHash, createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run, tools, type Requirement } from "../../adapters/exec.js";
import { UserError } from "../../errors.js";
import { deriveUuid } from "../../formats/verity.js";
import type { SecureBootKeys, SigningPair } from "../../pipeline/stage.js";

export const SECUREBOOT_REQUIREMENTS: readonly Requirement[] = tools("sbsign", "sbverify", "faketime", "cert-to-efi-sig-list", "sign-efi-sig-list");

/** Environment variable that holds the passphrase of an encrypted Secure Boot key. */
export const PASSPHRASE_ENV = "ACL_SECUREBOOT_PASSPHRASE";

export type { SecureBootKeys, SigningPair };

export interface SecureBootSources {
  key: string;
  certificate: string;
  kekKey?: string;
  kekCertificate?: string;
  /** The passphrase of encrypted keys (already read from the environment or a file). */
  passphrase?: string;
  /** Where each path came from, for error messages: a spec key (`secureboot.key`) or a flag. */
  origin: { key: string; certificate: string; kekKey?: string; kekCertificate?: string };
  specPath?: string;
}

/** An error about a file given by a flag (`--secureboot-key FILE: …`) or by a spec key (`SPEC: 'secureboot.key' (FILE): …`). */
export function originError(msg: string, file: string, origin: string, specPath: string | undefined, hint: string): UserError {
  const where = origin.startsWith("--") ? `${origin} ${file}` : `${specPath ?? "spec"}: '${origin}' (${file})`;
  return new UserError(`${where}: ${msg}`, { file: origin.startsWith("--") ? file : (specPath ?? file), key: origin.startsWith("--") ? undefined : origin, hint });
}

async function loadPair(keyPath: string, certPath: string, keyOrigin: string, certOrigin: string, passphrase: string | undefined, specPath: string | undefined): Promise<SigningPair> {
  let certText: Buffer;
  try {
    certText = await readFile(certPath);
  } catch {
    throw originError("cannot read the certificate", certPath, certOrigin, specPath, "give the X.509 certificate (PEM or DER) that belongs to the key");
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certText);
  } catch {
    throw originError("not an X.509 certificate", certPath, certOrigin, specPath, "give a PEM or DER certificate, for example from `openssl req -x509 -newkey rsa:2048 -keyout db.key -out db.crt`");
  }
  let keyText: Buffer;
  try {
    keyText = await readFile(keyPath);
  } catch {
    throw originError("cannot read the private key", keyPath, keyOrigin, specPath, "give the PEM private key of the Secure Boot certificate");
  }
  const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(keyText.toString("latin1"));
  if (encrypted && passphrase === undefined) {
    throw originError("the key is encrypted and no passphrase was given", keyPath, keyOrigin, specPath, `set ${PASSPHRASE_ENV} in the environment, or pass --secureboot-passphrase-file FILE (never on the command line)`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(encrypted ? { key: keyText, passphrase: passphrase! } : { key: keyText });
  } catch {
    throw originError(encrypted ? "cannot decrypt the key: wrong passphrase" : "not a private key", keyPath, keyOrigin, specPath, encrypted ? `check ${PASSPHRASE_ENV} or the passphrase file` : "give a PEM private key (PKCS#8 or PKCS#1)");
  }
  if (key.asymmetricKeyType !== "rsa") {
    throw originError(`an ${String(key.asymmetricKeyType).toUpperCase()} key cannot sign for UEFI Secure Boot`, keyPath, keyOrigin, specPath, "firmware checks RSA signatures only: use an RSA key of 2048 bits or more");
  }
  if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
    throw originError(`an RSA key of ${key.asymmetricKeyDetails?.modulusLength} bits is too small`, keyPath, keyOrigin, specPath, "use an RSA key of 2048 bits or more");
  }
  if (!cert.checkPrivateKey(key)) {
    throw originError(`the key does not belong to ${certPath}`, keyPath, keyOrigin, specPath, "give the certificate made from this key");
  }
  const keyPem = key.export({ format: "pem", type: "pkcs8" }) as string;
  return { keyPem: Buffer.from(keyPem), certPath, cert };
}

/** Check and load the Secure Boot key pair (and the KEK pair); every error names the spec key or flag and the fix. */
export async function loadSecureBootKeys(s: SecureBootSources): Promise<SecureBootKeys> {
  const main = await loadPair(s.key, s.certificate, s.origin.key, s.origin.certificate, s.passphrase, s.specPath);
  if (Boolean(s.kekKey) !== Boolean(s.kekCertificate)) {
    const missing = s.kekKey ? "kek_certificate" : "kek_key";
    throw new UserError(`${s.specPath ?? "spec"}: 'secureboot.${missing}' is missing: a KEK needs both its key and its certificate`, { file: s.specPath, key: `secureboot.${missing}`, hint: "give both, or neither (then no .auth update is made)" });
  }
  const kek = s.kekKey && s.kekCertificate ? await loadPair(s.kekKey, s.kekCertificate, s.origin.kekKey ?? "secureboot.kek_key", s.origin.kekCertificate ?? "secureboot.kek_certificate", s.passphrase, s.specPath) : undefined;
  return { ...main, kek };
}

export function certSha256(c: X509Certificate): string {
  return createHash("sha256").update(c.raw).digest("hex");
}

/** The EFI signature owner GUID, seeded by the certificate (stable across builds and images). */
export function signatureOwnerGuid(c: X509Certificate): string {
  return deriveUuid("acl-secureboot-owner", certSha256(c));
}

/** UTC wall clock of SOURCE_DATE_EPOCH as libfaketime and efitools take it. */
export function epochTimestamp(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "");
}

/** The tools take PEM certificate files: a PEM copy of the certificate at `base`.acl-cert-PID.pem, for the call. */
async function withCertPem<T>(cert: X509Certificate, base: string, fn: (pem: string) => Promise<T>): Promise<T> {
  const pem = `${base}.acl-cert-${process.pid}.pem`;
  await writeFile(pem, cert.toString());
  try {
    return await fn(pem);
  } finally {
    await rm(pem, { force: true });
  }
}

/** Sign a PE file in place (through a temporary file and rename), reproducibly. */
export async function sbsign(file: string, pair: SigningPair, epoch: number): Promise<void> {
  const tmp = `${file}.signing`;
  await rm(tmp, { force: true });
  try {
    await withCertPem(pair.cert, file, (pem) =>
      run(["faketime", "-f", epochTimestamp(epoch), "sbsign", "--key", "/dev/stdin", "--cert", pem, "--output", tmp, file], {
        input: pair.keyPem,
        inputPipe: true,
        env: { TZ: "UTC" },
        hint: "sbsign comes from sbsigntool, faketime from faketime",
      }),
    );
    await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}

/** sbverify --cert: true when the file carries a valid signature by that certificate (its PEM copy goes in workDir). */
export async function sbverify(file: string, cert: X509Certificate, workDir: string): Promise<{ ok: boolean; detail: string }> {
  const r = await withCertPem(cert, join(workDir, ".acl-sbverify"), (pem) => run(["sbverify", "--cert", pem, file], { okCodes: [0, 1] }));
  const detail = `${r.stdout}\n${r.stderr}`.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("warning: data remaining")).join("; ");
  return { ok: r.exitCode === 0 && /Signature verification OK/.test(r.stdout + r.stderr), detail };
}

export interface EnrollmentFiles {
  /** The db certificate, DER. */
  der: string;
  /** EFI_SIGNATURE_LIST with that certificate (cert-to-efi-sig-list). */
  esl: string;
  /** A time-based authenticated append write of db, signed by the KEK (sign-efi-sig-list -a), when a KEK is given. */
  auth?: string;
  ownerGuid: string;
}

/** Write the enrollment material into `dir` (secureboot/ of the output). */
export async function writeEnrollment(dir: string, keys: SecureBootKeys, epoch: number): Promise<EnrollmentFiles> {
  const ownerGuid = signatureOwnerGuid(keys.cert);
  const der = join(dir, "db.der");
  const esl = join(dir, "db.esl");
  await writeFile(der, keys.cert.raw);
  await withCertPem(keys.cert, esl, (pem) => run(["cert-to-efi-sig-list", "-g", ownerGuid, pem, esl], { hint: "cert-to-efi-sig-list comes from efitools" }));
  let auth: string | undefined;
  if (keys.kek) {
    const kek = keys.kek;
    const out = join(dir, "db.auth");
    await withCertPem(kek.cert, out, (kekPem) =>
      run(["sign-efi-sig-list", "-a", "-t", epochTimestamp(epoch), "-g", ownerGuid, "-k", "/dev/stdin", "-c", kekPem, "db", esl, out], {
        input: kek.keyPem,
        inputPipe: true,
        env: { TZ: "UTC" },
        hint: "sign-efi-sig-list comes from efitools",
      }),
    );
    auth = out;
  }
  return { der, esl, auth, ownerGuid };
}

/** A certificate's subject on one line ("C=US, O=SnakeOil"), as the manifest records it. */
export function certSubject(c: X509Certificate): string {
  return c.subject.replace(/\n/g, ", ");
}
