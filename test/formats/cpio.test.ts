import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, readFileSync, lstatSync, readlinkSync, rmSync, chmodSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeCpio, decodeCpioAll, encodeCpio, type CpioEntry } from "../../src/formats/cpio.js";

const te = new TextEncoder();
const MTIME = 1_700_000_000; // 0x6553F100

function needTool(t: string): void {
  try {
    execFileSync("sh", ["-c", `command -v ${t}`], { stdio: "pipe" });
  } catch {
    throw new Error(`this test needs '${t}' (apt-get install cpio)`);
  }
}

/** One newc header, spelled out field by field (the golden reference). */
function hdr(ino: number, mode: number, nlink: number, mtime: number, size: number, rmaj: number, rmin: number, namesize: number): string {
  const h = (n: number) => n.toString(16).toUpperCase().padStart(8, "0");
  return "070701" + [ino, mode, 0, 0, nlink, mtime, size, 0, 0, rmaj, rmin, namesize, 0].map(h).join("");
}

const sample: CpioEntry[] = [
  { path: "sh", type: "symlink", perm: 0o777, target: "bin/hello" },
  { path: "bin/hello", type: "file", perm: 0o755, data: te.encode("hi\n") },
  { path: "bin", type: "dir", perm: 0o755 },
  { path: "dev/console", type: "char", perm: 0o600, rdevMajor: 5, rdevMinor: 1 },
  { path: "dev", type: "dir", perm: 0o755 },
];

