import { chmod, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import {
  auditPackageManagers,
  checkSetuid,
  listSetuid,
  mergeUsr,
  moveToFactory,
  removePackageManagers,
  resolveEtcLinks,
} from "../../src/stages/rootfs/sanitize.js";
import { resolveInRoot, imageRel } from "../../src/stages/rootfs/tree.js";

let root: string;

async function put(rel: string, content = "x", mode = 0o644): Promise<void> {
  const p = join(root, rel);
  await mkdir(join(p, ".."), { recursive: true });
  await writeFile(p, content);
  await chmod(p, mode);
}

const exists = (rel: string) => lstat(join(root, rel)).then(() => true, () => false);

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "acl-sanitize-"));
});

describe("tree helpers", () => {
  it("resolves paths inside the root like a chroot", async () => {
    await mkdir(join(root, "usr/bin"), { recursive: true });
    await symlink("usr/bin", join(root, "bin"));
    await symlink("/etc/alternatives/awk", join(root, "usr/bin/awk"));
    await mkdir(join(root, "etc/alternatives"), { recursive: true });
    await symlink("/usr/bin/mawk", join(root, "etc/alternatives/awk"));
    await symlink("../../../../../../etc/passwd", join(root, "usr/bin/evil"));
    expect(await resolveInRoot(root, "bin/awk")).toBe("usr/bin/mawk");
    expect(await resolveInRoot(root, "bin/awk", false)).toBe("usr/bin/awk");
    expect(await resolveInRoot(root, "usr/bin/evil")).toBe("etc/passwd");
    expect(imageRel("/etc//./motd")).toBe("etc/motd");
    expect(() => imageRel("/../etc")).toThrow(/escapes the image root/);
  });
});

