/**
 * The update payload: everything an A/B update writes, in one file that can
 * be checked before a byte of it is written.
 *
 * Layout (all offsets 4096-aligned):
 *   0        magic "ACLUPD\0\x02" (8) · u32 BE metadata length · canonical JSON metadata · zeros
 *   ...      sections, in the order the metadata lists them: `uki-A`, `uki-B` (the UKI that boots
 *            the content from slot A or from slot B), `usr` (filesystem + verity tree)
 *   sigOff   signature block: magic "ACLSIG\0\x01" (8) · u32 BE length · canonical JSON
 *            {algorithm, keyId, signature (base64)}; the file ends here.
 * The signature covers bytes [0, dataOffset): the header, whose metadata
 * holds the offset, size and sha256 of every section and the signature's
 * offset, so one signature check and one digest per section cover every byte.
 */
import { compactCanonicalJson } from "./canonical-json.js";
import type { VerityParams } from "./verity.js";

export const UPDATE_MAGIC = Buffer.from("ACLUPD\0\x02", "latin1");
export const SIGNATURE_MAGIC = Buffer.from("ACLSIG\0\x01", "latin1");
export const UPDATE_ALIGN = 4096;
export const UPDATE_FORMAT = 2;
/** Far more than any header needs; a larger length is a broken or hostile file. */
export const MAX_METADATA_BYTES = 1 << 20;
export const MAX_SIGNATURE_BLOCK = 64 * 1024;

export type SectionName = "uki-A" | "uki-B" | "usr";
export const SECTION_NAMES: readonly SectionName[] = ["uki-A", "uki-B", "usr"];

export interface PayloadSection {
  name: SectionName;
  offset: number;
  size: number;
  sha256: string;
}


export interface UpdateMetadata {
  format: typeof UPDATE_FORMAT;
  name: string;
  version: string;
  microarch: string;
  filesystem: string;
  /** The oldest installed version this payload may update (absent: any). */
  minVersion?: string;
  verity: VerityParams;
  sections: PayloadSection[];
  /** Where the signature block starts (= end of the last section, aligned). */
  signatureOffset: number;
}

export interface SignatureBlock {
  algorithm: string;
  keyId: string;
  /** base64 */
  signature: string;
}

export class UpdatePayloadError extends Error {}

export const align = (n: number): number => Math.ceil(n / UPDATE_ALIGN) * UPDATE_ALIGN;

/** Lay out sections after a header of `headerBytes`; returns the sections with offsets and the signature offset. */
export function layoutSections(headerBytes: number, sections: readonly Omit<PayloadSection, "offset">[]): { sections: PayloadSection[]; signatureOffset: number } {
  let at = align(headerBytes);
  const out: PayloadSection[] = [];
  for (const s of sections) {
    out.push({ ...s, offset: at });
    at = align(at + s.size);
  }
  return { sections: out, signatureOffset: at };
}

/**
 * Encode the header. Section offsets depend on the header's length, which
 * depends on the offsets: lay out with a guess and repeat until stable.
 */
export function encodeUpdateHeader(meta: Omit<UpdateMetadata, "sections" | "signatureOffset" | "format">, sections: readonly Omit<PayloadSection, "offset">[]): { header: Buffer; meta: UpdateMetadata } {
  let headerBytes = UPDATE_ALIGN;
  for (;;) {
    const laid = layoutSections(headerBytes, sections);
    const full: UpdateMetadata = { format: UPDATE_FORMAT, ...meta, sections: laid.sections, signatureOffset: laid.signatureOffset };
    const json = Buffer.from(compactCanonicalJson(full), "utf8");
    const used = align(UPDATE_MAGIC.length + 4 + json.length);
    if (used !== headerBytes) {
      headerBytes = used;
      continue;
    }
    const out = Buffer.alloc(used);
    UPDATE_MAGIC.copy(out, 0);
    out.writeUInt32BE(json.length, UPDATE_MAGIC.length);
    json.copy(out, UPDATE_MAGIC.length + 4);
    return { header: out, meta: full };
  }
}

export function encodeSignatureBlock(sig: SignatureBlock): Buffer {
  const json = Buffer.from(compactCanonicalJson(sig), "utf8");
  const out = Buffer.alloc(SIGNATURE_MAGIC.length + 4 + json.length);
  SIGNATURE_MAGIC.copy(out, 0);
  out.writeUInt32BE(json.length, SIGNATURE_MAGIC.length);
  json.copy(out, SIGNATURE_MAGIC.length + 4);
  return out;
}

const HEX64 = /^[0-9a-f]{64}$/;

