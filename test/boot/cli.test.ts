/** `acl boot-test` refuses bad input with a clear message and a non-zero exit (no QEMU started). */
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acl } from "../helpers/cli.js";
import { canonicalJson, MANIFEST_SCHEMA_VERSION, type Manifest } from "../../src/pipeline/manifest.js";

const temps: string[] = [];
afterAll(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

function fakeOut(over: Partial<Manifest> = {}): string {
  const d = mkdtempSync(join(tmpdir(), "acl-bt-cli-"));
  temps.push(d);
  const m: Manifest = {
    schemaVersion: MANIFEST_SCHEMA_VERSION, name: "t", version: "1", arch: "x86_64", microarch: "x86-64-v3", sourceDateEpoch: 0,
    specDigest: "0".repeat(64), usr: { filesystem: "erofs", size: 4096, uuid: "u" },
    verity: { rootHash: "a".repeat(64), salt: "", hashOffset: 4096, dataBlocks: 1, dataBlockSize: 4096, hashBlockSize: 4096, algorithm: "sha256", hashType: 1, uuid: "v" },
    artifacts: [{ path: "disk.raw", kind: "disk-raw", size: 0, sha256: "0".repeat(64) }],
    inputs: { packages: [], images: [], archives: [] }, tools: {}, setuid: [],
    ...over,
  };
  writeFileSync(join(d, "manifest.json"), canonicalJson(m));
  return d;
}

describe("acl boot-test input errors", () => {
  it("names the missing manifest", async () => {
    const r = await acl(["boot-test", "/nonexistent/out"]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain("error: no build manifest at /nonexistent/out/manifest.json");
    expect(r.stderr).toContain("hint: pass the output folder of `acl build`");
  });

  it("names an unknown CPU model and lists the known ones", async () => {
    const r = await acl(["boot-test", fakeOut(), "--cpu", "Pentium"]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain("error: unknown CPU model 'Pentium'");
    expect(r.stderr).toMatch(/hint: use one of: qemu64, Nehalem, .*Haswell-v4/);
  });

  it("refuses direct boots without kernel artifacts, and unknown cases, in JSON too", async () => {
    const out = fakeOut();
    const r = await acl(["boot-test", out, "--firmware", "direct", "--json"]);
    expect(r.exitCode).not.toBe(0);
    const e = JSON.parse(r.stdout) as { error: { message: string; hint: string } };
    expect(e.error.message).toBe("direct-kernel boot needs kernel and initramfs artifacts and kernel.cmdline in the manifest");
    expect(e.error.hint).toMatch(/--firmware uefi/);
    const c = await acl(["boot-test", out, "--case", "nope"]);
    expect(c.stderr).toMatch(/error: unknown boot-test case: nope\nhint: cases are folders in .*qemu\/cases: ab-bad-health, ab-bad-verity, ab-interrupt, ab-update, boot, nvme, scsi, tamper/);
  });

  it("names a listed artifact that is missing", async () => {
    const out = fakeOut();
    mkdirSync(join(out, "x"));
    const r = await acl(["boot-test", out, "--firmware", "uefi", "--case", "boot"]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain(`error: artifact ${join(out, "disk.raw")} is missing`);
  });
});
