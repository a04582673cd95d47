/**
 * Integration: `acl build images/minimal.toml` with the real tools
 * (mmdebstrap, mkfs.erofs, veritysetup as the oracle, sgdisk, qemu-img),
 * twice from scratch for reproducibility, then warm from the stage cache.
 */
import { execa } from "execa";
import { createHash } from "node:crypto";
import { copyFile, mkdtemp, open, readFile, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseManifest, type Manifest } from "../../src/pipeline/manifest.js";
import { decodeUpdateHeader } from "../../src/formats/update-payload.js";
import { acl } from "../helpers/cli.js";

const SDE = "1700000000";
let tmp: string;
let outA: string;
let outB: string;
let mA: Manifest;
let stderrA = "";

async function sha(p: string): Promise<string> {
  return createHash("sha256").update(await readFile(p)).digest("hex");
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), "acl-build-"));
  outA = join(tmp, "a");
  outB = join(tmp, "b");
  const cacheA = join(tmp, "cache-a");
  const cacheB = join(tmp, "cache-b");
  const a = await acl(["build", "images/minimal.toml", "--out", outA, "--json"], { env: { SOURCE_DATE_EPOCH: SDE, ACL_CACHE_DIR: cacheA } });
  stderrA = a.stderr;
  expect(a.exitCode, a.stderr.slice(-3000)).toBe(0);
  const b = await acl(["build", "images/minimal.toml", "--out", outB], { env: { SOURCE_DATE_EPOCH: SDE, ACL_CACHE_DIR: cacheB } });
  expect(b.exitCode, b.stderr.slice(-3000)).toBe(0);
  mA = parseManifest(JSON.parse(await readFile(join(outA, "manifest.json"), "utf8")));
}, 30 * 60_000);

