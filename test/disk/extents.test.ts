import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { dataExtents, parseQemuImgMap } from "../../src/stages/disk/extents.js";
import { requireTools } from "../../src/adapters/exec.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("parseQemuImgMap", () => {
  it("keeps the data ranges of qemu-img's JSON, merging those that touch", () => {
    const json = `[{ "start": 0, "length": 4096, "depth": 0, "present": true, "zero": false, "data": true, "offset": 0},
{ "start": 4096, "length": 8192, "depth": 0, "present": true, "zero": false, "data": true, "offset": 4096},
{ "start": 12288, "length": 1036288, "depth": 0, "present": true, "zero": true, "data": false, "offset": 12288},
{ "start": 1048576, "length": 65536, "depth": 0, "present": true, "zero": false, "data": true, "offset": 1048576}]`;
    expect(parseQemuImgMap(json)).toEqual([
      { start: 0, length: 12288 },
      { start: 1048576, length: 65536 },
    ]);
    expect(parseQemuImgMap("[]")).toEqual([]);
  });

  it("refuses output it cannot trust", () => {
    expect(() => parseQemuImgMap("Image: x")).toThrow(/not JSON/);
    expect(() => parseQemuImgMap('{"start": 0}')).toThrow(/not a list of extents/);
    expect(() => parseQemuImgMap('[{"start": 10, "length": 5, "data": true}, {"start": 0, "length": 5, "data": true}]')).toThrow(/extent 1 is not \{start, length, data\} in order/);
    expect(() => parseQemuImgMap('[{"start": 0, "length": 5}]')).toThrow(/extent 0/);
  });
});

describe("dataExtents (the real qemu-img on a sparse file)", () => {
  it("finds the data written around a hole, and no data in a file of holes", async () => {
    await requireTools(["qemu-img"]);
    const dir = await mkdtemp(join(tmpdir(), "acl-extents-"));
    dirs.push(dir);
    const f = join(dir, "sparse");
    const fh = await open(f, "w");
    await fh.truncate(64 << 20);
    await fh.write(Buffer.alloc(8192, 1), 0, 8192, 0);
    await fh.write(Buffer.alloc(4096, 2), 0, 4096, 32 << 20);
    await fh.close();
    const got = await dataExtents(f);
    // the file system may round to its blocks; every byte written is inside, and the hole is outside
    const covers = (at: number) => got.some((e) => e.start <= at && at < e.start + e.length);
    expect(covers(0) && covers(8191) && covers(32 << 20) && covers((32 << 20) + 4095)).toBe(true);
    expect(covers(16 << 20)).toBe(false);
    expect(got.reduce((n, e) => n + e.length, 0)).toBeLessThan(4 << 20);

    const empty = join(dir, "holes");
    const eh = await open(empty, "w");
    await eh.truncate(16 << 20);
    await eh.close();
    expect(await dataExtents(empty)).toEqual([]);
  });
});
