/**
 * ISA-level notes in real binaries: tiny C programs are compiled and linked
 * here with `-z x86-64-vN`; our parser must read what `readelf -n` reports,
 * and the audit must find them in a root tree.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, copyFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ISA_LEVEL_BITS, readIsaNeeded } from "../../src/formats/elf.js";
import type { Microarch } from "../../src/formats/microarch.js";
import { assertIsaWithin, auditIsa, fileIsaLevel } from "../../src/stages/rootfs/isa-audit.js";
import { UserError } from "../../src/errors.js";

let dir: string;

function sh(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8", env: { ...process.env, LC_ALL: "C" } });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${argv.join(" ")} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

/** readelf's names for the ISA bits ("x86-64-baseline" is bit 0). */
const READELF_NAMES: Record<string, number> = {
  "x86-64-baseline": ISA_LEVEL_BITS["x86-64"],
  "x86-64-v2": ISA_LEVEL_BITS["x86-64-v2"],
  "x86-64-v3": ISA_LEVEL_BITS["x86-64-v3"],
  "x86-64-v4": ISA_LEVEL_BITS["x86-64-v4"],
};

/** The oracle: the ISA-needed mask `readelf -n` prints, or null when it prints none. */
function readelfIsaMask(file: string): number | null {
  const out = sh(["readelf", "-n", "-W", file]);
  const m = /x86 ISA needed: ([^\n]*)/.exec(out);
  if (!m) return null;
  let mask = 0;
  for (const name of m[1]!.split(",").map((s) => s.trim()).filter(Boolean)) {
    const bit = READELF_NAMES[name];
    if (bit === undefined) throw new Error(`readelf printed an ISA name this test does not know: ${name}`);
    mask |= bit;
  }
  return mask;
}

const PROGRAM = `#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n`;
const LIBRARY = `int answer(void) { return 42; }\n`;
const NOSTDLIB = `void _start(void) { for (;;) {} }\n`;

/** name -> [gcc args, expected level or null] */
const BUILDS: Record<string, { args: string[]; level: Microarch | null; mask: number | null }> = {
  // GNU ld 2.40 aborts on `-z x86-64-baseline` (internal error in
  // _bfd_x86_elf_merge_gnu_properties); a default link already says baseline.
  baseline: { args: ["prog.c"], level: "x86-64", mask: 1 },
  v2: { args: ["prog.c", "-Wl,-z,x86-64-v2"], level: "x86-64-v2", mask: 3 },
  v3: { args: ["prog.c", "-Wl,-z,x86-64-v3"], level: "x86-64-v3", mask: 5 },
  v4: { args: ["prog.c", "-Wl,-z,x86-64-v4"], level: "x86-64-v4", mask: 9 },
  "cet-v2": { args: ["prog.c", "-fcf-protection=full", "-Wl,-z,ibt", "-Wl,-z,shstk", "-Wl,-z,x86-64-v2"], level: "x86-64-v2", mask: 3 },
  "libv3.so": { args: ["lib.c", "-shared", "-fPIC", "-Wl,-z,x86-64-v3"], level: "x86-64-v3", mask: 4 },
  "static-v3": { args: ["prog.c", "-static", "-Wl,-z,x86-64-v3"], level: "x86-64-v3", mask: 5 },
  nonote: { args: ["nostd.c", "-nostdlib", "-static"], level: null, mask: null },
};

beforeAll(() => {
  for (const tool of ["gcc", "readelf"]) {
    const r = spawnSync("sh", ["-c", `command -v ${tool}`]);
    if (r.status !== 0) throw new Error(`these tests need '${tool}' (apt-get install gcc libc6-dev binutils)`);
  }
  dir = mkdtempSync(join(tmpdir(), "acl-elf-"));
  writeFileSync(join(dir, "prog.c"), PROGRAM);
  writeFileSync(join(dir, "lib.c"), LIBRARY);
  writeFileSync(join(dir, "nostd.c"), NOSTDLIB);
  for (const [name, b] of Object.entries(BUILDS)) {
    try {
      sh(["gcc", "-O1", "-o", join(dir, name), ...b.args.map((a) => (a.endsWith(".c") ? join(dir, a) : a))]);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n(these tests link C programs, static ones too: apt-get install gcc libc6-dev)`);
    }
  }
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("ISA-needed note in binaries linked here", () => {
  for (const [name, b] of Object.entries(BUILDS)) {
    it(`${name}: our reading equals readelf -n's`, () => {
      const file = join(dir, name);
      const ours = readIsaNeeded(readFileSync(file));
      const oracle = readelfIsaMask(file);
      expect(oracle).toBe(b.mask);
      expect(ours?.mask ?? null).toBe(oracle);
      expect(ours?.level ?? null).toBe(b.level);
      expect(fileIsaLevel(file)).toBe(b.level ?? "none");
    });
  }

  it("an object file's note (SHT_NOTE, no program headers) is read like readelf does", () => {
    const obj = join(dir, "prog.o");
    sh(["gcc", "-c", "-O1", "-o", obj, join(dir, "prog.c")]);
    expect(readIsaNeeded(readFileSync(obj))?.mask ?? null).toBe(readelfIsaMask(obj));
  });
});

