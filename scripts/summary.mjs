// Print vitest's JSON results as one closing line: "N passed, N failed".
import { readFileSync, existsSync } from "node:fs";
const file = process.argv[2];
if (!existsSync(file)) {
  console.log("0 passed, 1 failed");
  process.exit(0);
}
const r = JSON.parse(readFileSync(file, "utf8"));
const failedSuites = (r.testResults ?? []).filter((s) => s.status === "failed" && (s.assertionResults ?? []).length === 0).length;
const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
console.log(`${r.numPassedTests} passed, ${r.numFailedTests + failedSuites} failed` + (skipped ? `, ${skipped} skipped` : ""));
