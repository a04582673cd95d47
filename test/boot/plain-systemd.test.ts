/**
 * A plain systemd image (systemd, udev, dbus, kmod; no containerd, no enabled units)
 * passes `acl boot-test`: the guest checks follow the spec, so it is asked for
 * multi-user and no failed units, not for a containerd it does not have.
 */
import { describe, expect, it } from "vitest";
import { acl } from "../helpers/cli.js";
import { builtImage } from "../helpers/images.js";

describe("boot-test of a plain systemd image", () => {
  it("reaches multi-user with no failed units, and checks no unit it does not enable", async () => {
    const out = await builtImage("plain-systemd", "test/fixtures/specs/plain-systemd.toml");
    const r = await acl(["boot-test", out, "--json", "--cpu", "Haswell-v4", "--firmware", "direct", "--case", "boot", "--timeout", "600"], { timeoutMs: 20 * 60_000 });
    const result = JSON.parse(r.stdout) as { runs: { passed: boolean; reason: string; checks: { name: string; status: string; detail: string }[] }[] };
    const run = result.runs[0]!;
    expect(r.exitCode, `${run.reason}\n${r.stderr.slice(-2000)}`).toBe(0);
    expect(run.passed).toBe(true);
    const byName = Object.fromEntries(run.checks.map((c) => [c.name, c]));
    expect(byName["multi-user"]?.status).toBe("ok");
    expect(byName["failed-units"]).toMatchObject({ status: "ok", detail: "none" });
    expect(byName["enabled-units"]).toMatchObject({ status: "ok", detail: "none" });
    expect(run.checks.some((c) => c.name === "containerd")).toBe(false);
  }, 40 * 60_000);
});
