/** Versions of installed Debian packages (dpkg-query), for stage ids, the manifest and provenance. */
import { run } from "./exec.js";

/** Installed version of each named package that is installed (others are left out). */
export async function installedVersions(packages: readonly string[]): Promise<Record<string, string>> {
  const names = [...new Set(packages)].sort();
  if (!names.length) return {};
  const r = await run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", ...names], { okCodes: [0, 1] });
  const out: Record<string, string> = {};
  for (const line of r.stdout.split("\n")) {
    const [name, version] = line.trim().split(" ");
    if (name && version) out[name] = version;
  }
  return out;
}
