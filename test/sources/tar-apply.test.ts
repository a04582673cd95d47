import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { UserError } from "../../src/errors.js";
import { applyLayerTar } from "../../src/stages/rootfs/sources/tar-apply.js";
import { compress, DEFAULT_MTIME, makeTar, type TEntry } from "../fixtures/oci/build.js";
import { comparable, snapshot, xattrs } from "./tree.js";

let base: string;
let root: string;
let outside: string;
const SENTINEL = "sentinel: must survive\n";

beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "acl-tar-apply-"));
  root = path.join(base, "root");
  outside = path.join(base, "outside");
  fs.mkdirSync(root);
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, "sentinel"), SENTINEL);
});
afterEach(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

async function apply(entries: TEntry[] | Buffer, label = "test.tar") {
  const buf = Buffer.isBuffer(entries) ? entries : await makeTar(entries);
  return applyLayerTar(Readable.from([buf]), root, { label });
}

function outsideUntouched() {
  expect(fs.readdirSync(outside).sort()).toEqual(["sentinel"]);
  expect(fs.readFileSync(path.join(outside, "sentinel"), "utf8")).toBe(SENTINEL);
  expect(fs.readdirSync(base).sort()).toEqual(["outside", "root"]);
}

const r = (p: string) => path.join(root, p);

describe("applyLayerTar: entry kinds and metadata", () => {
  it("writes files, dirs, symlinks, hard links, FIFOs with modes, owners, mtimes and binary xattrs", async () => {
    const cap = Buffer.from("0100000280200000000000000000000000000000", "hex"); // bytes >= 0x80 survive
    const stats = await apply([
      { name: "./", type: "directory", mode: 0o755 },
      { name: "usr/", type: "directory", mode: 0o755 },
      { name: "usr/bin/", type: "directory", mode: 0o755 },
      { name: "usr/bin/tool", data: "#!/bin/sh\necho hi\n", mode: 0o755, uid: 0, gid: 0 },
      { name: "usr/bin/su", data: "su", mode: 0o4755 },
      { name: "usr/bin/wall", data: "wall", mode: 0o2755, gid: 5 },
      { name: "tmp/", type: "directory", mode: 0o1777 },
      { name: "home/user/", type: "directory", mode: 0o700, uid: 1000, gid: 1000 },
      { name: "home/user/notes", data: "mine", mode: 0o600, uid: 1000, gid: 1000, mtime: 1_600_000_000 },
      { name: "bin", type: "symlink", linkname: "usr/bin" },
      { name: "usr/bin/sh", type: "symlink", linkname: "/bin/busybox", uid: 7, gid: 7 },
      { name: "usr/bin/tool2", type: "link", linkname: "usr/bin/tool" },
      { name: "run/fifo", type: "fifo", mode: 0o620 },
      { name: "usr/bin/ping", data: "ping", mode: 0o755, xattrs: { "user.acl.test": cap, "user.plain": "v1" } },
      { name: "/etc/absolute", data: "leading slash stripped", mode: 0o640 },
    ]);
    expect(stats).toMatchObject({ files: 6, dirs: 5, symlinks: 2, hardlinks: 1, specials: 1, xattrs: 2, compression: "none" });

    const snap = snapshot(root, { mtimes: true });
    expect(snap.get("usr/bin/tool")).toMatchObject({ type: "file", mode: 0o755, uid: 0, gid: 0, nlink: 2, mtime: DEFAULT_MTIME });
    expect(snap.get("usr/bin/tool2")!.ino).toBe(snap.get("usr/bin/tool")!.ino);
    expect(snap.get("usr/bin/su")!.mode).toBe(0o4755);
    expect(snap.get("usr/bin/wall")).toMatchObject({ mode: 0o2755, gid: 5 });
    expect(snap.get("tmp")!.mode).toBe(0o1777);
    expect(snap.get("home/user")).toMatchObject({ type: "dir", mode: 0o700, uid: 1000, gid: 1000 });
    expect(snap.get("home/user/notes")).toMatchObject({ mode: 0o600, uid: 1000, gid: 1000, mtime: 1_600_000_000 });
    expect(snap.get("bin")).toMatchObject({ type: "symlink", target: "usr/bin" });
    expect(snap.get("usr/bin/sh")).toMatchObject({ type: "symlink", target: "/bin/busybox", uid: 7, gid: 7 });
    expect(snap.get("run/fifo")).toMatchObject({ type: "fifo", mode: 0o620 });
    expect(snap.get("etc/absolute")).toMatchObject({ type: "file", mode: 0o640 });
    expect(fs.statSync(r("home/user")).mtimeMs / 1000).toBe(DEFAULT_MTIME);
    // The real getfattr reads back the exact bytes.
    expect(xattrs(root)["usr/bin/ping"]).toEqual({ "user.acl.test": cap.toString("hex"), "user.plain": "7631" });
    outsideUntouched();
  });

  it("reads gzip and zstd layers (zstd made by the real zstd tool too)", async () => {
    const layer = await makeTar([{ name: "a/b", data: "hello" }]);
    const g = await apply(compress(layer, "gzip"));
    expect(g.compression).toBe("gzip");
    fs.rmSync(r("a"), { recursive: true });
    const z = await apply(compress(layer, "zstd"));
    expect(z.compression).toBe("zstd");
    fs.rmSync(r("a"), { recursive: true });
    const cli = execFileSync("zstd", ["-q", "-c", "-19"], { input: layer });
    const zc = await apply(cli);
    expect(zc.compression).toBe("zstd");
    expect(fs.readFileSync(r("a/b"), "utf8")).toBe("hello");
    expect(g.diffId).toBe(z.diffId);
    expect(zc.diffId).toBe(g.diffId);
  });

  it("applies a layer written by GNU tar (pax, xattrs, hard links) to the same tree", async () => {
    const src = path.join(base, "src");
    fs.mkdirSync(path.join(src, "d/e"), { recursive: true });
    fs.writeFileSync(path.join(src, "d/f"), "content f");
    fs.chmodSync(path.join(src, "d/f"), 0o4711);
    fs.linkSync(path.join(src, "d/f"), path.join(src, "d/e/hard"));
    fs.symlinkSync("../f", path.join(src, "d/e/soft"));
    fs.writeFileSync(path.join(src, "d/" + "long-".repeat(30) + "name"), "long");
    fs.chownSync(path.join(src, "d/e"), 1234, 4321);
    execFileSync("setfattr", ["-n", "user.k", "-v", "0xff00fe", path.join(src, "d/f")]);
    fs.rmSync(path.join(outside, "sentinel"));
    const tarBytes = execFileSync("tar", ["--format=pax", "--xattrs", "--xattrs-include=user.*", "-C", src, "-cf", "-", "."], {
      maxBuffer: 1 << 26,
    });
    fs.writeFileSync(path.join(outside, "sentinel"), SENTINEL);
    await apply(tarBytes, "gnu.tar");
    const srcSnap = comparable(snapshot(src, { mtimes: true }));
    const dstSnap = comparable(snapshot(root, { mtimes: true }));
    expect(dstSnap).toEqual(srcSnap);
    expect(xattrs(root)["d/f"]).toEqual({ "user.k": "ff00fe" });
  });

  it("keeps a file capability (binary security.capability) readable by the real getcap", async () => {
    // VFS_CAP_REVISION_2 | effective, permitted = cap_setuid (bit 7: byte 0x80) + cap_net_raw (bit 13).
    const cap = Buffer.alloc(20);
    cap.writeUInt32LE(0x02000001, 0);
    cap.writeUInt32LE((1 << 7) | (1 << 13), 4);
    await apply([{ name: "usr/bin/ping", data: "ping", mode: 0o755, uid: 0, gid: 0, xattrs: { "security.capability": cap } }]);
    const out = execFileSync("getcap", [r("usr/bin/ping")], { encoding: "utf8" });
    expect(out).toMatch(/cap_setuid,cap_net_raw=ep/);
  });

  it("handles a long name with xattrs and two PAX headers in a row like tar-stream does", async () => {
    const long = `d/${"x".repeat(150)}`;
    await apply([
      { name: long, data: "long", xattrs: { "user.first": "1" } },
      { name: "after", data: "a", xattrs: { "user.second": "2" } },
      { name: "plain", data: "p" },
    ]);
    expect(fs.readFileSync(r(long), "utf8")).toBe("long");
    const x = xattrs(root);
    // tar-stream's own PAX header (for the long path) follows ours and replaces it.
    expect(x[long]).toBeUndefined();
    expect(x["after"]).toEqual({ "user.second": "32" });
    expect(x["plain"]).toBeUndefined();
  });

  it("hard-links a symlink itself, never its target", async () => {
    await apply([
      { name: "s", type: "symlink", linkname: path.join(outside, "sentinel") },
      { name: "h", type: "link", linkname: "s" },
    ]);
    expect(fs.lstatSync(r("h")).isSymbolicLink()).toBe(true);
    expect(fs.lstatSync(r("h")).ino).toBe(fs.lstatSync(r("s")).ino);
    expect(fs.statSync(path.join(outside, "sentinel")).nlink).toBe(1);
    outsideUntouched();
  });

  it("replaces a symlink or a hard link instead of writing through it", async () => {
    fs.writeFileSync(path.join(outside, "victim"), "victim");
    await apply([
      { name: "s", type: "symlink", linkname: path.join(outside, "victim") },
      { name: "f", data: "original" },
      { name: "h", type: "link", linkname: "f" },
    ]);
    await apply([
      { name: "s", data: "replaced" },
      { name: "h", data: "new h" },
    ]);
    expect(fs.lstatSync(r("s")).isFile()).toBe(true);
    expect(fs.readFileSync(path.join(outside, "victim"), "utf8")).toBe("victim");
    expect(fs.readFileSync(r("f"), "utf8")).toBe("original");
    expect(fs.readFileSync(r("h"), "utf8")).toBe("new h");
    fs.rmSync(path.join(outside, "victim"));
    outsideUntouched();
  });

  it("a directory entry replaces a file, and a file replaces a directory tree", async () => {
    await apply([
      { name: "x", data: "file" },
      { name: "y/z", data: "deep" },
    ]);
    await apply([
      { name: "x/", type: "directory", mode: 0o750 },
      { name: "y", data: "now a file" },
    ]);
    expect(fs.lstatSync(r("x")).isDirectory()).toBe(true);
    expect(fs.lstatSync(r("x")).mode & 0o7777).toBe(0o750);
    expect(fs.readFileSync(r("y"), "utf8")).toBe("now a file");
  });

  it("does not set ownership when asked not to", async () => {
    const buf = await makeTar([{ name: "o", data: "x", uid: 4242, gid: 4242 }]);
    await applyLayerTar(Readable.from([buf]), root, { ownership: false });
    expect(fs.lstatSync(r("o")).uid).toBe(process.getuid!());
  });

  it("skips entries the filter rejects", async () => {
    const s = await applyLayerTar(
      Readable.from([await makeTar([{ name: ".dockerenv", data: "" }, { name: "keep", data: "k" }])]),
      root,
      { filter: (p) => p !== ".dockerenv" },
    );
    expect(s.skipped).toBe(1);
    expect(fs.readdirSync(root)).toEqual(["keep"]);
  });
});

describe("applyLayerTar: whiteouts", () => {
  const lower: TEntry[] = [
    { name: "etc/", type: "directory" },
    { name: "etc/keep", data: "keep" },
    { name: "etc/gone", data: "gone" },
    { name: "etc/gonedir/sub/file", data: "deep" },
    { name: "opq1/", type: "directory", mode: 0o711 },
    { name: "opq1/old", data: "old" },
    { name: "opq1/olddir/inner", data: "old inner" },
    { name: "opq1/same/lower-only", data: "lower" },
    { name: "opq2/", type: "directory" },
    { name: "opq2/old", data: "old" },
    { name: "opq2/same/lower-only", data: "lower" },
  ];

  it("removes whited-out files and trees; opaque dirs drop lower content in either entry order", async () => {
    await apply(lower);
    const s = await apply([
      { name: "etc/.wh.gone", data: "" },
      { name: "etc/.wh.gonedir", data: "" },
      { name: "etc/.wh.never-existed", data: "" },
      // marker first, then this layer's content
      { name: "opq1/", type: "directory", mode: 0o711 },
      { name: "opq1/.wh..wh..opq", data: "" },
      { name: "opq1/new", data: "new" },
      { name: "opq1/same/upper", data: "upper" },
      // this layer's content first, then the marker
      { name: "opq2/", type: "directory" },
      { name: "opq2/new", data: "new" },
      { name: "opq2/same/upper", data: "upper" },
      { name: "opq2/.wh..wh..opq", data: "" },
    ]);
    expect(s).toMatchObject({ whiteouts: 3, opaqueDirs: 2 });
    const paths = [...snapshot(root).keys()].sort();
    expect(paths).toEqual([
      ".",
      "etc",
      "etc/keep",
      "opq1",
      "opq1/new",
      "opq1/same",
      "opq1/same/upper",
      "opq2",
      "opq2/new",
      "opq2/same",
      "opq2/same/upper",
    ]);
    // Whiteout markers themselves are never written.
    expect(paths.some((p) => p.includes(".wh."))).toBe(false);
    expect(fs.lstatSync(r("opq1")).mode & 0o7777).toBe(0o711);
  });

  it("a whiteout followed by new content in the same layer recreates it; a later layer can restore it", async () => {
    await apply(lower);
    await apply([
      { name: "etc/.wh.gone", data: "" },
      { name: "etc/gone", type: "directory" },
      { name: "etc/gone/now-dir", data: "d" },
    ]);
    expect(fs.readFileSync(r("etc/gone/now-dir"), "utf8")).toBe("d");
    await apply([{ name: "etc/.wh.gone", data: "" }]);
    expect(fs.existsSync(r("etc/gone"))).toBe(false);
    await apply([{ name: "etc/gone", data: "back" }]);
    expect(fs.readFileSync(r("etc/gone"), "utf8")).toBe("back");
  });
});

describe("applyLayerTar: escapes are refused, nothing is written outside", () => {
  const cases: { title: string; entries: () => TEntry[]; entry: string; why: RegExp }[] = [
    { title: "a '..' path", entries: () => [{ name: "../evil", data: "x" }], entry: "../evil", why: /escapes the root/ },
    {
      title: "a '..' deeper in the path",
      entries: () => [{ name: "a/b/../../../outside/sentinel", data: "x" }],
      entry: "a/b/../../../outside/sentinel",
      why: /escapes the root/,
    },
    {
      title: "a write through an absolute symlink",
      entries: () => [
        { name: "link", type: "symlink", linkname: outside },
        { name: "link/sentinel", data: "overwritten" },
      ],
      entry: "link/sentinel",
      why: /writes through the symlink 'link'/,
    },
    {
      title: "a write through a relative symlink",
      entries: () => [
        { name: "d/", type: "directory" },
        { name: "d/up", type: "symlink", linkname: "../.." },
        { name: "d/up/outside/new", data: "x" },
      ],
      entry: "d/up/outside/new",
      why: /writes through the symlink 'd\/up'/,
    },
    {
      title: "a directory created through a symlink",
      entries: () => [
        { name: "link", type: "symlink", linkname: outside },
        { name: "link/newdir/", type: "directory" },
      ],
      entry: "link/newdir/",
      why: /writes through the symlink 'link'/,
    },
    {
      title: "a hard link to a path outside the tree",
      entries: () => [{ name: "h", type: "link", linkname: "../outside/sentinel" }],
      entry: "h",
      why: /hard link to '..\/outside\/sentinel', outside the tree/,
    },
    {
      title: "a hard link through a symlink",
      entries: () => [
        { name: "link", type: "symlink", linkname: outside },
        { name: "h", type: "link", linkname: "link/sentinel" },
      ],
      entry: "h",
      why: /hard link to 'link\/sentinel' through the symlink 'link'/,
    },
    {
      title: "a whiteout through a symlink",
      entries: () => [
        { name: "link", type: "symlink", linkname: outside },
        { name: "link/.wh.sentinel", data: "" },
      ],
      entry: "link/.wh.sentinel",
      why: /whites out through the symlink 'link'/,
    },
    {
      title: "an opaque marker through a symlink",
      entries: () => [
        { name: "link", type: "symlink", linkname: outside },
        { name: "link/.wh..wh..opq", data: "" },
      ],
      entry: "link/.wh..wh..opq",
      why: /whites out through the symlink 'link'/,
    },
    {
      title: "a whiteout of '..'",
      entries: () => [{ name: ".wh...", data: "" }],
      entry: ".wh...",
      why: /malformed whiteout/,
    },
  ];
  for (const c of cases) {
    it(`refuses ${c.title}`, async () => {
      const err = await apply(c.entries(), "evil.tar").then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UserError);
      const msg = (err as Error).message;
      expect(msg).toContain("evil.tar");
      expect(msg).toContain(`entry '${c.entry}'`);
      expect(msg).toMatch(c.why);
      outsideUntouched();
    });
  }

  it("maps absolute entry paths and absolute hard link targets inside the root (a leading '/' is stripped)", async () => {
    const abs = path.join(outside, "sentinel"); // an absolute path that exists on the host
    await apply([
      { name: abs, data: "inside" },
      { name: "/etc/shadow", data: "x", mode: 0o600 },
      { name: "h", type: "link", linkname: "/etc/shadow" },
    ]);
    expect(fs.readFileSync(path.join(root, abs), "utf8")).toBe("inside");
    expect(fs.lstatSync(r("h")).ino).toBe(fs.lstatSync(r("etc/shadow")).ino);
    outsideUntouched();
  });

  it("refuses a write through a symlink left by a lower layer", async () => {
    await apply([{ name: "etc", type: "symlink", linkname: outside }]);
    await expect(apply([{ name: "etc/passwd", data: "root::0:0::/:/bin/sh" }], "upper.tar")).rejects.toThrow(
      /upper\.tar: entry 'etc\/passwd' writes through the symlink 'etc'/,
    );
    outsideUntouched();
  });

  for (const format of ["gnu", "pax"]) {
    it(`refuses a GNU tar sparse file (--format=${format}) instead of writing it wrongly`, async () => {
      const src = path.join(base, "sparse-src");
      fs.mkdirSync(src);
      execFileSync("truncate", ["-s", "1M", path.join(src, "holes")]);
      fs.writeFileSync(path.join(src, "holes"), "data at start", { flag: "r+" });
      const t = execFileSync("tar", [`--format=${format}`, "--sparse", "-C", src, "-cf", "-", "holes"]);
      fs.rmSync(src, { recursive: true });
      await expect(apply(t, "sparse.tar")).rejects.toThrow(/sparse\.tar: entry '.*holes' (has an unsupported tar entry type|is a GNU sparse file)/);
    });
  }

  it("refuses a root that is a symlink, and reports a write failure with the entry named", async () => {
    const buf = await makeTar([{ name: "ok", data: "x" }]);
    const link = path.join(base, "root-link");
    fs.symlinkSync(outside, link);
    await expect(applyLayerTar(Readable.from([buf]), link, { label: "w.tar" })).rejects.toThrow(/target root .* is not a directory/);
    expect(fs.readdirSync(outside)).toEqual(["sentinel"]);
    // procfs refuses new files: a real errno from the kernel at the first entry.
    await expect(applyLayerTar(Readable.from([buf]), "/proc/sys", { label: "w.tar" })).rejects.toThrow(
      /w\.tar: entry 'ok' could not be written: .*(EACCES|EPERM|ENOENT|EROFS)/,
    );
  });

  it("reports a truncated layer as a UserError naming it", async () => {
    const buf = await makeTar([{ name: "big", data: Buffer.alloc(10_000, 1) }]);
    await expect(apply(buf.subarray(0, 3000), "cut.tar")).rejects.toThrow(/cut\.tar: cannot read the layer/);
  });
});
