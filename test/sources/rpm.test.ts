/**
 * The `rpm` source with Debian's real dnf and rpm, on repositories built
 * here by rpmbuild, rpmsign and createrepo_c (test/helpers/rpm-repo.ts):
 * dependencies resolved, a post-install script run, weak dependencies and
 * excludes, signatures checked (an unsigned, a wrongly signed and a tampered
 * package refused, naming it and its repository), gpgcheck turned off (and
 * said), an unknown package, an unreadable repository and an unmet
 * dependency each a clear error naming the spec key; downloads from a
 * repository served over HTTP kept in the cache. The rpm database is read back for the SBOM.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createReadStream, existsSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorReport } from "../../src/errors.js";
import { createReporter } from "../../src/output/reporter.js";
import { parseSpec } from "../../src/config/spec.js";
import type { ImageSpec } from "../../src/config/spec.js";
import { parseRpmQuery, rpmSource } from "../../src/stages/rootfs/sources/rpm.js";
import { rpmLicenseExpression } from "../../src/stages/rootfs/sbom.js";
import type { SourceContext } from "../../src/stages/rootfs/sources/source.js";
import { rpmRepos, type RpmRepos } from "../helpers/rpm-repo.js";
import { acl } from "../helpers/cli.js";

let repos: RpmRepos;
let tmp: string;
let n = 0;

beforeAll(async () => {
  repos = await rpmRepos();
  tmp = await mkdtemp(join(tmpdir(), "acl-rpm-source-"));
}, 20 * 60_000);
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** A spec with one rpm source given as TOML, loaded the way acl build loads it. */
async function specWith(source: string): Promise<Readonly<ImageSpec>> {
  const dir = join(tmp, `spec-${n++}`);
  await mkdir(dir);
  const text = `name = "rpm-test"\nversion = "1.0.0"\n\n[[sources]]\n${source}\n`;
  await writeFile(join(dir, "spec.toml"), text);
  return parseSpec(Buffer.from(text), join(dir, "spec.toml"));
}

const repoToml = (name: string, baseurl: string, opts: { key?: string; gpgcheck?: boolean } = {}) =>
  `[[sources.repos]]\nname = "${name}"\nbaseurl = "${baseurl}"\n${opts.key ? `gpgkey = "${opts.key}"\n` : ""}${opts.gpgcheck === false ? "gpgcheck = false\n" : ""}`;

async function install(spec: Readonly<ImageSpec>, before: Record<string, string> = {}) {
  const root = join(tmp, `root-${n++}`);
  const work = join(tmp, `work-${n++}`);
  const cacheRoot = join(tmp, "cache");
  await mkdir(root);
  // what earlier sources put in the tree
  for (const [path, text] of Object.entries(before)) {
    await mkdir(join(root, path, ".."), { recursive: true });
    await writeFile(join(root, path), text);
  }
  await mkdir(work);
  const lines: string[] = [];
  const reporter = createReporter("plain", { write: (s: string) => (lines.push(s), true) } as unknown as NodeJS.WritableStream);
  const ctx: SourceContext = { spec, key: "sources[0]", root, workDir: work, downloadDir: join(cacheRoot, "debs"), cacheRoot, epoch: 1700000000, reporter };
  const s = spec.sources[0] as Parameters<typeof rpmSource.apply>[0];
  try {
    const got = await rpmSource.apply(s, ctx);
    return { ok: true as const, root, got, log: lines.join(""), cacheRoot };
  } catch (error) {
    return { ok: false as const, root, error, log: lines.join(""), cacheRoot };
  }
}

const signedSource = (packages: string[], extra = "") =>
  `type = "rpm"\nreleasever = "1"\npackages = ${JSON.stringify(packages)}\n${extra}${repoToml("acl-signed", repos.signed, { key: repos.key })}`;

