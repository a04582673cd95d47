/**
 * The docker source against a real engine (dockerd on a private socket, see
 * test/helpers/dockerd.ts). Images are made without a registry: `docker import`
 * of a tarball built here, and `docker load` of a multi-layer docker-save
 * archive built here (so the engine's own overlay2 whiteout handling is the
 * oracle for ours).
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connectDocker,
  importImage,
  inspectImage,
  loadImage,
  removeImage,
  saveImage,
  type DockerEngine,
} from "../../src/adapters/docker.js";
import { UserError } from "../../src/errors.js";
import { applyDockerArchive } from "../../src/stages/rootfs/sources/docker-archive.js";
import { exportImage } from "../../src/stages/rootfs/sources/docker.js";
import { applyOciArchive } from "../../src/stages/rootfs/sources/oci-archive.js";
import { applyLayerTar } from "../../src/stages/rootfs/sources/tar-apply.js";
import { dockerSaveClassic, makeTar, type TEntry } from "../fixtures/oci/build.js";
import { testDockerHost } from "../helpers/dockerd.js";
import { comparable, snapshot } from "./tree.js";

/** Mountpoints and the mtab link `docker create` adds; the export method keeps them (empty placeholder files are dropped). */
const INIT_LAYER = new Set(["dev", "dev/pts", "dev/shm", "etc/mtab", "proc", "sys"]);
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
    const want = comparable(snapshot(ref));
    delete want["."]; // the engine gives the root directory its own mode

    // Default method: docker save of the image, layers applied with digests checked.
    const saved = freshDir("saved");
    const res = await exportImage(TAG, saved, { engine });
    const info = await inspectImage(TAG, { engine });
    expect(res.ref).toBe(TAG);
    expect(res.imageId).toBe(info.id);
    expect(res.digest).toBe(info.id); // no RepoDigest without a registry
    const got = comparable(snapshot(saved));
    delete got["."];
    expect(got).toEqual(want);
    expect(fs.readdirSync(base).filter((n) => n.startsWith(".acl-docker-save-"))).toEqual([]);

    // Container export: same tree, plus the mountpoints the engine adds.
    const out = freshDir("export");
    const ex = await exportImage(TAG, out, { engine, method: "export" });
    expect(ex.imageId).toBe(info.id);
    expect(fs.existsSync(path.join(out, ".dockerenv"))).toBe(false);
    // .dockerenv plus the empty etc/hostname, etc/hosts, etc/resolv.conf and dev/console placeholders.
    expect(ex.stats.skipped).toBe(5);
    for (const p of ["etc/hostname", "etc/hosts", "etc/resolv.conf", "dev/console"]) expect(fs.existsSync(path.join(out, p))).toBe(false);
    expect(fs.readlinkSync(path.join(out, "etc/mtab"))).toBe("/proc/mounts");
    const got2 = comparable(snapshot(out), notInit);
    delete got2["."];
    expect(got2).toEqual(want);
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
      { name: "etc/hosts", data: "127.0.0.1 localhost\n" },
      { name: "etc/hostname", data: "" },
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
    await exportImage(LAYERED, theirs, { engine, method: "export" });
    expect(fs.readFileSync(path.join(ours, "etc/hostname"), "utf8")).toBe("");
    expect(fs.readFileSync(path.join(ours, "etc/hosts"), "utf8")).toBe("127.0.0.1 localhost\n");
    // The engine masks these two in every container: export cannot see the image's own.
    const masked = (p: string) => p === "etc/hostname" || p === "etc/hosts";
    const a = comparable(snapshot(ours), masked);
    const b = comparable(snapshot(theirs), (p) => notInit(p) || masked(p));
    delete a["."];
    delete b["."];
    expect(a).toEqual(b);
    expect(fs.existsSync(path.join(ours, "etc/shadow"))).toBe(false);
    expect(fs.readdirSync(path.join(ours, "home/user"))).toEqual(["new"]);
    expect(fs.readdirSync(path.join(ours, "opt/app"))).toEqual(["config"]);
    expect(fs.existsSync(path.join(theirs, "etc/hosts"))).toBe(false);

    // exportImage's default method (save) keeps them.
    const exact = freshDir("exact");
    const viaSave = await exportImage(LAYERED, exact, { engine });
    expect(viaSave.stats.whiteouts).toBe(2);
    expect(comparable(snapshot(exact))).toEqual(comparable(snapshot(ours)));

    // The same image taken out of the engine as an OCI archive by the real skopeo.
    const ociFile = path.join(base, "layered.oci.tar");
    execFileSync("skopeo", ["--insecure-policy", "copy", "--src-daemon-host", host, `docker-daemon:${LAYERED}`, `oci-archive:${ociFile}:v1`], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    const viaOci = freshDir("via-oci");
    const oci = await applyOciArchive(ociFile, viaOci);
    expect(oci.layers).toBe(3);
    expect(comparable(snapshot(viaOci))).toEqual(comparable(snapshot(ours)));
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

  it("honours DOCKER_HOST when no host is given", async () => {
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = host;
    try {
      const e = await connectDocker();
      expect(e.where).toBe(host);
      expect((await inspectImage(TAG)).id).toBe((await inspectImage(TAG, { engine })).id);
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
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
