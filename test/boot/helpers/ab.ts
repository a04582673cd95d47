/**
 * Shared by the A/B scenario tests: run `acl boot-test --case ab-*` on the
 * signed minimal 1.0.0 (or another image) and read the disk the scenario left
 * behind with cgpt and bootctl (on a copy of the ESP, as REFERENCE.md says).
 */
import { execa } from "execa";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect } from "vitest";
import { acl } from "../../helpers/cli.js";
import { abImage, testSigningKeys } from "../../helpers/images.js";

export interface AbContext {
  /** Scratch folder for the scenarios' logs and disks (--keep-logs). */
  keep: string;
  /** The signed minimal 1.0.0 the scenarios start from. */
  v1: string;
  /** The test signing key's public half. */
  pub: string;
}

/** Registers the set-up a file of A/B scenarios shares; the fields are filled before its first test. */
export function abBootContext(): AbContext {
  const ctx = {} as AbContext;
  beforeAll(async () => {
    ctx.keep = await mkdtemp(join(tmpdir(), "acl-ab-boot-"));
    ctx.pub = (await testSigningKeys()).pub;
    ctx.v1 = await abImage("1.0.0");
  }, 20 * 60_000);
  afterAll(async () => {
    if (ctx.keep) await rm(ctx.keep, { recursive: true, force: true });
  });
  return ctx;
}

export interface Run { id: string; passed: boolean; reason: string; durationMs: number }

export async function scenario(o: AbContext & { image?: string; bootCase: string; payloads: string[]; tries: number }): Promise<Run> {
  const args = ["boot-test", o.image ?? o.v1, "--case", o.bootCase, "--key", o.pub, "--tries", String(o.tries), "--keep-logs", o.keep, "--timeout", "600", "--json"];
  for (const p of o.payloads) args.push("--payload", p);
  const r = await acl(args, { timeoutMs: 20 * 60_000 });
  const run = (JSON.parse(r.stdout) as { runs: Run[] }).runs[0]!;
  expect(r.exitCode, `${run.reason}\n${r.stderr.slice(-2000)}`).toBe(0);
  return run;
}

export async function cgpt(disk: string, i: number): Promise<string> {
  const f = async (flag: string) => (await execa("cgpt", ["show", "-i", String(i), flag, disk])).stdout.trim();
  return `${await f("-P")}/${await f("-T")}/${await f("-S")}`;
}

export async function bootctlEntries(disk: string, scratch: string): Promise<{ file: string; isDefault: boolean; tries?: string }[]> {
  const esp = await mkdtemp(join(scratch, "esp-"));
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
