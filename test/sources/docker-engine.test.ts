/**
 * The docker source against a real engine (dockerd on a private socket, see
 * test/helpers/dockerd.ts). Images are made without a registry: `docker import`
 * of a tarball built here, and `docker load` of a multi-layer docker-save
 * archive built here (so the engine's own overlay2 whiteout handling is the
 * oracle for ours).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connectDocker,
  exportImage,
  importImage,
  inspectImage,
  loadImage,
  removeImage,
  saveImage,
  type DockerEngine,
} from "../../src/adapters/docker.js";
import { UserError } from "../../src/errors.js";
import { applyDockerArchive } from "../../src/stages/sources/docker.js";
import { dockerSaveClassic, makeTar, type TEntry } from "../fixtures/oci/build.js";
import { testDockerHost } from "../helpers/dockerd.js";
import { comparable, snapshot } from "./tree.js";
import { applyLayerTar } from "../../src/stages/sources/tar-apply.js";
import { Readable } from "node:stream";

/** What `docker create` adds to every container; not part of the image. */
const INIT_LAYER = new Set([
  "dev",
  "dev/console",
  "dev/pts",
  "dev/shm",
  "etc/hostname",
  "etc/hosts",
  "etc/mtab",
  "etc/resolv.conf",
  "proc",
  "sys",
]);
const notInit = (p: string) => INIT_LAYER.has(p);

let host: string;
let release: () => Promise<void>;
let engine: DockerEngine;
let base: string;
const TAG = `acl-test/base:${process.pid}`;
const LAYERED = `acl-test/layered:${process.pid}`;

function baseTree(): TEntry[] {
  const busybox = fs.readFileSync("/bin/busybox");
  return [
    { name: "bin/", type: "directory" },
    { name: "bin/busybox", data: busybox, mode: 0o755 },
    { name: "bin/sh", type: "symlink", linkname: "busybox" },
    { name: "bin/ls", type: "symlink", linkname: "/bin/busybox" },
    { name: "etc/", type: "directory" },
    { name: "etc/os-release", data: 'ID=acltest\nNAME="acl test"\n' },
    { name: "etc/shadow", data: "root:*:1::::::\n", mode: 0o640, gid: 42 },
    { name: "usr/bin/", type: "directory" },
    { name: "usr/bin/suid", data: "suid", mode: 0o4755 },
    { name: "usr/bin/sgid", data: "sgid", mode: 0o2711, gid: 5 },
    // Real layers give a hard link its target's metadata (Docker's applier chmods through it).
    { name: "usr/bin/suid-hard", type: "link", linkname: "usr/bin/suid", mode: 0o4755 },
    { name: "home/user/", type: "directory", mode: 0o700, uid: 1000, gid: 1000 },
    { name: "home/user/.profile", data: "export A=1\n", mode: 0o600, uid: 1000, gid: 1000 },
    { name: "tmp/", type: "directory", mode: 0o1777 },
    { name: "var/empty/", type: "directory", mode: 0o555 },
  ];
}

beforeAll(async () => {
  ({ host, release } = await testDockerHost());
  engine = await connectDocker(host);
  base = fs.mkdtempSync(path.join(os.tmpdir(), "acl-docker-engine-"));
  const tarFile = path.join(base, "base.tar");
  fs.writeFileSync(tarFile, await makeTar(baseTree()));
  await importImage(tarFile, TAG, { engine });
});

afterAll(async () => {
  if (engine) {
    await removeImage(TAG, { engine });
    await removeImage(LAYERED, { engine });
  }
  if (base) fs.rmSync(base, { recursive: true, force: true });
  await release?.();
});

function freshDir(name: string): string {
  const d = path.join(base, name);
  fs.rmSync(d, { recursive: true, force: true });
  fs.mkdirSync(d);
  return d;
}