describe("rpm source: the spec", () => {
  it("needs a key while gpgcheck is on, names repositories once, and resolves local baseurls", async () => {
    const e = await specWith(`type = "rpm"\nreleasever = "41"\npackages = ["bash"]\n${repoToml("fedora", "https://example.invalid/fedora")}`).catch((x: unknown) => x);
    const r = errorReport(e);
    expect(r.exitCode).toBe(1);
    expect(r.message).toMatch(/'sources\[0\]\.repos\[0\]\.gpgkey' is needed: gpgcheck is on \(the default\) for repository 'fedora'/);
    expect(r.hint).toMatch(/gpgcheck = false/);
    const twice = await specWith(`type = "rpm"\nreleasever = "41"\npackages = ["bash"]\n${repoToml("a", "https://x.invalid", { gpgcheck: false })}${repoToml("a", "https://y.invalid", { gpgcheck: false })}`).catch((x: unknown) => x);
    expect(errorReport(twice).message).toMatch(/'sources\[0\]\.repos\[1\]\.name': 'a' names two repositories/);
    const missing = await specWith(`type = "rpm"\nreleasever = "41"\npackages = ["bash"]\n${repoToml("local", "no-such-folder", { gpgcheck: false })}`).catch((x: unknown) => x);
    expect(errorReport(missing).message).toMatch(/'sources\[0\]\.repos\[0\]\.baseurl' refers to no-such-folder, which is not a folder/);
  });

  it("the Fedora example passes `acl spec check` (no mirror needed: the build reads the repositories)", async () => {
    const r = await acl(["spec", "check", "images/fedora-container-host.toml"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain("images/fedora-container-host.toml: ok (fedora-container-host 1.0.0, x86-64-v3, sources: rpm, dir)");
  });

  it("reads rpm's query output (golden) and words RPM licenses as SPDX", () => {
    const q = ">acl-base\t2\t1.0\t3.acl\tnoarch\tMIT\tacl-base-1.0-3.acl.src.rpm\tacl tests\t(none)\tThe base\n/etc/acl-post\n/etc/acl-release\n>gpg-pubkey\t0\tabc\tdef\t(none)\tpubkey\t(none)\t(none)\t(none)\tkey\n>zlib\t0\t1.3\t1.fc41\tx86_64\tZlib\tzlib-1.3-1.fc41.src.rpm\tFedora Project\t(none)\tz\n/usr/lib64/libz.so.1\n";
    expect(parseRpmQuery(q)).toEqual([
      { kind: "rpm", name: "acl-base", version: "2:1.0-3.acl", arch: "noarch", fields: { License: "MIT", SourceRPM: "acl-base-1.0-3.acl.src.rpm", Vendor: "acl tests", Epoch: "2", URL: "", Summary: "The base" }, files: ["/etc/acl-post", "/etc/acl-release"] },
      { kind: "rpm", name: "zlib", version: "1.3-1.fc41", arch: "x86_64", fields: { License: "Zlib", SourceRPM: "zlib-1.3-1.fc41.src.rpm", Vendor: "Fedora Project", Epoch: "0", URL: "", Summary: "z" }, files: ["/usr/lib64/libz.so.1"] },
    ]);
    expect(rpmLicenseExpression("GPL-2.0-or-later AND (MIT OR Apache-2.0)")).toBe("GPL-2.0-or-later AND (MIT OR Apache-2.0)");
    expect(rpmLicenseExpression("MIT")).toBe("MIT");
    expect(rpmLicenseExpression("GPLv2+")).toBe("LicenseRef-GPLv2-");
    expect(rpmLicenseExpression("ASL 2.0")).toBe("LicenseRef-ASL-2.0");
    expect(rpmLicenseExpression("")).toBe("NOASSERTION");
  });
});

describe("rpm source: Debian's dnf on a signed repository made here", () => {
  it("resolves dependencies, runs the post-install script and leaves weak dependencies out", async () => {
    const r = await install(await specWith(signedSource(["acl-base"])));
    expect(r.ok, r.ok ? "" : String((r.error as Error).message)).toBe(true);
    if (!r.ok) return;
    expect(existsSync(join(r.root, "usr/bin/busybox"))).toBe(true);
    expect(await readFile(join(r.root, "etc/acl-release"), "utf8")).toBe("ID=acl-rpm-test\n");
    expect(await readFile(join(r.root, "etc/acl-post"), "utf8")).toBe("acl-base 1 ran its post-install script\n");
    expect(existsSync(join(r.root, "usr/share/acl-weak"))).toBe(false);
    const byName = Object.fromEntries(r.got.packages!.map((p) => [p.name, p]));
    expect(Object.keys(byName).sort()).toEqual(["acl-base", "acl-busybox"]);
    expect(byName["acl-base"]).toMatchObject({ kind: "rpm", version: "2:1.0-3.acl", arch: "noarch", fields: { License: "MIT", SourceRPM: expect.stringMatching(/^acl-base-1\.0-3\.acl\.src\.rpm$/) } });
    expect(byName["acl-busybox"]!.files).toEqual(["/usr/bin/busybox", "/usr/bin/sh"]);
    expect(r.got.tools?.dnf).toMatch(/^4\./);
    expect(r.log).not.toMatch(/gpgcheck is off/);
  }, 10 * 60_000);

  it("from a repository served over HTTP: the downloaded RPMs are kept in acl's cache", async () => {
    const server = createServer((req, res) => {
      const path = join(repos.signed, decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
      createReadStream(path)
        .on("error", () => res.writeHead(404).end())
        .pipe(res);
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    try {
      const port = (server.address() as { port: number }).port;
      const spec = await specWith(`type = "rpm"\nreleasever = "1"\npackages = ["acl-base"]\n${repoToml("served", `http://127.0.0.1:${port}/`, { key: repos.key })}`);
      const r = await install(spec);
      expect(r.ok, r.ok ? "" : String((r.error as Error).message)).toBe(true);
      const cached: string[] = [];
      for (const d of await readdir(join(r.cacheRoot, "rpm"))) for (const f of await readdir(join(r.cacheRoot, "rpm", d, "packages")).catch(() => [])) cached.push(f);
      expect(cached.sort()).toEqual([expect.stringMatching(/^acl-base-1\.0-3\.acl\.noarch\.rpm$/), expect.stringMatching(/^acl-busybox-.*\.x86_64\.rpm$/)]);
      // the cache key names the repository's content: its metadata's digest
      const input = await rpmSource.cacheInput(spec.sources[0] as Parameters<typeof rpmSource.apply>[0], { spec, key: "sources[0]" });
      expect((input.repos as { repomd: string }[])[0]!.repomd).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      server.close();
    }
  }, 10 * 60_000);

  it("layered on what earlier sources put in the tree: both are there, and only the RPMs are in its database", async () => {
    const r = await install(await specWith(signedSource(["acl-base"])), { "etc/debian_version": "12.8\n", "usr/bin/earlier": "#!/bin/sh\n" });
    expect(r.ok, r.ok ? "" : String((r.error as Error).message)).toBe(true);
    if (!r.ok) return;
    expect(await readFile(join(r.root, "etc/debian_version"), "utf8")).toBe("12.8\n");
    expect(existsSync(join(r.root, "usr/bin/earlier"))).toBe(true);
    expect(existsSync(join(r.root, "usr/bin/busybox"))).toBe(true);
    expect(r.got.packages!.map((p) => p.name).sort()).toEqual(["acl-base", "acl-busybox"]);
    // Fedora's place for the database, not Debian's per-user one
    expect(existsSync(join(r.root, "usr/lib/sysimage/rpm"))).toBe(true);
    expect(existsSync(join(r.root, "root/.rpmdb"))).toBe(false);
  }, 10 * 60_000);

  it("install_weak_deps brings Recommends in; exclude keeps a package out", async () => {
    const weak = await install(await specWith(signedSource(["acl-base"], "install_weak_deps = true\n")));
    expect(weak.ok && existsSync(join(weak.root, "usr/share/acl-weak/present"))).toBe(true);
    const excluded = await install(await specWith(signedSource(["acl-base"], 'install_weak_deps = true\nexclude = ["acl-weak"]\n')));
    expect(excluded.ok, excluded.ok ? "" : String((excluded.error as Error).message)).toBe(true);
    expect(existsSync(join(excluded.root, "usr/share/acl-weak"))).toBe(false);
  }, 10 * 60_000);

  it("an unknown package, an unreadable repository and a dependency no repository meets: each names its key", async () => {
    const unknown = await install(await specWith(signedSource(["acl-base", "acl-nonesuch"])));
    expect(unknown.ok).toBe(false);
    const u = errorReport(!unknown.ok && unknown.error);
    expect(u.exitCode).toBe(1);
    expect(u.message).toMatch(/'sources\[0\]\.packages' names a package that the repositories \('acl-signed'\) do not have: acl-nonesuch$/);
    expect(u.key).toBe("sources[0].packages");

    const dead = await install(await specWith(`type = "rpm"\nreleasever = "1"\npackages = ["acl-base"]\n${repoToml("gone", "http://127.0.0.1:59999/repo", { gpgcheck: false })}`));
    const d = errorReport(!dead.ok && dead.error);
    expect(d.exitCode).toBe(1);
    expect(d.message).toMatch(/repository 'gone' \('sources\[0\]\.repos\[0\]\.baseurl'\) cannot be read: http:\/\/127\.0\.0\.1:59999\/repo\/repodata\/repomd\.xml: connect ECONNREFUSED/);
    const empty = join(tmp, "empty-repo");
    await mkdir(empty, { recursive: true });
    const noRepodata = await install(await specWith(`type = "rpm"\nreleasever = "1"\npackages = ["acl-base"]\n${repoToml("empty", empty, { gpgcheck: false })}`));
    expect(errorReport(!noRepodata.ok && noRepodata.error).message).toMatch(/repository 'empty' .* cannot be read: .*empty-repo\/repodata\/repomd\.xml: .*does not exist/);

    const broken = await install(await specWith(signedSource(["acl-broken"])));
    const b = errorReport(!broken.ok && broken.error);
    expect(b.exitCode).toBe(1);
    expect(b.message).toMatch(/'sources\[0\]': dnf cannot meet the dependencies: .*acl-no-such-package/);
  }, 10 * 60_000);
});

describe("rpm source: signatures", () => {
  const refused = async (dir: string, key: string, what: RegExp) => {
    const r = await install(await specWith(`type = "rpm"\nreleasever = "1"\npackages = ["acl-base"]\n${repoToml("acl-test", dir, { key })}`));
    expect(r.ok).toBe(false);
    const e = errorReport(!r.ok && r.error);
    expect(e.exitCode, e.message).toBe(1);
    expect(e.message).toMatch(what);
    // nothing of the refused packages is installed
    expect(existsSync(join(r.root, "etc/acl-release"))).toBe(false);
  };

  it("an unsigned package, one signed with another key and a tampered one are refused, naming the package and its repository", async () => {
    await refused(repos.unsigned, repos.key, /package acl-\S+ from repository 'acl-test' is not signed: refused \(gpgcheck is on\)/);
    await refused(repos.wrongKey, repos.key, /package acl-\S+ from repository 'acl-test' is not signed by the repository's key: refused/);
    await refused(repos.tampered, repos.key, /package acl-base-1\.0-3\.acl\.noarch from repository 'acl-test' does not match its signature \(changed after it was signed, or damaged\): refused/);
  }, 10 * 60_000);

  it("gpgcheck = false installs from an unsigned repository, and the build says so", async () => {
    const r = await install(await specWith(`type = "rpm"\nreleasever = "1"\npackages = ["acl-base"]\n${repoToml("plain", repos.unsigned, { gpgcheck: false })}`));
    expect(r.ok, r.ok ? "" : String((r.error as Error).message)).toBe(true);
    expect(r.log).toMatch(/warning: sources\[0\]\.repos\[0\] \('plain'\): gpgcheck is off, so its packages are installed without checking their signatures/);
    expect(existsSync(join(r.root, "etc/acl-release"))).toBe(true);
  }, 10 * 60_000);
});
