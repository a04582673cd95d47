/**
 * `acl update apply` (the service behind it) given hostile payloads for a
 * real disk: minimal 1.1.0's payload with its bytes mutated, and payloads
 * whose metadata lies (sizes, offsets, digests, verity fields) and is signed
 * again with the trusted key, as a compromised or buggy build would make
 * them. A refused payload is a clear error and leaves the disk's bytes
 * unchanged (its data ranges and their digest, as `qemu-img map` reports
 * them); one that is accepted (a change in bytes nothing reads) is applied.
 */
import { execa } from "execa";
import { createHash } from "node:crypto";
import { mkdtemp, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signBytes } from "../../src/formats/signature.js";
import { decodeSignatureBlock, decodeUpdateHeader, encodeSignatureBlock, UPDATE_ALIGN, UPDATE_MAGIC } from "../../src/formats/update-payload.js";
import { applyUpdate } from "../../src/services/update/apply.js";
import { dataExtents } from "../../src/stages/disk/extents.js";
import { loadPrivateKey } from "../../src/stages/release/sign.js";
import { abImage, testSigningKeys } from "../helpers/images.js";
import { budget, expectClearError, mutate, mutations, outcome, fuzzTime } from "./fuzz.js";

let v1: string;
let good: Buffer;
let keys: { key: string; pub: string };
let tmp: string;
let disk: string;
let pristine: string;
let accepted = 0;

/** The disk's data ranges and the digest of what they hold: a write anywhere changes one or the other. */
async function diskState(path: string): Promise<string> {
  const h = createHash("sha256");
  const fh = await open(path, "r");
  try {
    for (const e of await dataExtents(path)) {
      h.update(`${e.start}+${e.length}\n`);
      const b = Buffer.alloc(Math.min(e.length, 4 << 20));
      for (let done = 0; done < e.length; ) {
        const { bytesRead } = await fh.read(b, 0, Math.min(b.length, e.length - done), e.start + done);
        if (!bytesRead) break;
        h.update(b.subarray(0, bytesRead));
        done += bytesRead;
      }
    }
  } finally {
    await fh.close();
  }
  return h.digest("hex");
}

const resetDisk = () => execa("cp", ["--sparse=always", join(v1, "disk.raw"), disk]);

beforeAll(async () => {
  keys = await testSigningKeys();
  v1 = await abImage("1.0.0");
  const v2 = await abImage("1.1.0");
  good = await readFile(join(v2, "minimal-1.1.0.update"));
  tmp = await mkdtemp(join(tmpdir(), "acl-fuzz-update-"));
  disk = join(tmp, "disk.raw");
  await resetDisk();
  pristine = await diskState(disk);
}, 30 * 60_000);
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Apply `payload` to the disk: refused clearly with the disk unchanged, or applied (then the disk is made fresh again). */
async function tryApply(payload: Buffer, context: string): Promise<void> {
  const file = join(tmp, "hostile.update");
  await writeFile(file, payload);
  const r = await outcome(() => applyUpdate({ disk, payload: file, key: keys.pub }), 120_000);
  if (r.ok) {
    accepted++;
    await resetDisk();
    expect(await diskState(disk), "the disk copied again").toBe(pristine);
    return;
  }
  expectClearError(r.error, context);
  const after = await diskState(disk);
  // made fresh for the next run either way, so shrinking a failure finds its true cause
  if (after !== pristine) await resetDisk();
  expect(after, `the disk changed after a refusal (${(r.error as Error).message}): ${context}`).toBe(pristine);
}

/** The good payload's sections under metadata `m` (written as given, lies and all), signed with the trusted key. */
async function signedAs(m: unknown): Promise<Buffer> {
  const { meta, dataOffset } = decodeUpdateHeader(good);
  const signer = await loadPrivateKey(keys.key);
  const json = Buffer.from(JSON.stringify(m));
  const header = Buffer.alloc(Math.ceil((UPDATE_MAGIC.length + 4 + json.length) / UPDATE_ALIGN) * UPDATE_ALIGN);
  UPDATE_MAGIC.copy(header, 0);
  header.writeUInt32BE(json.length, UPDATE_MAGIC.length);
  json.copy(header, UPDATE_MAGIC.length + 4);
  const sig = encodeSignatureBlock({ algorithm: signer.type, keyId: signer.keyId, signature: signBytes(signer.key, header).toString("base64") });
  expect(decodeSignatureBlock(sig).keyId).toBe(signer.keyId);
  return Buffer.concat([header, good.subarray(dataOffset, meta.signatureOffset), sig]);
}

