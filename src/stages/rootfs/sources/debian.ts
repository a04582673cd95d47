/**
 * The `debian` content source: mmdebstrap from Debian's archive. Downloaded
 * .debs are kept in a cache folder between builds (copied in by a setup
 * hook, synced out by a customize hook).
 */
import { mkdir, readFile, readdir, rm, mkdtemp } from "node:fs/promises";
import { join } from "node:path";
import { run, toolVersion, tools } from "../../../adapters/exec.js";
import type { Source } from "../../../config/spec-schema.js";
import { ExternalToolError, UserError } from "../../../errors.js";
import { copyTreeInto } from "../tree.js";
import type { DebPackage, SourceType } from "./source.js";

type DebianSpec = Extract<Source, { type: "debian" }>;

export const debianSource: SourceType<DebianSpec> = {
  requires: () => tools("mmdebstrap", "dpkg-deb"),
  describe: (s) => `debian ${s.suite} (${s.packages.length} packages)`,
  cacheInput: async (s) => ({ ...s, mirror: s.mirror ?? (await hostMirror()) }),
  async apply(s, ctx) {
    const packages = await applyDebianSource(ctx.root, {
      ...s,
      key: ctx.key,
      specFile: ctx.spec.specPath,
      debCache: ctx.downloadDir,
      sourceDateEpoch: ctx.epoch,
      workDir: ctx.workDir,
    });
    return { packages, tools: { mmdebstrap: await toolVersion("mmdebstrap", ["--version"]) } };
  },
};

export interface DebianSourceOptions {
  suite: string;
  mirror?: string;
  components: readonly string[];
  variant: string;
  packages: readonly string[];
  /** Spec key for error messages, e.g. "sources[0]". */
  key: string;
  specFile: string;
  debCache: string;
  sourceDateEpoch: number;
  workDir: string;
}

/** The mirror the host's apt is configured with (deb822 or one-line sources). */
export async function hostMirror(): Promise<string> {
  const candidates = ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"];
  for (const f of candidates) {
    let text: string;
    try {
      text = await readFile(f, "utf8");
    } catch {
      continue;
    }
    const m822 = text.match(/^URIs:\s*(\S+)/m);
    if (m822 && !/security/.test(m822[1]!)) return m822[1]!;
    const mline = text.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+/m);
    if (mline) return mline[1]!;
  }
  try {
    const others = (await readdir("/etc/apt/sources.list.d")).sort();
    for (const o of others) {
      const text = await readFile(join("/etc/apt/sources.list.d", o), "utf8");
      const m = text.match(/^URIs:\s*(\S+)/m) ?? text.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)/m);
      if (m && !/security/.test(m[1]!)) return m[1]!;
    }
  } catch {
    /* no sources.list.d */
  }
  return "http://deb.debian.org/debian";
}

/**
 * Run mmdebstrap into `rootDir`. If the tree already has content (an earlier
 * source), bootstrap into a temporary folder and copy it over.
 */
