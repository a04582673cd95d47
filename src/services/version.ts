/** `acl version`: acl's own version (from package.json) and the Node.js it runs on. */
import { readFile } from "node:fs/promises";

export interface VersionResult {
  version: string;
  node: string;
}

export async function versionInfo(): Promise<VersionResult> {
  const pkg = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return { version: pkg.version, node: process.version };
}
