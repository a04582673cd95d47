/**
 * The `rpm` content source: Debian's dnf installs packages from the spec's
 * repositories into the tree (--installroot) with a configuration of its
 * own: never the host's repositories, cache or plugins. Downloaded RPMs are
 * kept in CACHE/rpm between builds. Signatures are checked (gpgcheck) unless
 * the spec turns that off for a repository, which the build then says. The
 * installed packages (name, epoch:version-release, arch, license, source RPM
 * and files) are read from the tree's rpm database for the SBOM; sanitize
 * removes that database, dnf's state and rpm itself afterwards.
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, utimes, writeFile } from "node:fs/promises";
import { readdirSafe } from "../../../util/fs.js";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { run, toolVersion, tools } from "../../../adapters/exec.js";
import type { Source } from "../../../config/spec-schema.js";
import { resolveSpecPath, specLocation } from "../../../config/spec.js";
import { ExternalToolError, UserError, fsReason } from "../../../errors.js";
import { acquireLock } from "../../../pipeline/lock.js";
import type { DebPackage, SourceContext, SourceType } from "./source.js";

type RpmSpec = Extract<Source, { type: "rpm" }>;

/**
 * Where the tree's rpm database goes: Fedora's place for it. Debian's rpm
 * keeps its own per user (%_dbpath is ~/.rpmdb), so dnf and rpm are given
 * this one in a macros file of their own.
 */
export const RPMDB_PATH = "/usr/lib/sysimage/rpm";
type RpmRepo = RpmSpec["repos"][number];

/** A repository as dnf is given it: its URL, and what was read of it (the metadata's digest, the key). */
interface ResolvedRepo {
  name: string;
  baseurl: string;
  gpgcheck: boolean;
  /** sha256 of repodata/repomd.xml: the repository's content, for the cache key. */
  repomd: string;
  key?: Buffer;
}

