/**
 * Boot the shipped images under QEMU (TCG) with `acl boot-test`, as CI and
 * users run it, and judge what the guests printed: minimal by direct kernel
 * boot and by UEFI from the disk alone, refused on a v2 CPU (Nehalem),
 * refused when USR-A is tampered with; container-host to multi-user.
 */
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { acl } from "../helpers/cli.js";
import { builtImage } from "../helpers/images.js";

interface Run {
  case: string;
  cpu: string;
  firmware: string;
  expected: string;
  passed: boolean;
  reason: string;
  checks?: { name: string; status: string; detail: string }[];
}

async function bootTest(image: string, args: string[]) {
  const out = await builtImage(image);
  const tmp = await mkdtemp(join(tmpdir(), `acl-boot-${image}-`));
  const junit = join(tmp, "junit.xml");
  const r = await acl(["boot-test", out, "--json", "--junit", junit, "--keep-logs", join(tmp, "logs"), ...args], { timeoutMs: 25 * 60_000 });
  const result = JSON.parse(r.stdout) as { runs: Run[]; passed: number; failed: number };
  return { r, result, junit: await readFile(junit, "utf8"), tmp };
}

describe("boot-test of images/minimal.toml", () => {
  it("boots on Haswell-v4 (direct and UEFI), refuses Nehalem cleanly, and refuses a tampered USR-A", async () => {
    const { r, result, junit } = await bootTest("minimal", ["--cpu", "Haswell-v4", "--cpu", "Nehalem"]);
    const diag = JSON.stringify(result.runs.map((x) => [x.case, x.cpu, x.firmware, x.passed, x.reason]), null, 1);
    expect(r.exitCode, diag + r.stderr.slice(-2000)).toBe(0);
    const find = (c: string, cpu: string, fw: string) => result.runs.find((x) => x.case === c && x.cpu === cpu && x.firmware === fw);
    const direct = find("boot", "Haswell-v4", "direct")!;
    const uefi = find("boot", "Haswell-v4", "uefi")!;
    for (const run of [direct, uefi]) {
      expect(run.passed, run.reason).toBe(true);
      const names = (run.checks ?? []).filter((c) => c.status === "ok").map((c) => c.name);
      expect(names).toEqual(expect.arrayContaining(["userspace", "usr-verity", "no-pkg-manager", "hwcaps"]));
    }
    const nehalem = result.runs.find((x) => x.case === "boot" && x.cpu === "Nehalem")!;
    expect(nehalem.expected).toBe("refuse-cpu");
    expect(nehalem.passed, nehalem.reason).toBe(true);
    expect(nehalem.reason).toMatch(/avx2/);
    const tamper = result.runs.find((x) => x.case === "tamper")!;
    expect(tamper.passed, tamper.reason).toBe(true);
    expect(tamper.reason).toMatch(/verity/);
    expect(result.failed).toBe(0);
    expect(junit).toMatch(/<testsuite[^>]* failures="0"/);
  }, 30 * 60_000);
});

describe("boot-test of images/container-host.toml", () => {
  it("reaches multi-user with no failed units and the units it enables (containerd, ssh, networkd) up", async () => {
    const { r, result } = await bootTest("container-host", ["--cpu", "Haswell-v4", "--firmware", "direct", "--case", "boot", "--timeout", "600"]);
    const run = result.runs[0]!;
    expect(r.exitCode, run?.reason + r.stderr.slice(-2000)).toBe(0);
    const ok = (run.checks ?? []).filter((c) => c.status === "ok").map((c) => c.name);
    expect(ok).toEqual(expect.arrayContaining(["userspace", "usr-verity", "no-pkg-manager", "multi-user", "failed-units", "enabled-units"]));
    expect(run.checks.find((c) => c.name === "enabled-units")?.detail).toBe("containerd.service ssh.service systemd-networkd.service");
  }, 40 * 60_000);
});
