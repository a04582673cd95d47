/**
 * Layered caching: the package installation is its own cache entry (the
 * packages stage), and what replays on top of it (overlay folders, files,
 * users, units, the kernel, sanitize) is the rootfs stage. An edited overlay
 * file reuses the packages entry, rebuilds from rootfs on, and gives exactly
 * the bytes a cold build of the edited spec gives. Each kind of spec change
 * (a partition size, the kernel command line, a file, the package list)
 * reuses exactly the stages before the first one it touches.
 */
import { execa } from "execa";
import { appendFile, cp, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseManifest, type Manifest } from "../../src/pipeline/manifest.js";
import { specCopy } from "../helpers/images.js";
import { acl, REPO } from "../helpers/cli.js";

const SDE = "1700000000";
let tmp: string;
let spec: string;
let cache: string;

async function build(out: string, extra: string[] = [], repo?: string): Promise<{ stages: { stage: string; cached: boolean }[]; manifest: Manifest }> {
  const r = await acl(["build", spec, "--out", out, "--json", ...extra], { env: { SOURCE_DATE_EPOCH: SDE, ACL_CACHE_DIR: cache }, repo });
  expect(r.exitCode, r.stderr.slice(-3000)).toBe(0);
  const res = JSON.parse(r.stdout) as { stages: { stage: string; cached: boolean }[] };
  return { stages: res.stages, manifest: parseManifest(JSON.parse(await readFile(join(out, "manifest.json"), "utf8"))) };
}

const cached = (stages: { stage: string; cached: boolean }[]) => Object.fromEntries(stages.filter((s) => !["load spec", "up to date?"].includes(s.stage)).map((s) => [s.stage, s.cached]));

beforeAll(async () => {
  ({ tmp, spec } = await specCopy("acl-incremental-"));
  cache = join(tmp, "cache");
}, 60_000);

