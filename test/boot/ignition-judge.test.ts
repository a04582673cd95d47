/**
 * The --ignition judge, pure: probes planned from a config (translated by our
 * Butane code from the boot tests' fixture), the guest's ACL-IGN answers
 * compared with it, the base config under the user's, and what the initramfs
 * said on each boot.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadButane } from "../../src/config/butane.js";
import { ignitionBootMarkers, judgeIgnition, parseIgnitionAnswers, planIgnitionProbes, withBase, type IgnitionPlan } from "../../src/services/boot-ignition.js";
import { judgeProvisioning } from "../../src/services/boot-test.js";
import { REPO } from "../helpers/cli.js";

const FIX = join(REPO, "test/fixtures/ignition");
const sha = (s: string | Buffer) => createHash("sha256").update(s).digest("hex");

/** What a guest that applied the fixture exactly prints (as data/guest/boot-check.sh does). */
async function goodAnswers(): Promise<string[]> {
  const hello = await readFile(join(FIX, "provision/hello.sh"));
  const limits = await readFile(join(FIX, "provision/limits.conf"));
  const unit = (await readFile(join(FIX, "provision.bu"), "utf8")).match(/- name: acl-hello\.service[\s\S]*?contents: \|\n([\s\S]*?)\n    - name: acl-never/)![1]!.replace(/^ {8}/gm, "") + "\n";
  return [
    "ACL-IGN dir /var/lib/acl-test 750 1500 1600 deploy ops",
    `ACL-IGN file /opt/acl-test/hello.sh 755 0 0 root root ${sha(hello)}`,
    `ACL-IGN file /etc/acl-test/token 600 1500 1600 deploy ops ${sha("token=boot-test\n")}`,
    `ACL-IGN file /etc/acl-test/limits.conf 640 0 0 root root ${sha(limits)}`,
    `ACL-IGN file /etc/sysctl.d/50-container-host.conf 644 0 0 root root ${sha("net.ipv4.ip_forward = 1\n")}`,
    "ACL-IGN link /etc/acl-test/hello /opt/acl-test/hello.sh",
    "ACL-IGN user core 500 500 /home/core /bin/bash core,sudo",
    "ACL-IGN keysfile core 600 500 500 core core",
    `ACL-IGN key core ${sha("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBootTestCoreKey000000000000000000000000 core@test")}`,
    "ACL-IGN user deploy 1500 1500 /home/deploy /bin/sh deploy,ops",
    "ACL-IGN keysfile deploy 600 1500 1500 deploy deploy",
    `ACL-IGN key deploy ${sha("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBootTestDeployKeyOne00000000000000000000 deploy@test")}`,
    `ACL-IGN key deploy ${sha("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBootTestDeployKeyTwo00000000000000000000 deploy@ci")}`,
    "ACL-IGN group ops 1600",
    `ACL-IGN dropin ssh.service 20-acl-test.conf ${sha("[Service]\nEnvironment=ACL_TEST=1\n")} loaded`,
    `ACL-IGN unit acl-hello.service enabled active success 0 ${sha(unit)}`,
    "ACL-IGN unit acl-never.service masked inactive success 0 -",
    "ACL-IGN done 12",
  ];
}