describe("docker source (real engine)", () => {
  it("exports an imported image with files, modes, owners, symlinks and hard links intact", async () => {
    const ref = freshDir("ref");
    await applyLayerTar(Readable.from([await makeTar(baseTree())]), ref);
    const out = freshDir("export");
    const res = await exportImage(TAG, out, { engine });
    const info = await inspectImage(TAG, { engine });
    expect(res.ref).toBe(TAG);
    expect(res.imageId).toBe(info.id);
    expect(res.digest).toMatch(/^sha256:[0-9a-f]{64}$|@sha256:/);
    expect(fs.existsSync(path.join(out, ".dockerenv"))).toBe(false);
    expect(res.stats.skipped).toBe(1);
    const got = comparable(snapshot(out), notInit);
    const want = comparable(snapshot(ref));
    // The engine gives the root directory its own mode; compare everything below it.
    delete got["."];
    delete want["."];
    expect(got).toEqual(want);
    const snap = snapshot(out);
    expect(snap.get("usr/bin/suid-hard")!.ino).toBe(snap.get("usr/bin/suid")!.ino);
    expect(snap.get("bin/ls")).toMatchObject({ type: "symlink", target: "/bin/busybox" });
    expect(snap.get("usr/bin/suid")!.mode).toBe(0o4755);
    // The container used for the export is gone.
    const left = await engine.docker.listContainers({ all: true, filters: { label: ["org.acl.purpose=export"] } });
    expect(left).toEqual([]);
  });

  it("real `docker save` of a multi-layer image applied by us equals the engine's container export", async () => {
    const l1 = await makeTar(baseTree());
    const l2 = await makeTar([
      { name: "etc/.wh.shadow", data: "" },
      { name: "usr/bin/.wh.sgid", data: "" },
      { name: "home/user/", type: "directory", mode: 0o700, uid: 1000, gid: 1000 },
      { name: "home/user/new", data: "n", uid: 1000, gid: 1000 },
      { name: "home/user/.wh..wh..opq", data: "" },
      // Real layers carry the parent directory of every change (Docker's overlay2 would otherwise
      // give an implicitly created parent 0755 root:root, where applying onto the tree keeps the lower one).
      { name: "var/empty/", type: "directory", mode: 0o555 },
      { name: "var/empty/.wh..wh..opq", data: "" },
      { name: "opt/app/", type: "directory" },
      { name: "opt/app/run", data: "#!/bin/sh\n", mode: 0o755 },
    ]);
    const l3 = await makeTar([
      { name: "opt/app/.wh..wh..opq", data: "" },
      { name: "opt/app/config", data: "c", mode: 0o600 },
      { name: "bin/sh", type: "symlink", linkname: "/bin/busybox" },
    ]);
    const { archive } = await dockerSaveClassic([l1, l2, l3], LAYERED);
    const loadFile = path.join(base, "layered-in.tar");
    fs.writeFileSync(loadFile, archive);
    await loadImage(loadFile, { engine });

    const saved = path.join(base, "layered-saved.tar");
    await saveImage(LAYERED, saved, { engine });
    const ours = freshDir("ours");
    const res = await applyDockerArchive(saved, ours, { ref: LAYERED });
    expect(res.layers).toBe(3);
    expect(res.digest).toBe((await inspectImage(LAYERED, { engine })).id);
    expect(res.layerStats.reduce((n, s) => n + s.whiteouts, 0)).toBe(2);
    expect(res.layerStats.reduce((n, s) => n + s.opaqueDirs, 0)).toBe(3);

    const theirs = freshDir("theirs");
    await exportImage(LAYERED, theirs, { engine });
    const a = comparable(snapshot(ours));
    const b = comparable(snapshot(theirs), notInit);
    delete a["."];
    delete b["."];
    expect(a).toEqual(b);
    expect(fs.existsSync(path.join(ours, "etc/shadow"))).toBe(false);
    expect(fs.readdirSync(path.join(ours, "home/user"))).toEqual(["new"]);
    expect(fs.readdirSync(path.join(ours, "opt/app"))).toEqual(["config"]);
  });

  it("names the image and suggests pull/load when it is not in the engine", async () => {
    const err = await exportImage("acl-test/absent:none", freshDir("absent"), { engine, key: "sources[0].image", specFile: "images/x.toml" }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toBe(`sources[0].image: Docker image 'acl-test/absent:none' is not in the engine at ${host}`);
    expect((err as UserError).file).toBe("images/x.toml");
    expect((err as UserError).hint).toMatch(/docker pull acl-test\/absent:none.*docker load/);
  });

  it("names the socket and says how to start the engine when it is unreachable", async () => {
    const sock = path.join(base, "no-such-docker.sock");
    const err = await connectDocker(`unix://${sock}`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).message).toMatch(new RegExp(`cannot reach the Docker engine at unix://${sock} \\(ENOENT\\)`));
    expect((err as UserError).hint).toMatch(/dockerd|DOCKER_HOST/);
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = `unix://${sock}`;
    try {
      await expect(exportImage(TAG, freshDir("unreachable"))).rejects.toThrow(/cannot reach the Docker engine at unix:\/\/.*no-such-docker\.sock/);
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
  });
});
