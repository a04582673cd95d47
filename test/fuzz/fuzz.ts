/**
 * What the fuzz tests share: how many runs (bounded for CI; `scripts/fuzz.sh`
 * runs many more with a fresh seed), the mutations of good input that make
 * hostile input (bit flips, bytes written over, lengths that lie, cuts,
 * bytes added), and what counts as a clear error: one acl reports as the
 * user's (exit 1, a message), never as a bug (exit 70, "internal error").
 */
import fc from "fast-check";
import { expect } from "vitest";
import { errorReport, EXIT_BUG } from "../../src/errors.js";

/** ACL_FUZZ_RUNS multiplies every property's CI budget (scripts/fuzz.sh sets it); ACL_FUZZ_SEED replays a run. */
const SCALE = Number(process.env.ACL_FUZZ_RUNS ?? "1") || 1;
const SEED = process.env.ACL_FUZZ_SEED ? Number(process.env.ACL_FUZZ_SEED) : 20261201;

/** fast-check's parameters for a property given `runs` runs in CI. A failure prints its seed and path to replay it. */
export function budget(runs: number): fc.Parameters<unknown> {
  return { numRuns: Math.max(1, Math.round(runs * SCALE)), seed: SEED, endOnFailure: false, verbose: 1 };
}

/** A property test's time limit, grown with ACL_FUZZ_RUNS. */
export function fuzzTime(ms: number): number {
  return ms * Math.max(1, SCALE);
}

/** One change to a buffer. */
export type Mutation =
  | { kind: "flip"; at: number; bit: number }
  | { kind: "byte"; at: number; value: number }
  /** A 32- or 64-bit little- or big-endian field written over with a value a length or count could lie with. */
  | { kind: "field"; at: number; width: 4 | 8; be: boolean; value: bigint }
  /** ASCII octal digits (tar's sizes and modes) written over. */
  | { kind: "octal"; at: number; digits: string }
  | { kind: "cut"; length: number }
  | { kind: "grow"; bytes: number[] };

const LYING = [0n, 1n, 2n, 0x7fn, 0x80n, 0xffn, 0x100n, 0xfffn, 0x1000n, 0xffffn, 0x10000n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 0x7fffffffffffffffn, 0xffffffffffffffffn];

/**
 * Mutations of a buffer of `length` bytes, most of them inside `hot` (the
 * ranges a decoder reads: headers, superblocks, length fields).
 */
export function mutations(length: number, hot: readonly [start: number, end: number][] = [], max = 6): fc.Arbitrary<Mutation[]> {
  const anywhere = fc.integer({ min: 0, max: Math.max(0, length - 1) });
  const inHot = hot.length ? fc.oneof(...hot.map(([s, e]) => fc.integer({ min: s, max: Math.max(s, Math.min(e, length) - 1) }))) : anywhere;
  const at = fc.oneof({ weight: 4, arbitrary: inHot }, { weight: 1, arbitrary: anywhere });
  const value = fc.oneof(fc.constantFrom(...LYING), fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }));
  const one: fc.Arbitrary<Mutation> = fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant("flip" as const), at, bit: fc.integer({ min: 0, max: 7 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("byte" as const), at, value: fc.integer({ min: 0, max: 255 }) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("field" as const), at, width: fc.constantFrom(4 as const, 8 as const), be: fc.boolean(), value }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("octal" as const), at, digits: fc.stringMatching(/^[0-7 \0x]{1,12}$/) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("cut" as const), length: fc.oneof(inHot, anywhere, fc.constant(0)) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("grow" as const), bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 600 }) }) },
  );
  return fc.array(one, { minLength: 1, maxLength: max });
}

/** Apply mutations to a copy of `good`. */
export function mutate(good: Uint8Array, ms: readonly Mutation[]): Buffer {
  let b = Buffer.from(good);
  for (const m of ms) {
    if (m.kind === "cut") b = b.subarray(0, Math.min(m.length, b.length));
    else if (m.kind === "grow") b = Buffer.concat([b, Buffer.from(m.bytes)]);
    else if (m.at >= b.length) continue;
    else if (m.kind === "flip") b[m.at]! ^= 1 << m.bit;
    else if (m.kind === "byte") b[m.at] = m.value;
    else if (m.kind === "octal") b.write(m.digits.slice(0, b.length - m.at), m.at, "latin1");
    else {
      const field = Buffer.alloc(8);
      const v = BigInt.asUintN(m.width * 8, m.value);
      if (m.width === 8) m.be ? field.writeBigUInt64BE(v) : field.writeBigUInt64LE(v);
      else m.be ? field.writeUInt32BE(Number(v)) : field.writeUInt32LE(Number(v));
      field.copy(b, m.at, 0, Math.min(m.width, b.length - m.at));
    }
  }
  return b;
}

/** The outcome of code under fuzz: its value, or the error it threw (a hang fails after `ms`). */
export async function outcome<T>(f: () => Promise<T> | T, ms = 30_000): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`HANG: no answer in ${ms} ms`)), ms);
  });
  try {
    return { ok: true, value: await Promise.race([Promise.resolve().then(f), hang]) };
  } catch (error) {
    if (error instanceof Error && error.message.startsWith("HANG:")) throw error;
    return { ok: false, error };
  } finally {
    clearTimeout(timer);
  }
}

/** An error acl reports as the user's: exit 1 (or a tool's failure), a message; not a bug, not a stack trace. */
export function expectClearError(error: unknown, context = ""): void {
  const r = errorReport(error);
  expect(r.exitCode, `${context}: ${r.kind}: ${r.message}\n${(error as Error)?.stack ?? ""}`).not.toBe(EXIT_BUG);
  expect(r.message.length, context).toBeGreaterThan(0);
}

/** An error of one of the codec's own classes (a bytes-in codec throws only those; its caller words them for users). */
export function expectOneOf(error: unknown, classes: readonly (abstract new (...a: never[]) => Error)[], context = ""): void {
  const ok = classes.some((c) => error instanceof c);
  expect(ok, `${context}: ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}\n${(error as Error)?.stack ?? ""}`).toBe(true);
}
