/**
 * Integration: one build whose content comes from a container image in a
 * real Docker engine (dockerd on a private socket), an OCI archive with a
 * whiteout, and an overlay folder; checked inside the /usr image with
 * fsck.erofs --extract.
 */
import { execa } from "execa";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, readdir, writeFile } from "node:fs/promises";
import { createWriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import * as tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importImage } from "../../src/adapters/docker.js";
import { parseManifest, type Manifest } from "../../src/pipeline/manifest.js";
import { testDockerHost } from "../helpers/dockerd.js";
import { acl } from "../helpers/cli.js";

type Entry = { name: string; type?: "file" | "directory" | "symlink"; data?: Buffer | string; mode?: number; linkname?: string };

async function writeTar(file: string, entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const out = createWriteStream(file);
  const done = pipeline(pack, out);
  for (const e of entries) {
    const header = { name: e.name, type: e.type ?? "file", mode: e.mode ?? (e.type === "directory" ? 0o755 : 0o644), mtime: new Date(1700000000000), linkname: e.linkname, uid: 0, gid: 0 };
    if ((e.type ?? "file") === "file") pack.entry(header, Buffer.from(e.data ?? ""));
    else pack.entry(header);
  }
  pack.finalize();
  await done;
  return readFile(file);
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

let dir: string;
let out: string;
let manifest: Manifest;
let extracted: string;
let release: () => Promise<void>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "acl-sources-"));
  const engine = await testDockerHost();
  release = engine.release;
  // a container image: busybox as /usr/bin, a file in /etc, and a dpkg binary that sanitize must remove
  const busybox = await readFile("/bin/busybox");
  await writeTar(join(dir, "rootfs.tar"), [
    { name: "usr/", type: "directory" },
    { name: "usr/bin/", type: "directory" },
    { name: "usr/bin/busybox", data: busybox, mode: 0o755 },
    { name: "usr/bin/sh", type: "symlink", linkname: "busybox" },
    { name: "usr/bin/dpkg", data: "#!/bin/sh\n", mode: 0o755 },
    { name: "etc/", type: "directory" },
    { name: "etc/from-docker", data: "docker\n" },
  ]);
  await importImage(join(dir, "rootfs.tar"), "acl-test/base:1", { hostOrSocket: engine.host });

  // an OCI image layout with two layers; the second deletes a file of the first
  const l1 = await writeTar(join(dir, "l1.tar"), [
    { name: "usr/share/oci/", type: "directory" },
    { name: "usr/share/oci/kept", data: "kept\n" },
    { name: "usr/share/oci/deleted", data: "deleted\n" },
  ]);
  const l2 = await writeTar(join(dir, "l2.tar"), [
    { name: "usr/share/oci/.wh.deleted", data: "" },
    { name: "usr/share/oci/added", data: "added\n" },
  ]);
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [`sha256:${sha(l1)}`, `sha256:${sha(l2)}`] }, config: {} }));
  const manifestJson = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: `sha256:${sha(config)}`, size: config.length },
      layers: [l1, l2].map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: `sha256:${sha(l)}`, size: l.length })),
    }),
  );
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: `sha256:${sha(manifestJson)}`, size: manifestJson.length, platform: { architecture: "amd64", os: "linux" } }] }));
  await writeTar(join(dir, "image.oci.tar"), [
    { name: "oci-layout", data: '{"imageLayoutVersion":"1.0.0"}' },
    { name: "index.json", data: index },
    { name: "blobs/", type: "directory" },
    { name: "blobs/sha256/", type: "directory" },
    ...[config, manifestJson, l1, l2].map((b) => ({ name: `blobs/sha256/${sha(b)}`, data: b })),
  ]);

  await mkdir(join(dir, "overlay/etc"), { recursive: true });
  await writeFile(join(dir, "overlay/etc/from-overlay"), "overlay\n");
  await writeFile(
    join(dir, "mixed.toml"),
    `name = "mixed"\nversion = "0.1"\nmicroarch = "x86-64"\ninit = "busybox"\n` +
      `[[sources]]\ntype = "docker"\nimage = "acl-test/base:1"\n` +
      `[[sources]]\ntype = "oci-archive"\npath = "image.oci.tar"\n` +
      `[[sources]]\ntype = "dir"\npath = "overlay"\n` +
      `[partitions]\nesp = "64MiB"\nusr = "128MiB"\noem = "8MiB"\nroot = "16MiB"\n[output]\nformats = ["raw"]\n`,
  );
  out = join(dir, "out");
  const r = await acl(["build", join(dir, "mixed.toml"), "--out", out], { env: { DOCKER_HOST: engine.host, SOURCE_DATE_EPOCH: "1700000000" } });
  expect(r.exitCode, r.stderr.slice(-3000)).toBe(0);
  manifest = parseManifest(JSON.parse(await readFile(join(out, "manifest.json"), "utf8")));
  extracted = join(dir, "usr");
  await execa("fsck.erofs", [`--extract=${extracted}`, join(out, "usr.img")]);
}, 20 * 60_000);

afterAll(async () => {
  await release?.();
});

describe("acl build with docker, oci-archive and dir sources", () => {
  it("records the container image and the archive as inputs", () => {
    expect(manifest.inputs.images.map((i) => i.ref)).toEqual(expect.arrayContaining(["acl-test/base:1", "image.oci.tar"]));
    expect(manifest.inputs.images.find((i) => i.ref === "acl-test/base:1")!.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(manifest.inputs.archives[0]).toMatchObject({ path: "image.oci.tar" });
  });

  it("applies the sources in order, with the OCI whiteout, into /usr and the factory", async () => {
    expect(await readFile(join(extracted, "share/oci/kept"), "utf8")).toBe("kept\n");
    expect(await readFile(join(extracted, "share/oci/added"), "utf8")).toBe("added\n");
    expect(await readdir(join(extracted, "share/oci"))).not.toContain("deleted");
    expect(await readFile(join(extracted, "share/factory/etc/from-docker"), "utf8")).toBe("docker\n");
    expect(await readFile(join(extracted, "share/factory/etc/from-overlay"), "utf8")).toBe("overlay\n");
    expect(await readdir(join(extracted, "bin"))).toContain("busybox");
  });

  it("removes the package manager the container image carried", async () => {
    expect(await readdir(join(extracted, "bin"))).not.toContain("dpkg");
  });

  it("lists the container image in the SBOM", async () => {
    const sbom = JSON.parse(await readFile(join(out, "sbom.spdx.json"), "utf8")) as { packages: { name: string; primaryPackagePurpose?: string }[] };
    expect(sbom.packages.find((p) => p.name === "acl-test/base:1")?.primaryPackagePurpose).toBe("CONTAINER");
  });

  it("reports a missing image in the engine by name, with the spec key", async () => {
    const spec = join(dir, "missing.toml");
    await writeFile(spec, `name = "m"\nversion = "1"\n[[sources]]\ntype = "docker"\nimage = "acl-test/absent:9"\n`);
    const engine = await testDockerHost();
    const r = await acl(["build", spec, "--out", join(dir, "out-missing")], { env: { DOCKER_HOST: engine.host } });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/acl-test\/absent:9/);
    expect(r.stderr).toMatch(/sources\[0\]\.image/);
    await expect(readdir(join(dir, "out-missing"))).rejects.toThrow();
  });
});
