/**
 * Check an update payload completely before anything is written: the
 * signature over its header by the trusted key, the exact file length, and
 * the sha256 of every section, and the verity parameters against the usr
 * section's own superblock and tree. `acl update verify` and `acl update
 * apply` both start here.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { UserError, fsReason } from "../../errors.js";
import { verifyBytes } from "../../formats/signature.js";
import {
  decodeSignatureBlock,
  decodeUpdateHeader,
  MAX_METADATA_BYTES,
  MAX_SIGNATURE_BLOCK,
  UpdatePayloadError,
  type PayloadSection,
  type SectionName,
  type UpdateMetadata,
} from "../../formats/update-payload.js";
import { readVerityRoot, VERITY_SUPERBLOCK_SIZE, VerityFormatError } from "../../formats/verity.js";
import { readRange } from "../../util/fs.js";
import { loadPublicKey } from "../verify.js";

export type { UpdateMetadata };

export interface VerifiedPayload {
  path: string;
  meta: UpdateMetadata;
  keyId: string;
  size: number;
  section(name: SectionName): PayloadSection;
}

/** sha256 of bytes [start, start+size) of a file. */
export async function rangeSha256(path: string, start: number, size: number): Promise<string> {
  const h = createHash("sha256");
  for await (const c of createReadStream(path, { start, end: start + size - 1, highWaterMark: 4 << 20 })) h.update(c as Buffer);
  return h.digest("hex");
}

export async function verifyPayload(path: string, publicKeyPath: string): Promise<VerifiedPayload> {
  const trusted = await loadPublicKey(publicKeyPath);
  const refuse = (why: string, hint?: string) =>
    new UserError(`update payload ${path} is refused: ${why}`, { file: path, hint: hint ?? "download the payload again, or rebuild it with `acl build`" });
  let fh: FileHandle;
  try {
    fh = await open(path, "r");
  } catch (e) {
    throw new UserError(`cannot open update payload ${path}: ${fsReason(e)}`, { file: path, hint: "pass the NAME-VERSION.update file of an acl output folder" });
  }
  try {
    const size = (await fh.stat()).size;
    let meta: UpdateMetadata;
    let dataOffset: number;
    try {
      ({ meta, dataOffset } = decodeUpdateHeader(await readRange(fh, 0, Math.min(size, MAX_METADATA_BYTES + 4096))));
    } catch (e) {
      if (e instanceof UpdatePayloadError) throw refuse(e.message);
      throw e;
    }
    if (size < meta.signatureOffset) throw refuse(`the file is ${size} bytes, but its sections end at ${meta.signatureOffset} (truncated)`);
    if (size === meta.signatureOffset) throw refuse("it is not signed", "build it with a signing key: `acl build SPEC --sign-key KEY` (or [signing] key in the spec)");
    if (size - meta.signatureOffset > MAX_SIGNATURE_BLOCK) throw refuse("bytes follow the signature block (the file was extended)");
    let sig;
    try {
      sig = decodeSignatureBlock(await readRange(fh, meta.signatureOffset, size - meta.signatureOffset));
    } catch (e) {
      if (e instanceof UpdatePayloadError) throw refuse(e.message);
      throw e;
    }
    const header = await readRange(fh, 0, dataOffset);
    if (sig.keyId !== trusted.keyId)
      throw refuse(`it is signed by key ${sig.keyId.slice(0, 16)}…, not by the trusted key ${trusted.keyId.slice(0, 16)}… (${publicKeyPath})`, "pass the public key of the build that made the payload");
    if (!verifyBytes(trusted.key, header, Buffer.from(sig.signature, "base64"))) throw refuse(`its signature does not verify with ${publicKeyPath} (the header was changed)`);
    // the padding between sections is not hashed, so it must be zeros: then every byte of the file is covered
    const ends = [...meta.sections.map((s) => s.offset + s.size)];
    const starts = [...meta.sections.slice(1).map((s) => s.offset), meta.signatureOffset];
    for (const [i, end] of ends.entries()) {
      const gap = await readRange(fh, end, starts[i]! - end);
      if (gap.some((x) => x !== 0)) throw refuse(`the padding after section ${meta.sections[i]!.name} is not zero (the file was changed)`);
    }
    for (const s of meta.sections) {
      const got = await rangeSha256(path, s.offset, s.size);
      if (got !== s.sha256) throw refuse(`section ${s.name} (${s.size} bytes at ${s.offset}) has sha256 ${got.slice(0, 16)}…, the signed header says ${s.sha256.slice(0, 16)}…`);
    }
    // the signed verity parameters must describe the signed /usr: checked here, before a slot is written
    await checkVerity(fh, meta, refuse);
    return {
      path,
      meta,
      keyId: trusted.keyId,
      size,
      section: (name) => meta.sections.find((s) => s.name === name)!,
    };
  } finally {
    await fh.close();
  }
}

/**
 * The usr section's verity superblock, at the header's `verity.hashOffset`,
 * has the header's parameters, and its top block digests to the header's
 * root hash: what the slot will hold once written is what the UKI expects.
 */
async function checkVerity(fh: FileHandle, meta: UpdateMetadata, refuse: (why: string) => UserError): Promise<void> {
  const usr = meta.sections.find((s) => s.name === "usr")!;
  const v = meta.verity;
  if (v.hashOffset + VERITY_SUPERBLOCK_SIZE > usr.size) throw refuse(`its 'verity.hashOffset' ${v.hashOffset} is past the end of the usr section (${usr.size} bytes)`);
  let got: Awaited<ReturnType<typeof readVerityRoot>>;
  try {
    got = await readVerityRoot((o, n) => readRange(fh, usr.offset + o, n), v.hashOffset);
  } catch (e) {
    if (e instanceof VerityFormatError) throw refuse(`the usr section has no verity superblock at its 'verity.hashOffset' ${v.hashOffset}: ${e.message}`);
    throw e;
  }
  const { sb, top } = got;
  const differ = (
    [
      ["dataBlocks", Number(sb.dataBlocks), v.dataBlocks],
      ["dataBlockSize", sb.dataBlockSize, v.dataBlockSize],
      ["hashBlockSize", sb.hashBlockSize, v.hashBlockSize],
      ["salt", sb.salt.toString("hex"), v.salt],
    ] as const
  ).find(([, got, said]) => got !== said);
  if (differ) throw refuse(`its 'verity.${differ[0]}' is ${differ[2]}, the usr section's verity superblock says ${differ[1]}`);
  if (top.offset + top.length > usr.size) throw refuse(`the verity tree of the usr section runs past its end (${usr.size} bytes)`);
  const root = got.root.toString("hex");
  if (root !== v.rootHash) throw refuse(`the usr section's verity root is ${root.slice(0, 16)}…, its 'verity.rootHash' says ${v.rootHash.slice(0, 16)}…`);
}
