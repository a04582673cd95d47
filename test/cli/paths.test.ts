/**
 * Errors about the user's paths, through the real CLI: a missing file, a
 * folder where a file was expected (and the reverse), a read-only file
 * system, a full one, one too small for the disks. Each is exit 1 with a message naming the path and a
 * hint, and nothing is lost: an earlier output stays as it was and no work
 * folder is left behind. The mounts need root (CI runs as root).
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tmpfs as mountTmpfs, unmountAll } from "../helpers/mounts.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { acl, REPO } from "../helpers/cli.js";
import { builtImage, TEST_OUT } from "../helpers/images.js";
import { MiB } from "../../src/util/size.js";

let dir: string;
const tmpfs = (name: string, size: string, ro = false) => mountTmpfs(dir, name, size, ro);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "acl-cli-paths-"));
});

afterAll(async () => {
  unmountAll();
  await rm(dir, { recursive: true, force: true });
});

describe("paths the user gave", () => {
  it("missing, a folder where a file was expected, a file where a folder was expected", async () => {
    await writeFile(join(dir, "file"), "x\n");
    const cases: { argv: string[]; message: RegExp; hint: RegExp }[] = [
      { argv: ["inspect", "/tmp"], message: /^error: \/tmp is a folder, not a disk image$/m, hint: /disk\.raw/ },
      { argv: ["inspect", join(dir, "none.raw")], message: /none\.raw: it does not exist \(ENOENT\)/, hint: /disk\.raw/ },
      { argv: ["build", "images/nope.toml"], message: /cannot read image spec images\/nope\.toml: it does not exist \(ENOENT\)/, hint: /images\/\*\.toml/ },
      { argv: ["spec", "check", "images"], message: /images is not a file/, hint: /images\/minimal\.toml/ },
      { argv: ["verify", join(REPO, "images"), "--key", dir], message: new RegExp(`cannot read public key ${dir}: it is a folder, not a file \\(EISDIR\\)`), hint: /acl-signing\.pub/ },
      { argv: ["keys", "generate", "--out", join(dir, "file")], message: /cannot create .*\/file: something of that name already exists \(EEXIST\)/, hint: /--out/ },
      { argv: ["boot-test", join(dir, "file")], message: /no build manifest at .*\/file\/manifest\.json/, hint: /output folder of `acl build`/ },
    ];
    for (const c of cases) {
      const r = await acl(c.argv);
      const what = c.argv.join(" ");
      expect(r.exitCode, `${what}\n${r.stderr}`).toBe(1);
      expect(r.stderr, what).toMatch(c.message);
      expect(r.stderr, what).toMatch(/\nhint: /);
      expect(/hint: (.*)$/m.exec(r.stderr)![1], what).toMatch(c.hint);
      expect(r.stderr, what).not.toMatch(/\n\s+at |internal error/);
    }
  });

  it("refuses to replace an output folder that is not an acl output, or a file (both untouched)", async () => {
    const notOurs = join(dir, "photos");
    await mkdir(notOurs);
    await writeFile(join(notOurs, "cat.jpg"), "meow");
    const r = await acl(["build", "images/minimal.toml", "--out", notOurs]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/the output folder .*photos holds files and no manifest\.json: it is not an acl output/);
    expect(await readFile(join(notOurs, "cat.jpg"), "utf8")).toBe("meow");
    const f = join(dir, "file");
    const r2 = await acl(["build", "images/minimal.toml", "--out", f]);
    expect(r2.exitCode).toBe(1);
    expect(r2.stderr).toMatch(/the output folder .*\/file exists and is not a folder/);
    expect(await readFile(f, "utf8")).toBe("x\n");
  });
});

describe("file systems", () => {
  it("read-only: a clear error naming the folder", async () => {
    const ro = await tmpfs("ro", "1m", true);
    const k = await acl(["keys", "generate", "--out", join(ro, "keys")]);
    expect(k.exitCode).toBe(1);
    expect(k.stderr).toMatch(/cannot create .*\/ro\/keys: the file system is read-only \(EROFS\)/);
    const b = await acl(["build", "images/minimal.toml", "--out", join(ro, "out")]);
    expect(b.exitCode).toBe(1);
    expect(b.stderr).toMatch(/cannot create the build's lock and work folder in .*\/ro: the file system is read-only \(EROFS\)\nhint: .*choose a writable --out/);
  });

  it("full: the build stops with the folder and its free space, keeps the earlier output and leaves no work folder", async () => {
    await builtImage("minimal"); // the stage cache holds rootfs and /usr: the build gets to writing its artifacts quickly
    const full = await tmpfs("full", "48m");
    const out = join(full, "minimal");
    await mkdir(out);
    await writeFile(join(out, "manifest.json"), '{"earlier": true}\n');
    const r = await acl(["build", "images/minimal.toml", "--out", out, "--json"], { env: { SOURCE_DATE_EPOCH: "1700000000" } });
    expect(r.exitCode, r.stderr.slice(-2000)).toBe(1);
    const e = (JSON.parse(r.stdout) as { error: { message: string; hint: string; file: string } }).error;
    expect(e.message).toMatch(/^the (boot|disk|release) stage ran out of space: .*; the build writes into the output's folder .*\/full \(\d+\.\d MiB free\) and the cache /);
    expect(e.file).toBe(full);
    expect(e.hint).toMatch(/--out DIR .*--cache-dir DIR/);
    expect(await readFile(join(out, "manifest.json"), "utf8")).toBe('{"earlier": true}\n');
    expect((await readdir(full)).sort()).toEqual(["minimal"]);
  }, 20 * 60_000);

  it("too small for the disks: refused before the disk stage writes, with roughly how much more is needed", async () => {
    await builtImage("minimal");
    // room for the boot stage's kernel, initramfs and UKIs, not for the disks and the payload
    const small = await tmpfs("small", "160m");
    const out = join(small, "minimal");
    const r = await acl(["build", "images/minimal.toml", "--out", out, "--json"], { env: { SOURCE_DATE_EPOCH: "1700000000" } });
    expect(r.exitCode, r.stderr.slice(-2000)).toBe(1);
    const e = (JSON.parse(r.stdout) as { error: { message: string; hint: string; file: string } }).error;
    const m = /^not enough space for the disk stage and those after it: they write about (\d+\.\d) MiB into (\S+), which has (\d+\.\d) MiB free; about (\d+\.\d) MiB more is needed$/.exec(e.message);
    expect(m, e.message).not.toBeNull();
    const [need, where, free, more] = [Number(m![1]), m![2], Number(m![3]), Number(m![4])];
    expect(where).toBe(small);
    expect(e.file).toBe(small);
    expect(more).toBeCloseTo(need - free, 0);
    // what an earlier build of the same spec wrote from the disk stage on: the disks, the payload, the /usr copy
    const earlier = join(TEST_OUT, "minimal");
    let wrote = 0;
    for (const f of ["disk.raw", "disk.qcow2", "disk.vhd", "usr.img", "minimal-1.0.0.update"]) wrote += (await stat(join(earlier, f))).blocks * 512;
    expect(need * MiB).toBeGreaterThanOrEqual(wrote);
    expect(need * MiB).toBeLessThan(wrote * 1.25);
    expect(await readdir(small)).toEqual([]); // no work folder, no lock
    expect(r.stderr).not.toMatch(/==> disk/);
  }, 20 * 60_000);
});
