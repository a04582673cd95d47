/** `acl spec check` and the file side of `acl spec docs`. */
import { writeFile, rename } from "node:fs/promises";
import { loadSpec } from "../config/spec.js";
import { preflight } from "./preflight.js";

export async function writeSpecDocs(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text);
  await rename(`${path}.tmp`, path);
}

export interface SpecCheckResult {
  file: string;
  name: string;
  version: string;
  microarch: string;
  sources: string[];
  specDigest: string;
}

/** `passphraseEnv`: $ACL_SECUREBOOT_PASSPHRASE, for a spec whose Secure Boot key is encrypted. */
export async function checkSpec(path: string, opts: { passphraseEnv?: string } = {}): Promise<SpecCheckResult> {
  const s = await loadSpec(path);
  await preflight(s, { secureBoot: { passphraseEnv: opts.passphraseEnv } });
  return {
    file: path,
    name: s.name,
    version: s.version,
    microarch: s.microarch,
    sources: s.sources.map((x) => x.type),
    specDigest: s.specDigest,
  };
}