describe("sanitize", () => {
  it("merges /bin, /sbin and /lib* into /usr with relative symlinks", async () => {
    await put("bin/busybox", "bb", 0o755);
    await put("lib64/ld-linux-x86-64.so.2", "ld", 0o755);
    await put("usr/bin/existing", "e");
    const merged = await mergeUsr(root);
    expect(merged).toEqual(["bin", "lib64"]);
    expect(await readlink(join(root, "bin"))).toBe("usr/bin");
    expect(await readFile(join(root, "usr/bin/busybox"), "utf8")).toBe("bb");
    expect((await lstat(join(root, "usr/bin/busybox"))).mode & 0o777).toBe(0o755);
    expect(await readFile(join(root, "usr/lib64/ld-linux-x86-64.so.2"), "utf8")).toBe("ld");
    expect(await exists("usr/bin/existing")).toBe(true);
    expect(await mergeUsr(root)).toEqual([]);
  });

  it("takes the links an RPM system lays out already, Fedora 42's /sbin -> usr/bin too", async () => {
    await mkdir(join(root, "usr/bin"), { recursive: true });
    await mkdir(join(root, "usr/lib"), { recursive: true });
    await symlink("usr/bin", join(root, "bin"));
    await symlink("usr/bin", join(root, "sbin"));
    await symlink("usr/lib", join(root, "lib"));
    expect(await mergeUsr(root)).toEqual([]);
    await rm(join(root, "lib"));
    await symlink("usr/bin", join(root, "lib"));
    await expect(mergeUsr(root)).rejects.toThrow(/\/lib is a symlink to usr\/bin, expected usr\/lib/);
  });

  it("resolves /usr symlinks that point into /etc", async () => {
    await put("usr/bin/mawk", "mawk", 0o755);
    await mkdir(join(root, "etc/alternatives"), { recursive: true });
    await symlink("/usr/bin/mawk", join(root, "etc/alternatives/awk"));
    await symlink("/etc/alternatives/awk", join(root, "usr/bin/awk"));
    await put("etc/environment", "PATH=/usr/bin\n");
    await mkdir(join(root, "usr/share/doc"), { recursive: true });
    await symlink("../../../etc/environment", join(root, "usr/share/doc/environment"));
    await symlink("/etc/missing", join(root, "usr/share/doc/dangling"));
    const fixed = await resolveEtcLinks(root);
    expect(await readlink(join(root, "usr/bin/awk"))).toBe("mawk");
    expect((await lstat(join(root, "usr/share/doc/environment"))).isFile()).toBe(true);
    expect(await readFile(join(root, "usr/share/doc/environment"), "utf8")).toBe("PATH=/usr/bin\n");
    expect(await exists("usr/share/doc/dangling")).toBe(false);
    expect(fixed).toContain("usr/bin/awk -> usr/bin/mawk");
    expect(fixed.some((f) => f.startsWith("usr/share/doc/dangling (removed"))).toBe(true);
  });

  it("removes package managers without touching the merged-/usr symlinks, and audits", async () => {
    await put("usr/bin/dpkg", "", 0o755);
    await put("usr/bin/apt-get", "", 0o755);
    await put("usr/bin/busybox", "", 0o755);
    await put("usr/lib/x86_64-linux-gnu/libc.so.6", "libc");
    await put("var/lib/dpkg/status", "Package: dpkg\n");
    await put("var/lib/dpkg/info/dpkg.list", "/.\n/bin\n/lib\n/usr\n/usr/bin\n/usr/bin/dpkg\n/usr/share/doc/dpkg/copyright\n");
    await put("usr/share/doc/dpkg/copyright", "c");
    await put("etc/apt/sources.list", "deb x");
    await symlink("usr/bin", join(root, "bin"));
    await symlink("usr/lib", join(root, "lib"));
    await expect(auditPackageManagers(root)).rejects.toThrow(/package manager files remain in the image: .*\/usr\/bin\/apt-get/);
    const removed = await removePackageManagers(root);
    expect(removed).toEqual(expect.arrayContaining(["usr/bin/dpkg", "usr/bin/apt-get", "var/lib/dpkg", "etc/apt"]));
    expect(await readlink(join(root, "bin"))).toBe("usr/bin");
    expect(await readlink(join(root, "lib"))).toBe("usr/lib");
    expect(await exists("usr/bin/busybox")).toBe(true);
    expect(await exists("usr/lib/x86_64-linux-gnu/libc.so.6")).toBe(true);
    await expect(auditPackageManagers(root)).resolves.toBeUndefined();
    // a package manager hidden under another name in a bin folder is still found
    await put("usr/sbin/apk", "", 0o755);
    await expect(auditPackageManagers(root)).rejects.toThrow(/\/usr\/sbin\/apk/);
  });

  it("lists setuid/setgid files and enforces the allow list", async () => {
    await put("usr/bin/su", "", 0o4755);
    await put("usr/bin/wall", "", 0o2755);
    await put("usr/bin/ls", "", 0o755);
    const found = await listSetuid(root);
    expect(found).toEqual(["/usr/bin/su", "/usr/bin/wall"]);
    expect(() => checkSetuid(found, ["/usr/bin/su"], "images/x.toml")).toThrow(/not allowed by the spec: \/usr\/bin\/wall/);
    expect(() => checkSetuid(found, ["/bin/su", "/usr/bin/wall"], "images/x.toml")).not.toThrow();
  });

  it("moves state folders into the factory and keeps only /usr", async () => {
    await put("usr/bin/x");
    await put("etc/hostname", "h\n");
    await put("var/lib/misc/y");
    await put("home/core/.profile");
    await mkdir(join(root, "proc"));
    await symlink("usr/bin", join(root, "bin"));
    const moved = await moveToFactory(root);
    expect(moved).toEqual(["etc", "home", "var"]);
    expect(await readFile(join(root, "usr/share/factory/etc/hostname"), "utf8")).toBe("h\n");
    expect(await exists("usr/share/factory/home/core/.profile")).toBe(true);
    const { readdir } = await import("node:fs/promises");
    expect(await readdir(root)).toEqual(["usr"]);
  });
});

describe("machine state", () => {
  it("removes SSH host keys, machine ids, seeds and logs, and leaves an empty machine-id", async () => {
    const { removeMachineState } = await import("../../src/stages/rootfs/sanitize.js");
    await put("etc/ssh/ssh_host_ed25519_key", "secret");
    await put("etc/ssh/ssh_host_ed25519_key.pub", "pub");
    await put("etc/ssh/sshd_config", "Port 22\n");
    await put("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    await put("var/lib/systemd/random-seed", "seed");
    await put("var/log/apt/eipp.log.xz", "log");
    const removed = await removeMachineState(root);
    expect(removed).toEqual(expect.arrayContaining(["etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub", "var/lib/systemd/random-seed", "var/log/apt/eipp.log.xz"]));
    expect(await exists("etc/ssh/sshd_config")).toBe(true);
    expect(await readFile(join(root, "etc/machine-id"), "utf8")).toBe("");
    expect(await exists("var/log/apt")).toBe(true);
  });
});
