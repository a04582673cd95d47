/**
 * The update payload (the manifest's `update-payload` artifact): header
 * (formats/update-payload.ts: name, version, microarch, the oldest version it
 * may update, root hash, every section's offset, size and sha256), slot A's
 * and slot B's UKI, the USR slot content, and a signature over the header by
 * the build's signing key. An unsigned build writes the payload without the
 * signature block; `acl update apply` refuses it.
 */
import { createHash } from "node:crypto";
import { open, stat } from "node:fs/promises";
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

/** Bytes read and written at a time (Node's stream default of 64 KiB made a 260 MB payload take 2 s). */
const CHUNK = 4 << 20;

/** Write the payload to `dest`; returns its sha256, taken from the bytes as they are written. */
export async function writeUpdatePayload(dest: string, p: PayloadInputs): Promise<string> {
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
  const hash = createHash("sha256");
  const out = await open(dest, "w");
  let pos = 0;
  const put = async (b: Uint8Array) => {
    await out.write(b, 0, b.length, pos);
    hash.update(b);
    pos += b.length;
  };
  // the gaps up to each section's (aligned) offset are zeros
  const zerosTo = async (offset: number) => {
    if (offset < pos) throw new Error(`payload section at ${offset} overlaps the bytes before it (${pos})`);
    if (offset > pos) await put(Buffer.alloc(offset - pos));
  };
  try {
    await put(header);
    const buf = Buffer.alloc(CHUNK);
    for (const [i, [, path]] of files.entries()) {
      await zerosTo(meta.sections[i]!.offset);
      const src = await open(path, "r");
      try {
        for (;;) {
          const { bytesRead } = await src.read(buf, 0, CHUNK, null);
          if (!bytesRead) break;
          await put(buf.subarray(0, bytesRead));
        }
      } finally {
        await src.close();
      }
    }
    await zerosTo(meta.signatureOffset);
    if (p.signKey) {
      const signer = await loadPrivateKey(p.signKey);
      const sig = signBytes(signer.key, header);
      await put(encodeSignatureBlock({ algorithm: signer.type, keyId: signer.keyId, signature: sig.toString("base64") }));
    }
  } finally {
    await out.close();
  }
  return hash.digest("hex");
}