describe("rebuilds after a change", () => {
  it("reuses the packages entry, rebuilds the rest, and equals a cold build of the edited spec", async () => {
    const first = await build(join(tmp, "out"));
    expect(cached(first.stages)).toMatchObject({ packages: false, rootfs: false });
    const overlay = join(tmp, "images/minimal/overlay/etc/motd");
    await writeFile(overlay, `${await readFile(overlay, "utf8").catch(() => "")}edited by the incremental test\n`);
    const edit = await build(join(tmp, "out"));
    // the initramfs holds none of the tree's overlay files: its archive is the same, and so is its entry
    expect(cached(edit.stages)).toEqual({ packages: true, rootfs: false, initramfs: true, usr: false, boot: false, disk: false, release: false, publish: false });
    expect(edit.manifest.verity.rootHash).not.toBe(first.manifest.verity.rootHash);
    // the same spec from nothing (every stage run again; downloaded packages reused)
    const cold = await build(join(tmp, "cold"), ["--no-cache"]);
    expect(cached(cold.stages)).toMatchObject({ packages: false, rootfs: false });
    expect(cold.manifest.artifacts).toEqual(edit.manifest.artifacts);
    expect(cold.manifest.verity).toEqual(edit.manifest.verity);
  }, 30 * 60_000);

  it("reuses exactly the stages each kind of spec change leaves alone", async () => {
    const out = join(tmp, "kinds");
    const base = await readFile(spec, "utf8");
    const variant = async (text: string) => {
      await writeFile(spec, text);
      return cached((await build(out)).stages);
    };
    await variant(base);
    // the initramfs archive (host binaries, the kernel's modules, /init) is the same after each of these
    const later = { initramfs: true, usr: false, boot: false, disk: false, release: false, publish: false };
    // a partition size: only the disk and what follows it
    expect(await variant(base.replace('esp = "64MiB"', 'esp = "72MiB"'))).toEqual({ packages: true, rootfs: true, initramfs: true, usr: true, boot: false, disk: false, release: false, publish: false });
    // the kernel command line: the boot stage on
    expect(await variant(base.replace("[kernel]", '[kernel]\ncmdline = ["quiet"]'))).toEqual({ packages: true, rootfs: true, initramfs: true, usr: true, boot: false, disk: false, release: false, publish: false });
    // a [[files]] entry: the tree on top of the packages
    expect(await variant(base.replace('content = "acl-minimal\\n"', 'content = "acl-minimal-2\\n"'))).toEqual({ packages: true, rootfs: false, ...later });
    // the package list: everything
    expect(await variant(base.replace('packages = ["busybox-static", "libc6"]', 'packages = ["busybox-static", "libc6", "zlib1g"]'))).toEqual({ packages: false, rootfs: false, ...later });
    // back to the first spec: every stage from the cache, then nothing to do
    expect(await variant(base)).toMatchObject({ packages: true, rootfs: true, usr: true });
    expect(await variant(base)).toEqual({ packages: true, rootfs: true, initramfs: true, usr: true, boot: true, disk: true, release: true, publish: true });
  }, 30 * 60_000);

  it("rebuilds every stage when acl's own code changed, with the same bytes", async () => {
    const out = join(tmp, "code");
    const before = await build(out);
    // a copy of the CLI whose code differs by a comment: every stage id changes, the output must not
    const copy = join(tmp, "acl-copy");
    await mkdir(copy);
    for (const d of ["bin", "dist", "data", "package.json"]) await cp(join(REPO, d), join(copy, d), { recursive: true });
    await symlink(join(REPO, "node_modules"), join(copy, "node_modules"));
    await appendFile(join(copy, "dist/stages/usr/mkfs.js"), "\n// a change to acl's own code\n");
    const after = await build(out, [], copy);
    expect(cached(after.stages)).toEqual({ packages: false, rootfs: false, initramfs: false, usr: false, boot: false, disk: false, release: false, publish: false });
    expect(after.manifest.artifacts).toEqual(before.manifest.artifacts);
  }, 30 * 60_000);

  it("rebuilds from the rootfs stage on for another kernel, with a cold build's bytes", async () => {
    const other = await otherCloudKernel();
    // Debian 12 with its security archive lists two versions of the metapackage (point release and security)
    expect(other, "apt lists a single linux-image-cloud-amd64 version: add bookworm-security to apt's sources").toBeDefined();
    const base = await readFile(spec, "utf8");
    const out = join(tmp, "kernel");
    await build(out);
    await writeFile(spec, base.replace('package = "linux-image-cloud-amd64"', `package = "${other!}"`));
    try {
      const edit = await build(out);
      expect(cached(edit.stages)).toEqual({ packages: true, rootfs: false, initramfs: false, usr: false, boot: false, disk: false, release: false, publish: false });
      expect(edit.manifest.kernel?.package).toBe(other);
      const cold = await build(join(tmp, "kernel-cold"), ["--no-cache"]);
      expect(cold.manifest.artifacts).toEqual(edit.manifest.artifacts);
    } finally {
      await writeFile(spec, base);
    }
  }, 30 * 60_000);
});

/** A cloud kernel package other than the one linux-image-cloud-amd64 installs now (the metapackage's other version in apt's lists). */
async function otherCloudKernel(): Promise<string | undefined> {
  const policy = (await execa("apt-cache", ["policy", "linux-image-cloud-amd64"])).stdout;
  const candidate = /Candidate:\s*(\S+)/.exec(policy)?.[1];
  const versions = (await execa("apt-cache", ["madison", "linux-image-cloud-amd64"])).stdout.split("\n").map((l) => l.split("|")[1]?.trim()).filter(Boolean);
  const version = versions.find((v) => v !== candidate);
  if (!version) return undefined;
  const show = (await execa("apt-cache", ["show", `linux-image-cloud-amd64=${version}`])).stdout;
  return /^Depends:.*?(linux-image-\d[^\s,]*-cloud-amd64)/m.exec(show)?.[1];
}
