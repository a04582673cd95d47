import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { UserError } from "../../src/errors.js";
import { applyDockerArchive } from "../../src/stages/rootfs/sources/docker-archive.js";
import { applyOciArchive } from "../../src/stages/rootfs/sources/oci-archive.js";
import {
  dockerSaveClassic,
  dockerSaveOci,
  makeTar,
  ociArchive,
  ociImage,
  ociMultiArchArchive,
  sha256,
  type TEntry,
} from "../fixtures/oci/build.js";
import { snapshot, xattrs } from "./tree.js";

let base: string;
let root: string;
beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "acl-archives-"));
  root = path.join(base, "root");
  fs.mkdirSync(root);
});
afterEach(() => fs.rmSync(base, { recursive: true, force: true }));

function write(name: string, data: Buffer): string {
  const p = path.join(base, name);
  fs.writeFileSync(p, data);
  return p;
}

/** Three layers exercising whiteouts, opaque dirs (both orders), links, modes, owners, xattrs. */
async function threeLayers(): Promise<Buffer[]> {
  const l1: TEntry[] = [
    { name: "usr/", type: "directory" },
    { name: "usr/bin/", type: "directory" },
    { name: "usr/bin/app", data: "app v1", mode: 0o755 },
    { name: "usr/bin/passwd", data: "passwd", mode: 0o4755 },
    { name: "usr/lib/old.so", data: "old" },
    { name: "etc/", type: "directory" },
    { name: "etc/config", data: "v1", uid: 101, gid: 102, mode: 0o640 },
    { name: "etc/remove-me", data: "x" },
    { name: "var/cache/", type: "directory" },
    { name: "var/cache/a", data: "a" },
    { name: "var/cache/b/c", data: "c" },
    { name: "opt/", type: "directory" },
    { name: "opt/x", data: "x" },
    { name: "bin", type: "symlink", linkname: "usr/bin" },
  ];
  const l2: TEntry[] = [
    { name: "etc/.wh.remove-me", data: "" },
    { name: "usr/lib/.wh.old.so", data: "" },
    { name: "usr/bin/app", data: "app v2", mode: 0o750, xattrs: { "user.origin": "layer2" } },
    { name: "usr/bin/app-link", type: "link", linkname: "usr/bin/app" },
    { name: "var/cache/.wh..wh..opq", data: "" },
    { name: "var/cache/fresh", data: "fresh" },
    { name: "tmp/", type: "directory", mode: 0o1777 },
  ];
  const l3: TEntry[] = [
    { name: "opt/y", data: "y" },
    { name: "opt/.wh..wh..opq", data: "" },
    { name: "etc/config", data: "v3", uid: 101, gid: 102, mode: 0o600 },
  ];
  return [await makeTar(l1), await makeTar(l2), await makeTar(l3)];
}

function checkThreeLayers() {
  const snap = snapshot(root);
  expect([...snap.keys()].sort()).toEqual([
    ".",
    "bin",
    "etc",
    "etc/config",
    "opt",
    "opt/y",
    "tmp",
    "usr",
    "usr/bin",
    "usr/bin/app",
    "usr/bin/app-link",
    "usr/bin/passwd",
    "usr/lib",
    "var",
    "var/cache",
    "var/cache/fresh",
  ]);
  expect(snap.get("usr/bin/app")).toMatchObject({ mode: 0o750, nlink: 2, sha256: sha256(Buffer.from("app v2")) });
  expect(snap.get("usr/bin/app-link")!.ino).toBe(snap.get("usr/bin/app")!.ino);
  expect(snap.get("usr/bin/passwd")!.mode).toBe(0o4755);
  expect(snap.get("etc/config")).toMatchObject({ mode: 0o600, uid: 101, gid: 102 });
  expect(snap.get("tmp")!.mode).toBe(0o1777);
  expect(snap.get("bin")).toMatchObject({ type: "symlink", target: "usr/bin" });
  expect(xattrs(root)["usr/bin/app"]).toEqual({ "user.origin": Buffer.from("layer2").toString("hex") });
}

