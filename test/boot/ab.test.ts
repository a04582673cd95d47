/**
 * "Update, break, fall back" in QEMU (UEFI from the disk alone, reboots
 * allowed, one OVMF vars copy per scenario), through `acl boot-test --case
 * ab-*`, and the image's own updater interrupted by killing QEMU: the verdict comes from what the guest printed and from the disk the
 * scenario left behind, which cgpt and bootctl (on a copy of the ESP) read
 * here as well.
 */
import { execa } from "execa";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { acl } from "../helpers/cli.js";
import { abImage, testSigningKeys } from "../helpers/images.js";

let keep: string;
let v1: string;
let pub: string;
beforeAll(async () => {
  keep = await mkdtemp(join(tmpdir(), "acl-ab-boot-"));
  pub = (await testSigningKeys()).pub;
  v1 = await abImage("1.0.0");
}, 20 * 60_000);
afterAll(async () => {
  if (keep) await rm(keep, { recursive: true, force: true });
});

interface Run { id: string; passed: boolean; reason: string; durationMs: number }

async function scenario(bootCase: string, payloads: string[], tries: number, image = v1): Promise<Run> {
  const args = ["boot-test", image, "--case", bootCase, "--key", pub, "--tries", String(tries), "--keep-logs", keep, "--timeout", "600", "--json"];
  for (const p of payloads) args.push("--payload", p);
  const r = await acl(args, { timeoutMs: 20 * 60_000 });
  const run = (JSON.parse(r.stdout) as { runs: Run[] }).runs[0]!;
  expect(r.exitCode, `${run.reason}\n${r.stderr.slice(-2000)}`).toBe(0);
  return run;
}

async function cgpt(disk: string, i: number): Promise<string> {
  const f = async (flag: string) => (await execa("cgpt", ["show", "-i", String(i), flag, disk])).stdout.trim();
  return `${await f("-P")}/${await f("-T")}/${await f("-S")}`;
}

async function bootctlEntries(disk: string): Promise<{ file: string; isDefault: boolean; tries?: string }[]> {
  const esp = await mkdtemp(join(keep, "esp-"));
  await execa("mount", ["-t", "tmpfs", "none", esp]);
  try {
    await execa("mcopy", ["-s", "-n", "-i", `${disk}@@1048576`, "::/EFI", "::/loader", `${esp}/`], { env: { MTOOLS_SKIP_CHECK: "1" } });
    const r = await execa("bootctl", [`--esp-path=${esp}`, "--no-variables", "list"], { env: { SYSTEMD_RELAX_ESP_CHECKS: "1" } });
    return r.stdout.split(/\n\s*\n/).filter((b) => /source:/.test(b)).map((b) => ({
      file: /source: .*\/([^/\s]+)$/m.exec(b)![1]!,
      isDefault: /\(default\)/.test(b),
      tries: /tries: (.*)$/m.exec(b)?.[1],
    }));
  } finally {
    await execa("umount", [esp]);
  }
}

