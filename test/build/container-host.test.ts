/**
 * Integration: images/container-host.toml (Debian bookworm, systemd, containerd,
 * sshd) through the real CLI; the output is shared with the boot tests.
 */
import { execa } from "execa";
import { mkdtemp, readFile, readdir, readlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadSpec } from "../../src/config/spec.js";
import { parseManifest, type Manifest } from "../../src/pipeline/manifest.js";
import { builtImage } from "../helpers/images.js";

let out: string;
let m: Manifest;
let usr: string;

beforeAll(async () => {
  out = await builtImage("container-host");
  m = parseManifest(JSON.parse(await readFile(join(out, "manifest.json"), "utf8")));
  usr = join(await mkdtemp(join(tmpdir(), "acl-ch-")), "usr");
  await execa("fsck.erofs", [`--extract=${usr}`, join(out, "usr.img")]);
}, 40 * 60_000);

describe("acl build images/container-host.toml", () => {
  it("records the AKS node image metadata and the x86-64-v3 level", () => {
    expect(m.aks).toEqual({ osSku: "AzureContainerLinux", nodeImageVersion: "AKSAzureContainerLinux-202611.24.0", minKubernetesVersion: "1.34" });
    expect(m.microarch).toBe("x86-64-v3");
    expect(m.isa?.highest).toMatch(/^(none|x86-64|x86-64-v2|x86-64-v3)$/);
  });

  it("carries the container host's packages, and the /usr image passes veritysetup verify", async () => {
    const names = m.inputs.packages.map((p) => p.name);
    for (const p of ["systemd", "udev", "dbus", "containerd", "runc", "iptables", "openssh-server"]) expect(names).toContain(p);
    const v = m.verity;
    const r = await execa("veritysetup", ["verify", join(out, "usr.img"), join(out, "usr.img"), v.rootHash, `--hash-offset=${v.hashOffset}`], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
  });

  it("has no package manager left and only allowed setuid files", async () => {
    const spec = await loadSpec("images/container-host.toml");
    for (const f of m.setuid) expect(spec.policy.allow_setuid).toContain(f);
    const bins = [...(await readdir(join(usr, "bin"))), ...(await readdir(join(usr, "sbin")))];
    for (const pm of ["dpkg", "apt", "apt-get", "apt-cache", "dpkg-query"]) expect(bins).not.toContain(pm);
    await expect(readdir(join(usr, "lib/apt"))).rejects.toThrow();
    for (const b of ["containerd", "runc", "sshd", "iptables"]) expect([...bins]).toContain(b);
  });

  it("keeps /etc in the factory with units enabled and no per-machine secrets", async () => {
    const etc = join(usr, "share/factory/etc");
    expect(await readlink(join(etc, "systemd/system/multi-user.target.wants/containerd.service"))).toBe("/usr/lib/systemd/system/containerd.service");
    expect(await readFile(join(etc, "machine-id"), "utf8")).toBe("");
    expect((await readdir(join(etc, "ssh"))).filter((f) => f.startsWith("ssh_host_"))).toEqual([]);
    expect(await readFile(join(etc, "passwd"), "utf8")).toMatch(/^core:x:500:500:core:\/home\/core:\/bin\/bash$/m);
    // no /usr symlink leads into /etc any more (the factory copy of /etc may point within /etc)
    const { stdout } = await execa("find", [usr, "-path", join(usr, "share/factory"), "-prune", "-o", "-type", "l", "-lname", "/etc/*", "-print"]);
    expect(stdout.trim()).toBe("");
  });
});
