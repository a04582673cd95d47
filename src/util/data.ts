/**
 * acl's data folder (`data/` in the package): what runs elsewhere, as real
 * files (the initramfs /init, the guest boot check, units, AKS script parts)
 * and the schemas commands read at run time.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Absolute path of data/, from src/util (tests) or dist/util (the CLI). */
export const DATA_DIR = fileURLToPath(new URL("../../data/", import.meta.url));

export function dataPath(rel: string): string {
  return DATA_DIR + rel;
}

const texts = new Map<string, string>();
/** A data file's text (read once per process). */
export function dataText(rel: string): string {
  let t = texts.get(rel);
  if (t === undefined) {
    t = readFileSync(dataPath(rel), "utf8");
    texts.set(rel, t);
  }
  return t;
}
