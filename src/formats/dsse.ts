/**
 * DSSE (Dead Simple Signing Envelope) v1 codec: the pre-authentication
 * encoding that is signed, and the JSON envelope that carries payload and
 * signatures. Pure: bytes and strings in, bytes and strings out; signing
 * itself is done by the caller (see signature.ts).
 *
 *   PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
 *   LEN = ASCII decimal byte length, no leading zeros; type is UTF-8.
 */

export const DSSE_PAE_PREFIX = "DSSEv1";
/** Payload type of an in-toto Statement carried in DSSE. */
export const INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json";

const SP = 0x20;

/** Pre-authentication encoding of a payload type and a serialized body. */
export function pae(payloadType: string, body: Uint8Array): Buffer {
  const type = Buffer.from(payloadType, "utf8");
  const head = Buffer.from(`${DSSE_PAE_PREFIX} ${type.length} `, "ascii");
  const mid = Buffer.from(` ${body.length} `, "ascii");
  return Buffer.concat([head, type, mid, body]);
}

export interface DsseSignature {
  /** Optional, unauthenticated hint: acl uses the sha256 of the signer's SPKI DER (hex). */
  keyid?: string;
  /** The signature bytes, base64 (standard alphabet) in the envelope. */
  sig: Buffer;
}

export interface DsseEnvelope {
  payloadType: string;
  payload: Buffer;
  signatures: DsseSignature[];
}

/** The JSON object for an envelope (standard base64, fixed key order). */
export function envelopeToJson(env: DsseEnvelope): Record<string, unknown> {
  return {
    payload: env.payload.toString("base64"),
    payloadType: env.payloadType,
    signatures: env.signatures.map((s) =>
      s.keyid === undefined ? { sig: s.sig.toString("base64") } : { keyid: s.keyid, sig: s.sig.toString("base64") },
    ),
  };
}

export class DsseDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DsseDecodeError";
  }
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const B64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/** Decode base64 in either the standard or the URL-safe alphabet (DSSE verifiers must accept both). */
export function decodeBase64Either(text: string, what: string): Buffer {
  if (B64.test(text)) return Buffer.from(text, "base64");
  if (B64URL.test(text)) return Buffer.from(text, "base64url");
  throw new DsseDecodeError(`${what} is not base64`);
}

/** Parse an envelope from its JSON value; throws DsseDecodeError naming the bad field. */
export function envelopeFromJson(json: unknown): DsseEnvelope {
  if (!json || typeof json !== "object" || Array.isArray(json)) throw new DsseDecodeError("envelope is not a JSON object");
  const o = json as Record<string, unknown>;
  if (typeof o.payloadType !== "string") throw new DsseDecodeError("envelope.payloadType is missing or not a string");
  if (typeof o.payload !== "string") throw new DsseDecodeError("envelope.payload is missing or not a string");
  if (!Array.isArray(o.signatures)) throw new DsseDecodeError("envelope.signatures is missing or not an array");
  const signatures = o.signatures.map((s, i): DsseSignature => {
    if (!s || typeof s !== "object") throw new DsseDecodeError(`envelope.signatures[${i}] is not an object`);
    const r = s as Record<string, unknown>;
    if (typeof r.sig !== "string") throw new DsseDecodeError(`envelope.signatures[${i}].sig is missing or not a string`);
    if (r.keyid !== undefined && typeof r.keyid !== "string") throw new DsseDecodeError(`envelope.signatures[${i}].keyid is not a string`);
    return { keyid: r.keyid as string | undefined, sig: decodeBase64Either(r.sig, `envelope.signatures[${i}].sig`) };
  });
  return { payloadType: o.payloadType, payload: decodeBase64Either(o.payload, "envelope.payload"), signatures };
}

/** Split a PAE back into payload type and body; throws when prefix or lengths are inconsistent. */
export function parsePae(bytes: Uint8Array): { payloadType: string; body: Buffer } {
  const b = Buffer.from(bytes);
  const prefix = Buffer.from(DSSE_PAE_PREFIX + " ", "ascii");
  if (!b.subarray(0, prefix.length).equals(prefix)) throw new DsseDecodeError("not a DSSEv1 PAE");
  let pos = prefix.length;
  const readLen = (): number => {
    const end = b.indexOf(SP, pos);
    if (end < 0) throw new DsseDecodeError("PAE length not terminated");
    const digits = b.subarray(pos, end).toString("ascii");
    if (!/^(0|[1-9][0-9]*)$/.test(digits)) throw new DsseDecodeError(`PAE length '${digits}' is not a decimal without leading zeros`);
    pos = end + 1;
    return Number(digits);
  };
  const typeLen = readLen();
  const type = b.subarray(pos, pos + typeLen);
  pos += typeLen;
  if (b[pos] !== SP) throw new DsseDecodeError("PAE type length does not match");
  pos += 1;
  const bodyLen = readLen();
  if (pos + bodyLen !== b.length) throw new DsseDecodeError("PAE body length does not match");
  return { payloadType: type.toString("utf8"), body: b.subarray(pos) };
}