function checkMeta(m: unknown): UpdateMetadata {
  const bad = (what: string) => new UpdatePayloadError(`update payload metadata: ${what}`);
  if (!m || typeof m !== "object") throw bad("not an object");
  const o = m as Record<string, unknown>;
  if (o.format !== UPDATE_FORMAT) throw bad(`format ${String(o.format)} is not ${UPDATE_FORMAT}`);
  for (const k of ["name", "version", "microarch", "filesystem"]) if (typeof o[k] !== "string" || !o[k]) throw bad(`'${k}' is missing`);
  if (o.minVersion !== undefined && typeof o.minVersion !== "string") throw bad("'minVersion' is not a string");
  const v = o.verity as Record<string, unknown> | undefined;
  if (!v || typeof v.rootHash !== "string" || !HEX64.test(v.rootHash)) throw bad("'verity.rootHash' is not 64 hex digits");
  if (!Number.isSafeInteger(v.hashOffset) || (v.hashOffset as number) <= 0) throw bad("'verity.hashOffset' is not a positive integer");
  if (!Array.isArray(o.sections)) throw bad("'sections' is not a list");
  const names = new Set<string>();
  let end = 0;
  for (const s of o.sections as Record<string, unknown>[]) {
    if (!SECTION_NAMES.includes(s.name as SectionName)) throw bad(`unknown section '${String(s.name)}'`);
    if (names.has(s.name as string)) throw bad(`section '${String(s.name)}' is listed twice`);
    names.add(s.name as string);
    if (!Number.isSafeInteger(s.offset) || !Number.isSafeInteger(s.size) || (s.size as number) <= 0 || (s.offset as number) % UPDATE_ALIGN !== 0)
      throw bad(`section '${String(s.name)}' has a bad offset or size`);
    if ((s.offset as number) < end) throw bad(`section '${String(s.name)}' overlaps the one before it`);
    if (typeof s.sha256 !== "string" || !HEX64.test(s.sha256)) throw bad(`section '${String(s.name)}' has no sha256`);
    end = (s.offset as number) + (s.size as number);
  }
  for (const n of SECTION_NAMES) if (!names.has(n)) throw bad(`section '${n}' is missing`);
  if (!Number.isSafeInteger(o.signatureOffset) || (o.signatureOffset as number) !== align(end)) throw bad("'signatureOffset' does not follow the last section");
  return o as unknown as UpdateMetadata;
}

/** Decode the header from the first bytes of a payload; returns the metadata and the header's length (what the signature covers). */
export function decodeUpdateHeader(bytes: Uint8Array): { meta: UpdateMetadata; dataOffset: number } {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < UPDATE_MAGIC.length + 4) throw new UpdatePayloadError("not an acl update payload (too short)");
  if (!b.subarray(0, 6).equals(UPDATE_MAGIC.subarray(0, 6))) throw new UpdatePayloadError("not an acl update payload (bad magic)");
  if (!b.subarray(0, UPDATE_MAGIC.length).equals(UPDATE_MAGIC))
    throw new UpdatePayloadError(`update payload format ${b[7]} is not supported (this acl reads format ${UPDATE_FORMAT}); rebuild the payload with this acl`);
  const len = b.readUInt32BE(UPDATE_MAGIC.length);
  if (len > MAX_METADATA_BYTES) throw new UpdatePayloadError(`update payload metadata claims ${len} bytes (at most ${MAX_METADATA_BYTES})`);
  const end = UPDATE_MAGIC.length + 4 + len;
  if (end > b.length) throw new UpdatePayloadError("update payload header is truncated");
  let parsed: unknown;
  try {
    parsed = JSON.parse(b.subarray(UPDATE_MAGIC.length + 4, end).toString("utf8"));
  } catch {
    throw new UpdatePayloadError("update payload metadata is not JSON");
  }
  const meta = checkMeta(parsed);
  const dataOffset = align(end);
  if (meta.sections[0]!.offset !== dataOffset) throw new UpdatePayloadError("update payload: the first section does not follow the header");
  if (dataOffset <= b.length && b.subarray(end, dataOffset).some((x) => x !== 0)) throw new UpdatePayloadError("update payload header padding is not zero");
  return { meta, dataOffset };
}

export function decodeSignatureBlock(bytes: Uint8Array): SignatureBlock {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < SIGNATURE_MAGIC.length + 4 || !b.subarray(0, SIGNATURE_MAGIC.length).equals(SIGNATURE_MAGIC))
    throw new UpdatePayloadError("update payload is not signed (no signature block after the last section)");
  const len = b.readUInt32BE(SIGNATURE_MAGIC.length);
  if (SIGNATURE_MAGIC.length + 4 + len !== b.length) throw new UpdatePayloadError("update payload signature block has the wrong length (truncated or extended file)");
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(b.subarray(SIGNATURE_MAGIC.length + 4).toString("utf8")) as Record<string, unknown>;
  } catch {
    throw new UpdatePayloadError("update payload signature block is not JSON");
  }
  for (const k of ["algorithm", "keyId", "signature"]) if (typeof o[k] !== "string") throw new UpdatePayloadError(`update payload signature block: '${k}' is missing`);
  return o as unknown as SignatureBlock;
}