describe("auditIsa over a root tree", () => {
  let root: string;
  beforeAll(() => {
    root = join(dir, "root");
    for (const d of ["usr/bin", "usr/lib/x86_64-linux-gnu", "usr/libexec/odd", "usr/share/doc", "etc", "outside"]) mkdirSync(join(root, d), { recursive: true });
    const put = (src: string, dest: string) => {
      copyFileSync(join(dir, src), join(root, dest));
      chmodSync(join(root, dest), 0o755);
    };
    put("baseline", "usr/bin/true");
    put("v2", "usr/bin/cat");
    put("v3", "usr/bin/zsh");
    put("v3", "usr/bin/bash");
    put("static-v3", "usr/bin/busybox");
    put("v4", "usr/libexec/odd/avx512-tool");
    put("libv3.so", "usr/lib/x86_64-linux-gnu/libanswer.so.1");
    put("nonote", "usr/bin/nonote");
    writeFileSync(join(root, "usr/bin/script"), "#!/bin/sh\necho hi\n");
    writeFileSync(join(root, "usr/share/doc/elf-ish"), Buffer.from("\x7fELF garbage that is not an ELF file", "latin1"));
    writeFileSync(join(root, "usr/share/doc/empty"), "");
    // Symlinks are not followed: neither to a file nor to a directory.
    put("v4", "outside/v4-tool");
    symlinkSync("../libexec/odd/avx512-tool", join(root, "usr/bin/avx-link"));
    symlinkSync("../outside", join(root, "usr/linked-dir"));
    symlinkSync("/nonexistent", join(root, "etc/dangling"));
  });

  it("reports the highest level, the files needing it, counts and violations", async () => {
    const a = await auditIsa(join(root, "usr"), "x86-64-v3");
    expect(a.highest).toBe("x86-64-v4");
    expect(a.files).toEqual(["libexec/odd/avx512-tool"]);
    expect(a.violations).toEqual(["libexec/odd/avx512-tool"]);
    expect(a.counts).toEqual({ none: 2, "x86-64": 1, "x86-64-v2": 1, "x86-64-v3": 4, "x86-64-v4": 1 });

    const whole = await auditIsa(root, "x86-64-v4");
    expect(whole.violations).toEqual([]);
    expect(whole.files).toEqual(["outside/v4-tool", "usr/libexec/odd/avx512-tool"]);
    expect(() => assertIsaWithin(whole, "x86-64-v4")).not.toThrow();
  });

  it("lists files needing the highest level sorted, and every violation of a lower microarch", async () => {
    const a = await auditIsa(join(root, "usr/bin"), "x86-64");
    expect(a.highest).toBe("x86-64-v3");
    expect(a.files).toEqual(["bash", "busybox", "zsh"]);
    expect(a.violations).toEqual(["bash", "busybox", "cat", "zsh"]);
    expect(a.violationLevels).toEqual({ bash: "x86-64-v3", busybox: "x86-64-v3", cat: "x86-64-v2", zsh: "x86-64-v3" });
  });

  it("assertIsaWithin throws a UserError naming each file and its level", async () => {
    const a = await auditIsa(root, "x86-64-v3");
    let err: unknown;
    try {
      assertIsaWithin(a, "x86-64-v3", { specFile: "images/minimal.toml" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    const e = err as UserError;
    expect(e.message).toContain('microarch = "x86-64-v3"');
    expect(e.message).toContain("usr/libexec/odd/avx512-tool (needs x86-64-v4)");
    expect(e.message).toContain("outside/v4-tool (needs x86-64-v4)");
    expect(e.message.startsWith("images/minimal.toml: 2 file(s)")).toBe(true);
    expect(e.file).toBe("images/minimal.toml");
    expect(e.hint).toContain('"x86-64-v4"');
  });

  it("a tree without ELF notes reports none; bad input is a UserError", async () => {
    const a = await auditIsa(join(root, "usr/share"), "x86-64-v2");
    expect(a).toMatchObject({ highest: "none", files: [], violations: [] });
    // Only the file that starts with the ELF magic counts (as an ELF file without a note).
    expect(a.counts).toEqual({ none: 1, "x86-64": 0, "x86-64-v2": 0, "x86-64-v3": 0, "x86-64-v4": 0 });
    await expect(auditIsa(join(root, "missing"), "x86-64-v3")).rejects.toThrow(UserError);
    await expect(auditIsa(root, "x86-64-v9" as Microarch)).rejects.toThrow(/unknown microarch 'x86-64-v9'/);
  });
});
