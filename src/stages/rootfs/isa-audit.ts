/**
 * ELF ISA-level audit: walk a root tree (sorted, symlinks not followed), read
 * the GNU_PROPERTY_X86_ISA_1_NEEDED note of every regular ELF file, and
 * report the highest level needed, which files need it, and which files need
 * more than the image's `microarch`.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../../errors.js";
import { isElf, readIsaNeeded, type ByteSource } from "../../formats/elf.js";
import { MICROARCHES, microarchRank, type Microarch } from "../../formats/microarch.js";
import { walk } from "../../util/fs.js";

export interface IsaAuditResult {
  /** Highest level any ELF file needs ("x86-64" … "x86-64-v4"), or "none" when no file has a note. */
  highest: string;
  /** Files (relative to the root, sorted) needing the highest level; the first 50. */
  files: string[];
  /** ELF files per needed level; "none" counts ELF files without an ISA note. */
  counts: Record<string, number>;
  /** Files (relative, sorted) needing more than the audited microarch. */
  violations: string[];
  /** Needed level of each violating file, by path. */
  violationLevels: Record<string, Microarch>;
}

export const MAX_LISTED_FILES = 50;

/** Bytes read up front: ELF header, program headers and .note.gnu.property sit in the first page. */
const HEAD_BYTES = 4096;

function preadFully(fd: number, buf: Buffer, offset: number): number {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/**
 * A ByteSource over an open file descriptor: the first page is read once and
 * served from memory, anything else with a positional read.
 */
export function fdSource(fd: number, size: number): ByteSource {
  const head = Buffer.allocUnsafe(Math.min(size, HEAD_BYTES));
  const headLen = preadFully(fd, head, 0);
  return {
    size,
    read(offset, length) {
      if (offset < 0 || offset >= size || length <= 0) return new Uint8Array(0);
      const want = Math.min(length, size - offset);
      if (offset + want <= headLen) return head.subarray(offset, offset + want);
      const buf = Buffer.allocUnsafe(want);
      return buf.subarray(0, preadFully(fd, buf, offset));
    },
  };
}

/** The needed level of one file: a level, "none" for an ELF file without a note, null for a non-ELF file. */
export function fileIsaLevel(path: string): Microarch | "none" | null {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    const src = fdSource(fd, size);
    if (!isElf(src.read(0, 4))) return null;
    return readIsaNeeded(src)?.level ?? "none";
  } finally {
    closeSync(fd);
  }
}

function checkMicroarch(microarch: string): asserts microarch is Microarch {
  if (microarchRank(microarch) < 0) {
    throw new UserError(`unknown microarch '${microarch}'`, { hint: `use one of ${MICROARCHES.join(", ")}` });
  }
}

export async function auditIsa(rootDir: string, microarch: Microarch): Promise<IsaAuditResult> {
  checkMicroarch(microarch);
  const limit = microarchRank(microarch);
  const counts: Record<string, number> = { none: 0 };
  for (const l of MICROARCHES) counts[l] = 0;
  const byLevel = new Map<Microarch, string[]>();
  const violations: string[] = [];
  const violationLevels: Record<string, Microarch> = {};
  try {
    for await (const { rel, stat } of walk(rootDir)) {
      if (!stat.isFile()) continue;
      let level: Microarch | "none" | null;
      try {
        level = fileIsaLevel(join(rootDir, rel));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ENOENT") continue;
        throw new UserError(`cannot read ${join(rootDir, rel)} for the ISA-level audit (${code ?? (e as Error).message})`, {
          file: join(rootDir, rel),
          hint: "check the file's permissions in the root tree",
        });
      }
      if (level === null) continue;
      counts[level] = (counts[level] ?? 0) + 1;
      if (level === "none") continue;
      const list = byLevel.get(level) ?? [];
      list.push(rel);
      byLevel.set(level, list);
      if (microarchRank(level) > limit) {
        violations.push(rel);
        violationLevels[rel] = level;
      }
    }
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`cannot walk ${rootDir} for the ISA-level audit: ${(e as Error).message}`, { file: rootDir });
  }
  const highest = [...MICROARCHES].reverse().find((l) => byLevel.has(l)) ?? "none";
  const files = highest === "none" ? [] : byLevel.get(highest as Microarch)!.slice(0, MAX_LISTED_FILES);
  return { highest, files, counts, violations, violationLevels };
}

/**
 * Fail the build when any file needs a higher level than the spec's
 * microarch: the message lists the files and the level each needs.
 */
export function assertIsaWithin(audit: IsaAuditResult, microarch: Microarch, opts: { specFile?: string } = {}): void {
  checkMicroarch(microarch);
  if (audit.violations.length === 0) return;
  const shown = audit.violations.slice(0, 20).map((f) => `  ${f} (needs ${audit.violationLevels[f] ?? "a higher level"})`);
  const more = audit.violations.length > shown.length ? `\n  … and ${audit.violations.length - shown.length} more` : "";
  const where = opts.specFile ? `${opts.specFile}: ` : "";
  throw new UserError(
    `${where}${audit.violations.length} file(s) need a higher x86-64 level than microarch = "${microarch}":\n${shown.join("\n")}${more}`,
    {
      file: opts.specFile,
      hint: `raise 'microarch' in the spec to "${audit.highest}", or rebuild or remove these files so they run on ${microarch} (their GNU property note sets x86 ISA needed)`,
    },
  );
}
