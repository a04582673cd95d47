/**
 * The update payload (the manifest's `update-payload` artifact): header
 * (formats/update-payload.ts: name, version, microarch, the oldest version it
 * may update, root hash, every section's offset, size and sha256), slot A's
 * and slot B's UKI, the USR slot content, and a signature over the header by
 * the build's signing key. An unsigned build writes the payload without the
 * signature block; `acl update apply` refuses it.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { stat, truncate, writeFile, appendFile } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import type { ImageSpec } from "../../config/spec.js";
import { encodeSignatureBlock, encodeUpdateHeader, type SectionName } from "../../formats/update-payload.js";
import { signBytes } from "../../formats/signature.js";
import type { Slot } from "../../formats/boot-entries.js";
import { sha256File } from "../../util/hash.js";
import type { UsrMeta } from "../usr/stage.js";
import { loadPrivateKey } from "./sign.js";

/** File name of an image's payload. */
export function payloadName(spec: Pick<ImageSpec, "name" | "version">): string {
  return `${spec.name}-${spec.version}.update`;
}

export interface PayloadInputs {
  spec: Readonly<ImageSpec>;
  usr: UsrMeta;
  usrImage: string;
  ukis: Record<Slot, string>;
  /** Private key (PEM) to sign the header with. */
  signKey?: string;
}

/** Write the payload to `dest`. */
export async function writeUpdatePayload(dest: string, p: PayloadInputs): Promise<void> {
  const files: [SectionName, string, string | undefined][] = [
    ["uki-A", p.ukis.A, undefined],
    ["uki-B", p.ukis.B, undefined],
    ["usr", p.usrImage, p.usr.imageSha256],
  ];
  const sections = [];
  for (const [name, path, known] of files) sections.push({ name, size: (await stat(path)).size, sha256: known ?? (await sha256File(path)).sha256 });
  const { header, meta } = encodeUpdateHeader(
    {
      name: p.spec.name,
      version: p.spec.version,
      microarch: p.spec.microarch,
      filesystem: p.spec.usr.filesystem,
      ...(p.spec.update.min_version ? { minVersion: p.spec.update.min_version } : {}),
      verity: p.usr.verity,
    },
    sections,
  );
  await writeFile(dest, header);
  for (const [i, [, path]] of files.entries()) {
    await truncate(dest, meta.sections[i]!.offset);
    await pipeline(createReadStream(path), createWriteStream(dest, { flags: "a" }));
  }
  await truncate(dest, meta.signatureOffset);
  if (!p.signKey) return;
  const signer = await loadPrivateKey(p.signKey);
  const sig = signBytes(signer.key, header);
  await appendFile(dest, encodeSignatureBlock({ algorithm: signer.type, keyId: signer.keyId, signature: sig.toString("base64") }));
}
