/** Temporary folders for a test file, removed after its tests (call once at module level). */
import { mkdtempSync, rmSync } from "node:fs";
import { afterAll } from "vitest";

export function tempDirs(): (prefix: string) => string {
  const made: string[] = [];
  afterAll(() => {
    for (const d of made) rmSync(d, { recursive: true, force: true });
  });
  return (prefix: string) => {
    const d = mkdtempSync(prefix);
    made.push(d);
    return d;
  };
}