export async function applyDebianSource(rootDir: string, opts: DebianSourceOptions): Promise<DebPackage[]> {
  await mkdir(opts.debCache, { recursive: true });
  const existing = await readdir(rootDir).catch(() => [] as string[]);
  const target = existing.length === 0 ? rootDir : await mkdtemp(join(opts.workDir, "debian-"));
  if (target === rootDir) await rm(rootDir, { recursive: true, force: true });
  const mirror = opts.mirror ?? (await hostMirror());
  const extract = opts.variant === "extract";
  const list = join(opts.workDir, `debs-${Date.now()}-${Math.random().toString(36).slice(2)}.list`);
  // Installing variants: cached .debs are copied in and the archive folder synced back out.
  // extract: mmdebstrap extracts exactly what it downloaded; the list of those .debs is recorded
  // (there is no dpkg database to read afterwards) and they are synced out to the cache.
  // Builds beside this one share the cache: a .deb goes in under a temporary name (with acl's PID, so
  // a later build knows when its writer is gone) and is renamed into place, so no build ever copies
  // in a half-written one.
  const putDebs = `for f in "$1"/var/cache/apt/archives/*.deb; do [ -e "$f" ] || continue; n=\${f##*/}; [ -e '${opts.debCache}'/"$n" ] || { cp "$f" '${opts.debCache}'/".$n.part${process.pid}" && mv -f '${opts.debCache}'/".$n.part${process.pid}" '${opts.debCache}'/"$n"; } || exit 1; done`;
  const hooks = extract
    ? [`--extract-hook=ls "$1/var/cache/apt/archives" | grep '\\.deb$' > '${list}'; ${putDebs}`]
    : [
        "--skip=essential/unlink",
        `--setup-hook=mkdir -p "$1/var/cache/apt/archives" && find '${opts.debCache}' -maxdepth 1 -name '*.deb' -exec cp -t "$1/var/cache/apt/archives/" {} +`,
        `--customize-hook=${putDebs}`,
      ];
  const argv = [
    "mmdebstrap",
    "--mode=root",
    `--variant=${opts.variant}`,
    `--components=${opts.components.join(",")}`,
    "--aptopt=Acquire::Retries \"3\"",
    ...hooks,
    ...(opts.packages.length ? [`--include=${opts.packages.join(",")}`] : []),
    opts.suite,
    target,
    mirror,
  ];
  try {
    await run(argv, {
      env: { SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch), TMPDIR: opts.workDir },
      hint: `check '${opts.key}' in ${opts.specFile} (suite, packages, mirror)`,
    });
  } catch (e) {
    if (e instanceof ExternalToolError) {
      const unknown = [...e.stderr.matchAll(/Unable to locate package (\S+)|Package '?([^' ]+)'? has no installation candidate/g)].map(
        (m) => m[1] ?? m[2],
      );
      unknown.splice(0, unknown.length, ...new Set(unknown));
      if (unknown.length) {
        throw new UserError(
          `${opts.specFile}: '${opts.key}.packages' names ${unknown.length > 1 ? "packages" : "a package"} that Debian ${opts.suite} does not have: ${unknown.join(", ")}`,
          { file: opts.specFile, hint: `check the spelling (apt-cache search ${unknown[0]}) or remove it from '${opts.key}.packages'` },
        );
      }
      if (/No such file or directory.*Release|does not have a Release file|404\s+Not Found/.test(e.stderr)) {
        throw new UserError(`${opts.specFile}: '${opts.key}.suite' = "${opts.suite}" is not available from ${mirror}`, {
          file: opts.specFile,
          hint: "use a suite the mirror serves, such as bookworm",
        });
      }
    }
    throw e;
  }
  // the .debs are in the cache now; keep them out of the image
  await rm(join(target, "var/cache/apt/archives"), { recursive: true, force: true });
  await mkdir(join(target, "var/cache/apt/archives/partial"), { recursive: true });
  let packages: DebPackage[];
  if (extract) {
    const names = (await readFile(list, "utf8")).split("\n").filter(Boolean).sort();
    await rm(list, { force: true });
    packages = [];
    for (const n of names) {
      const control = await run(["dpkg-deb", "-f", join(opts.debCache, n)]);
      const f = parseDeb822(control.stdout)[0] ?? {};
      packages.push({ name: f.Package ?? n, version: f.Version ?? "", arch: f.Architecture ?? "", fields: f, deb: join(opts.debCache, n) });
    }
  } else {
    packages = await readDpkgStatus(target);
  }
  if (target !== rootDir) {
    await copyTreeInto(target, rootDir);
    await rm(target, { recursive: true, force: true });
  }
  return packages;
}

/** Installed packages from the tree's dpkg database. */
export async function readDpkgStatus(rootDir: string): Promise<DebPackage[]> {
  let text = "";
  try {
    text = await readFile(join(rootDir, "var/lib/dpkg/status"), "utf8");
  } catch {
    return [];
  }
  return parseDeb822(text)
    .filter((r) => /install ok installed/.test(r.Status ?? ""))
    .map((r) => ({ name: r.Package!, version: r.Version ?? "", arch: r.Architecture ?? "", fields: r }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** Parse a deb822 control-style stanza list (dpkg status, Packages). */
export function parseDeb822(text: string): Record<string, string>[] {
  const out: Record<string, string>[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    if (!block.trim()) continue;
    const rec: Record<string, string> = {};
    let key = "";
    for (const line of block.split("\n")) {
      if (/^\s/.test(line) && key) rec[key] += "\n" + line.trim();
      else {
        const i = line.indexOf(":");
        if (i < 0) continue;
        key = line.slice(0, i);
        rec[key] = line.slice(i + 1).trim();
      }
    }
    out.push(rec);
  }
  return out;
}