describe("A/B scenarios under QEMU", () => {
  it("A→B, then B→A': each update boots, is blessed, and the GPT shows it successful", async () => {
    const v2 = await abImage("1.1.0");
    const v3 = await abImage("1.2.0");
    const run = await scenario("ab-update", [join(v2, "minimal-1.1.0.update"), join(v3, "minimal-1.2.0.update")], 3);
    expect(run.reason).toMatch(/1\.1\.0 booted from slot B and was blessed; 1\.2\.0 booted from slot A and was blessed/);
    const disk = join(keep, `${run.id}.raw`);
    expect(await cgpt(disk, 3)).toBe("2/0/1");
    expect(await cgpt(disk, 4)).toBe("1/0/1");
    const bc = await bootctlEntries(disk);
    expect(bc.map((e) => e.file)).toEqual(["acl-A.efi", "acl-B.efi"]);
    expect(bc[0]!.isDefault).toBe(true);
    await rm(disk);
  }, 40 * 60_000);

  it("a B whose /usr fails dm-verity is tried twice, then A boots by itself and B is recorded bad", async () => {
    const v2 = await abImage("1.1.0");
    const run = await scenario("ab-bad-verity", [join(v2, "minimal-1.1.0.update")], 2);
    expect(run.reason).toMatch(/slot B \(1\.1\.0\) failed 2 tries by dm-verity, slot A booted by itself and B is recorded bad/);
    const disk = join(keep, `${run.id}.raw`);
    expect(await cgpt(disk, 3)).toBe("1/0/1");
    expect(await cgpt(disk, 4)).toBe("0/0/0");
    const bc = await bootctlEntries(disk);
    expect(bc.map((e) => e.file)).toEqual(["acl-A.efi", "acl-B+0-2.efi"]);
    expect(bc[0]!.isDefault).toBe(true);
    expect(bc[1]!.tries).toBe("0 left; 2 done");
    const ins = await acl(["inspect", disk]);
    expect(ins.stdout).toMatch(/acl-B\+0-2\.efi\s+bad, 0 tries left, 2 done, slot B/);
    expect(ins.stdout).toMatch(/systemd-boot boots next: acl-A\.efi \(slot A\)/);
    expect(ins.stdout).not.toMatch(/disagreement/);
    await rm(disk);
  }, 40 * 60_000);

  it("a B whose health check fails is tried twice, reboots unblessed each time, then A boots by itself", async () => {
    const bad = await abImage("bad-health");
    const run = await scenario("ab-bad-health", [join(bad, "minimal-1.1.1.update")], 2);
    expect(run.reason).toMatch(/slot B \(1\.1\.1\) failed 2 tries by health check, slot A booted by itself and B is recorded bad/);
    const disk = join(keep, `${run.id}.raw`);
    expect(await cgpt(disk, 4)).toBe("0/0/0");
    expect((await bootctlEntries(disk)).find((e) => e.isDefault)?.file).toBe("acl-A.efi");
    await rm(disk);
  }, 40 * 60_000);

  it("a systemd image: acl's health unit, then Debian's systemd-bless-boot blesses B, and the GPT follows", async () => {
    const s1 = await abImage("systemd-1.0.0");
    const s2 = await abImage("systemd-1.1.0");
    const run = await scenario("ab-update", [join(s2, "plain-systemd-1.1.0.update")], 3, s1);
    expect(run.reason).toMatch(/1\.1\.0 booted from slot B and was blessed/);
    const log = await readFile(join(keep, `${run.id}.log`), "utf8");
    expect(log).toMatch(/systemd-bless-boot\[\d+\]: Marked boot as 'good'/);
    const disk = join(keep, `${run.id}.raw`);
    expect(await cgpt(disk, 4)).toBe("2/0/1");
    expect(await cgpt(disk, 3)).toBe("1/0/1");
    expect((await bootctlEntries(disk)).map((e) => e.file)).toEqual(["acl-B.efi", "acl-A.efi"]);
    await rm(disk);
  }, 40 * 60_000);

  it("the on-node updater killed after its checks, mid-write and mid-copy: A boots each time, then a full apply succeeds", async () => {
    const v2 = await abImage("1.1.0");
    const run = await scenario("ab-interrupt", [join(v2, "minimal-1.1.0.update")], 3);
    expect(run.reason).toBe(
      "killed after its checks, before the first write: slot A booted; killed while writing the slot: slot A booted; killed while copying the UKI to the ESP: slot A booted; then the on-node apply succeeded and slot B booted and was blessed",
    );
    const disk = join(keep, `${run.id}.raw`);
    expect(await cgpt(disk, 4)).toBe("2/0/1");
    expect((await bootctlEntries(disk)).find((e) => e.isDefault)?.file).toBe("acl-B.efi");
    await rm(disk);
  }, 40 * 60_000);
});
