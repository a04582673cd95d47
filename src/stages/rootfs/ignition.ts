/**
 * An image with `[ignition]`: Debian's Ignition engine must be in the tree
 * (the initramfs runs it from there, chrooted into the new root, on first
 * boot), and the spec's base config, written in Butane, is translated here
 * into /usr/lib/ignition/base.d/, which Ignition merges under every user
 * config. Never /usr/lib/ignition/user.ign: that would shadow the platform's
 * config (QEMU's fw_cfg, the OEM partition's config.ign).
 */
import { access, constants, mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, extname, join } from "node:path";
import { formatReport, loadButane } from "../../config/butane.js";
import { resolveSpecPath, type ImageSpec } from "../../config/spec.js";
import { UserError, fsReason } from "../../errors.js";
import { goJson } from "../../formats/butane/translate.js";
import type { Reporter } from "../../output/reporter.js";

/** Debian's ignition 2.14 package puts the engine here (not on PATH), relative to the root. */
export const IGNITION_ENGINE = "usr/lib/dracut/modules.d/30ignition/ignition";
export const IGNITION_BASE_DIR = "usr/lib/ignition/base.d";
/** The newest Ignition spec Debian's engine applies (3.4.0 only as "experimental"). */
export const ENGINE_SPEC = "3.3.0";
/** The initramfs's modprobe and setfiles stand-ins run inside the new root: they are sh scripts. */
const ROOT_PROGRAMS = ["usr/bin/sh"] as const;

export interface BaseConfig {
  /** Ignition JSON as baked into base.d. */
  json: string;
  /** File name in base.d. */
  name: string;
}

/** Every `source` URL in a config that is not a data: URL (these need networking, which the initramfs has not). */
export function remoteSources(v: unknown, path = "$"): string[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => remoteSources(x, `${path}.${i}`));
  if (!v || typeof v !== "object") return [];
  const out: string[] = [];
  for (const [k, x] of Object.entries(v)) {
    if (k === "source" && typeof x === "string" && !x.startsWith("data:")) out.push(`${path}.source (${x.split(/[?#]/)[0]})`);
    else out.push(...remoteSources(x, `${path}.${k}`));
  }
  return out;
}

/** Its file name in base.d: 50-NAME.ign for NAME.bu. */
function baseConfigName(base: string): string {
  return `50-${basename(base, extname(base))}.ign`;
}

/** Translate the spec's `[ignition] base` (undefined without one). Its warnings go to the reporter. */
export async function translateBase(spec: Readonly<ImageSpec>, reporter?: Reporter): Promise<BaseConfig | undefined> {
  const ign = spec.ignition;
  if (!ign?.enabled || !ign.base) return undefined;
  const file = resolveSpecPath(spec.specDir, ign.base);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new UserError(`cannot read ${file}: ${fsReason(e)}`, { file: spec.specPath, key: "ignition.base", hint: "name a Butane file relative to the spec's folder" });
  }
  const r = await loadButane({ text, name: file }, { filesDir: ign.files_dir ? resolveSpecPath(spec.specDir, ign.files_dir) : undefined });
  for (const w of r.warnings) reporter?.warn(formatReport(file, w));
  if (r.ignitionVersion !== ENGINE_SPEC)
    throw new UserError(`${file} translates to Ignition ${r.ignitionVersion}, but the image's engine (Debian's Ignition 2.14) applies spec ${ENGINE_SPEC} at most`, {
      file: spec.specPath,
      key: "ignition.base",
      hint: "write the base config as variant: flatcar, version: 1.0.0 (or fcos 1.4.0)",
    });
  const remote = remoteSources(r.config);
  if (remote.length)
    throw new UserError(`${file} names remote sources, which the initramfs cannot fetch (it has no network): ${remote.join(", ")}`, {
      file: spec.specPath,
      key: "ignition.base",
      hint: "inline the contents, or use `local:` with [ignition] files_dir",
    });
  return { json: goJson(r.config), name: baseConfigName(ign.base) };
}

/** Check the engine is in the tree and bake the base config. */
export async function installIgnition(root: string, spec: Readonly<ImageSpec>, base: BaseConfig | undefined): Promise<void> {
  if (!spec.ignition?.enabled) return;
  const missing: string[] = [];
  for (const p of [IGNITION_ENGINE, ...ROOT_PROGRAMS]) {
    if (!(await access(join(root, p), constants.X_OK).then(() => true, () => false))) missing.push(`/${p}`);
  }
  if (missing.length)
    throw new UserError(`[ignition] enabled, but the image lacks ${missing.join(", ")}, which first-boot provisioning runs`, {
      file: spec.specPath,
      key: "ignition.enabled",
      hint: missing.includes(`/${IGNITION_ENGINE}`)
        ? 'add "ignition" (Debian\'s Ignition 2.14) to a debian source\'s packages, or set enabled = false'
        : "the image needs /usr/bin/sh (dash, bash or busybox)",
    });
  if (!base) return;
  await mkdir(join(root, IGNITION_BASE_DIR), { recursive: true });
  await writeFile(join(root, IGNITION_BASE_DIR, base.name), base.json, { mode: 0o644 });
}
