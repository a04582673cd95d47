/**
 * An image whose userland and kernel come from an RPM repository (built here
 * by rpmbuild, rpmsign and createrepo_c): it builds through the real CLI,
 * passes the package-manager audit, lists every installed RPM in its SBOM
 * with version and license, builds again to the same bytes, and boots under
 * `acl boot-test`. fsck.erofs reads the post-install script's file back out
 * of /usr.
 */
import { execa } from "execa";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseManifest, type Manifest } from "../../src/pipeline/manifest.js";
import { acl } from "../helpers/cli.js";
import { rpmRepos, type RpmRepos } from "../helpers/rpm-repo.js";

let repos: RpmRepos;
let tmp: string;
let spec: string;
let manifest: Manifest;
const env = { SOURCE_DATE_EPOCH: "1700000000" };
const out = () => join(tmp, "out");

beforeAll(async () => {
  repos = await rpmRepos();
  tmp = await mkdtemp(join(tmpdir(), "acl-rpm-image-"));
  await mkdir(join(tmp, "overlay/etc"), { recursive: true });
  await writeFile(join(tmp, "overlay/etc/motd"), "an image from RPMs\n");
  spec = join(tmp, "rpm-minimal.toml");
  await writeFile(
    spec,
    `name = "rpm-minimal"
version = "1.0.0"
microarch = "x86-64-v3"
init = "busybox"

[[sources]]
type = "rpm"
releasever = "1"
packages = ["acl-base", "acl-kernel-core"]

[[sources.repos]]
name = "acl-test"
baseurl = "${repos.signed}"
gpgkey = "${repos.key}"

[[sources]]
type = "dir"
path = "overlay"

[kernel]
from = "image"

[partitions]
esp = "64MiB"
usr = "512MiB"
oem = "16MiB"
root = "64MiB"

[output]
formats = ["raw"]
`,
  );
  const r = await acl(["build", spec, "--out", out(), "--cache-dir", join(tmp, "cache")], { env });
  expect(r.exitCode, r.stderr.slice(-4000)).toBe(0);
  manifest = parseManifest(JSON.parse(await readFile(join(out(), "manifest.json"), "utf8")));
}, 30 * 60_000);
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe("an image from an RPM repository", () => {
  it("takes its kernel from the acl-kernel-core RPM and records the RPMs it installed", () => {
    expect(manifest.kernel).toMatchObject({ package: "acl-kernel-core", release: repos.kernelRelease });
    expect(manifest.kernel.version).toMatch(/^\d+\.\d+\.\d+-\S+\.acl$/);
    const names = manifest.inputs.packages.map((p) => p.name).sort();
    expect(names).toEqual(["acl-base", "acl-busybox", "acl-kernel-core"]);
    expect(manifest.inputs.packages.find((p) => p.name === "acl-base")).toMatchObject({ version: "2:1.0-3.acl", arch: "noarch" });
    expect(manifest.tools.dnf).toMatch(/^4\./);
  });

  it("lists every installed RPM in the SBOM with its version, license, source RPM and files", async () => {
    const sbom = JSON.parse(await readFile(join(out(), "sbom.spdx.json"), "utf8")) as {
      packages: { name: string; versionInfo?: string; licenseDeclared?: string; sourceInfo?: string; externalRefs?: { referenceLocator: string }[]; hasFiles?: string[] }[];
    };
    const byName = Object.fromEntries(sbom.packages.map((p) => [p.name, p]));
    expect(byName["acl-base"]).toMatchObject({ versionInfo: "2:1.0-3.acl", licenseDeclared: "MIT", sourceInfo: "built from the source RPM acl-base-1.0-3.acl.src.rpm" });
    expect(byName["acl-base"]!.externalRefs![0]!.referenceLocator).toBe("pkg:rpm/acl/acl-base@1.0-3.acl?arch=noarch&epoch=2");
    expect(byName["acl-busybox"]).toMatchObject({ licenseDeclared: "GPL-2.0-only" });
    expect(byName["acl-busybox"]!.hasFiles!.length).toBeGreaterThanOrEqual(1);
    expect(byName["acl-kernel-core"]).toMatchObject({ licenseDeclared: "GPL-2.0-only" });
    expect(byName["acl-kernel-core"]!.hasFiles!.length).toBeGreaterThan(100);
  });

  it("holds no package manager, and keeps what the post-install script wrote (read out of /usr by fsck.erofs)", async () => {
    const x = join(tmp, "extracted");
    await execa("fsck.erofs", [`--extract=${x}`, join(out(), "usr.img")]);
    expect(await readFile(join(x, "share/factory/etc/acl-post"), "utf8")).toBe("acl-base 1 ran its post-install script\n");
    expect(await readFile(join(x, "share/factory/etc/motd"), "utf8")).toBe("an image from RPMs\n");
    for (const gone of ["bin/rpm", "bin/dnf", "lib/sysimage/rpm", "share/factory/var/lib/rpm", "share/factory/var/lib/dnf", "share/factory/etc/yum.repos.d"])
      expect((await execa("test", ["-e", join(x, gone)], { reject: false })).exitCode, gone).toBe(1);
  }, 120_000);

  it("builds again with the same bytes", async () => {
    const r = await acl(["build", spec, "--out", join(tmp, "again"), "--cache-dir", join(tmp, "cache"), "--no-cache"], { env });
    expect(r.exitCode, r.stderr.slice(-3000)).toBe(0);
    const again = parseManifest(JSON.parse(await readFile(join(tmp, "again", "manifest.json"), "utf8")));
    expect(again.artifacts).toEqual(manifest.artifacts);
  }, 30 * 60_000);

  it("boots under acl boot-test (direct kernel boot, Haswell-v4)", async () => {
    const r = await acl(["boot-test", out(), "--json", "--case", "boot", "--cpu", "Haswell-v4", "--firmware", "direct", "--timeout", "300"], { timeoutMs: 20 * 60_000 });
    const res = JSON.parse(r.stdout) as { runs: { passed: boolean; reason: string; checks: { name: string; status: string; detail: string }[] }[]; failed: number };
    expect(r.exitCode, JSON.stringify(res.runs) + r.stderr.slice(-2000)).toBe(0);
    const run = res.runs[0]!;
    expect(run.passed, run.reason).toBe(true);
    const status = Object.fromEntries(run.checks.map((c) => [c.name, c.status]));
    expect(status).toMatchObject({ "usr-verity": "ok", "no-pkg-manager": "ok", init: "ok" });
  }, 20 * 60_000);
});
