/**
 * The container layer and archive readers on hostile input. Layers made of
 * random entries (names with `..`, leading slashes and whiteouts; symlinks
 * and hard links aimed at the folder beside the root, by relative and
 * absolute paths; writes through them in a later layer), and OCI and
 * `docker save` archives with their bytes mutated (tar sizes and checksums
 * that lie, JSON cut short, blobs changed). Every run ends with the layers
 * applied or a clear error, in bounded time, and nothing outside the root
 * is ever written: the folder beside it keeps its one file, byte for byte.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Readable } from "node:stream";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDockerArchive } from "../../src/stages/rootfs/sources/docker-archive.js";
import { applyOciArchive } from "../../src/stages/rootfs/sources/oci-archive.js";
import { applyLayerTar } from "../../src/stages/rootfs/sources/tar-apply.js";
import { dockerSaveClassic, dockerSaveOci, makeTar, ociArchive, ociImage, type TEntry } from "../fixtures/oci/build.js";
import { budget, expectClearError, mutate, mutations, outcome, fuzzTime } from "./fuzz.js";

let base: string;
let root: string;
let outside: string;
const SENTINEL = "sentinel: must survive\n";

beforeAll(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), "acl-fuzz-archives-"));
  root = path.join(base, "root");
  outside = path.join(base, "outside");
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, "sentinel"), SENTINEL);
});
afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

function freshRoot(): void {
  fs.rmSync(root, { recursive: true, force: true });
  fs.mkdirSync(root);
}

/** Nothing beside the root changed: the base holds the root and `outside`, which holds its sentinel as it was. */
function expectOutsideUntouched(context: string): void {
  expect(fs.readdirSync(base).sort(), context).toEqual(["outside", "root"]);
  expect(fs.readdirSync(outside), context).toEqual(["sentinel"]);
  const st = fs.lstatSync(path.join(outside, "sentinel"));
  expect(st.isFile(), context).toBe(true);
  expect(fs.readFileSync(path.join(outside, "sentinel"), "utf8"), context).toBe(SENTINEL);
}

// mostly names that collide (so a later entry or layer goes through what an earlier one made), some that climb
const segment = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom("a", "b", "etc", "sentinel", "outside", "x y") },
  { weight: 2, arbitrary: fc.constantFrom(".wh.a", ".wh.b", ".wh..wh..opq", ".wh.sentinel") },
  { weight: 1, arbitrary: fc.constantFrom("..", ".", "", ".wh...", "root") },
);
const relPath = fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join("/"));
const entryName = fc
  .tuple(fc.oneof({ weight: 10, arbitrary: fc.constant("") }, { weight: 2, arbitrary: fc.constantFrom("/", "./") }, { weight: 1, arbitrary: fc.constant("../") }), relPath, fc.constantFrom("", "/"))
  .map(([a, b, c]) => `${a}${b}${c}`);
/** Link targets: inside, climbing out, and straight at the folder beside the root (its absolute path is known here). */
const linkTarget = () =>
  fc.oneof(relPath, fc.constantFrom("../outside", "../../outside/sentinel", "../outside/sentinel", "/", "/outside", "/../outside"), fc.constant(null).map(() => outside), fc.constant(null).map(() => `${outside}/sentinel`));

const entry: fc.Arbitrary<TEntry> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ name: entryName, type: fc.constant("file" as const), data: fc.string({ maxLength: 40 }) }) },
  { weight: 2, arbitrary: fc.record({ name: entryName, type: fc.constant("directory" as const) }) },
  { weight: 3, arbitrary: fc.record({ name: entryName, type: fc.constant("symlink" as const), linkname: linkTarget() }) },
  { weight: 2, arbitrary: fc.record({ name: entryName, type: fc.constant("link" as const), linkname: linkTarget() }) },
);
const layer = fc.array(entry, { minLength: 1, maxLength: 10 });

describe("container layers and archives on hostile input", () => {
  it("random layers, two at a time: applied or refused clearly, never a write beside the root", async () => {
    await fc.assert(
      fc.asyncProperty(layer, layer, async (l1, l2) => {
        freshRoot();
        const context = JSON.stringify([l1, l2]);
        for (const [i, l] of [l1, l2].entries()) {
          const tarBytes = await makeTar(l).catch(() => undefined);
          if (!tarBytes) return; // tar-stream refused to write it (a name too long for its header)
          const r = await outcome(() => applyLayerTar(Readable.from([tarBytes]), root, { label: `fuzz.tar layer ${i}` }));
          if (!r.ok) {
            expectClearError(r.error, context);
            break;
          }
        }
        expectOutsideUntouched(context);
      }),
      budget(300),
    );
  }, fuzzTime(10 * 60_000));

  for (const [kind, make, apply] of [
    ["OCI archive", async (layers: Buffer[]) => ociArchive(ociImage(layers)), applyOciArchive],
    ["docker save (classic)", async (layers: Buffer[]) => (await dockerSaveClassic(layers, "fuzz:1")).archive, applyDockerArchive],
    ["docker save (OCI layout)", async (layers: Buffer[]) => (await dockerSaveOci(layers, "fuzz:1")).archive, applyDockerArchive],
  ] as const) {
    it(`${kind} with its bytes mutated: applied or refused clearly, never a write beside the root`, async () => {
      const layers = [
        await makeTar([{ name: "etc/", type: "directory" }, { name: "etc/os-release", data: "ID=fuzz\n" }, { name: "bin/", type: "directory" }, { name: "bin/sh", data: "#!/bin/true\n", mode: 0o755 }]),
        await makeTar([{ name: "etc/.wh.os-release" }, { name: "lib", type: "symlink", linkname: "usr/lib" }, { name: "usr/lib/x", data: "x" }]),
      ];
      const good = await make(layers);
      // the tar headers (name, mode, size, checksum, type, link name) of the first members, and the JSON near the end
      const hot: [number, number][] = [];
      for (let at = 0; at < Math.min(good.length, 64 * 512); at += 512) hot.push([at, at + 157], [at + 157, at + 257]);
      hot.push([Math.max(0, good.length - 8192), good.length]);
      const file = path.join(base, "..", `${path.basename(base)}-archive.tar`);
      try {
        await fc.assert(
          fc.asyncProperty(mutations(good.length, hot, 5), async (ms) => {
            freshRoot();
            fs.writeFileSync(file, mutate(good, ms));
            const context = `${kind} ${JSON.stringify(ms, (_k, v) => (typeof v === "bigint" ? `${v}n` : v))}`;
            const r = await outcome(() => apply(file, root, {}));
            if (!r.ok) expectClearError(r.error, context);
            expectOutsideUntouched(context);
          }),
          budget(150),
        );
      } finally {
        fs.rmSync(file, { force: true });
      }
    }, fuzzTime(10 * 60_000));
  }
});
