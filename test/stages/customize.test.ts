import { lstat, mkdir, mkdtemp, readFile, readlink, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { parseSpec } from "../../src/config/spec.js";
import { applyFiles, applyUsers, enableUnits, parseInstall, stampOsRelease } from "../../src/stages/rootfs/customize.js";

let dir: string;
let root: string;

async function spec(extra: string) {
  const text = `name = "t"\nversion = "2.0"\ninit = "systemd"\n[[sources]]\ntype = "dir"\npath = "."\n${extra}`;
  return parseSpec(Buffer.from(text), join(dir, "t.toml"));
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "acl-customize-"));
  root = join(dir, "root");
  await mkdir(join(root, "usr/bin"), { recursive: true });
  await writeFile(join(dir, "motd.txt"), "from a file\n");
});

describe("customize", () => {
  it("writes inline and sourced files with modes and owners", async () => {
    const s = await spec(`[[files]]\npath = "/etc/motd"\nsource = "motd.txt"\n[[files]]\npath = "/usr/bin/hello"\ncontent = "#!/bin/sh\\necho hi\\n"\nmode = "0755"\nuid = 12\ngid = 34\n`);
    expect(await applyFiles(root, s)).toBe(2);
    expect(await readFile(join(root, "etc/motd"), "utf8")).toBe("from a file\n");
    const st = await stat(join(root, "usr/bin/hello"));
    expect(st.mode & 0o7777).toBe(0o755);
    expect([st.uid, st.gid]).toEqual([12, 34]);
    expect((await stat(join(root, "etc/motd"))).mode & 0o777).toBe(0o644);
  });

  it("adds groups and users with homes and ssh keys", async () => {
    await mkdir(join(root, "etc"));
    await writeFile(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n");
    await writeFile(join(root, "etc/group"), "root:x:0:\nsudo:x:27:\n");
    const s = await spec(`[[groups]]\nname = "ops"\ngid = 600\n[[users]]\nname = "core"\nuid = 500\ngroups = ["sudo", "ops"]\nssh_authorized_keys = ["ssh-ed25519 AAAA test"]\n`);
    await applyUsers(root, s);
    expect(await readFile(join(root, "etc/passwd"), "utf8")).toBe("root:x:0:0:root:/root:/bin/bash\ncore:x:500:500:core:/home/core:/bin/sh\n");
    const group = await readFile(join(root, "etc/group"), "utf8");
    expect(group).toContain("sudo:x:27:core\n");
    expect(group).toContain("ops:x:600:core\n");
    expect(group).toContain("core:x:500:\n");
    expect(await readFile(join(root, "etc/shadow"), "utf8")).toMatch(/^core:!:/m);
    expect((await stat(join(root, "etc/shadow"))).mode & 0o777).toBe(0o640);
    expect(await readFile(join(root, "home/core/.ssh/authorized_keys"), "utf8")).toBe("ssh-ed25519 AAAA test\n");
    expect((await stat(join(root, "home/core/.ssh/authorized_keys"))).uid).toBe(500);
  });

  it("rejects a uid clash with a clear message", async () => {
    await mkdir(join(root, "etc"));
    await writeFile(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nmessagebus:x:100:101::/:/bin/false\n");
    const s = await spec(`[[users]]\nname = "core"\nuid = 100\n`);
    await expect(applyUsers(root, s)).rejects.toThrow(/'users\[0\]\.uid' 100 is already used by messagebus/);
  });

  it("enables units like systemctl enable", async () => {
    const unitDir = join(root, "usr/lib/systemd/system");
    await mkdir(unitDir, { recursive: true });
    await writeFile(join(unitDir, "containerd.service"), "[Unit]\nDescription=c\n[Service]\nExecStart=/usr/bin/containerd\n[Install]\nWantedBy=multi-user.target\nAlso=containerd.socket\n");
    await writeFile(join(unitDir, "containerd.socket"), "[Socket]\nListenStream=/run/c.sock\n[Install]\nWantedBy=sockets.target\n");
    const s = await spec(`[systemd]\nenable = ["containerd.service"]\n`);
    const links = await enableUnits(root, s);
    expect(links).toEqual([
      "/etc/systemd/system/multi-user.target.wants/containerd.service",
      "/etc/systemd/system/sockets.target.wants/containerd.socket",
    ]);
    expect(await readlink(join(root, "etc/systemd/system/multi-user.target.wants/containerd.service"))).toBe("/usr/lib/systemd/system/containerd.service");
    const missing = await spec(`[systemd]\nenable = ["nope.service"]\n`);
    await expect(enableUnits(root, missing)).rejects.toThrow(/'systemd.enable\[0\]' names nope.service, but no such unit is in the image/);
  });

  it("parses [Install] sections", () => {
    expect(parseInstall("[Install]\nWantedBy=a.target b.target\n# WantedBy=c\nAlias=x.service\n[Unit]\nWantedBy=z")).toEqual({
      wantedBy: ["a.target", "b.target"],
      requiredBy: [],
      also: [],
      alias: ["x.service"],
    });
  });

  it("stamps os-release with the image identity", async () => {
    await mkdir(join(root, "usr/lib"), { recursive: true });
    await writeFile(join(root, "usr/lib/os-release"), 'ID=debian\nIMAGE_ID=old\n');
    await stampOsRelease(root, await spec(""));
    expect(await readFile(join(root, "usr/lib/os-release"), "utf8")).toBe("ID=debian\nIMAGE_ID=t\nIMAGE_VERSION=2.0\nACL_MICROARCH=x86-64\n");
    expect((await lstat(join(root, "usr/lib/os-release"))).isFile()).toBe(true);
  });
});