describe("oci-archive", () => {
  it("applies a three-layer image (plain, gzip, zstd layers) and reports digests", async () => {
    const layers = await threeLayers();
    const img = ociImage(layers, { compression: ["none", "gzip", "zstd"] });
    const file = write("img.oci.tar", await ociArchive(img, { ref: "v1" }));
    const res = await applyOciArchive(file, root);
    expect(res).toMatchObject({
      digest: img.manifestDigest,
      configDigest: img.configDigest,
      layers: 3,
      archiveSha256: createHash("sha256").update(fs.readFileSync(file)).digest("hex"),
    });
    expect(res.layerStats.map((s) => s.compression)).toEqual(["none", "gzip", "zstd"]);
    expect(res.layerStats.map((s) => s.diffId)).toEqual(img.diffIds);
    checkThreeLayers();
  });

  it("picks linux/amd64 from a multi-arch index", async () => {
    const amd = ociImage([await makeTar([{ name: "arch", data: "amd64" }])]);
    const arm = ociImage([await makeTar([{ name: "arch", data: "arm64" }])], { architecture: "arm64" });
    const file = write(
      "multi.tar",
      await ociMultiArchArchive([
        { img: arm, os: "linux", architecture: "arm64" },
        { img: amd, os: "linux", architecture: "amd64" },
      ]),
    );
    const res = await applyOciArchive(file, root);
    expect(res.digest).toBe(amd.manifestDigest);
    expect(fs.readFileSync(path.join(root, "arch"), "utf8")).toBe("amd64");
  });

  it("names the platforms present when linux/amd64 is missing", async () => {
    const arm = ociImage([await makeTar([{ name: "arch", data: "arm64" }])], { architecture: "arm64" });
    const file = write("arm.tar", await ociMultiArchArchive([{ img: arm, os: "linux", architecture: "arm64" }, { img: arm, os: "linux", architecture: "riscv64" }]));
    const err = await applyOciArchive(file, root).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toMatch(/no linux\/amd64 image/);
    expect((err as UserError).hint).toMatch(/linux\/arm64, linux\/riscv64/);
  });

  it("refuses a layer blob that does not match its digest, before writing anything", async () => {
    const img = ociImage([await makeTar([{ name: "a", data: "good" }]), await makeTar([{ name: "b", data: "b" }])], {
      compression: ["none", "none"],
    });
    const second = img.layerDigests[1].slice(7);
    const blob = img.blobs.get(second)!;
    const tampered = Buffer.from(blob);
    tampered[600] ^= 0xff; // inside the file data of "b"
    img.blobs.set(second, tampered);
    const file = write("bad.tar", await ociArchive(img));
    await expect(applyOciArchive(file, root)).rejects.toThrow(new RegExp(`blobs/sha256/${second} does not match its digest`));
    expect(fs.readdirSync(root)).toEqual([]);
  });

  it("refuses a missing blob and a non-OCI tarball with the file named", async () => {
    const img = ociImage([await makeTar([{ name: "a", data: "a" }])]);
    img.blobs.delete(img.layerDigests[0].slice(7));
    const file = write("missing.tar", await ociArchive(img));
    await expect(applyOciArchive(file, root)).rejects.toThrow(/missing\.tar: layer 1 sha256:[0-9a-f]{64} is missing/);
    const plain = write("plain.tar", await makeTar([{ name: "hello", data: "x" }]));
    await expect(applyOciArchive(plain, root)).rejects.toThrow(/plain\.tar' has no oci-layout file/);
  });

  it("selects an image by ref name and lists the names when the ref is unknown", async () => {
    const img = ociImage([await makeTar([{ name: "a", data: "a" }])]);
    const file = write("named.tar", await ociArchive(img, { ref: "stable" }));
    expect((await applyOciArchive(file, root, { ref: "stable" })).digest).toBe(img.manifestDigest);
    const err = await applyOciArchive(file, root, { ref: "nope" }).catch((e: unknown) => e);
    expect((err as UserError).message).toMatch(/no image named 'nope'/);
    expect((err as UserError).hint).toMatch(/stable/);
  });

  it("asks for a ref when index.json holds several images", async () => {
    const a = ociImage([await makeTar([{ name: "a", data: "a" }])]);
    const b = ociImage([await makeTar([{ name: "b", data: "b" }])]);
    const desc = (img: typeof a, ref: string) => ({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: img.manifestDigest,
      size: img.manifestSize,
      annotations: { "org.opencontainers.image.ref.name": ref },
    });
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [desc(a, "one"), desc(b, "two")] }));
    const blobs = [...a.blobs, ...b.blobs].map(([hex, data]) => ({ name: `blobs/sha256/${hex}`, data }));
    const file = write(
      "two.tar",
      await makeTar([
        { name: "oci-layout", data: JSON.stringify({ imageLayoutVersion: "1.0.0" }) },
        { name: "index.json", data: index },
        ...blobs,
      ]),
    );
    const err = await applyOciArchive(file, root).catch((e: unknown) => e);
    expect((err as UserError).message).toMatch(/two\.tar: the archive holds 2 images; choose one/);
    expect((err as UserError).hint).toBe("set 'sources[].ref' on this source to one of: one, two");
    expect((await applyOciArchive(file, root, { ref: "two" })).digest).toBe(b.manifestDigest);
    expect(fs.readdirSync(root)).toEqual(["b"]);
  });

  it("refuses an escaping layer with the archive, layer and entry named", async () => {
    const img = ociImage([await makeTar([{ name: "../../escape", data: "x" }])]);
    const file = write("evil.tar", await ociArchive(img));
    await expect(applyOciArchive(file, root)).rejects.toThrow(/evil\.tar \(layer 1\/1: sha256:[0-9a-f]+\): entry '..\/..\/escape' escapes the root/);
    expect(fs.readdirSync(base).sort()).toEqual(["evil.tar", "root"]);
  });

  it("refuses a compressed outer archive with a hint", async () => {
    const file = write("img.tar.gz", (await import("node:zlib")).gzipSync(await makeTar([{ name: "x", data: "x" }])));
    await expect(applyOciArchive(file, root)).rejects.toThrow(/is compressed/);
  });
});