describe("found by fuzzing, kept as regressions", () => {
  it("a signed 'verity.hashOffset' that lies: refused before the slot is written (it was written, then refused)", async () => {
    const { meta } = decodeUpdateHeader(good);
    for (const hashOffset of [1, meta.verity.hashOffset + 4096]) {
      const file = join(tmp, "lying-hash-offset.update");
      await writeFile(file, await signedAs({ ...meta, verity: { ...meta.verity, hashOffset } }));
      const r = await outcome(() => applyUpdate({ disk, payload: file, key: keys.pub }), 120_000);
      expect(r.ok).toBe(false);
      expect((r as { error: Error }).error.message).toMatch(/is refused: the usr section has no verity superblock at its 'verity.hashOffset'/);
      expect(await diskState(disk)).toBe(pristine);
    }
  }, 10 * 60_000);
});

describe("acl update apply on hostile payloads", () => {
  it("the payload's bytes mutated: refused clearly with the disk's bytes unchanged", async () => {
    const { meta, dataOffset } = decodeUpdateHeader(good);
    const hot: [number, number][] = [
      [0, dataOffset],
      [meta.signatureOffset, good.length],
      ...meta.sections.map((s): [number, number] => [s.offset, s.offset + 4096]),
    ];
    await fc.assert(
      fc.asyncProperty(mutations(good.length, hot, 4), async (ms) => {
        await tryApply(mutate(good, ms), JSON.stringify(ms, (_k, v) => (typeof v === "bigint" ? `${v}n` : v)));
      }),
      budget(20),
    );
  }, fuzzTime(30 * 60_000));

  it("metadata that lies, signed again with the trusted key: refused clearly with the disk's bytes unchanged", async () => {
    const { meta } = decodeUpdateHeader(good);
    const fileSize = (await stat(join(v1, "disk.raw"))).size;
    const lie = fc.oneof(
      fc.constantFrom(0, 1, -1, 4095, 4096, UPDATE_ALIGN * 3, 2 ** 31, 2 ** 32, 2 ** 53, fileSize, fileSize + 4096, good.length, good.length * 2, 0.5, Number.MAX_SAFE_INTEGER),
      fc.integer({ min: 0, max: good.length * 2 }),
    );
    const change = fc.oneof(
      fc.record({ field: fc.constantFrom("size", "offset"), section: fc.nat(meta.sections.length - 1), value: lie }),
      fc.record({ field: fc.constant("sha256"), section: fc.nat(meta.sections.length - 1), value: fc.constantFrom("0".repeat(64), "zz", "") }),
      fc.record({ field: fc.constantFrom("hashOffset", "dataBlocks", "dataBlockSize", "hashBlockSize"), section: fc.constant(0), value: lie }),
      fc.record({ field: fc.constant("signatureOffset"), section: fc.constant(0), value: lie }),
      fc.record({ field: fc.constantFrom("name", "version", "rootHash"), section: fc.constant(0), value: fc.constantFrom("", "minimal", "9.9.9", "../x", "ab".repeat(32)) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(change, { minLength: 1, maxLength: 3 }), async (changes) => {
        const m = JSON.parse(JSON.stringify(meta)) as Record<string, unknown> & { sections: Record<string, unknown>[]; verity: Record<string, unknown> };
        for (const c of changes) {
          if (c.field === "size" || c.field === "offset" || c.field === "sha256") m.sections[c.section]![c.field] = c.value;
          else if (c.field === "signatureOffset" || c.field === "name" || c.field === "version") m[c.field] = c.value;
          else m.verity[c.field] = c.value;
        }
        await tryApply(await signedAs(m), JSON.stringify(changes));
      }),
      budget(25),
    );
  }, fuzzTime(30 * 60_000));

  it("most hostile payloads were refused (the properties above did not pass by accepting everything)", () => {
    expect(accepted).toBeLessThan(Math.max(3, Math.round(0.2 * 45 * Number(process.env.ACL_FUZZ_RUNS ?? "1"))));
  });
});
