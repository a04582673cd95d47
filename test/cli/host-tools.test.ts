/**
 * A machine without some of the tools a build needs: one error before the
 * first stage, naming every missing program and file with its package and the
 * apt-get line. The missing ones are made missing for the acl process only:
 * PATH holds links to all other tools, and a private mount namespace (unshare,
 * root) hides systemd-boot's EFI files under an empty tmpfs.
 */
import { execa } from "execa";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO, TEST_CACHE } from "../helpers/cli.js";
import { tempDirs } from "../boot/helpers/temps.js";

const mkdtempSync = tempDirs();
const HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
let out: string | undefined;

afterAll(async () => {
  if (out) await rm(out, { recursive: true, force: true });
});

describe("missing host tools", () => {
  it("are all named before the first stage, with their packages and one apt-get line", async () => {
    const bin = mkdtempSync(join(tmpdir(), "acl-fakebin-"));
    const keep = ["sh", "awk", "cp", "mmdebstrap", "dpkg-deb", "dpkg-query", "apt-get", "apt-cache", "depmod", "xz", "zstd", "mknod", "setfattr", "objcopy", "mkfs.vfat", "mmd", "mcopy", "mkfs.ext4", "debugfs", "qemu-img", "git"];
    for (const t of keep) await symlink((await execa("sh", ["-c", `command -v ${t}`], { env: { PATH: HOST_PATH } })).stdout.trim(), join(bin, t));
    out = await mkdtemp(join(tmpdir(), "acl-fakebin-out-"));
    await rm(out, { recursive: true });
    const where = async (t: string) => (await execa("sh", ["-c", `command -v ${t}`], { env: { PATH: HOST_PATH } })).stdout.trim();
    const script = `${await where("mount")} -t tmpfs tmpfs /usr/lib/systemd/boot/efi && exec "$0" "$@"`;
    const r = await execa(await where("unshare"), ["-m", "--propagation", "private", "sh", "-c", script, process.execPath, join(REPO, "bin/run.js"), "build", "images/minimal.toml", "--out", out], {
      cwd: REPO,
      env: { PATH: bin, ACL_CACHE_DIR: TEST_CACHE },
      reject: false,
    });
    expect(r.exitCode, r.stderr).toBe(1);
    expect(r.stderr).toContain(
      "error: missing on this machine: ldd (libc-bin), mkfs.erofs (erofs-utils), /usr/lib/systemd/boot/efi/linuxx64.efi.stub (systemd-boot-efi), /usr/lib/systemd/boot/efi/systemd-bootx64.efi (systemd-boot-efi)\nhint: apt-get install erofs-utils libc-bin systemd-boot-efi   (or run ./scripts/setup.sh)",
    );
    // nothing ran: no stage line besides loading the spec, no output or work folder
    expect(r.stderr).not.toMatch(/==> (rootfs|usr|boot|disk|release)/);
    await expect(mkdir(out)).resolves.toBeUndefined();
  });
});
