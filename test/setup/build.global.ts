/**
 * vitest globalSetup: compile the CLI (tsc -p .) once, before any test runs,
 * so tests that run ./bin/acl use the code under test and never see dist/
 * being rewritten while they run. Fails loudly when the tree does not compile.
 */
import { execa } from "execa";
import { join } from "node:path";

export default async function setup(): Promise<void> {
  const root = join(import.meta.dirname, "../..");
  const r = await execa(join(root, "node_modules/.bin/tsc"), ["-p", "."], { cwd: root, reject: false, all: true });
  if (r.exitCode !== 0) throw new Error(`tsc -p . failed; the CLI cannot be tested:\n${String(r.all).slice(-4000)}`);
}
