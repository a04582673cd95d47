import { describe, expect, it } from "vitest";
import { UserError } from "../../src/errors.js";
import { checkEspRoom } from "../../src/stages/boot/stage.js";

const MiB = 1024 * 1024;

describe("ESP room for A/B updates", () => {
  it("accepts a 64 MiB ESP for minimal's 20 MB UKIs (two, plus a third during an update)", async () => {
    await expect(checkEspRoom(64 * MiB, 20_772_193, "images/minimal.toml")).resolves.toBeUndefined();
  });

  it("refuses one that is too small, naming the spec key and the size it needs", async () => {
    const e = await checkEspRoom(64 * MiB, 25 * MiB, "images/x.toml").catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UserError);
    const u = e as UserError;
    expect(u.message).toMatch(/the ESP \(64\.0 MiB\) cannot hold two UKIs of 25\.0 MiB and room for a third during an update: it needs 7\d\.0 MiB/);
    expect(u.key).toBe("partitions.esp");
    expect(u.file).toBe("images/x.toml");
    expect(u.hint).toMatch(/^set partitions\.esp = "7\dMiB" or more in the spec$/);
  });
});
