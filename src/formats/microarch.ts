/**
 * The x86-64 microarchitecture levels (psABI), the one table: their order,
 * the CPU features each adds (as the psABI names them and as /proc/cpuinfo
 * spells them), and comparisons. The spec schema, the ELF ISA audit, the
 * initramfs CPU gate and the boot test all read it from here.
 */
export const MICROARCHES = ["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"] as const;
export type Microarch = (typeof MICROARCHES)[number];

/** Index in MICROARCHES for comparisons; -1 for anything else ("none", typos). */
export function microarchRank(level: string): number {
  return (MICROARCHES as readonly string[]).indexOf(level);
}

export function isMicroarch(s: string): s is Microarch {
  return microarchRank(s) >= 0;
}

/** The level just below, or undefined for the baseline. */
export function levelBelow(level: Microarch): Microarch | undefined {
  const i = microarchRank(level);
  return i > 0 ? MICROARCHES[i - 1] : undefined;
}

/** The highest level named in a list ("x86-64" when it names none; other words are ignored). */
export function highestMicroarch(levels: readonly string[]): Microarch {
  let best: Microarch = "x86-64";
  for (const l of levels) if (isMicroarch(l) && microarchRank(l) > microarchRank(best)) best = l;
  return best;
}

/**
 * Features each level adds, as "psabi-name:cpuinfo-flag" pairs (/proc/cpuinfo
 * spells SSE3 "pni", LZCNT "abm", OSXSAVE "xsave", LAHF-SAHF "lahf_lm").
 */
export const LEVEL_FLAGS: Readonly<Record<Exclude<Microarch, "x86-64">, readonly string[]>> = {
  "x86-64-v2": ["cx16:cx16", "lahf:lahf_lm", "popcnt:popcnt", "sse3:pni", "ssse3:ssse3", "sse4_1:sse4_1", "sse4_2:sse4_2"],
  "x86-64-v3": ["avx:avx", "avx2:avx2", "bmi1:bmi1", "bmi2:bmi2", "f16c:f16c", "fma:fma", "lzcnt:abm", "movbe:movbe", "osxsave:xsave"],
  "x86-64-v4": ["avx512f:avx512f", "avx512bw:avx512bw", "avx512cd:avx512cd", "avx512dq:avx512dq", "avx512vl:avx512vl"],
};

/** The features a CPU must have for a level (cumulative), as "name:flag" pairs. */
export function requiredCpuFlags(level: Microarch): string[] {
  return MICROARCHES.slice(1, microarchRank(level) + 1).flatMap((l) => LEVEL_FLAGS[l as Exclude<Microarch, "x86-64">]);
}
