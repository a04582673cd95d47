/**
 * `acl verify OUT_DIR --key PUB`: check a signed build output against a
 * trusted public key. Every check runs (so one report names every problem);
 * any failure ends in a UserError that lists the failed checks.
 *
 * Trust flows from the key: SHA256SUMS.sig proves SHA256SUMS, SHA256SUMS
 * proves manifest.json and every artifact; the DSSE envelope proves the
 * provenance statement, whose subjects must equal SHA256SUMS.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { UserError, fsReason } from "../errors.js";
import { MANIFEST_FILE, parseManifest, type Manifest } from "../pipeline/manifest.js";
import { decodeSha256Sums, SHA256SUMS_FILE, type SumEntry } from "../formats/sha256sums.js";
import { envelopeFromJson, INTOTO_PAYLOAD_TYPE, pae } from "../formats/dsse.js";
import { INTOTO_STATEMENT_TYPE, SLSA_PROVENANCE_V1 } from "../formats/provenance.js";
import { keyId, keyTypeOf, KeyTypeError, verifyBytes, type KeyType } from "../formats/signature.js";
import { PROVENANCE_FILE, PUBLIC_KEY_FILE, SIGNATURE_FILE } from "../stages/release/sign.js";
import { sha256File, sha256Hex } from "../util/hash.js";
import { silentReporter, type Reporter } from "../output/reporter.js";
import { verifyBootChain } from "./verify-boot.js";

export interface VerifyOptions {
  outDir: string;
  /** Trusted public key (SPKI PEM). */
  keyPath: string;
  reporter?: Reporter;
}

export interface VerifyCheck {
  /** Stable check name, e.g. "sha256sums-signature" or "artifact:disk.raw". */
  name: string;
  ok: boolean;
  detail: string;
  /** File the check is about, relative to the output folder. */
  file?: string;
}

export interface VerifyResult {
  outDir: string;
  ok: true;
  keyId: string;
  keyType: KeyType;
  name: string;
  version: string;
  artifacts: number;
  bytes: number;
  checks: VerifyCheck[];
}

/** Load the trusted public key; refuse private keys so they are not passed around. */
export async function loadPublicKey(path: string): Promise<{ key: KeyObject; type: KeyType; keyId: string }> {
  let pem: Buffer;
  try {
    pem = await readFile(path);
  } catch (e) {
    throw new UserError(`cannot read public key ${path}: ${fsReason(e)}`, {
      file: path,
      hint: "pass the acl-signing.pub written by `acl keys generate`",
    });
  }
  if (pem.includes("PRIVATE KEY-----")) {
    throw new UserError(`${path} is a private key`, {
      file: path,
      hint: "verify with the public key (acl-signing.pub); keep the private key on the signing machine",
    });
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: "pem" });
  } catch (e) {
    throw new UserError(`${path} is not a PEM public key: ${(e as Error).message}`, { file: path, hint: "pass the acl-signing.pub written by `acl keys generate`" });
  }
  try {
    return { key, type: keyTypeOf(key), keyId: keyId(key) };
  } catch (e) {
    if (e instanceof KeyTypeError) throw new UserError(`${path}: ${e.message}`, { file: path });
    throw e;
  }
}

async function readOptional(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new UserError(`cannot read ${path}: ${fsReason(e)}`, { file: path });
  }
}

