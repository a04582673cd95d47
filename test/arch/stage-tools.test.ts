/**
 * The up-front host check is only as good as what the stages declare: every
 * program a stage's code runs by name (run(["tool", …]), runBytes, the disk
 * stage's tool()) must be in that stage's `requires`, for some spec, so a
 * missing tool is reported before the first stage instead of in the middle of
 * the build.
 */
import { readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { loadSpec, type ImageSpec } from "../../src/config/spec.js";
import { stageRequirements } from "../../src/pipeline/runner.js";
import { BUILD_STAGES } from "../../src/stages/index.js";
import { tsFiles } from "../helpers/ts-files.js";

const STAGES = join(import.meta.dirname, "../../src/stages");


/** Specs that between them make every stage declare everything it can need. */
async function specs(): Promise<Readonly<ImageSpec>[]> {
  const ch = await loadSpec("images/container-host.toml");
  const sources = [
    ch.sources[0]!,
    { type: "rpm", packages: ["bash"], releasever: "41", repos: [{ name: "fedora", baseurl: "https://example.invalid/", gpgcheck: false }], exclude: [], install_weak_deps: false },
    { type: "docker", image: "example/base:1" },
    { type: "oci-archive", path: "x.tar" },
    { type: "docker-archive", path: "y.tar" },
    { type: "dir", path: "overlay" },
  ] as ImageSpec["sources"];
  return (["erofs", "squashfs"] as const).map((filesystem) => ({
    ...ch,
    sources,
    usr: { ...ch.usr, filesystem },
    output: { formats: ["raw", "qcow2", "vhd"] as ImageSpec["output"]["formats"] },
    // Secure Boot signing adds sbsign (under faketime), sbverify and efitools
    secureboot: { key: "db.key", certificate: "db.crt" },
  }));
}

describe("stage requirements", () => {
  it("name every program the stage code runs", async () => {
    const all = await specs();
    const missing: string[] = [];
    const found = new Set<string>();
    for (const stage of BUILD_STAGES) {
      const declared = new Set(all.flatMap((s) => stage.requires(s).flatMap((r) => ("tool" in r ? [r.tool] : []))));
      // the content sources (rootfs/sources/) run in the packages stage (package sources) or in rootfs (the folders after them)
      const sourcesDeclared = new Set([...declared, ...all.flatMap((s) => BUILD_STAGES.find((x) => x.name === "packages")!.requires(s).flatMap((r) => ("tool" in r ? [r.tool] : [])))]);
      for (const f of await tsFiles(join(STAGES, stage.name))) {
        const text = await readFile(f, "utf8");
        const ok = relative(STAGES, f).startsWith("rootfs/sources/") ? sourcesDeclared : declared;
        for (const m of text.matchAll(/\b(?:run|runBytes|tool)\(\s*\[\s*"([^"]+)"/g)) {
          found.add(m[1]!);
          if (!ok.has(m[1]!)) missing.push(`${stage.name}: ${relative(STAGES, f)} runs ${m[1]} without declaring it`);
        }
      }
    }
    expect(missing).toEqual([]);
    // the scan sees the calls it checks
    expect([...found].sort()).toEqual(expect.arrayContaining(["apt-cache", "apt-get", "depmod", "dpkg-deb", "ldd", "mkfs.erofs", "mksquashfs", "mkfs.vfat", "objcopy", "qemu-img", "zstd"]));
  });

  it("include the ones the old hand-kept list missed (veritysetup, blkid, busybox, apt-cache, ldd)", async () => {
    const [spec] = await specs();
    const reqs = stageRequirements(BUILD_STAGES, spec!);
    const names = reqs.map((r) => ("tool" in r ? r.tool : r.file));
    for (const n of ["/usr/sbin/veritysetup", "/usr/sbin/blkid", "/bin/busybox", "apt-cache", "ldd", "mmdebstrap", "mkfs.erofs", "objcopy", "qemu-img"]) {
      expect(names, n).toContain(n);
    }
    // every requirement names its Debian package
    expect(reqs.filter((r) => !/^[a-z0-9][a-z0-9+.-]+$/.test(r.package))).toEqual([]);
  });
});
