/**
 * The checks of a spec that need more than the spec file but not the build:
 * the signing key loads as a private key, the update key as a public one, the kernel package is one apt
 * knows. `acl spec check` and `acl build` both run them (the build before its
 * first stage), so a spec that passes `spec check` is not refused later for
 * something it could have said up front.
 */
import type { ImageSpec } from "../config/spec.js";
import { resolveSpecPath } from "../config/spec.js";
import { UserError } from "../errors.js";
import { loadPrivateKey } from "../stages/release/sign.js";
import { resolveKernelPackage } from "../stages/rootfs/kernel.js";
import { kernelCacheDir } from "../stages/rootfs/stage.js";
import { updateKeyPem } from "../stages/rootfs/ab-node.js";
import { loadSecureBootKeys, originError, PASSPHRASE_ENV, type SecureBootKeys } from "../stages/boot/secureboot.js";
import { readFile } from "node:fs/promises";

export interface PreflightResult {
  /** The key the build signs with (flag or spec), when it signs. */
  signKey?: string;
  /** The Secure Boot pair (flags or [secureboot]), loaded and checked, when the boot chain is signed. */
  secureBoot?: SecureBootKeys;
}

/** Secure Boot inputs from the command line; each wins over its [secureboot] key. */
export interface SecureBootFlags {
  key?: string;
  cert?: string;
  passphraseFile?: string;
  /** The value of $ACL_SECUREBOOT_PASSPHRASE (read by the command, not here). */
  passphraseEnv?: string;
}

export interface PreflightOptions {
  signKey?: string;
  secureBoot?: SecureBootFlags;
  /** The build's cache: apt's answer about the kernel package is remembered there. */
  cacheDir?: string;
}

async function readPassphrase(file: string, origin: string, specPath: string): Promise<string> {
  try {
    return (await readFile(file, "utf8")).split(/\r?\n/)[0]!;
  } catch {
    throw originError("cannot read the passphrase file", file, origin, specPath, `give a readable file whose first line is the passphrase, or set ${PASSPHRASE_ENV}`);
  }
}

export async function resolveSecureBoot(spec: Readonly<ImageSpec>, f: SecureBootFlags = {}): Promise<SecureBootKeys | undefined> {
  const sb = spec.secureboot;
  const fromSpec = (p: string | undefined) => (p ? resolveSpecPath(spec.specDir, p) : undefined);
  const key = f.key ?? fromSpec(sb?.key);
  const certificate = f.cert ?? fromSpec(sb?.certificate);
  if (!key && !certificate) return undefined;
  if (!key) throw new UserError("--secureboot-cert was given without a key", { hint: "pass --secureboot-key KEY too, or set [secureboot] key in the spec" });
  if (!certificate) throw new UserError("--secureboot-key was given without a certificate", { hint: "pass --secureboot-cert CERT too, or set [secureboot] certificate in the spec" });
  // an empty $ACL_SECUREBOOT_PASSPHRASE counts as unset
  let passphrase = f.passphraseEnv || undefined;
  if (f.passphraseFile) passphrase = await readPassphrase(f.passphraseFile, "--secureboot-passphrase-file", spec.specPath);
  else if (sb?.passphrase_file && passphrase === undefined) passphrase = await readPassphrase(fromSpec(sb.passphrase_file)!, "secureboot.passphrase_file", spec.specPath);
  return loadSecureBootKeys({
    key,
    certificate,
    kekKey: fromSpec(sb?.kek_key),
    kekCertificate: fromSpec(sb?.kek_certificate),
    passphrase,
    origin: { key: f.key ? "--secureboot-key" : "secureboot.key", certificate: f.cert ? "--secureboot-cert" : "secureboot.certificate" },
    specPath: spec.specPath,
  });
}

export async function preflight(spec: Readonly<ImageSpec>, opts: PreflightOptions = {}): Promise<PreflightResult> {
  const signKey = opts.signKey ?? (spec.signing ? resolveSpecPath(spec.specDir, spec.signing.key) : undefined);
  if (signKey) {
    try {
      await loadPrivateKey(signKey);
    } catch (e) {
      if (e instanceof UserError && !opts.signKey && spec.signing) {
        throw new UserError(`${spec.specPath}: 'signing.key': ${e.message}`, { file: spec.specPath, key: "signing.key", hint: e.hint });
      }
      throw e;
    }
  }
  // the key the image's updater will trust loads (a file that is missing or private fails here)
  await updateKeyPem(spec, signKey);
  try {
    if (spec.kernel.from === "debian") await resolveKernelPackage(spec.kernel.package, opts.cacheDir && kernelCacheDir(opts.cacheDir));
  } catch (e) {
    if (e instanceof UserError) throw new UserError(`${spec.specPath}: 'kernel.package': ${e.message}`, { file: spec.specPath, key: "kernel.package", hint: e.hint });
    throw e;
  }
  const secureBoot = await resolveSecureBoot(spec, opts.secureBoot);
  return { signKey, secureBoot };
}