export async function verifyOutput(opts: VerifyOptions): Promise<VerifyResult> {
  const { outDir } = opts;
  const reporter = opts.reporter ?? silentReporter;
  const trusted = await loadPublicKey(opts.keyPath);
  const checks: VerifyCheck[] = [];
  const add = (name: string, ok: boolean, detail: string, file?: string) => checks.push({ name, ok, detail, file });

  const st = await stat(outDir).catch(() => undefined);
  if (!st?.isDirectory()) {
    throw new UserError(`${outDir} is not a folder`, { file: outDir, hint: "pass the output folder of `acl build` (for example out/minimal)" });
  }
  const sumsBytes = await readOptional(join(outDir, SHA256SUMS_FILE));
  const sigBytes = await readOptional(join(outDir, SIGNATURE_FILE));
  if (!sumsBytes || !sigBytes) {
    const missing = [!sumsBytes && SHA256SUMS_FILE, !sigBytes && SIGNATURE_FILE].filter(Boolean).join(" and ");
    throw new UserError(`${outDir} is not signed: ${missing} missing`, {
      file: join(outDir, sumsBytes ? SIGNATURE_FILE : SHA256SUMS_FILE),
      hint: "build it with a key: `acl build SPEC --sign-key keys/acl-signing.key` (or [signing] key in the spec)",
    });
  }

  // 1. the signed list
  const sumsOk = verifyBytes(trusted.key, sumsBytes, sigBytes);
  add(
    "sha256sums-signature",
    sumsOk,
    sumsOk ? `${SIGNATURE_FILE} is a valid ${trusted.type} signature by key ${trusted.keyId.slice(0, 16)}` : `${SIGNATURE_FILE} does not verify with key ${trusted.keyId.slice(0, 16)} (${opts.keyPath})`,
    SIGNATURE_FILE,
  );
  let sums: SumEntry[] | undefined;
  try {
    sums = decodeSha256Sums(sumsBytes);
    add("sha256sums-format", true, `${sums.length} entries`, SHA256SUMS_FILE);
  } catch (e) {
    add("sha256sums-format", false, (e as Error).message, SHA256SUMS_FILE);
  }
  const sumsMap = new Map((sums ?? []).map((e) => [e.path, e.sha256]));

  // 2. manifest.json: signed digest first, then schema
  const manifestBytes = await readOptional(join(outDir, MANIFEST_FILE));
  let manifest: Manifest | undefined;
  if (!manifestBytes) {
    add("manifest-digest", false, `${MANIFEST_FILE} is missing`, MANIFEST_FILE);
  } else {
    const want = sumsMap.get(MANIFEST_FILE);
    const got = sha256Hex(manifestBytes);
    if (!want) add("manifest-digest", false, `${MANIFEST_FILE} is not listed in ${SHA256SUMS_FILE}`, MANIFEST_FILE);
    else if (want !== got) add("manifest-digest", false, `${MANIFEST_FILE} was altered: sha256 ${got}, signed ${want}`, MANIFEST_FILE);
    else add("manifest-digest", true, `sha256 ${got}`, MANIFEST_FILE);
    try {
      manifest = parseManifest(JSON.parse(manifestBytes.toString("utf8")), join(outDir, MANIFEST_FILE));
      add("manifest-schema", true, `${manifest.name} ${manifest.version}, ${manifest.artifacts.length} artifacts`, MANIFEST_FILE);
    } catch (e) {
      add("manifest-schema", false, e instanceof SyntaxError ? `not valid JSON: ${e.message}` : (e as Error).message, MANIFEST_FILE);
    }
  }

  // 3. the manifest and SHA256SUMS list the same artifacts with the same digests
  if (manifest && sums) {
    const problems: string[] = [];
    const listed = new Set<string>();
    for (const a of manifest.artifacts) {
      listed.add(a.path);
      const s = sumsMap.get(a.path);
      if (s === undefined) problems.push(`${a.path} is in the manifest but not in ${SHA256SUMS_FILE}`);
      else if (s !== a.sha256) problems.push(`${a.path}: manifest sha256 ${a.sha256} != ${SHA256SUMS_FILE} ${s}`);
    }
    for (const e of sums) if (e.path !== MANIFEST_FILE && !listed.has(e.path)) problems.push(`${e.path} is in ${SHA256SUMS_FILE} but not in the manifest`);
    add("coverage", problems.length === 0, problems.length ? problems.join("; ") : `manifest and ${SHA256SUMS_FILE} list the same ${manifest.artifacts.length} artifacts`);
  }

  // 4. every artifact: size (from the manifest) and sha256 (signed)
  const sizes = new Map((manifest?.artifacts ?? []).map((a) => [a.path, a.size]));
  const paths = [...new Set([...sizes.keys(), ...(sums ?? []).map((e) => e.path).filter((p) => p !== MANIFEST_FILE)])].sort();
  let bytes = 0;
  const total = [...sizes.values()].reduce((s, n) => s + n, 0);
  const stage = reporter.stage("verify", `${paths.length} artifacts`);
  for (const p of paths) {
    const file = join(outDir, p);
    const fst = await stat(file).catch(() => undefined);
    if (!fst?.isFile()) {
      add(`artifact:${p}`, false, `${p} is missing`, p);
      continue;
    }
    const wantSize = sizes.get(p);
    const wantSha = sumsMap.get(p) ?? manifest?.artifacts.find((a) => a.path === p)?.sha256;
    const d = await sha256File(file, (n) => {
      bytes += n;
      stage.progress(bytes, total, "bytes");
    });
    const errs: string[] = [];
    if (wantSize !== undefined && d.size !== wantSize) errs.push(`size ${d.size}, expected ${wantSize}`);
    if (wantSha !== undefined && d.sha256 !== wantSha) errs.push(`sha256 ${d.sha256}, expected ${wantSha}`);
    add(`artifact:${p}`, errs.length === 0, errs.length ? `${p} was modified: ${errs.join(", ")}` : `${d.size} bytes, sha256 ${d.sha256}`, p);
  }
  stage.end({ note: `${bytes} bytes hashed` });

  // 5. the provenance envelope
  const envBytes = await readOptional(join(outDir, PROVENANCE_FILE));
  if (!envBytes) {
    add("provenance-signature", false, `${PROVENANCE_FILE} is missing`, PROVENANCE_FILE);
  } else {
    let env: ReturnType<typeof envelopeFromJson> | undefined;
    try {
      env = envelopeFromJson(JSON.parse(envBytes.toString("utf8")));
    } catch (e) {
      add("provenance-signature", false, `${PROVENANCE_FILE} is not a DSSE envelope: ${(e as Error).message}`, PROVENANCE_FILE);
    }
    if (env) {
      try {
        const msg = pae(env.payloadType, env.payload);
        const good = env.signatures.filter((s) => verifyBytes(trusted.key, msg, s.sig));
        add(
          "provenance-signature",
          good.length > 0,
          good.length
            ? `DSSE signature by key ${trusted.keyId.slice(0, 16)}`
            : `none of the ${env.signatures.length} DSSE signature(s) verifies with key ${trusted.keyId.slice(0, 16)} (envelope keyids: ${env.signatures.map((s) => s.keyid ?? "none").join(", ")})`,
          PROVENANCE_FILE,
        );
        if (env.payloadType !== INTOTO_PAYLOAD_TYPE) throw new Error(`payloadType is '${env.payloadType}', expected '${INTOTO_PAYLOAD_TYPE}'`);
        const st = JSON.parse(env.payload.toString("utf8")) as { _type?: unknown; predicateType?: unknown; subject?: unknown };
        if (st._type !== INTOTO_STATEMENT_TYPE) throw new Error(`statement _type is '${String(st._type)}', expected '${INTOTO_STATEMENT_TYPE}'`);
        if (st.predicateType !== SLSA_PROVENANCE_V1) throw new Error(`predicateType is '${String(st.predicateType)}', expected '${SLSA_PROVENANCE_V1}'`);
        add("provenance-statement", true, `in-toto Statement v1, ${SLSA_PROVENANCE_V1}`, PROVENANCE_FILE);
        const subj = new Map<string, string>();
        const problems: string[] = [];
        if (!Array.isArray(st.subject)) problems.push("the statement has no subject list");
        for (const s of (Array.isArray(st.subject) ? st.subject : []) as { name?: unknown; digest?: { sha256?: unknown } }[]) {
          if (typeof s?.name === "string" && typeof s.digest?.sha256 === "string") subj.set(s.name, s.digest.sha256);
          else problems.push(`malformed subject ${JSON.stringify(s).slice(0, 80)}`);
        }
        for (const [p, h] of sumsMap) {
          if (!subj.has(p)) problems.push(`${p} is not a subject`);
          else if (subj.get(p) !== h) problems.push(`${p}: subject sha256 ${subj.get(p)} != ${SHA256SUMS_FILE} ${h}`);
        }
        for (const p of subj.keys()) if (!sumsMap.has(p)) problems.push(`subject ${p} is not in ${SHA256SUMS_FILE}`);
        add("provenance-subjects", problems.length === 0, problems.length ? problems.join("; ") : `${subj.size} subjects match ${SHA256SUMS_FILE}`, PROVENANCE_FILE);
      } catch (e) {
        add("provenance-statement", false, `${PROVENANCE_FILE}: ${(e as Error).message}`, PROVENANCE_FILE);
      }
    }
  }

  // 6. the boot chain: UKIs, predicted PCR 11 values, Secure Boot signatures
  if (manifest) await verifyBootChain(outDir, manifest, add);

  // 7. the public key shipped in the output is the trusted one (it is informational, but must not mislead)
  const pubBytes = await readOptional(join(outDir, PUBLIC_KEY_FILE));
  let shippedId: string | undefined;
  if (!pubBytes) add("public-key", false, `${PUBLIC_KEY_FILE} is missing`, PUBLIC_KEY_FILE);
  else {
    try {
      shippedId = keyId(createPublicKey({ key: pubBytes, format: "pem" }));
      add("public-key", shippedId === trusted.keyId, shippedId === trusted.keyId ? `key id ${shippedId}` : `${PUBLIC_KEY_FILE} has key id ${shippedId}, --key has ${trusted.keyId}`, PUBLIC_KEY_FILE);
    } catch (e) {
      add("public-key", false, `${PUBLIC_KEY_FILE} is not a PEM public key: ${(e as Error).message}`, PUBLIC_KEY_FILE);
    }
  }

  const failed = checks.filter((c) => !c.ok);
  if (failed.length) {
    const sigFailed = failed.some((c) => c.name === "sha256sums-signature" || c.name === "provenance-signature");
    const hint =
      sigFailed && shippedId && shippedId !== trusted.keyId
        ? `the output was signed by key ${shippedId}, not by ${opts.keyPath} (${trusted.keyId}): check that you pass the right public key, or rebuild`
        : failed.some((c) => c.name.startsWith("artifact:") || c.name === "manifest-digest")
          ? "files in the output changed after signing: rebuild the image, or fetch the output again"
          : "rebuild and re-sign the output with `acl build --sign-key`";
    throw new UserError(`verification of ${outDir} failed (${failed.length} of ${checks.length} checks):\n` + failed.map((c) => `  ✗ ${c.name}: ${c.detail}`).join("\n"), {
      file: failed[0]!.file ? join(outDir, failed[0]!.file) : outDir,
      hint,
    });
  }
  return {
    outDir,
    ok: true,
    keyId: trusted.keyId,
    keyType: trusted.type,
    name: manifest!.name,
    version: manifest!.version,
    artifacts: paths.length,
    bytes,
    checks,
  };
}
