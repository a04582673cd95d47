/**
 * Secure Boot signing with the real tools: key loading and its errors
 * (openssl-made keys and Debian's snakeoil test pair), the spec/flag
 * precedence of resolveSecureBoot, sbsign under libfaketime (reproducible,
 * verified by sbverify, signingTime = SOURCE_DATE_EPOCH) and the db
 * enrollment material (DER, EFI_SIGNATURE_LIST, KEK-signed .auth) checked
 * byte by byte and with efitools and openssl as oracles.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { execa } from "execa";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { copyFile, mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../../src/errors.js";
import { loadSpec } from "../../src/config/spec.js";
import { resolveSecureBoot } from "../../src/services/preflight.js";
import {
  epochTimestamp, loadSecureBootKeys, PASSPHRASE_ENV, sbsign, sbverify, signatureOwnerGuid, writeEnrollment,
  type SecureBootKeys, type SecureBootSources,
} from "../../src/stages/boot/secureboot.js";
import { tempDirs } from "../boot/helpers/temps.js";

const SNAKEOIL_KEY = "/usr/share/ovmf/PkKek-1-snakeoil.key";
const SNAKEOIL_CERT = "/usr/share/ovmf/PkKek-1-snakeoil.pem";
const SNAKEOIL_SUBJECT = "C=US\nST=Colorado\nL=Fort Collins\nO=SnakeOil";
const BOOT_EFI = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/** 2026-01-02 03:04:05 UTC: every field of the date and time differs, so a swapped field shows. */
const EPOCH = 1767323045;
/** 2025-11-23 21:58:59 UTC. */
const OTHER_EPOCH = 1763935139;

const EFI_CERT_X509_GUID = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072";
const EFI_CERT_TYPE_PKCS7_GUID = "4aafd29d-68df-49ee-8aa9-347d375665a7";
const EFI_IMAGE_SECURITY_DATABASE_GUID = "d719b2cb-3d3a-4596-a3bc-dad00e67656f";

const mkdtemp = tempDirs();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A GUID as EFI stores it: the first three fields little-endian, the last two as written. */
function guidBytes(g: string): Buffer {
  const h = Buffer.from(g.replace(/-/g, ""), "hex");
  return Buffer.concat([Buffer.from(h.subarray(0, 4)).reverse(), Buffer.from(h.subarray(4, 6)).reverse(), Buffer.from(h.subarray(6, 8)).reverse(), h.subarray(8)]);
}

/** DER tag-length-value. */
function tlv(tag: number, body: Buffer): Buffer {
  const n = body.length;
  const len: number[] = [];
  if (n < 0x80) len.push(n);
  else {
    for (let x = n; x; x >>= 8) len.unshift(x & 0xff);
    len.unshift(0x80 | len.length);
  }
  return Buffer.concat([Buffer.from([tag, ...len]), body]);
}

/** A bare PKCS#7 SignedData (as in an EFI .auth) wrapped in the ContentInfo openssl reads. */
function contentInfo(signedData: Buffer): Buffer {
  const oidSignedData = Buffer.from("06092a864886f70d010702", "hex"); // 1.2.840.113549.1.7.2
  return tlv(0x30, Buffer.concat([oidSignedData, tlv(0xa0, signedData)]));
}

async function tool(argv: string[], opts: { cwd?: string } = {}) {
  return execa(argv[0]!, argv.slice(1), { reject: false, cwd: opts.cwd, env: { LC_ALL: "C", TZ: "UTC" } });
}

async function toolBytes(argv: string[]): Promise<Buffer> {
  const r = await execa(argv[0]!, argv.slice(1), { encoding: "buffer" });
  return Buffer.from(r.stdout as Uint8Array);
}

async function userError(p: Promise<unknown>): Promise<UserError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return e as UserError;
  }
  throw new Error("expected a UserError");
}

/** Key files made for these tests (and only these). */
let K: string;
const MADE = [
  "db.crt", "db.der", "db.key", "ec.crt", "ec.key", "notcert.txt", "other.crt", "other.key",
  "pass.txt", "rsa1024.crt", "rsa1024.key", "snakeoil.key", "snakeoil.pem", "wrongpass.txt",
];
const k = (f: string) => join(K, f);

async function req(key: string, cert: string, subject: string, newkey: string[]): Promise<void> {
  await execa("openssl", ["req", "-x509", ...newkey, "-nodes", "-keyout", k(key), "-out", k(cert), "-subj", subject, "-days", "3650"]);
}

