/**
 * QEMU boot-test data: the CPU model table (qemu/cpu-models.json) and the
 * test cases (qemu/cases/NAME/{meta.json,checks.json}, in the spirit of kola's
 * external tests). Validated with zod when loaded; errors name the file.
 */
import { z } from "zod";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { UserError } from "../errors.js";
import { MICROARCHES, type Microarch } from "../formats/microarch.js";

export const QEMU_DIR = fileURLToPath(new URL("../../qemu/", import.meta.url));

export const Level = z.enum(MICROARCHES);
export type Level = Microarch;

const Firmware = z.enum(["uefi", "direct"]);

export const CpuModels = z.strictObject({
  $comment: z.string().optional(),
  qemu: z.string(),
  accel: z.string(),
  models: z.array(
    z.strictObject({ name: z.string().min(1), level: Level, default: z.boolean().optional(), note: z.string().optional() }),
  ).min(1),
});
export type CpuModels = z.infer<typeof CpuModels>;
export type CpuModel = CpuModels["models"][number];

export const CaseMeta = z.strictObject({
  description: z.string(),
  /** uki-tamper: flip one byte in the ESP's UKI; runs only under --secure-boot, where firmware must refuse it. */
  kind: z.enum(["boot", "tamper", "ab", "uki-tamper"]),
  tamper: z.strictObject({ partition: z.string(), offset: z.number().int().nonnegative() }).optional(),
  /** A/B scenario: how the update is broken (none: it must boot and be blessed). */
  ab: z.strictObject({ break: z.enum(["none", "verity", "health", "interrupt"]) }).optional(),
  matrix: z.strictObject({ atLevel: z.array(Firmware), belowLevel: z.array(Firmware) }),
  /** How QEMU attaches the disk (default virtio-blk). */
  disk: z.enum(["virtio-blk", "virtio-scsi", "nvme"]).optional(),
  /** false: run only when named with --case. */
  default: z.boolean().optional(),
});
export const CaseChecks = z.strictObject({
  $comment: z.string().optional(),
  common: z.array(z.string()).default([]),
  systemd: z.array(z.string()).default([]),
  busybox: z.array(z.string()).default([]),
  forbidden: z.array(z.string()).default([]),
});
export type CaseChecks = z.infer<typeof CaseChecks>;

export interface BootCase {
  name: string;
  dir: string;
  meta: z.infer<typeof CaseMeta>;
  checks: CaseChecks;
}

async function readJson<T>(file: string, schema: z.ZodType<T>): Promise<T> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new UserError(`missing ${file}`, { file, hint: "each qemu/cases/NAME folder needs meta.json and checks.json" });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: not valid JSON: ${(e as Error).message}`, { file });
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new UserError(`${file}: '${i.path.join(".") || "(root)"}': ${i.message}`, { file });
  }
  return r.data;
}

export async function loadCpuModels(dir = QEMU_DIR): Promise<CpuModels> {
  return readJson(join(dir, "cpu-models.json"), CpuModels);
}

export async function loadCases(dir = QEMU_DIR): Promise<BootCase[]> {
  const root = join(dir, "cases");
  const names = (await readdir(root, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  const out: BootCase[] = [];
  for (const name of names) {
    const d = join(root, name);
    out.push({ name, dir: d, meta: await readJson(join(d, "meta.json"), CaseMeta), checks: await readJson(join(d, "checks.json"), CaseChecks) });
  }
  return out;
}

/** The default model for a level, or undefined when none reaches it (x86-64-v4 under TCG). */
export function defaultModelFor(models: CpuModels, level: Level): CpuModel | undefined {
  return models.models.find((m) => m.level === level && m.default) ?? models.models.find((m) => m.level === level);
}

export function findModel(models: CpuModels, name: string): CpuModel {
  const m = models.models.find((x) => x.name.toLowerCase() === name.toLowerCase());
  if (!m) {
    throw new UserError(`unknown CPU model '${name}'`, {
      hint: `use one of: ${models.models.map((x) => x.name).join(", ")} (or add it with its level to qemu/cpu-models.json)`,
    });
  }
  return m;
}
