/**
 * `acl butane` as users run it: file or stdin in, Ignition on stdout or in
 * -o OUT (written by rename), reports with the YAML path, line and column,
 * --strict, --check, -d, and no stack trace on bad input.
 */
import { execa } from "execa";
import { mkdtemp, readdir, readFile, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { acl, REPO } from "../helpers/cli.js";

const CONFIG = `variant: flatcar
version: 1.1.0
storage:
  files:
    - path: /etc/motd
      mode: 0644
      contents:
        local: motd
passwd:
  users:
    - name: core
      ssh_authorized_keys_local: [core.pub]
systemd:
  units:
    - name: hello.service
      enabled: true
      contents_local: hello.service
`;

describe("acl butane", () => {
  let d: string;
  beforeAll(async () => {
    d = await mkdtemp(join(tmpdir(), "acl-butane-cli-"));
    await mkdir(join(d, "files"));
    await writeFile(join(d, "files/motd"), "Welcome to acl\n");
    await writeFile(join(d, "files/core.pub"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK core@a\r\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL core@b\n");
    await writeFile(join(d, "files/hello.service"), "[Service]\nType=oneshot\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n");
    await writeFile(join(d, "node.bu"), CONFIG);
  });

  it("translates a file with -d to -o (by rename, nothing else left), as Ignition 3.4.0", async () => {
    const out = join(d, "node.ign");
    const r = await acl(["butane", join(d, "node.bu"), "-d", join(d, "files"), "-o", out]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe("");
    const ign = JSON.parse(await readFile(out, "utf8"));
    expect(ign.ignition.version).toBe("3.4.0");
    expect(ign.storage.files[0]).toEqual({ path: "/etc/motd", contents: { compression: "", source: "data:,Welcome%20to%20acl%0A" }, mode: 420 });
    expect(ign.passwd.users[0].sshAuthorizedKeys).toEqual(["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK core@a", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL core@b"]);
    expect(ign.systemd.units[0]).toMatchObject({ name: "hello.service", enabled: true, contents: expect.stringContaining("ExecStart=/bin/true") });
    expect((await readdir(d)).filter((f) => f.includes(".tmp"))).toEqual([]);
  });

  it("reads stdin, writes stdout; --pretty indents; --json returns the config", async () => {
    const r = await execa(process.execPath, [join(REPO, "bin/run.js"), "butane", "--pretty"], { input: "variant: fcos\nversion: 1.4.0\n", reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe('{\n  "ignition": {\n    "version": "3.3.0"\n  }\n}');
    const j = await acl(["butane", join(d, "node.bu"), "-d", join(d, "files"), "--json"]);
    expect(JSON.parse(j.stdout)).toMatchObject({ ignitionVersion: "3.4.0", warnings: [], config: { ignition: { version: "3.4.0" } } });
  });

  it("names the path, line and column of each problem; warnings go to stderr; --strict fails on them", async () => {
    const f = join(d, "warn.bu");
    await writeFile(f, "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/x\n      mode: 644\n      colour: blue\n");
    const r = await acl(["butane", f]);
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain(`${f}: warning at $.storage.files.0.colour, line 7 col 7: unused key colour`);
    expect(r.stderr).toMatch(/warning at \$\.storage\.files\.0\.mode, line 6 col 13: mode 644 is decimal/);
    const s = await acl(["butane", f, "--strict"]);
    expect(s.exitCode).toBe(1);
    expect(s.stderr).toMatch(/2 warning\(s\) with --strict/);
    expect(s.stdout).toBe("");
  });

  it("refuses bad input clearly, without a stack trace, and writes no output", async () => {
    const out = join(d, "never.ign");
    const cases: [string, string, string[], RegExp][] = [
      ["unknown version", "variant: flatcar\nversion: 1.2.0\n", [], /unknown flatcar version "1\.2\.0"; supported: flatcar 1\.0\.0, flatcar 1\.1\.0, fcos 1\.4\.0, fcos 1\.5\.0/],
      ["unknown variant", "variant: coreos\nversion: 1.0.0\n", [], /unknown variant "coreos"/],
      ["a local path leaving the files dir", "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /x\n      contents:\n        local: ../../etc/shadow\n", ["-d", join(d, "files")], /\$\.storage\.files\.0\.contents\.local, line 7 col 16: local path "\.\.\/\.\.\/etc\/shadow" is outside the files dir/],
      ["local without -d", CONFIG, [], /needs a files dir: pass -d DIR/],
      ["invalid YAML", "variant: flatcar\n version: [\n", [], /invalid YAML/],
      ["disks (needs acl's disk stage)", "variant: flatcar\nversion: 1.0.0\nstorage:\n  disks:\n    - device: /dev/vdb\n", [], /\$\.storage\.disks.*not supported by acl yet/],
    ];
    for (const [what, text, extra, re] of cases) {
      const f = join(d, "bad.bu");
      await writeFile(f, text);
      const r = await acl(["butane", f, "-o", out, ...extra]);
      expect(r.exitCode, `${what}: ${r.stderr}`).toBe(1);
      expect(r.stderr, what).toMatch(re);
      expect(r.stderr, what).not.toMatch(/\n\s+at /);
    }
    expect((await readdir(d)).includes("never.ign")).toBe(false);
    const missing = await acl(["butane", join(d, "nope.bu")]);
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toMatch(/cannot read .*nope\.bu/);
  });

  it("--check validates and writes nothing", async () => {
    const out = join(d, "checked.ign");
    const r = await acl(["butane", join(d, "node.bu"), "-d", join(d, "files"), "--check", "-o", out]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ok \(Ignition 3\.4\.0\)/);
    expect((await readdir(d)).includes("checked.ign")).toBe(false);
  });
});