describe("boot-test --ignition: probes and their judge", () => {
  let plan: IgnitionPlan;
  let good: string[];
  beforeAll(async () => {
    const r = await loadButane({ text: await readFile(join(FIX, "provision.bu"), "utf8"), name: "provision.bu" }, { filesDir: join(FIX, "provision") });
    plan = planIgnitionProbes(r.config);
    good = await goodAnswers();
  });

  it("plans one probe per thing the config writes, in the guest's line format", () => {
    expect(plan.probes.split("\n").filter(Boolean)).toEqual([
      "file /opt/acl-test/hello.sh", "file /etc/acl-test/token", "file /etc/acl-test/limits.conf", "file /etc/sysctl.d/50-container-host.conf",
      "dir /var/lib/acl-test", "link /etc/acl-test/hello", "user core", "user deploy", "group ops",
      "dropin ssh.service 20-acl-test.conf", "unit acl-hello.service", "unit acl-never.service",
    ]);
    expect(plan.skipped).toEqual([]);
    // the gzip data URL is decoded: the expected digest is the file's
    const limits = plan.expect.find((e) => e.kind === "file" && e.path.endsWith("limits.conf"));
    expect(limits).toMatchObject({ mode: 0o640 });
  });

  it("passes a guest that shows exactly the config", () => {
    expect(judgeIgnition(plan, good)).toEqual([]);
  });

  it("names each difference: mode, owner, content, link, uid, group, keys, unit state, drop-in, missing", () => {
    const bad = good
      .map((l) => l.replace("ACL-IGN file /etc/acl-test/token 600 1500", "ACL-IGN file /etc/acl-test/token 644 0"))
      .map((l) => (l.startsWith("ACL-IGN file /opt/acl-test/hello.sh") ? l.replace(/[0-9a-f]{64}$/, "0".repeat(64)) : l))
      .map((l) => l.replace("ACL-IGN link /etc/acl-test/hello /opt/acl-test/hello.sh", "ACL-IGN link /etc/acl-test/hello /elsewhere"))
      .map((l) => l.replace("ACL-IGN user deploy 1500 1500 /home/deploy /bin/sh deploy,ops", "ACL-IGN user deploy 1501 1500 /home/deploy /bin/sh deploy"))
      .map((l) => l.replace("ACL-IGN keysfile deploy 600", "ACL-IGN keysfile deploy 644"))
      .filter((l) => !l.includes("deploy@ci") && !l.startsWith(`ACL-IGN key deploy ${sha("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBootTestDeployKeyTwo00000000000000000000 deploy@ci")}`))
      .map((l) => l.replace("acl-hello.service enabled active", "acl-hello.service disabled inactive"))
      .map((l) => l.replace(/20-acl-test\.conf (\S+) loaded/, "20-acl-test.conf $1 not-loaded"))
      .map((l) => l.replace("ACL-IGN dir /var/lib/acl-test 750 1500 1600 deploy ops", "ACL-IGN dir /var/lib/acl-test missing"))
      .map((l) => l.replace("acl-never.service masked", "acl-never.service enabled"));
    const p = judgeIgnition(plan, bad).join("\n");
    for (const want of [
      "file /etc/acl-test/token: mode 0644, the config says 0600",
      "file /etc/acl-test/token: owner is 0, the config says 1500",
      "file /opt/acl-test/hello.sh: content differs",
      "link /etc/acl-test/hello: points to /elsewhere",
      "user deploy: uid 1501, the config says 1500",
      "user deploy: not in group ops",
      "user deploy: authorized_keys has mode 644",
      "user deploy: 1 of 2 ssh keys not in authorized_keys",
      "unit acl-hello.service: disabled, the config enables it",
      "dropin ssh.service 20-acl-test.conf: systemd does not load it",
      "dir /var/lib/acl-test: missing on the guest",
      "unit acl-never.service: enabled, the config masks it",
    ]) expect(p).toContain(want);
  });

  it("refuses a transcript with too few answers or none", () => {
    expect(judgeIgnition(plan, good.filter((l) => !l.startsWith("ACL-IGN done")))).toEqual(["the guest answered no Ignition probes (no ACL-IGN done line)"]);
    expect(judgeIgnition(plan, [...good.slice(0, -1), "ACL-IGN done 11"])[0]).toMatch(/answered 11 of 12/);
    expect(parseIgnitionAnswers(good).keys.get("deploy")?.size).toBe(2);
  });

  it("puts the image's base config under the user's: a path both name is judged by the user's", () => {
    const base = planIgnitionProbes({
      ignition: { version: "3.3.0" },
      storage: {
        files: [{ path: "/etc/sysctl.d/50-container-host.conf", contents: { source: "data:,base" } }],
        directories: [{ path: "/etc/containerd", mode: 0o755 }],
      },
    });
    const merged = withBase(plan, base);
    expect(merged.expect.filter((e) => "path" in e && e.path === "/etc/sysctl.d/50-container-host.conf")).toHaveLength(1);
    expect(merged.expect.find((e) => "path" in e && e.path === "/etc/sysctl.d/50-container-host.conf")).toMatchObject({ sha256: sha("net.ipv4.ip_forward = 1\n") });
    expect(merged.probes).toContain("dir /etc/containerd\n");
    expect(judgeIgnition(merged, good)[0]).toMatch(/answered 12 of 13/);
  });

  it("reads the initramfs's lines: first boot applied, second skipped, a failure with Ignition's own words", () => {
    const first = ["acl-init: ignition: first boot; user config: QEMU fw_cfg opt/com.coreos/config", "acl-init: ignition: first boot done (flag removed from the ESP)", ...good];
    const again = ["acl-init: ignition: not the first boot (no acl/first_boot on the ESP): skipped", ...good];
    const ok = { passed: true, reason: "systemd: 7 checks ok" };
    expect(judgeProvisioning(plan, first, "first", ok)).toMatchObject({ passed: true, reason: expect.stringContaining("12 probes ok") });
    expect(judgeProvisioning(plan, again, "again", ok)).toMatchObject({ passed: true });
    expect(judgeProvisioning(plan, first, "again", ok)).toMatchObject({ passed: false, reason: expect.stringContaining("Ignition ran again") });
    expect(judgeProvisioning(plan, again, "first", ok)).toMatchObject({ passed: false, reason: expect.stringContaining("did not run on the first boot") });
    const failed = [
      "acl-init: ignition: first boot; user config: QEMU fw_cfg opt/com.coreos/config",
      "acl-init: what Ignition reported:",
      '  ignition: CRITICAL : files: createFilesystemsFiles: createFiles: op(2): [failed]   writing file "/usr/lib/x": mkdir /usr/lib: read-only file system',
      "acl-init: FATAL: Ignition failed: stage files exited with status 1; the first boot is not marked done, so the next boot runs it again",
    ];
    expect(ignitionBootMarkers(failed)).toMatchObject({ ran: true, done: false, failure: expect.stringMatching(/^Ignition failed: stage files/) });
    const v = judgeProvisioning(plan, failed, "first", { passed: false, reason: "never reached userspace" });
    expect(v.passed).toBe(false);
    expect(v.reason).toMatch(/Ignition failed: stage files .* \(CRITICAL : files: .*read-only file system\)/);
  });
});
