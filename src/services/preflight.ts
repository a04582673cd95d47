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
import { updateKeyPem } from "../stages/rootfs/ab-node.js";

export interface PreflightResult {
  /** The key the build signs with (flag or spec), when it signs. */
  signKey?: string;
}

export async function preflight(spec: Readonly<ImageSpec>, opts: { signKey?: string } = {}): Promise<PreflightResult> {
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
    await resolveKernelPackage(spec.kernel.package);
  } catch (e) {
    if (e instanceof UserError) throw new UserError(`${spec.specPath}: 'kernel.package': ${e.message}`, { file: spec.specPath, key: "kernel.package", hint: e.hint });
    throw e;
  }
  return { signKey };
}
