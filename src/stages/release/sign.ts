/**
 * The sign stage: the last step of a build before publish. Given the staging
 * folder (with manifest.json already written) and a private key, it writes
 *
 *   SHA256SUMS              sha256sum lines for every artifact and manifest.json
 *   SHA256SUMS.sig          detached raw signature of SHA256SUMS (binary)
 *   provenance.intoto.json  DSSE envelope of an in-toto Statement v1 / SLSA provenance v1
 *   acl-signing.pub         the signer's public key (SPKI PEM); never the private key
 *
 * Same inputs give the same bytes: signatures are deterministic (Ed25519,
 * RSA PKCS#1 v1.5) and the times come from the caller (SOURCE_DATE_EPOCH).
 */
import { readFile, realpath, stat, writeFile } from "node:fs/promises";
import { createPrivateKey, type KeyObject } from "node:crypto";
import { join, relative, resolve, isAbsolute } from "node:path";
import { BugError, UserError, fsReason } from "../../errors.js";
import { canonicalJson } from "../../formats/canonical-json.js";
import { MANIFEST_FILE, parseManifest, type Artifact, type Manifest } from "../../pipeline/manifest.js";
import { sha256File, sha256Hex } from "../../util/hash.js";
import { encodeSha256Sums, SHA256SUMS_FILE, type SumEntry } from "../../formats/sha256sums.js";
import { envelopeToJson, INTOTO_PAYLOAD_TYPE, pae } from "../../formats/dsse.js";
import { buildStatement, type ProvenanceFacts } from "../../formats/provenance.js";
import { keyId, keyTypeOf, KeyTypeError, signBytes, spkiPem, type KeyType } from "../../formats/signature.js";

export const SIGNATURE_FILE = "SHA256SUMS.sig";
export const PROVENANCE_FILE = "provenance.intoto.json";
export const PUBLIC_KEY_FILE = "acl-signing.pub";
export const PRIVATE_KEY_FILE = "acl-signing.key";
/** Files the sign stage writes; a manifest must not list them (they are signed over it). */
export const SIGN_FILES = [SHA256SUMS_FILE, SIGNATURE_FILE, PROVENANCE_FILE, PUBLIC_KEY_FILE] as const;

/** What the caller knows about the build; the image identity comes from the manifest. */
export type ProvenanceOptions = Omit<ProvenanceFacts, "image">;

export interface SignOptions {
  stagingDir: string;
  manifest: Manifest;
  privateKeyPath: string;
  provenance: ProvenanceOptions;
  /**
   * Re-hash every artifact and compare with the manifest before signing
   * (default false: the manifest stage hashed them moments ago, and re-reading
   * GBs of disks doubles the cost). Sizes are always checked.
   */
  rehash?: boolean;
  /** Progress while re-hashing (bytes). */
  onProgress?: (done: number, total: number) => void;
}

/** Load a PKCS#8 (or PKCS#1/SEC1) PEM private key, with errors that name the file and the fix. */
export async function loadPrivateKey(path: string): Promise<{ key: KeyObject; type: KeyType; keyId: string }> {
  let pem: Buffer;
  try {
    pem = await readFile(path);
  } catch (e) {
    throw new UserError(`cannot read signing key ${path}: ${fsReason(e)}`, {
      file: path,
      hint: "create a key pair with `acl keys generate --out keys/` and pass keys/acl-signing.key",
    });
  }
  if (!pem.includes("PRIVATE KEY-----")) {
    throw new UserError(`${path} is not a PEM private key`, {
      file: path,
      hint: pem.includes("PUBLIC KEY-----")
        ? "this is a public key; sign with the private half (acl-signing.key) and verify with the public one"
        : "pass the acl-signing.key written by `acl keys generate`",
    });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: "pem" });
  } catch (e) {
    const msg = (e as Error).message;
    const encrypted = /passphrase|ENCRYPTED|bad decrypt/i.test(msg) || pem.includes("ENCRYPTED");
    throw new UserError(`cannot load private key ${path}: ${encrypted ? "the key is encrypted" : msg}`, {
      file: path,
      hint: encrypted
        ? "acl needs an unencrypted key: `openssl pkey -in KEY -out acl-signing.key` (keep it mode 0600)"
        : "regenerate it with `acl keys generate --out keys/`",
    });
  }
  try {
    return { key, type: keyTypeOf(key), keyId: keyId(key) };
  } catch (e) {
    if (e instanceof KeyTypeError) throw new UserError(`${path}: ${e.message}`, { file: path, hint: "generate one with `acl keys generate --type ed25519`" });
    throw e;
  }
}

function inside(dir: string, p: string): boolean {
  const r = relative(dir, p);
  return r === "" || (!r.startsWith("..") && !isAbsolute(r));
}