describe("docker-archive", () => {
  it("applies the classic docker save shape, with a duplicate layer stored as a symlink", async () => {
    const layers = await threeLayers();
    const dup = await makeTar([{ name: "etc/marker", data: "dup" }]);
    const { archive, imageId } = await dockerSaveClassic([...layers.slice(0, 2), dup, layers[2], dup], "acl/test:1");
    const file = write("classic.tar", archive);
    const res = await applyDockerArchive(file, root);
    expect(res.digest).toBe(imageId);
    expect(res.configDigest).toBe(imageId);
    expect(res.layers).toBe(5);
    expect(fs.readFileSync(path.join(root, "etc/marker"), "utf8")).toBe("dup");
    fs.rmSync(path.join(root, "etc/marker"));
    checkThreeLayers();
  });

  it("applies the Docker 25+ shape (OCI layout with manifest.json), also readable as an OCI archive", async () => {
    const layers = await threeLayers();
    const { archive, img } = await dockerSaveOci(layers, "acl/test:2");
    const file = write("new.tar", archive);
    const res = await applyDockerArchive(file, root, { ref: "acl/test:2" });
    expect(res.digest).toBe(img.configDigest);
    checkThreeLayers();
    fs.rmSync(root, { recursive: true });
    fs.mkdirSync(root);
    const oci = await applyOciArchive(file, root);
    expect(oci.digest).toBe(img.manifestDigest);
    checkThreeLayers();
  });

  it("checks layers against the config's diff_ids", async () => {
    const good = await makeTar([{ name: "a", data: "aaaa" }]);
    const { archive } = await dockerSaveClassic([good], "acl/test:3");
    // Swap the layer content for another of the same size: offsets stay valid.
    const evil = await makeTar([{ name: "a", data: "bbbb" }]);
    const at = archive.indexOf(good);
    expect(at).toBeGreaterThan(0);
    evil.copy(archive, at);
    const file = write("swapped.tar", archive);
    await expect(applyDockerArchive(file, root)).rejects.toThrow(/swapped\.tar \(layer 1\/1: .*\): the uncompressed layer hashes to sha256:[0-9a-f]{64}, the image config says/);
  });

  it("selects an image by RepoTag and names the tags when the ref is unknown", async () => {
    const a = await dockerSaveClassic([await makeTar([{ name: "a", data: "a" }])], "one:1");
    const file = write("one.tar", a.archive);
    const err = await applyDockerArchive(file, root, { ref: "two:2" }).catch((e: unknown) => e);
    expect((err as UserError).message).toMatch(/no image tagged 'two:2'/);
    expect((err as UserError).hint).toMatch(/one:1/);
    const res = await applyDockerArchive(file, root, { ref: "one:1" });
    expect(res.digest).toBe(a.imageId);
  });

  it("refuses a tarball without manifest.json", async () => {
    const file = write("notdocker.tar", await makeTar([{ name: "x", data: "x" }]));
    await expect(applyDockerArchive(file, root)).rejects.toThrow(/has no manifest\.json \(docker save\)/);
  });
});

describe("archives written by the real skopeo", () => {
  for (const format of ["gzip", "zstd"] as const) {
    it(`applies skopeo's oci-archive (${format} layers) converted from a docker save`, async () => {
      const { archive, imageId } = await dockerSaveClassic(await threeLayers(), "acl/skopeo:1");
      const src = write("src.tar", archive);
      const dest = path.join(base, `skopeo-${format}.tar`);
      execFileSync(
        "skopeo",
        ["--insecure-policy", "copy", "--dest-compress", "--dest-compress-format", format, `docker-archive:${src}`, `oci-archive:${dest}:v1`],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      const res = await applyOciArchive(dest, root, { ref: "v1" });
      expect(res.layers).toBe(3);
      expect(res.layerStats.map((s) => s.compression)).toEqual([format, format, format]);
      expect(res.configDigest).toBe(imageId); // skopeo keeps the config blob byte for byte
      checkThreeLayers();
    });
  }

  it("applies skopeo's docker-archive written from an OCI image", async () => {
    const { archive, imageId } = await dockerSaveClassic(await threeLayers(), "acl/skopeo:1");
    const src = write("src.tar", archive);
    const dest = path.join(base, "skopeo-oci.tar");
    execFileSync("skopeo", ["--insecure-policy", "copy", "--dest-compress", `docker-archive:${src}`, `oci-archive:${dest}:v1`], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    const back = path.join(base, "back.tar");
    execFileSync("skopeo", ["--insecure-policy", "copy", `oci-archive:${dest}:v1`, `docker-archive:${back}:acl/back:1`], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    const res = await applyDockerArchive(back, root);
    expect(res.digest).toBe(imageId);
    expect(res.layers).toBe(3);
    checkThreeLayers();
  });
});