/** What one fetch of a URL or read of a file gives. */
async function readLocation(location: { path?: string; url?: string }): Promise<Buffer> {
  if (location.url) {
    const res = await fetch(location.url, { signal: AbortSignal.timeout(60_000) });
    if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`);
    return Buffer.from(await res.arrayBuffer());
  }
  return readFile(location.path!);
}

const reason = (e: unknown) => ((e as NodeJS.ErrnoException).code ? fsReason(e) : ((e as Error).cause as Error | undefined)?.message ?? (e as Error).message);

/**
 * Each repository is read once per acl process: the build's key, the packages
 * stage's id and the install all see the same metadata digest and key (and a
 * remote repository is fetched once, not three times).
 */
const resolved = new Map<string, Promise<ResolvedRepo>>();

function resolveRepo(r: RpmRepo, i: number, ctx: Pick<SourceContext, "spec" | "key">): Promise<ResolvedRepo> {
  const k = JSON.stringify([ctx.spec.specPath, ctx.key, i, r]);
  let got = resolved.get(k);
  if (!got) {
    got = readRepo(r, i, ctx);
    // a failure is not remembered: the next call says it again (or finds the repository back)
    got.catch(() => resolved.delete(k));
    resolved.set(k, got);
  }
  return got;
}

/** The repository's URL (a local folder as file://), its metadata's digest and its key, or a clear error naming it. */
async function readRepo(r: RpmRepo, i: number, ctx: Pick<SourceContext, "spec" | "key">): Promise<ResolvedRepo> {
  const file = ctx.spec.specPath;
  const key = `${ctx.key}.repos[${i}]`;
  const at = specLocation(r.baseurl);
  const baseurl = (at.url ?? pathToFileURL(resolveSpecPath(ctx.spec.specDir, at.path!)).href).replace(/\/+$/, "");
  const repomdAt = at.url ? { url: `${baseurl}/repodata/repomd.xml` } : { path: join(resolveSpecPath(ctx.spec.specDir, at.path!), "repodata/repomd.xml") };
  let repomd: Buffer;
  try {
    repomd = await readLocation(repomdAt);
  } catch (e) {
    throw new UserError(`${file}: repository '${r.name}' ('${key}.baseurl') cannot be read: ${repomdAt.url ?? repomdAt.path}: ${reason(e)}`, {
      file,
      key: `${key}.baseurl`,
      hint: "check the URL and that this machine reaches it; a local repository is a folder with repodata/ (createrepo_c makes it)",
    });
  }
  let keyBytes: Buffer | undefined;
  if (r.gpgkey) {
    const k = specLocation(r.gpgkey);
    const where = k.url ? { url: k.url } : { path: resolveSpecPath(ctx.spec.specDir, k.path!) };
    try {
      keyBytes = await readLocation(where);
    } catch (e) {
      throw new UserError(`${file}: the signing key of repository '${r.name}' ('${key}.gpgkey') cannot be read: ${where.url ?? where.path}: ${reason(e)}`, {
        file,
        key: `${key}.gpgkey`,
        hint: "give the repository's public key (ASCII-armored, as `gpg --export --armor` writes it)",
      });
    }
    if (!/-----BEGIN PGP PUBLIC KEY BLOCK-----/.test(keyBytes.toString("latin1"))) {
      throw new UserError(`${file}: '${key}.gpgkey' of repository '${r.name}' is not an ASCII-armored OpenPGP public key`, {
        file,
        key: `${key}.gpgkey`,
        hint: "export it with `gpg --export --armor KEYID`, or use the RPM-GPG-KEY file the distribution publishes",
      });
    }
  }
  return { name: r.name, baseurl, gpgcheck: r.gpgcheck, repomd: createHash("sha256").update(repomd).digest("hex"), key: keyBytes };
}

export const rpmSource: SourceType<RpmSpec> = {
  requires: () => tools("dnf", "rpm"),
  describe: (s) => `rpm ${s.releasever} from ${s.repos.map((r) => r.name).join(", ")} (${s.packages.length} packages)`,
  async cacheInput(s, ctx) {
    const repos = [];
    for (const [i, r] of s.repos.entries()) {
      const got = await resolveRepo(r, i, ctx);
      repos.push({ name: got.name, baseurl: got.baseurl, gpgcheck: got.gpgcheck, repomd: got.repomd, key: got.key && createHash("sha256").update(got.key).digest("hex") });
    }
    return { ...s, repos };
  },
  async apply(s, ctx) {
    const repos: ResolvedRepo[] = [];
    for (const [i, r] of s.repos.entries()) repos.push(await resolveRepo(r, i, ctx));
    for (const [i, r] of repos.entries())
      if (!r.gpgcheck) ctx.reporter.warn(`${ctx.key}.repos[${i}] ('${r.name}'): gpgcheck is off, so its packages are installed without checking their signatures`);
    const rpmCache = join(ctx.cacheRoot, "rpm");
    await mkdir(rpmCache, { recursive: true });
    const conf = await writeDnfConfig(s, repos, ctx);
    // builds beside this one share dnf's cache folder: one dnf at a time uses it
    const lock = await acquireLock(join(ctx.cacheRoot, "locks", "rpm-cache.lock"), {
      onWait: (holder) => ctx.reporter.info(`waiting for the build with pid ${holder.pid}, which is using the RPM cache`),
    });
    try {
      // the repositories' folders in the cache count as used now (the cache's bound keeps what was used lately)
      await touchChildren(rpmCache);
      await run(
        [
          "dnf", "-y", "--config", join(conf, "dnf.conf"), "--installroot", ctx.root, `--releasever=${s.releasever}`, "--noplugins",
          // given on the command line, these paths are the host's (in dnf.conf they would be inside the installroot)
          `--setopt=reposdir=${join(conf, "repos.d")}`, `--setopt=cachedir=${rpmCache}`, `--setopt=logdir=${join(conf, "log")}`,
          "install", ...s.packages,
        ],
        // HOME: rpm reads ~/.rpmmacros last, so the configuration folder's one sets the database's place
        { env: { SOURCE_DATE_EPOCH: String(ctx.epoch), TZ: "UTC", LC_ALL: "C.UTF-8", HOME: conf } },
      );
    } catch (e) {
      throw e instanceof ExternalToolError ? await explainDnf(e, repos, ctx, rpmCache) : e;
    } finally {
      await touchChildren(rpmCache);
      await lock.release();
    }
    const packages = await readRpmDb(ctx.root);
    return { packages, tools: { dnf: await toolVersion("dnf", ["--version"]), rpm: await toolVersion("rpm", ["--version"]) } };
  },
};

async function touchChildren(dir: string): Promise<void> {
  const now = new Date();
  for (const d of await readdirSafe(dir)) await utimes(join(dir, d), now, now).catch(() => undefined);
}

/** dnf.conf and one .repo file in a folder of this build (returned): the keys as local files, nothing of the host's. */
async function writeDnfConfig(s: RpmSpec, repos: readonly ResolvedRepo[], ctx: SourceContext): Promise<string> {
  const dir = await mkdtemp(join(ctx.workDir, "dnf-"));
  await mkdir(join(dir, "repos.d"));
  await mkdir(join(dir, "keys"));
  await mkdir(join(dir, "log"));
  const repoText: string[] = [];
  for (const r of repos) {
    let keyLine = "";
    if (r.key) {
      const k = join(dir, "keys", `${r.name}.asc`);
      await writeFile(k, r.key);
      keyLine = `gpgkey=${pathToFileURL(k).href}\n`;
    }
    repoText.push(`[${r.name}]\nname=${r.name}\nbaseurl=${r.baseurl}\nenabled=1\ngpgcheck=${r.gpgcheck ? 1 : 0}\nrepo_gpgcheck=0\n${keyLine}metadata_expire=0\nskip_if_unavailable=False\n`);
  }
  await writeFile(join(dir, "repos.d", "acl.repo"), repoText.join("\n"));
  await writeFile(join(dir, ".rpmmacros"), `%_dbpath ${RPMDB_PATH}\n`);
  const conf = join(dir, "dnf.conf");
  await writeFile(
    conf,
    [
      "[main]",
      "keepcache=True",
      `install_weak_deps=${s.install_weak_deps ? "True" : "False"}`,
      ...(s.exclude.length ? [`excludepkgs=${s.exclude.join(",")}`] : []),
      "plugins=False",
      "best=True",
      "skip_if_unavailable=False",
      "localpkg_gpgcheck=True",
      "",
    ].join("\n"),
  );
  return dir;
}

/** dnf's failure in one or two lines, naming the spec key, the package and the repository. */
async function explainDnf(e: ExternalToolError, repos: readonly ResolvedRepo[], ctx: SourceContext, cacheDir: string): Promise<Error> {
  const file = ctx.spec.specPath;
  const out = e.stderr;
  const names = repos.map((r) => `'${r.name}'`).join(", ");
  const unknown = [...new Set([...out.matchAll(/No match for argument: (\S+)|Unable to find a match: (.+)/g)].flatMap((m) => (m[1] ?? m[2]!).trim().split(/\s+/)))];
  if (unknown.length)
    return new UserError(`${file}: '${ctx.key}.packages' names ${unknown.length > 1 ? "packages" : "a package"} that the repositories (${names}) do not have: ${unknown.join(", ")}`, {
      file,
      key: `${ctx.key}.packages`,
      hint: `check the spelling, or add the repository that has ${unknown.length > 1 ? "them" : "it"} to '${ctx.key}.repos'`,
    });
  const badRepo = /(?:Failed to download metadata for repo|Cannot download repomd\.xml[^']*repo) '([^']+)'/.exec(out)?.[1];
  if (badRepo) {
    const r = repos.find((x) => x.name === badRepo);
    return new UserError(`${file}: repository '${badRepo}' (${r?.baseurl ?? "?"}) cannot be read by dnf: ${firstLines(out, /Curl error|Status code|Error:|Cannot/)}`, {
      file,
      key: `${ctx.key}.repos[${repos.findIndex((x) => x.name === badRepo)}].baseurl`,
      hint: "check its baseurl; a local repository needs repodata/ from createrepo_c",
    });
  }
  const gpg = /Package (\S+?)(?:\.rpm)? is not signed|Public key for (\S+?)(?:\.rpm)? is not installed|Problem opening package (\S+?)(?:\.rpm)?\s*$|GPG check FAILED/m.exec(out);
  if (gpg) {
    const how = gpg[1] ? "is not signed" : gpg[3] ? "does not match its signature (changed after it was signed, or damaged)" : "is not signed by the repository's key";
    return gpgError(gpg[1] ?? gpg[2] ?? gpg[3] ?? /Failing package is: (\S+)/.exec(out)?.[1], how, repos, ctx, cacheDir);
  }
  if (/Problem( \d+)?: |nothing provides|conflicts with|Depsolve Error/.test(out)) {
    const lines = out.split("\n").filter((l) => /Problem|nothing provides|conflicts|requires|package .* is filtered out|cannot install/.test(l)).map((l) => l.trim().replace(/^- /, ""));
    return new UserError(`${file}: '${ctx.key}': dnf cannot meet the dependencies: ${lines.slice(0, 2).join("; ") || firstLines(out, /Error/)}`, {
      file,
      key: `${ctx.key}.packages`,
      hint: `add the repository that provides what is missing, or change '${ctx.key}.packages' or '${ctx.key}.exclude'`,
    });
  }
  return e;
}

/** The package that failed its signature check, and the repository it came from (found by where dnf cached it). */
async function gpgError(pkg: string | undefined, how: string, repos: readonly ResolvedRepo[], ctx: SourceContext, cacheDir: string): Promise<Error> {
  const file = ctx.spec.specPath;
  const name = (pkg ?? "a package").replace(/\.rpm$/, "");
  const has = (files: readonly string[]) => files.some((f) => f.replace(/\.rpm$/, "") === name || f.startsWith(`${name}-`));
  let repo: string | undefined;
  // downloaded: in dnf's cache folder of its repository; local: in the repository's folder
  for (const d of (await readdirSafe(cacheDir)).sort()) {
    if (has(await readdirSafe(join(cacheDir, d, "packages")))) repo = repos.find((r) => d.startsWith(`${r.name}-`))?.name;
    if (repo) break;
  }
  for (const r of repos) {
    if (repo || !r.baseurl.startsWith("file:")) continue;
    const dir = fileURLToPath(r.baseurl);
    for (const sub of ["", "Packages", "packages", "RPMS"]) if (has(await readdirSafe(join(dir, sub)))) repo ??= r.name;
  }
  const checked = repos.filter((r) => r.gpgcheck);
  repo ??= checked.length === 1 ? checked[0]!.name : undefined;
  const i = repos.findIndex((r) => r.name === repo);
  return new UserError(`${file}: package ${name} from repository ${repo ? `'${repo}'` : `one of ${checked.map((r) => `'${r.name}'`).join(", ")}`} ${how}: refused (gpgcheck is on)`, {
    file,
    key: i >= 0 ? `${ctx.key}.repos[${i}].gpgkey` : `${ctx.key}.repos`,
    hint: "give the key the repository's packages are signed with, or sign them (rpmsign --addsign); turning gpgcheck off installs them unchecked",
  });
}

function firstLines(text: string, like: RegExp): string {
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => like.test(l));
  return lines.slice(0, 2).join("; ") || text.trim().split("\n").slice(-1)[0] || "no reason given";
}

const FIELDS = ["NAME", "EPOCHNUM", "VERSION", "RELEASE", "ARCH", "LICENSE", "SOURCERPM", "VENDOR", "URL", "SUMMARY"] as const;

/** The installed RPMs from the tree's rpm database: header tags and files, sorted by name (imported keys left out). */
export async function readRpmDb(root: string): Promise<DebPackage[]> {
  const qf = `>${FIELDS.map((f) => `%{${f}}`).join("\\t")}\\n[%{FILENAMES}\\n]`;
  const r = await run(["rpm", "--root", root, "--dbpath", RPMDB_PATH, "-qa", "--qf", qf]);
  return parseRpmQuery(r.stdout);
}

/** `rpm -qa --qf` output in readRpmDb's format: a `>` line of tab-separated tags per package, then its files. */
export function parseRpmQuery(text: string): DebPackage[] {
  const out: DebPackage[] = [];
  let cur: DebPackage | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith(">")) {
      const v = line.slice(1).split("\t");
      const f = Object.fromEntries(FIELDS.map((k, i) => [k, v[i] ?? ""])) as Record<(typeof FIELDS)[number], string>;
      const epoch = f.EPOCHNUM && f.EPOCHNUM !== "0" ? `${f.EPOCHNUM}:` : "";
      cur = {
        kind: "rpm",
        name: f.NAME,
        version: `${epoch}${f.VERSION}-${f.RELEASE}`,
        arch: f.ARCH === "(none)" ? "noarch" : f.ARCH,
        fields: { License: f.LICENSE, SourceRPM: f.SOURCERPM, Vendor: f.VENDOR === "(none)" ? "" : f.VENDOR, Epoch: f.EPOCHNUM, URL: f.URL === "(none)" ? "" : f.URL, Summary: f.SUMMARY },
        files: [],
      };
      if (f.NAME !== "gpg-pubkey") out.push(cur);
    } else if (line.startsWith("/") && cur) cur.files!.push(line);
  }
  for (const p of out) p.files!.sort();
  return out.sort((a, b) => a.name.localeCompare(b.name) || a.arch.localeCompare(b.arch));
}