/** Sign a staged build output. Returns the artifacts it added (sorted by path). */
export async function signOutput(opts: SignOptions): Promise<Artifact[]> {
  const { stagingDir, manifest, provenance } = opts;
  for (const [k, v] of [["startedOn", provenance.startedOn], ["finishedOn", provenance.finishedOn]] as const) {
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(v) || Number.isNaN(Date.parse(v))) {
      throw new BugError(`signOutput: provenance.${k} must be an RFC 3339 UTC time, got '${v}'`);
    }
  }
  if (!/^[0-9a-f]{64}$/.test(provenance.specDigest)) throw new BugError(`signOutput: specDigest '${provenance.specDigest}' is not sha256 hex`);

  // The private key must never end up in the output: refuse a key that lives in it.
  const keyReal = await realpath(resolve(opts.privateKeyPath)).catch(() => resolve(opts.privateKeyPath));
  const stagingReal = await realpath(resolve(stagingDir));
  if (inside(stagingReal, keyReal)) {
    throw new UserError(`signing key ${opts.privateKeyPath} is inside the output folder`, {
      file: opts.privateKeyPath,
      hint: "keep private keys outside the build output (for example keys/acl-signing.key)",
    });
  }
  const signer = await loadPrivateKey(opts.privateKeyPath);

  // manifest.json on disk must be the manifest we were given: it is what gets signed.
  const manifestPath = join(stagingDir, MANIFEST_FILE);
  const manifestBytes = await readFile(manifestPath).catch(() => {
    throw new BugError(`signOutput: ${manifestPath} must be written before signing`);
  });
  const onDisk = parseManifest(JSON.parse(manifestBytes.toString("utf8")), manifestPath);
  if (canonicalJson(onDisk) !== canonicalJson(manifest)) {
    throw new BugError(`signOutput: ${manifestPath} differs from the manifest passed to the sign stage`);
  }
  const reserved = new Set<string>([MANIFEST_FILE, ...SIGN_FILES]);
  for (const a of manifest.artifacts) {
    if (reserved.has(a.path)) throw new BugError(`signOutput: the manifest lists '${a.path}', a file the sign stage writes`);
  }

  // Check each artifact against the manifest before vouching for it (size always, sha256 on request).
  const total = manifest.artifacts.reduce((s, a) => s + a.size, 0);
  let done = 0;
  for (const a of manifest.artifacts) {
    const file = join(stagingDir, a.path);
    const st = await stat(file).catch(() => undefined);
    if (!st?.isFile()) throw new BugError(`signOutput: manifest artifact ${a.path} is missing from ${stagingDir}`);
    if (st.size !== a.size) throw new BugError(`signOutput: ${a.path} is ${st.size} bytes, the manifest says ${a.size}`);
    if (opts.rehash ?? false) {
      const d = await sha256File(file, (n) => {
        done += n;
        opts.onProgress?.(done, total);
      });
      if (d.sha256 !== a.sha256) throw new BugError(`signOutput: ${a.path} has sha256 ${d.sha256}, the manifest says ${a.sha256}`);
    }
  }

  const entries: SumEntry[] = [
    ...manifest.artifacts.map((a) => ({ path: a.path, sha256: a.sha256 })),
    { path: MANIFEST_FILE, sha256: sha256Hex(manifestBytes) },
  ];
  const sums = encodeSha256Sums(entries);
  const sumsSig = signBytes(signer.key, sums);

  const statement = buildStatement(
    entries.map((e) => ({ name: e.path, digest: { sha256: e.sha256 } })),
    {
      ...provenance,
      image: {
        name: manifest.name,
        version: manifest.version,
        arch: manifest.arch,
        microarch: manifest.microarch,
        sourceDateEpoch: manifest.sourceDateEpoch,
      },
    },
  );
  const payload = Buffer.from(canonicalJson(statement), "utf8");
  const envelope = envelopeToJson({
    payloadType: INTOTO_PAYLOAD_TYPE,
    payload,
    signatures: [{ keyid: signer.keyId, sig: signBytes(signer.key, pae(INTOTO_PAYLOAD_TYPE, payload)) }],
  });
  const envelopeBytes = Buffer.from(canonicalJson(envelope), "utf8");
  const pubBytes = Buffer.from(spkiPem(signer.key), "utf8");

  const files: { path: string; kind: Artifact["kind"]; bytes: Buffer }[] = [
    { path: SHA256SUMS_FILE, kind: "checksums", bytes: sums },
    { path: SIGNATURE_FILE, kind: "signature", bytes: sumsSig },
    { path: PUBLIC_KEY_FILE, kind: "public-key", bytes: pubBytes },
    { path: PROVENANCE_FILE, kind: "provenance", bytes: envelopeBytes },
  ];
  const out: Artifact[] = [];
  for (const f of files) {
    await writeFile(join(stagingDir, f.path), f.bytes, { mode: 0o644 });
    out.push({ path: f.path, kind: f.kind, size: f.bytes.length, sha256: sha256Hex(f.bytes) });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
