/**
 * A/B updates that fail, in QEMU: a slot that fails dm-verity, one whose
 * health check fails, and the image's own updater killed part way. Each
 * time the old slot must boot by itself; cgpt and bootctl read the disk
 * afterwards. The updates that work are in ab-update.test.ts.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { acl } from "../helpers/cli.js";
import { abImage } from "../helpers/images.js";
import { abBootContext, bootctlEntries, cgpt, scenario } from "./helpers/ab.js";

const ctx = abBootContext();

describe("A/B fallbacks under QEMU", () => {
  it("a B whose /usr fails dm-verity is tried twice, then A boots by itself and B is recorded bad", async () => {
    const v2 = await abImage("1.1.0");
    const run = await scenario({ ...ctx, bootCase: "ab-bad-verity", payloads: [join(v2, "minimal-1.1.0.update")], tries: 2 });
    expect(run.reason).toMatch(/slot B \(1\.1\.0\) failed 2 tries by dm-verity, slot A booted by itself and B is recorded bad/);
    const disk = join(ctx.keep, `${run.id}.raw`);
    expect(await cgpt(disk, 3)).toBe("1/0/1");
    expect(await cgpt(disk, 4)).toBe("0/0/0");
    const bc = await bootctlEntries(disk, ctx.keep);
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
    const run = await scenario({ ...ctx, bootCase: "ab-bad-health", payloads: [join(bad, "minimal-1.1.1.update")], tries: 2 });
    expect(run.reason).toMatch(/slot B \(1\.1\.1\) failed 2 tries by health check, slot A booted by itself and B is recorded bad/);
    const disk = join(ctx.keep, `${run.id}.raw`);
    expect(await cgpt(disk, 4)).toBe("0/0/0");
    expect((await bootctlEntries(disk, ctx.keep)).find((e) => e.isDefault)?.file).toBe("acl-A.efi");
    await rm(disk);
  }, 40 * 60_000);
  it("the on-node updater killed after its checks, mid-write and mid-copy: A boots each time, then a full apply succeeds", async () => {
    const v2 = await abImage("1.1.0");
    const run = await scenario({ ...ctx, bootCase: "ab-interrupt", payloads: [join(v2, "minimal-1.1.0.update")], tries: 3 });
    expect(run.reason).toBe(
      "killed after its checks, before the first write: slot A booted; killed while writing the slot: slot A booted; killed while copying the UKI to the ESP: slot A booted; then the on-node apply succeeded and slot B booted and was blessed",
    );
    const disk = join(ctx.keep, `${run.id}.raw`);
    expect(await cgpt(disk, 4)).toBe("2/0/1");
    expect((await bootctlEntries(disk, ctx.keep)).find((e) => e.isDefault)?.file).toBe("acl-B.efi");
    await rm(disk);
  }, 40 * 60_000);
});