describe("acl build images/minimal.toml", () => {
  it("writes a schema-valid manifest whose artifacts match the files", async () => {
    expect(mA.name).toBe("minimal");
    expect(mA.microarch).toBe("x86-64-v3");
    expect(mA.verity.algorithm).toBe("sha256");
    const kinds = mA.artifacts.map((a) => a.kind);
    for (const k of ["usr-image", "update-payload", "disk-raw", "disk-qcow2", "disk-vhd", "sbom", "kernel", "initramfs"]) expect(kinds).toContain(k);
    for (const a of mA.artifacts) {
      expect((await stat(join(outA, a.path))).size).toBe(a.size);
      expect(await sha(join(outA, a.path))).toBe(a.sha256);
    }
    expect(mA.inputs.packages.map((p) => p.name)).toEqual(expect.arrayContaining(["busybox-static", "libc6"]));
    expect(mA.setuid).toEqual([]);
  });

  it("prints each stage with its time on stderr (JSON events with --json)", () => {
    const events = stderrA.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { event: string; stage?: string; ms?: number });
    const ended = events.filter((e) => e.event === "stage-end").map((e) => e.stage);
    expect(ended).toEqual(expect.arrayContaining(["load spec", "rootfs", "initramfs", "usr", "boot", "disk", "release", "publish"]));
    expect(events.filter((e) => e.event === "stage-end").every((e) => typeof e.ms === "number")).toBe(true);
  });

  it("produces a /usr image that veritysetup verifies with the manifest's root hash, and rejects a flipped byte", async () => {
    const usr = join(outA, "usr.img");
    const v = mA.verity;
    const ok = await execa("veritysetup", ["verify", usr, usr, v.rootHash, `--hash-offset=${v.hashOffset}`, `--data-blocks=${v.dataBlocks}`], { reject: false });
    expect(ok.exitCode, ok.stderr).toBe(0);
    const bad = join(tmp, "usr-flipped.img");
    await copyFile(usr, bad);
    const fh = await open(bad, "r+");
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 8192 + 17);
    b[0] = b[0]! ^ 0xff;
    await fh.write(b, 0, 1, 8192 + 17);
    await fh.close();
    const ko = await execa("veritysetup", ["verify", bad, bad, v.rootHash, `--hash-offset=${v.hashOffset}`, `--data-blocks=${v.dataBlocks}`], { reject: false });
    expect(ko.exitCode).not.toBe(0);
  });

  it("leaves no package manager in /usr and keeps /etc in the factory (checked by fsck.erofs --extract)", async () => {
    const ex = join(tmp, "extract");
    const r = await execa("fsck.erofs", [`--extract=${ex}`, join(outA, "usr.img")], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const all = (await execa("find", [ex, "-printf", "%P\\n"])).stdout.split("\n");
    for (const pm of ["bin/dpkg", "bin/apt", "bin/apt-get", "lib/dpkg", "lib/apt"]) expect(all).not.toContain(pm);
    expect(all).toContain("bin/busybox");
    expect(all).toContain("share/factory/etc/hostname");
    expect(await readFile(join(ex, "share/factory/etc/hostname"), "utf8")).toBe("acl-minimal\n");
    expect(await readFile(join(ex, "lib/os-release"), "utf8")).toContain("IMAGE_ID=minimal\n");
    expect(all.some((p) => /^lib\/modules\/[^/]+\/modules\.dep$/.test(p))).toBe(true);
  });

  it("is reproducible: two cold builds give byte-identical /usr, disks, payload and manifest", async () => {
    const a = (await readdir(outA)).sort();
    const b = (await readdir(outB)).sort();
    expect(b).toEqual(a);
    for (const f of a) expect(await sha(join(outB, f)), f).toBe(await sha(join(outA, f)));
  });

  it("records an SPDX 2.3 SBOM of the packages with file checksums", async () => {
    const sbom = JSON.parse(await readFile(join(outA, "sbom.spdx.json"), "utf8")) as {
      spdxVersion: string;
      packages: { name: string; versionInfo: string; licenseDeclared: string; hasFiles?: string[] }[];
      files: { fileName: string; checksums: { algorithm: string }[] }[];
    };
    expect(sbom.spdxVersion).toBe("SPDX-2.3");
    const bb = sbom.packages.find((p) => p.name === "busybox-static")!;
    expect(bb.versionInfo).toBe(mA.inputs.packages.find((p) => p.name === "busybox-static")!.version);
    expect(bb.hasFiles!.length).toBeGreaterThan(0);
    expect(sbom.files.some((f) => f.fileName === "./usr/bin/busybox" && f.checksums.some((c) => c.algorithm === "SHA256"))).toBe(true);
  });

  it("writes an update payload: both slots' UKIs and the /usr image, unsigned when the build is", async () => {
    const p = mA.artifacts.find((a) => a.kind === "update-payload")!;
    const bytes = await readFile(join(outA, p.path));
    const { meta } = decodeUpdateHeader(bytes);
    expect(meta.verity.rootHash).toBe(mA.verity.rootHash);
    expect(meta.microarch).toBe("x86-64-v3");
    expect(meta.sections.map((s) => s.name)).toEqual(["uki-A", "uki-B", "usr"]);
    const usr = meta.sections.find((s) => s.name === "usr")!;
    expect(usr.sha256).toBe(mA.artifacts.find((a) => a.kind === "usr-image")!.sha256);
    expect(createHash("sha256").update(bytes.subarray(usr.offset, usr.offset + usr.size)).digest("hex")).toBe(usr.sha256);
    // this build has no signing key: the file ends where the signature block would start
    expect(bytes.length).toBe(meta.signatureOffset);
  });

  it("reuses the rootfs and /usr stages on a warm rebuild", async () => {
    const c = await acl(["build", "images/minimal.toml", "--out", join(tmp, "c"), "--json"], { env: { SOURCE_DATE_EPOCH: SDE, ACL_CACHE_DIR: join(tmp, "cache-a") } });
    expect(c.exitCode, c.stderr.slice(-2000)).toBe(0);
    const ends = c.stderr.split("\n").filter((l) => l.includes('"stage-end"')).map((l) => JSON.parse(l) as { stage: string; cached: boolean });
    expect(ends.find((e) => e.stage === "rootfs")?.cached).toBe(true);
    expect(ends.find((e) => e.stage === "usr")?.cached).toBe(true);
    expect(await sha(join(tmp, "c", "manifest.json"))).toBe(await sha(join(outA, "manifest.json")));
    await rm(join(tmp, "c"), { recursive: true, force: true });
  }, 15 * 60_000);

  it("does nothing on a rebuild with nothing changed (every stage cached, the files untouched), and rebuilds when an output file or an input changed", async () => {
    const env = { SOURCE_DATE_EPOCH: SDE, ACL_CACHE_DIR: join(tmp, "cache-a") };
    const build = async (e = env) => {
      const r = await acl(["build", "images/minimal.toml", "--out", outA, "--json"], { env: e });
      expect(r.exitCode, r.stderr.slice(-2000)).toBe(0);
      return JSON.parse(r.stdout) as { stages: { stage: string; cached: boolean }[]; upToDate: boolean };
    };
    const inodes = async () => Object.fromEntries(await Promise.all((await readdir(outA)).sort().map(async (f) => [f, (await stat(join(outA, f))).ino] as const)));
    const before = await inodes();
    // the first build into outA wrote its stamp; nothing changed since
    const noop = await build();
    expect(noop.stages.filter((x) => x.stage !== "load spec" && x.stage !== "up to date?").every((x) => x.cached), JSON.stringify(noop.stages)).toBe(true);
    expect(noop.stages.map((x) => x.stage)).toEqual(["load spec", "up to date?", "packages", "rootfs", "initramfs", "usr", "boot", "disk", "release", "publish"]);
    expect(noop.upToDate).toBe(true);
    expect(await inodes()).toEqual(before);
    const text = await acl(["build", "images/minimal.toml", "--out", outA], { env });
    expect(text.stdout).toContain(`minimal 1.0.0 (x86-64-v3) is up to date in ${outA}: nothing to do`);
    expect(text.stderr).toMatch(/up to date\?: [0-9.]+ s \(yes\)/);
    // a file of the output rewritten: a real build, which gives the same bytes again
    const initrd = join(outA, "initramfs.img");
    await copyFile(initrd, join(tmp, "initrd.copy"));
    await copyFile(join(tmp, "initrd.copy"), initrd);
    const again = await build();
    expect(again.stages.find((x) => x.stage === "release")?.cached).toBe(false);
    expect(again.upToDate).toBe(false);
    expect(again.stages.find((x) => x.stage === "rootfs")?.cached).toBe(true);
    expect(parseManifest(JSON.parse(await readFile(join(outA, "manifest.json"), "utf8")))).toEqual(mA);
    // an input changed (the epoch): a real build
    const other = await build({ ...env, SOURCE_DATE_EPOCH: String(Number(SDE) + 1) });
    expect(other.stages.find((x) => x.stage === "release")?.cached).toBe(false);
    await build();
  }, 20 * 60_000);
});
