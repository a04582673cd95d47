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

/**
 * The installed package that owns each host file (`dpkg-query -S`), with its
 * version and architecture. On merged-/usr hosts dpkg may know a file under
 * /lib rather than /usr/lib (or the reverse): both are asked.
 */
export async function owningPackages(paths: readonly string[]): Promise<Map<string, { name: string; arch: string; version: string }>> {
  const alt = (p: string) => (p.startsWith("/usr/") ? p.slice(4) : `/usr${p}`);
  const asked = [...new Set(paths.flatMap((p) => [p, alt(p)]))].sort();
  const r = await run(["dpkg-query", "-S", ...asked], { okCodes: [0, 1] });
  const owner = new Map<string, string>();
  for (const line of r.stdout.split("\n")) {
    const m = /^([^:,\s]+)(?::([a-z0-9]+))?(?:, [^:]+)*: (\/.*)$/.exec(line.trim());
    if (m) owner.set(m[3]!, m[2] ? `${m[1]}:${m[2]}` : m[1]!);
  }
  const pkgs = [...new Set(owner.values())];
  const versions = new Map<string, { version: string; arch: string }>();
  if (pkgs.length) {
    const q = await run(["dpkg-query", "-W", "-f", "${binary:Package} ${Version} ${Architecture}\n", ...pkgs], { okCodes: [0, 1] });
    for (const line of q.stdout.split("\n")) {
      const [bin, version, arch] = line.trim().split(" ");
      if (bin && version && arch) {
        versions.set(bin, { version, arch });
        versions.set(bin.replace(/:.*$/, ""), { version, arch });
      }
    }
  }
  const out = new Map<string, { name: string; arch: string; version: string }>();
  for (const p of paths) {
    const pkg = owner.get(p) ?? owner.get(alt(p));
    const v = pkg ? versions.get(pkg) : undefined;
    if (pkg && v) out.set(p, { name: pkg.replace(/:.*$/, ""), arch: v.arch, version: v.version });
  }
  return out;
}
