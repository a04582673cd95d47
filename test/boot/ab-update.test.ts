/**
 * A/B updates that work, in QEMU (UEFI from the disk alone, reboots allowed,
 * one OVMF vars copy per scenario), through `acl boot-test --case ab-*`: the
 * verdict comes from what the guest printed and from the disk the scenario
 * left behind, which cgpt and bootctl read here as well. The failure
 * scenarios are in ab-fallback.test.ts (two files, so the two test workers
 * boot them side by side).
 */
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { abImage } from "../helpers/images.js";
import { abBootContext, bootctlEntries, cgpt, scenario } from "./helpers/ab.js";

const ctx = abBootContext();

describe("A/B updates under QEMU", () => {
  it("A→B, then B→A': each update boots, is blessed, and the GPT shows it successful", async () => {
    const v2 = await abImage("1.1.0");
    const v3 = await abImage("1.2.0");
    const run = await scenario({ ...ctx, bootCase: "ab-update", payloads: [join(v2, "minimal-1.1.0.update"), join(v3, "minimal-1.2.0.update")], tries: 3 });
    expect(run.reason).toMatch(/1\.1\.0 booted from slot B and was blessed; 1\.2\.0 booted from slot A and was blessed/);
    const disk = join(ctx.keep, `${run.id}.raw`);
    expect(await cgpt(disk, 3)).toBe("2/0/1");
    expect(await cgpt(disk, 4)).toBe("1/0/1");
    const bc = await bootctlEntries(disk, ctx.keep);
    expect(bc.map((e) => e.file)).toEqual(["acl-A.efi", "acl-B.efi"]);
    expect(bc[0]!.isDefault).toBe(true);
    await rm(disk);
  }, 40 * 60_000);
  it("a systemd image: acl's health unit, then Debian's systemd-bless-boot blesses B, and the GPT follows", async () => {
    const s1 = await abImage("systemd-1.0.0");
    const s2 = await abImage("systemd-1.1.0");
    const run = await scenario({ ...ctx, image: s1, bootCase: "ab-update", payloads: [join(s2, "plain-systemd-1.1.0.update")], tries: 3 });
    expect(run.reason).toMatch(/1\.1\.0 booted from slot B and was blessed/);
    const log = await readFile(join(ctx.keep, `${run.id}.log`), "utf8");
    expect(log).toMatch(/systemd-bless-boot\[\d+\]: Marked boot as 'good'/);
    const disk = join(ctx.keep, `${run.id}.raw`);
    expect(await cgpt(disk, 4)).toBe("2/0/1");
    expect(await cgpt(disk, 3)).toBe("1/0/1");
    expect((await bootctlEntries(disk, ctx.keep)).map((e) => e.file)).toEqual(["acl-B.efi", "acl-A.efi"]);
    await rm(disk);
  }, 40 * 60_000);
});