describe("cpio newc codec", () => {
  it("writes golden bytes: sorted, owners 0, fixed mtime, inode = position", () => {
    const got = Buffer.from(encodeCpio(sample, { mtime: MTIME })).toString("latin1");
    const z = (n: number) => "\0".repeat(n);
    const expected =
      // "bin": 110 + 4 = 114 -> pad 2
      hdr(1, 0o040755, 2, MTIME, 0, 0, 0, 4) + "bin" + z(1) + z(2) +
      // "bin/hello": 110 + 10 = 120 -> pad 0; data 3 -> pad 1
      hdr(2, 0o100755, 1, MTIME, 3, 0, 0, 10) + "bin/hello" + z(1) + "hi\n" + z(1) +
      // "dev": pad 2
      hdr(3, 0o040755, 2, MTIME, 0, 0, 0, 4) + "dev" + z(1) + z(2) +
      // "dev/console": 110 + 12 = 122 -> pad 2; char 5:1
      hdr(4, 0o020600, 1, MTIME, 0, 5, 1, 12) + "dev/console" + z(1) + z(2) +
      // "sh" -> "bin/hello": 110 + 3 = 113 -> pad 3; data 9 -> pad 3
      hdr(5, 0o120777, 1, MTIME, 9, 0, 0, 3) + "sh" + z(1) + z(3) + "bin/hello" + z(3) +
      // trailer: 110 + 11 = 121 -> pad 3
      hdr(0, 0, 1, 0, 0, 0, 0, 11) + "TRAILER!!!" + z(1) + z(3);
    expect(got.length).toBe(expected.length);
    expect(got).toBe(expected);
    expect(got.length % 4).toBe(0);
  });

  it("is independent of input order and round-trips through the reader", () => {
    const a = encodeCpio(sample, { mtime: MTIME });
    const b = encodeCpio([...sample].reverse(), { mtime: MTIME });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const { records } = decodeCpio(a);
    expect(records.map((r) => r.path)).toEqual(["bin", "bin/hello", "dev", "dev/console", "sh"]);
    const sh = records.find((r) => r.path === "sh")!;
    expect(sh.type).toBe("symlink");
    expect(sh.target).toBe("bin/hello");
    const con = records.find((r) => r.path === "dev/console")!;
    expect([con.type, con.rdevMajor, con.rdevMinor, con.perm]).toEqual(["char", 5, 1, 0o600]);
    // two archives back to back, as the kernel accepts them
    const both = Buffer.concat([Buffer.from(a), Buffer.alloc(512), Buffer.from(encodeCpio([{ path: "x", type: "file", perm: 0o644, data: te.encode("x") }], { mtime: 0 }))]);
    expect(decodeCpioAll(both).map((r) => r.path)).toEqual(["bin", "bin/hello", "dev", "dev/console", "sh", "x"]);
  });

  it("rejects duplicates, escaping paths and bad input", () => {
    expect(() => encodeCpio([sample[1]!, sample[1]!], { mtime: 0 })).toThrow(/duplicate path 'bin\/hello'/);
    expect(() => encodeCpio([{ path: "../etc/passwd", type: "file", perm: 0o644 }], { mtime: 0 })).toThrow(/invalid path/);
    expect(() => decodeCpio(te.encode("070707" + "0".repeat(200)))).toThrow(/bad magic '070707'/);
    expect(() => decodeCpio(encodeCpio(sample, { mtime: 0 }).subarray(0, 200))).toThrow(/past the end|truncated/);
  });

  it("our archive is listed and extracted by GNU cpio", () => {
    needTool("cpio");
    const dir = mkdtempSync(join(tmpdir(), "acl-cpio-"));
    try {
      const big = new Uint8Array(70_001).map((_, i) => (i * 31) & 0xff);
      const entries: CpioEntry[] = [
        ...sample.filter((e) => e.type !== "char"),
        { path: "data/big.bin", type: "file", perm: 0o640, data: big },
        { path: "data", type: "dir", perm: 0o700 },
        { path: "data/empty", type: "file", perm: 0o600 },
      ];
      const archive = join(dir, "a.cpio");
      writeFileSync(archive, encodeCpio(entries, { mtime: MTIME }));
      const list = execFileSync("cpio", ["-t", "--quiet", "-F", archive], { encoding: "utf8" });
      expect(list.trim().split("\n")).toEqual(["bin", "bin/hello", "data", "data/big.bin", "data/empty", "dev", "sh"]);
      const verbose = execFileSync("cpio", ["-tv", "--quiet", "-F", archive], { encoding: "utf8", env: { ...process.env, TZ: "UTC", LC_ALL: "C" } });
      expect(verbose).toMatch(/-rwxr-xr-x\s+1 root\s+root\s+3 Nov 14\s+2023 bin\/hello/);
      expect(verbose).toMatch(/lrwxrwxrwx .* sh -> bin\/hello/);
      const x = join(dir, "x");
      mkdirSync(x);
      execFileSync("cpio", ["-i", "-d", "--quiet", "--no-absolute-filenames", "-F", archive], { cwd: x });
      expect(readFileSync(join(x, "bin/hello"), "utf8")).toBe("hi\n");
      expect(Buffer.from(readFileSync(join(x, "data/big.bin"))).equals(Buffer.from(big))).toBe(true);
      expect(lstatSync(join(x, "data/big.bin")).mode & 0o7777).toBe(0o640);
      expect(lstatSync(join(x, "bin/hello")).mode & 0o7777).toBe(0o755);
      expect(readlinkSync(join(x, "sh"))).toBe("bin/hello");
      expect(lstatSync(join(x, "data/empty")).size).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("parses an archive written by GNU cpio -o -H newc", () => {
    needTool("cpio");
    const dir = mkdtempSync(join(tmpdir(), "acl-cpio-"));
    try {
      const src = join(dir, "src");
      mkdirSync(join(src, "etc/sub"), { recursive: true });
      writeFileSync(join(src, "etc/hostname"), "node-1\n");
      writeFileSync(join(src, "etc/sub/odd-size"), Buffer.alloc(4097, 7));
      chmodSync(join(src, "etc/sub/odd-size"), 0o604);
      symlinkSync("../etc/hostname", join(src, "etc/sub/link"));
      const names = execFileSync("sh", ["-c", "find . | LC_ALL=C sort"], { cwd: src, encoding: "utf8" });
      const bytes = execFileSync("cpio", ["-o", "-H", "newc", "--quiet"], { cwd: src, input: names });
      const recs = decodeCpio(new Uint8Array(bytes)).records;
      expect(recs.map((r) => r.path)).toEqual([".", "etc", "etc/hostname", "etc/sub", "etc/sub/link", "etc/sub/odd-size"]);
      const byPath = new Map(recs.map((r) => [r.path, r]));
      expect(Buffer.from(byPath.get("etc/hostname")!.data).toString()).toBe("node-1\n");
      expect(byPath.get("etc/sub/link")!.target).toBe("../etc/hostname");
      const odd = byPath.get("etc/sub/odd-size")!;
      expect([odd.type, odd.perm, odd.data.length]).toEqual(["file", 0o604, 4097]);
      expect(odd.mtime).toBe(Math.floor(lstatSync(join(src, "etc/sub/odd-size")).mtimeMs / 1000));
      expect(byPath.get("etc/sub")!.type).toBe("dir");
      expect(readdirSync(join(src, "etc")).length).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
