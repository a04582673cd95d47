/**
 * The update payload: one file holding a USR slot's content (filesystem +
 * verity tree) after a small header with its metadata, so an updater can
 * check what it is about to write before writing it.
 *
 * Layout: magic "ACLUPD\0\x01" (8 bytes) · u32 BE length of the JSON
 * metadata · canonical JSON metadata · zero padding to 4096 bytes · slot data.
 */
import { compactCanonicalJson } from "./canonical-json.js";

export const UPDATE_MAGIC = Buffer.from("ACLUPD\0\x01", "latin1");
export const UPDATE_HEADER_ALIGN = 4096;

export interface UpdateMetadata {
  name: string;
  version: string;
  microarch: string;
  filesystem: string;
  /** Size and sha256 of the slot data that follows the header. */
  size: number;
  sha256: string;
  verity: {
    rootHash: string;
    salt: string;
    hashOffset: number;
    dataBlocks: number;
    dataBlockSize: number;
    hashBlockSize: number;
    algorithm: string;
    hashType: number;
    uuid: string;
  };
}

export function encodeUpdateHeader(meta: UpdateMetadata): Buffer {
  const json = Buffer.from(compactCanonicalJson(meta), "utf8");
  const used = UPDATE_MAGIC.length + 4 + json.length;
  const total = Math.ceil(used / UPDATE_HEADER_ALIGN) * UPDATE_HEADER_ALIGN;
  const out = Buffer.alloc(total);
  UPDATE_MAGIC.copy(out, 0);
  out.writeUInt32BE(json.length, UPDATE_MAGIC.length);
  json.copy(out, UPDATE_MAGIC.length + 4);
  return out;
}

export class UpdatePayloadError extends Error {}

/** Decode the header from the first bytes of a payload; returns the metadata and where the data starts. */
export function decodeUpdateHeader(bytes: Uint8Array): { meta: UpdateMetadata; dataOffset: number } {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < UPDATE_MAGIC.length + 4 || !b.subarray(0, UPDATE_MAGIC.length).equals(UPDATE_MAGIC)) {
    throw new UpdatePayloadError("not an acl update payload (bad magic)");
  }
  const len = b.readUInt32BE(UPDATE_MAGIC.length);
  const end = UPDATE_MAGIC.length + 4 + len;
  if (end > b.length) throw new UpdatePayloadError("update payload header is truncated");
  const meta = JSON.parse(b.subarray(UPDATE_MAGIC.length + 4, end).toString("utf8")) as UpdateMetadata;
  return { meta, dataOffset: Math.ceil(end / UPDATE_HEADER_ALIGN) * UPDATE_HEADER_ALIGN };
}
