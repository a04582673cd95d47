import { copyFile, mkdir, mkdtemp, readlink, lstat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { appletTarget, installBusyboxApplets } from "../../src/stages/rootfs/busybox.js";
import { auditPackageManagers } from "../../src/stages/rootfs/sanitize.js";

describe("busybox applets", () => {
  it("maps listed applets into the merged /usr", () => {
    expect(appletTarget("bin/sh")).toBe("usr/bin/sh");
    expect(appletTarget("sbin/getty")).toBe("usr/sbin/getty");
    expect(appletTarget("usr/bin/awk")).toBe("usr/bin/awk");
    expect(appletTarget("linuxrc")).toBeUndefined();
  });

  it("links the real busybox-static applets, never over files and never package managers", async () => {
    const root = await mkdtemp(join(tmpdir(), "acl-bb-"));
    await mkdir(join(root, "usr/bin"), { recursive: true });
    await copyFile("/bin/busybox", join(root, "usr/bin/busybox"));
    await copyFile("/bin/busybox", join(root, "usr/bin/ls")); // a "real" ls
    const made = await installBusyboxApplets(root);
    expect(made).toEqual(expect.arrayContaining(["usr/bin/sh", "usr/sbin/getty", "usr/sbin/init", "usr/sbin/switch_root"]));
    expect(await readlink(join(root, "usr/bin/sh"))).toBe("busybox");
    expect(await readlink(join(root, "usr/sbin/getty"))).toBe("../bin/busybox");
    expect((await lstat(join(root, "usr/bin/ls"))).isFile()).toBe(true);
    await expect(lstat(join(root, "usr/bin/rpm"))).rejects.toThrow();
    await expect(auditPackageManagers(root)).resolves.toBeUndefined();
  });

  it("explains a missing busybox", async () => {
    const root = await mkdtemp(join(tmpdir(), "acl-bb-"));
    await expect(installBusyboxApplets(root)).rejects.toThrow(/no \/usr\/bin\/busybox/);
  });
});