beforeAll(async () => {
  K = mkdtemp(join(tmpdir(), "acl-sb-keys-"));
  await copyFile(SNAKEOIL_KEY, k("snakeoil.key"));
  await copyFile(SNAKEOIL_CERT, k("snakeoil.pem"));
  await req("db.key", "db.crt", "/CN=acl test db", ["-newkey", "rsa:2048"]);
  await req("other.key", "other.crt", "/CN=acl other", ["-newkey", "rsa:2048"]);
  await req("ec.key", "ec.crt", "/CN=acl ec", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
  await req("rsa1024.key", "rsa1024.crt", "/CN=acl small", ["-newkey", "rsa:1024"]);
  await execa("openssl", ["x509", "-in", k("db.crt"), "-outform", "DER", "-out", k("db.der")]);
  await writeFile(k("pass.txt"), "snakeoil\n");
  await writeFile(k("wrongpass.txt"), "not-the-passphrase\n");
  await writeFile(k("notcert.txt"), "this is not a certificate\n");
}, 60_000);

const SPEC = "/specs/image.toml";
/** Sources as a spec gives them (origin = spec keys). */
const fromSpec = (key: string, certificate: string, extra: Partial<SecureBootSources> = {}): SecureBootSources => ({
  key: k(key), certificate: k(certificate), origin: { key: "secureboot.key", certificate: "secureboot.certificate" }, specPath: SPEC, ...extra,
});
/** Sources as flags give them. */
const fromFlags = (key: string, certificate: string, extra: Partial<SecureBootSources> = {}): SecureBootSources => ({
  key: k(key), certificate: k(certificate), origin: { key: "--secureboot-key", certificate: "--secureboot-cert" }, ...extra,
});

describe("loadSecureBootKeys", () => {
  it("makes the test keys the tests expect", async () => {
    expect((await readdir(K)).sort()).toEqual(MADE);
    expect(await readFile(k("snakeoil.key"), "utf8")).toMatch(/^-----BEGIN ENCRYPTED PRIVATE KEY-----\n/);
    expect(await readFile(k("db.key"), "utf8")).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
  });

  it("refuses an encrypted key without a passphrase, naming the file, the spec key and the variable", async () => {
    const e = await userError(loadSecureBootKeys(fromSpec("snakeoil.key", "snakeoil.pem")));
    expect(e.message).toBe(`${SPEC}: 'secureboot.key' (${k("snakeoil.key")}): the key is encrypted and no passphrase was given`);
    expect(e.key).toBe("secureboot.key");
    expect(e.file).toBe(SPEC);
    expect(PASSPHRASE_ENV).toBe("ACL_SECUREBOOT_PASSPHRASE");
    expect(e.hint).toBe("set ACL_SECUREBOOT_PASSPHRASE in the environment, or pass --secureboot-passphrase-file FILE (never on the command line)");
    // from a flag: the flag and the file, no spec key
    const f = await userError(loadSecureBootKeys(fromFlags("snakeoil.key", "snakeoil.pem")));
    expect(f.message).toBe(`--secureboot-key ${k("snakeoil.key")}: the key is encrypted and no passphrase was given`);
    expect(f.file).toBe(k("snakeoil.key"));
    expect(f.key).toBeUndefined();
    expect(f.hint).toMatch(/ACL_SECUREBOOT_PASSPHRASE/);
  });

  it("refuses a wrong passphrase", async () => {
    const e = await userError(loadSecureBootKeys(fromSpec("snakeoil.key", "snakeoil.pem", { passphrase: "snakeoi1" })));
    expect(e.message).toBe(`${SPEC}: 'secureboot.key' (${k("snakeoil.key")}): cannot decrypt the key: wrong passphrase`);
    expect([e.key, e.file]).toEqual(["secureboot.key", SPEC]);
    expect(e.hint).toBe("check ACL_SECUREBOOT_PASSPHRASE or the passphrase file");
  });

  it("refuses a key that does not belong to the certificate", async () => {
    const e = await userError(loadSecureBootKeys(fromFlags("db.key", "other.crt")));
    expect(e.message).toBe(`--secureboot-key ${k("db.key")}: the key does not belong to ${k("other.crt")}`);
    expect([e.key, e.file]).toEqual([undefined, k("db.key")]);
    expect(e.hint).toBe("give the certificate made from this key");
  });

  it("refuses an EC key and a 1024-bit RSA key: firmware checks RSA-2048 and up", async () => {
    const ec = await userError(loadSecureBootKeys(fromSpec("ec.key", "ec.crt")));
    expect(ec.message).toMatch(new RegExp(`^${SPEC}: 'secureboot\\.key' \\(${k("ec.key")}\\): an EC key cannot sign for UEFI Secure Boot$`));
    expect(ec.key).toBe("secureboot.key");
    expect(ec.hint).toBe("firmware checks RSA signatures only: use an RSA key of 2048 bits or more");
    const small = await userError(loadSecureBootKeys(fromSpec("rsa1024.key", "rsa1024.crt")));
    expect(small.message).toBe(`${SPEC}: 'secureboot.key' (${k("rsa1024.key")}): an RSA key of 1024 bits is too small`);
    expect(small.hint).toBe("use an RSA key of 2048 bits or more");
  });

  it("names an unreadable key or certificate and a file that is not a certificate or not a key", async () => {
    const noCert = await userError(loadSecureBootKeys(fromSpec("db.key", "missing.crt")));
    expect(noCert.message).toBe(`${SPEC}: 'secureboot.certificate' (${k("missing.crt")}): cannot read the certificate`);
    expect([noCert.key, noCert.file]).toEqual(["secureboot.certificate", SPEC]);
    expect(noCert.hint).toBe("give the X.509 certificate (PEM or DER) that belongs to the key");
    const noKey = await userError(loadSecureBootKeys(fromFlags("missing.key", "db.crt")));
    expect(noKey.message).toBe(`--secureboot-key ${k("missing.key")}: cannot read the private key`);
    expect(noKey.file).toBe(k("missing.key"));
    expect(noKey.hint).toBe("give the PEM private key of the Secure Boot certificate");
    // a folder cannot be read as a file either (EISDIR)
    const dirKey = await userError(loadSecureBootKeys({ ...fromFlags("db.key", "db.crt"), key: K }));
    expect(dirKey.message).toBe(`--secureboot-key ${K}: cannot read the private key`);
    const notCert = await userError(loadSecureBootKeys(fromFlags("db.key", "notcert.txt")));
    expect(notCert.message).toBe(`--secureboot-cert ${k("notcert.txt")}: not an X.509 certificate`);
    expect(notCert.file).toBe(k("notcert.txt"));
    expect(notCert.hint).toMatch(/^give a PEM or DER certificate, for example from `openssl req -x509 -newkey rsa:2048/);
    // a certificate where the key belongs
    const certAsKey = await userError(loadSecureBootKeys(fromSpec("db.crt", "db.crt")));
    expect(certAsKey.message).toBe(`${SPEC}: 'secureboot.key' (${k("db.crt")}): not a private key`);
    expect(certAsKey.hint).toBe("give a PEM private key (PKCS#8 or PKCS#1)");
  });

  it("loads the encrypted snakeoil key with its passphrase into memory only, as unencrypted PKCS#8", async () => {
    const before = await readdir(K);
    const keys = await loadSecureBootKeys(fromSpec("snakeoil.key", "snakeoil.pem", { passphrase: "snakeoil" }));
    expect(keys.cert.subject).toBe(SNAKEOIL_SUBJECT);
    expect(keys.certPath).toBe(k("snakeoil.pem"));
    expect(keys.kek).toBeUndefined();
    const pem = keys.keyPem.toString();
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END PRIVATE KEY-----\n$/);
    expect(pem).not.toMatch(/ENCRYPTED/);
    // it is the key of the certificate, readable without a passphrase
    const key = createPrivateKey(pem);
    expect([key.asymmetricKeyType, key.asymmetricKeyDetails?.modulusLength]).toEqual(["rsa", 2048]);
    expect(createPublicKey(key).export({ format: "der", type: "spki" })).toEqual(keys.cert.publicKey.export({ format: "der", type: "spki" }));
    // and it is the same key openssl decrypts
    const plain = await tool(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", k("snakeoil.key"), "-passin", "pass:snakeoil"]);
    expect(String(plain.stdout) + "\n").toBe(pem);
    // nothing was written: the key folder holds exactly the files made above
    expect((await readdir(K)).sort()).toEqual(before.sort());
    expect((await readdir(K)).sort()).toEqual(MADE);
  });

  it("loads an unencrypted key (a passphrase is then ignored) and a DER certificate", async () => {
    const plain = await loadSecureBootKeys(fromFlags("db.key", "db.crt"));
    expect(plain.cert.subject).toBe("CN=acl test db");
    expect(plain.keyPem.toString()).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const withPass = await loadSecureBootKeys(fromFlags("db.key", "db.crt", { passphrase: "anything" }));
    expect(withPass.keyPem).toEqual(plain.keyPem);
    const der = await loadSecureBootKeys(fromFlags("db.key", "db.der"));
    expect(der.certPath).toBe(k("db.der"));
    expect(der.cert.subject).toBe("CN=acl test db");
    expect(der.cert.raw).toEqual(await readFile(k("db.der")));
    expect(der.cert.fingerprint256).toBe(plain.cert.fingerprint256);
    expect((await readdir(K)).sort()).toEqual(MADE);
  });

  it("loads a KEK pair next to the db pair, and wants both halves of it", async () => {
    const keys = await loadSecureBootKeys(fromSpec("db.key", "db.crt", { kekKey: k("snakeoil.key"), kekCertificate: k("snakeoil.pem"), passphrase: "snakeoil" }));
    expect(keys.cert.subject).toBe("CN=acl test db");
    expect(keys.kek?.cert.subject).toBe(SNAKEOIL_SUBJECT);
    expect(keys.kek?.keyPem.toString()).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const half = await userError(loadSecureBootKeys(fromSpec("db.key", "db.crt", { kekCertificate: k("snakeoil.pem") })));
    expect(half.message).toBe(`${SPEC}: 'secureboot.kek_key' is missing: a KEK needs both its key and its certificate`);
    expect([half.key, half.file]).toEqual(["secureboot.kek_key", SPEC]);
    expect(half.hint).toBe("give both, or neither (then no .auth update is made)");
    // a wrong KEK passphrase names the KEK's spec key
    const wrong = await userError(loadSecureBootKeys(fromSpec("db.key", "db.crt", { kekKey: k("snakeoil.key"), kekCertificate: k("snakeoil.pem"), passphrase: "x" })));
    expect(wrong.message).toBe(`${SPEC}: 'secureboot.kek_key' (${k("snakeoil.key")}): cannot decrypt the key: wrong passphrase`);
    expect(wrong.key).toBe("secureboot.kek_key");
  });
});

describe("resolveSecureBoot (flags over the spec's [secureboot])", () => {
  let S: string;
  const base = `name = "t"\nversion = "1.0"\n[[sources]]\ntype = "dir"\npath = "overlay"\n`;
  const spec = async (name: string, secureboot: string | undefined) => {
    await writeFile(join(S, name), base + (secureboot === undefined ? "" : `\n[secureboot]\n${secureboot}`));
    return loadSpec(join(S, name));
  };
  beforeAll(async () => {
    S = mkdtemp(join(tmpdir(), "acl-sb-spec-"));
    await mkdir(join(S, "overlay"));
    await mkdir(join(S, "keys"));
    await copyFile(SNAKEOIL_KEY, join(S, "keys", "sb.key"));
    await copyFile(SNAKEOIL_CERT, join(S, "keys", "sb.crt"));
    await writeFile(join(S, "keys", "pass"), "snakeoil\r\nsecond line is ignored\n");
  });

  it("reads the spec's pair and passphrase_file, relative to the spec's folder, when no flag or variable is given", async () => {
    const s = await spec("a.toml", `key = "keys/sb.key"\ncertificate = "keys/sb.crt"\npassphrase_file = "keys/pass"\n`);
    const keys = await resolveSecureBoot(s, {});
    expect(keys?.cert.subject).toBe(SNAKEOIL_SUBJECT);
    expect(keys?.certPath).toBe(join(S, "keys", "sb.crt"));
    expect(keys?.kek).toBeUndefined();
  });

  it("lets the key and certificate flags win over the spec's", async () => {
    const s = await spec("b.toml", `key = "keys/sb.key"\ncertificate = "keys/sb.crt"\npassphrase_file = "keys/pass"\n`);
    const keys = await resolveSecureBoot(s, { key: k("db.key"), cert: k("db.crt") });
    expect(keys?.cert.subject).toBe("CN=acl test db");
    expect(keys?.certPath).toBe(k("db.crt"));
    // one flag alone replaces only its half: the db key with the spec's snakeoil certificate does not match
    const e = await userError(resolveSecureBoot(s, { key: k("db.key") }));
    expect(e.message).toBe(`--secureboot-key ${k("db.key")}: the key does not belong to ${join(S, "keys", "sb.crt")}`);
    const c = await userError(resolveSecureBoot(s, { cert: k("db.crt") }));
    expect(c.message).toBe(`${s.specPath}: 'secureboot.key' (${join(S, "keys", "sb.key")}): the key does not belong to ${k("db.crt")}`);
    expect(c.key).toBe("secureboot.key");
  });

  it("takes the passphrase from the flag's file over the variable, and the variable over the spec's file", async () => {
    const noFile = await spec("c.toml", `key = "keys/sb.key"\ncertificate = "keys/sb.crt"\n`);
    expect((await resolveSecureBoot(noFile, { passphraseFile: k("pass.txt"), passphraseEnv: "wrong" }))?.cert.subject).toBe(SNAKEOIL_SUBJECT);
    const fileWins = await userError(resolveSecureBoot(noFile, { passphraseFile: k("wrongpass.txt"), passphraseEnv: "snakeoil" }));
    expect(fileWins.message).toMatch(/cannot decrypt the key: wrong passphrase$/);
    expect((await resolveSecureBoot(noFile, { passphraseEnv: "snakeoil" }))?.cert.subject).toBe(SNAKEOIL_SUBJECT);
    const none = await userError(resolveSecureBoot(noFile, {}));
    expect(none.message).toBe(`${noFile.specPath}: 'secureboot.key' (${join(S, "keys", "sb.key")}): the key is encrypted and no passphrase was given`);
    const withFile = await spec("d.toml", `key = "keys/sb.key"\ncertificate = "keys/sb.crt"\npassphrase_file = "keys/pass"\n`);
    const envWins = await userError(resolveSecureBoot(withFile, { passphraseEnv: "wrong" }));
    expect(envWins.message).toMatch(/cannot decrypt the key: wrong passphrase$/);
    expect((await resolveSecureBoot(withFile, { passphraseFile: k("pass.txt"), passphraseEnv: "wrong" }))?.cert.subject).toBe(SNAKEOIL_SUBJECT);
    // an empty $ACL_SECUREBOOT_PASSPHRASE is unset: the spec's passphrase_file is used
    expect((await resolveSecureBoot(withFile, { passphraseEnv: "" }))?.cert.subject).toBe(SNAKEOIL_SUBJECT);
    const unreadable = await userError(resolveSecureBoot(noFile, { passphraseFile: k("missing-pass") }));
    expect(unreadable.message).toBe(`--secureboot-passphrase-file ${k("missing-pass")}: cannot read the passphrase file`);
    expect(unreadable.file).toBe(k("missing-pass"));
    expect(unreadable.hint).toBe("give a readable file whose first line is the passphrase, or set ACL_SECUREBOOT_PASSPHRASE");
  });

  it("is undefined with no [secureboot] and no flags, and refuses half a pair from the flags", async () => {
    const plain = await spec("e.toml", undefined);
    expect(plain.secureboot).toBeUndefined();
    expect(await resolveSecureBoot(plain)).toBeUndefined();
    expect(await resolveSecureBoot(plain, { passphraseEnv: "snakeoil", passphraseFile: k("pass.txt") })).toBeUndefined();
    const keyOnly = await userError(resolveSecureBoot(plain, { key: k("db.key") }));
    expect(keyOnly.message).toBe("--secureboot-key was given without a certificate");
    expect(keyOnly.hint).toBe("pass --secureboot-cert CERT too, or set [secureboot] certificate in the spec");
    const certOnly = await userError(resolveSecureBoot(plain, { cert: k("db.crt") }));
    expect(certOnly.message).toBe("--secureboot-cert was given without a key");
    expect(certOnly.hint).toBe("pass --secureboot-key KEY too, or set [secureboot] key in the spec");
    // and the flags alone are a whole pair
    expect((await resolveSecureBoot(plain, { key: k("db.key"), cert: k("db.crt") }))?.cert.subject).toBe("CN=acl test db");
  });

  it("loads the spec's KEK pair and names secureboot.kek_certificate when it is missing", async () => {
    const both = await spec("f.toml", `key = "keys/sb.key"\ncertificate = "keys/sb.crt"\nkek_key = "keys/sb.key"\nkek_certificate = "keys/sb.crt"\n`);
    const keys = await resolveSecureBoot(both, { key: k("db.key"), cert: k("db.crt"), passphraseEnv: "snakeoil" });
    expect(keys?.cert.subject).toBe("CN=acl test db");
    expect(keys?.kek?.cert.subject).toBe(SNAKEOIL_SUBJECT);
    const half = await spec("g.toml", `key = "keys/sb.key"\ncertificate = "keys/sb.crt"\nkek_key = "keys/sb.key"\n`);
    const e = await userError(resolveSecureBoot(half, { passphraseEnv: "snakeoil" }));
    expect(e.message).toBe(`${half.specPath}: 'secureboot.kek_certificate' is missing: a KEK needs both its key and its certificate`);
    expect(e.key).toBe("secureboot.kek_certificate");
    expect(e.file).toBe(half.specPath);
  });
});

describe("sbsign and sbverify", () => {
  let W: string;
  let keys: SecureBootKeys;
  let unsigned: Buffer;
  beforeAll(async () => {
    W = mkdtemp(join(tmpdir(), "acl-sb-sign-"));
    keys = await loadSecureBootKeys(fromSpec("snakeoil.key", "snakeoil.pem", { passphrase: "snakeoil" }));
    unsigned = await readFile(BOOT_EFI);
    for (const f of ["a.efi", "b.efi", "c.efi"]) await copyFile(BOOT_EFI, join(W, f));
    await sbsign(join(W, "a.efi"), keys, EPOCH);
    await sleep(1100);
    await sbsign(join(W, "b.efi"), keys, EPOCH);
    await sbsign(join(W, "c.efi"), keys, OTHER_EPOCH);
  }, 60_000);

  it("gives the same bytes for the same epoch a second apart, other bytes for another epoch", async () => {
    expect(epochTimestamp(EPOCH)).toBe("2026-01-02 03:04:05");
    expect(epochTimestamp(OTHER_EPOCH)).toBe("2025-11-23 21:58:59");
    const [a, b, c] = await Promise.all(["a.efi", "b.efi", "c.efi"].map((f) => readFile(join(W, f))));
    expect(a.length).toBeGreaterThan(unsigned.length);
    expect(a.equals(unsigned)).toBe(false);
    expect(b.equals(a)).toBe(true);
    expect(c.length).toBe(a.length);
    expect(c.equals(a)).toBe(false);
    // signed in place: no temporary file, certificate copy or key is left next to them
    expect((await readdir(W)).sort()).toEqual(["a.efi", "b.efi", "c.efi"]);
  });

  it("is needed: sbsign alone puts the wall clock into the signature", async () => {
    const D = mkdtemp(join(tmpdir(), "acl-sb-plain-"));
    const once = async (out: string) => {
      const r = await tool(["sbsign", "--key", k("db.key"), "--cert", k("db.crt"), "--output", join(D, out), BOOT_EFI]);
      expect(r.exitCode, String(r.stderr)).toBe(0);
      return readFile(join(D, out));
    };
    const x = await once("x.efi");
    await sleep(1100);
    const y = await once("y.efi");
    expect(y.length).toBe(x.length);
    expect(y.equals(x)).toBe(false);
  });

  it("is accepted by sbverify with the certificate and refused with another", async () => {
    const ok = await tool(["sbverify", "--cert", SNAKEOIL_CERT, join(W, "a.efi")]);
    expect(ok.exitCode).toBe(0);
    expect(String(ok.stdout)).toMatch(/^Signature verification OK$/m);
    const other = await tool(["sbverify", "--cert", k("other.crt"), join(W, "a.efi")]);
    expect(other.exitCode).toBe(1);
    expect(String(other.stdout) + String(other.stderr)).toMatch(/Signature verification failed/);
    const none = await tool(["sbverify", "--cert", SNAKEOIL_CERT, BOOT_EFI]);
    expect(none.exitCode).toBe(1);
    expect(String(none.stdout) + String(none.stderr)).toMatch(/No signature table present/);
  });

  it("sbverify() says the same, and leaves nothing in its work folder", async () => {
    const ok = await sbverify(join(W, "a.efi"), keys.cert, W);
    expect(ok.ok).toBe(true);
    expect(ok.detail).toMatch(/Signature verification OK/);
    expect(ok.detail).not.toMatch(/data remaining/);
    const other = await loadSecureBootKeys(fromFlags("other.key", "other.crt"));
    const bad = await sbverify(join(W, "a.efi"), other.cert, W);
    expect(bad.ok).toBe(false);
    expect(bad.detail).toMatch(/Signature verification failed/);
    const D = mkdtemp(join(tmpdir(), "acl-sb-unsigned-"));
    await copyFile(BOOT_EFI, join(D, "u.efi"));
    const unsignedResult = await sbverify(join(D, "u.efi"), keys.cert, D);
    expect(unsignedResult.ok).toBe(false);
    expect(unsignedResult.detail).toMatch(/No signature table present/);
    expect((await readdir(W)).sort()).toEqual(["a.efi", "b.efi", "c.efi"]);
    expect(await readdir(D)).toEqual(["u.efi"]);
  });

  it("puts SOURCE_DATE_EPOCH into the PKCS#7 signingTime", async () => {
    const D = mkdtemp(join(tmpdir(), "acl-sb-p7-"));
    const utc = (epoch: number) => epochTimestamp(epoch).replace(/^\d\d(\d\d)-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)$/, "$1$2$3$4$5$6Z");
    expect(utc(EPOCH)).toBe("260102030405Z");
    for (const [file, epoch] of [["a.efi", EPOCH], ["c.efi", OTHER_EPOCH]] as const) {
      const sig = join(D, `${file}.p7`);
      const d = await tool(["sbattach", "--detach", sig, join(W, file)]);
      expect(d.exitCode, String(d.stderr)).toBe(0);
      const parsed = String((await tool(["openssl", "asn1parse", "-inform", "DER", "-in", sig])).stdout).split("\n");
      const at = parsed.findIndex((l) => /:signingTime$/.test(l));
      expect(at).toBeGreaterThan(0);
      const time = parsed.slice(at + 1, at + 4).map((l) => /prim: UTCTIME\s+:(\d{12}Z)$/.exec(l)?.[1]).find(Boolean);
      expect(time).toBe(utc(epoch));
      const printed = String((await tool(["openssl", "pkcs7", "-inform", "DER", "-in", sig, "-print"])).stdout);
      expect(printed).toContain(epoch === EPOCH ? "UTCTIME:Jan  2 03:04:05 2026 GMT" : "UTCTIME:Nov 23 21:58:59 2025 GMT");
      expect(printed).toContain("O=SnakeOil");
    }
  });
});

describe("writeEnrollment", () => {
  let dbKeys: SecureBootKeys;
  let withKek: SecureBootKeys;
  let A: string;
  let B: string;
  let plain: Awaited<ReturnType<typeof writeEnrollment>>;
  beforeAll(async () => {
    dbKeys = await loadSecureBootKeys(fromFlags("db.key", "db.crt"));
    withKek = await loadSecureBootKeys(fromSpec("db.key", "db.crt", { kekKey: k("snakeoil.key"), kekCertificate: k("snakeoil.pem"), passphrase: "snakeoil" }));
    const P = mkdtemp(join(tmpdir(), "acl-sb-enroll-"));
    plain = await writeEnrollment(P, dbKeys, EPOCH);
    A = mkdtemp(join(tmpdir(), "acl-sb-enroll-a-"));
    B = mkdtemp(join(tmpdir(), "acl-sb-enroll-b-"));
  }, 60_000);

  it("writes db.der (openssl's DER) and db.esl, no .auth without a KEK, no stray PEM", async () => {
    expect(plain.auth).toBeUndefined();
    expect(plain.der).toMatch(/\/db\.der$/);
    expect(plain.esl).toMatch(/\/db\.esl$/);
    const dir = plain.der.slice(0, -"/db.der".length);
    expect((await readdir(dir)).sort()).toEqual(["db.der", "db.esl"]);
    expect(await readFile(plain.der)).toEqual(await toolBytes(["openssl", "x509", "-in", k("db.crt"), "-outform", "DER"]));
  });

  it("writes an EFI_SIGNATURE_LIST of one X.509 entry owned by the returned GUID", async () => {
    const esl = await readFile(plain.esl);
    const der = await readFile(plain.der);
    expect(plain.ownerGuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(esl.subarray(0, 16)).toEqual(guidBytes(EFI_CERT_X509_GUID));
    expect(esl.subarray(0, 16).toString("hex")).toBe("a159c0a5e494a74a87b5ab155c2bf072");
    const listSize = esl.readUInt32LE(16);
    const headerSize = esl.readUInt32LE(20);
    const signatureSize = esl.readUInt32LE(24);
    expect(listSize).toBe(esl.length);
    expect(headerSize).toBe(0);
    expect(signatureSize).toBe(16 + der.length);
    expect(listSize).toBe(28 + signatureSize);
    expect(esl.subarray(28, 44)).toEqual(guidBytes(plain.ownerGuid));
    expect(esl.subarray(44)).toEqual(der);
  });

  it("is read back by efitools' sig-list-to-certs", async () => {
    const D = mkdtemp(join(tmpdir(), "acl-sb-sl2c-"));
    const r = await tool(["sig-list-to-certs", plain.esl, join(D, "out")]);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(String(r.stdout)).toContain(`Guid ${plain.ownerGuid}`);
    expect(await readdir(D)).toEqual(["out-0.der"]);
    expect(await readFile(join(D, "out-0.der"))).toEqual(await readFile(plain.der));
  });

  it("writes db.auth with a KEK: EFI_TIME = the epoch, a KEK-signed PKCS#7, then db.esl", async () => {
    const files = await writeEnrollment(A, withKek, EPOCH);
    expect(files.auth).toBe(join(A, "db.auth"));
    expect((await readdir(A)).sort()).toEqual(["db.auth", "db.der", "db.esl"]);
    const auth = await readFile(files.auth!);
    const esl = await readFile(files.esl);
    // EFI_TIME: Year, Month, Day, Hour, Minute, Second, Pad1, Nanosecond, TimeZone, Daylight, Pad2
    const d = new Date(EPOCH * 1000);
    expect([auth.readUInt16LE(0), auth[2], auth[3], auth[4], auth[5], auth[6]]).toEqual([
      d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(),
    ]);
    expect([auth.readUInt16LE(0), auth[2], auth[3], auth[4], auth[5], auth[6]]).toEqual([2026, 1, 2, 3, 4, 5]);
    expect(auth.subarray(7, 16)).toEqual(Buffer.alloc(9));
    // WIN_CERTIFICATE_UEFI_GUID: dwLength, wRevision 0x0200, wCertificateType WIN_CERT_TYPE_EFI_GUID, CertType PKCS7
    const dwLength = auth.readUInt32LE(16);
    expect(auth.readUInt16LE(20)).toBe(0x0200);
    expect(auth.readUInt16LE(22)).toBe(0x0ef1);
    expect(auth.subarray(24, 40)).toEqual(guidBytes(EFI_CERT_TYPE_PKCS7_GUID));
    expect(auth.length).toBe(16 + dwLength + esl.length);
    expect(auth.subarray(16 + dwLength)).toEqual(esl);
    // the PKCS#7 carries the KEK's certificate
    const p7 = contentInfo(auth.subarray(40, 16 + dwLength));
    const D = mkdtemp(join(tmpdir(), "acl-sb-auth-"));
    await writeFile(join(D, "auth.p7"), p7);
    const certs = await tool(["openssl", "pkcs7", "-inform", "DER", "-in", join(D, "auth.p7"), "-print_certs", "-noout"]);
    expect(certs.exitCode, String(certs.stderr)).toBe(0);
    expect(String(certs.stdout)).toMatch(/^subject=C = US, ST = Colorado, L = Fort Collins, O = SnakeOil$/m);
    expect(String(certs.stdout)).not.toMatch(/acl test db/);
    // and it signs what firmware hashes for an authenticated append to db:
    // VariableName (UTF-16, no NUL) || VendorGuid || Attributes (NV|BS|RT|TIME_BASED|APPEND) || EFI_TIME || data
    const attrs = (a: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(a);
      return b;
    };
    const signed = (a: number) => Buffer.concat([Buffer.from("db", "utf16le"), guidBytes(EFI_IMAGE_SECURITY_DATABASE_GUID), attrs(a), auth.subarray(0, 16), esl]);
    await writeFile(join(D, "payload"), signed(0x67));
    await writeFile(join(D, "payload-no-append"), signed(0x27));
    const verify = (payload: string) =>
      tool(["openssl", "cms", "-verify", "-inform", "DER", "-in", join(D, "auth.p7"), "-content", join(D, payload), "-binary", "-noverify", "-certfile", SNAKEOIL_CERT, "-out", "/dev/null"]);
    const good = await verify("payload");
    expect(good.exitCode, String(good.stderr)).toBe(0);
    expect(String(good.stderr)).toMatch(/Verification successful/);
    expect((await verify("payload-no-append")).exitCode).not.toBe(0);
  });

  it("gives identical bytes on a second run, and a GUID per certificate", async () => {
    const a = await writeEnrollment(A, withKek, EPOCH);
    await sleep(1100);
    const b = await writeEnrollment(B, withKek, EPOCH);
    for (const f of ["db.der", "db.esl", "db.auth"]) expect((await readFile(join(B, f))).equals(await readFile(join(A, f))), f).toBe(true);
    expect(b.ownerGuid).toBe(a.ownerGuid);
    expect(a.ownerGuid).toBe(plain.ownerGuid);
    expect(a.ownerGuid).toBe(signatureOwnerGuid(dbKeys.cert));
    // the same certificate read as DER has the same GUID; another certificate another one
    const der = await loadSecureBootKeys(fromFlags("db.key", "db.der"));
    expect(signatureOwnerGuid(der.cert)).toBe(a.ownerGuid);
    const other = await loadSecureBootKeys(fromFlags("other.key", "other.crt"));
    expect(signatureOwnerGuid(other.cert)).not.toBe(a.ownerGuid);
    expect(signatureOwnerGuid(withKek.kek!.cert)).not.toBe(a.ownerGuid);
    // the .auth timestamp follows the epoch
    const C = mkdtemp(join(tmpdir(), "acl-sb-enroll-c-"));
    const c = await writeEnrollment(C, withKek, OTHER_EPOCH);
    const authC = await readFile(c.auth!);
    expect([authC.readUInt16LE(0), authC[2], authC[3], authC[4], authC[5], authC[6]]).toEqual([2025, 11, 23, 21, 58, 59]);
    expect(authC.equals(await readFile(join(A, "db.auth")))).toBe(false);
    expect(await readFile(c.esl)).toEqual(await readFile(join(A, "db.esl")));
  });
});
