/**
 * The configs acl writes, applied by the real Ignition: Debian's 2.14 engine
 * (the one acl images will run at first boot) with `-platform file`, stages
 * fetch-offline then files, into a temporary root. The root then holds
 * exactly the files (contents, modes, owners), folders, links, users, ssh
 * keys and presets each config asks for.
 *
 * Debian's build needs three things explicit here: a `modprobe` and a
 * `setfiles` that succeed (SELinux relabelling is compiled in; it reads
 * SELINUXTYPE from the root's /etc/selinux/config), and
 * IGNITION_WRITE_AUTHORIZED_KEYS_FRAGMENT=false so keys land in
 * ~/.ssh/authorized_keys, which Debian's sshd reads.
 */
import { execa } from "execa";
import { chmod, chown, lstat, mkdir, mkdtemp, readFile, readlink, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { beforeAll, describe, expect, it } from "vitest";
import { fromDataUrl } from "../../src/formats/butane/dataurl.js";
import { goJson, translateButane } from "../../src/formats/butane/translate.js";
import { filesDirView } from "../../src/services/butane.js";
import { CASES, filesDir } from "../helpers/butane.js";
import { REPO } from "../helpers/cli.js";

const IGNITION = "/usr/lib/dracut/modules.d/30ignition/ignition";
/** The configs in butane/ with their files dirs. */
export const SHIPPED: [string, string][] = [["butane/container-host.bu", "butane/container-host"]];

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * Configs that Ignition can apply to a plain folder: no network sources, no filesystems to format,
 * no hard link to a file the config does not write, and no "gzip" label on data that is not gzip (butane keeps an author's label as given; Ignition
 * then fails, as it should).
 */
function applicable(ign: Json): boolean {
  const resources: Json[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") {
      if (typeof (v as Json).source === "string") resources.push(v as Json);
      Object.values(v).forEach(walk);
    }
  };
  walk(ign);
  const ok = (r: Json) => String(r.source).startsWith("data:") && (r.compression !== "gzip" || fromDataUrl(r.source)!.subarray(0, 2).equals(Buffer.from([0x1f, 0x8b])));
  // a hard link needs its target to exist, and a folder under test holds only what the config writes
  const paths = new Set((ign.storage?.files ?? []).map((f: Json) => f.path));
  const links = (ign.storage?.links ?? []).every((l: Json) => !l.hard || paths.has(l.target));
  return resources.every(ok) && links && !ign.storage?.filesystems && !ign.ignition?.config;
}

async function freshRoot(base: string): Promise<{ root: string; bin: string }> {
  const root = await mkdtemp(join(base, "root-"));
  // Ignition writes a user's ssh keys as that user: the folders above must be searchable (mkdtemp makes 0700)
  await chmod(root, 0o755);
  const bin = join(base, "bin");
  await mkdir(join(root, "etc/selinux"), { recursive: true });
  // the accounts an image has before Ignition runs: the configs name core, and the groups wheel, docker and deploy
  await writeFile(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\ncore:x:500:500::/home/core:/bin/sh\n");
  await writeFile(join(root, "etc/group"), "root:x:0:\nusers:x:100:\ncore:x:500:\nwheel:x:10:\ndocker:x:998:\ndeploy:x:1500:\n");
  await writeFile(join(root, "etc/shadow"), "root:*:19000:0:99999:7:::\ncore:*:19000:0:99999:7:::\n");
  await writeFile(join(root, "etc/gshadow"), "root:*::\nusers:*::\ncore:*::\nwheel:*::\ndocker:*::\ndeploy:*::\n");
  await mkdir(join(root, "home/core"), { recursive: true });
  await chown(join(root, "home/core"), 500, 500);
  // Debian's Ignition relabels for SELinux at the end of the files stage: a config it can read, and a setfiles that does nothing
  await writeFile(join(root, "etc/selinux/config"), "SELINUX=disabled\nSELINUXTYPE=targeted\n");
  await mkdir(bin, { recursive: true });
  for (const tool of ["modprobe", "setfiles"]) {
    await writeFile(join(bin, tool), "#!/bin/sh\nexit 0\n");
    await chmod(join(bin, tool), 0o755);
  }
  return { root, bin };
}

async function apply(base: string, name: string, json: string): Promise<{ root: string; log: string }> {
  const { root, bin } = await freshRoot(base);
  const cfg = join(base, `${name}.ign`);
  await writeFile(cfg, json);
  const env = { PATH: `${bin}:${process.env.PATH}`, IGNITION_CONFIG_FILE: cfg, IGNITION_WRITE_AUTHORIZED_KEYS_FRAGMENT: "false" };
  const common = ["-platform", "file", "-root", root, "-log-to-stdout", "-config-cache", join(base, `${name}.cache.json`), "-state-file", join(base, `${name}.state.json`)];
  let log = "";
  for (const stage of ["fetch-offline", "files"]) {
    const r = await execa(IGNITION, ["-stage", stage, ...common], { env, reject: false, all: true });
    log += r.all;
    if (r.exitCode !== 0) throw new Error(`ignition -stage ${stage} failed for ${name}:\n${String(r.all).slice(-2000)}`);
  }
  return { root, log };
}

function content(r: Json | undefined): Buffer {
  if (!r) return Buffer.alloc(0);
  const b = fromDataUrl(r.source)!;
  return r.compression === "gzip" ? gunzipSync(b) : b;
}

function idOf(file: string, name: string): number {
  for (const l of file.split("\n")) {
    const f = l.split(":");
    if (f[0] === name) return Number(f[2]);
  }
  return NaN;
}

describe("Ignition configs from acl butane, applied by Debian's Ignition 2.14 (-platform file)", () => {
  let base: string;
  const corpus: { name: string; ign: Json; json: string }[] = [];
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), "acl-ign-apply-"));
    await chmod(base, 0o755);
    for (const c of CASES.filter((x) => x.version === "1.0.0" && x.exit_code === 0 && !x.strict)) {
      const dir = c.files_dir ? await filesDir(c) : undefined;
      const r = await translateButane(c.butane, { files: dir ? filesDirView(dir) : undefined });
      if (r.config && applicable(r.config)) corpus.push({ name: c.name, ign: r.config, json: goJson(r.config) });
    }
    // and the configs shipped in butane/
    for (const [bu, dir] of SHIPPED) {
      const r = await translateButane(await readFile(join(REPO, bu), "utf8"), { files: filesDirView(join(REPO, dir)) });
      expect(r.reports, bu).toEqual([]);
      corpus.push({ name: bu.replace(/\//g, "_"), ign: r.config!, json: goJson(r.config) });
    }
  });

  it("the corpus has files, folders, links, users with keys and units", () => {
    expect(corpus.length).toBeGreaterThan(15);
    expect(corpus.map((c) => c.name)).toContain("butane_container-host.bu");
    const has = (f: (i: Json) => unknown) => corpus.some((c) => f(c.ign));
    for (const f of [(i: Json) => i.storage?.files, (i: Json) => i.storage?.directories, (i: Json) => i.storage?.links, (i: Json) => i.passwd?.users?.some((u: Json) => u.sshAuthorizedKeys), (i: Json) => i.systemd?.units]) expect(has(f)).toBe(true);
  });

  it("gives exactly the files, modes, owners, folders, links, users, keys and presets each config asks for", async () => {
    for (const { name, ign, json } of corpus) {
      const { root } = await apply(base, name, json);
      const passwd = await readFile(join(root, "etc/passwd"), "utf8");
      const group = await readFile(join(root, "etc/group"), "utf8");
      const owner = (n: Json | undefined, file: string, kind: "user" | "group") => (n?.id ?? (n?.name ? idOf(file, n.name) : 0)) as number;
      for (const f of ign.storage?.files ?? []) {
        const p = join(root, f.path);
        const want = Buffer.concat([content(f.contents), ...(f.append ?? []).map(content)]);
        expect(Buffer.compare(await readFile(p), want), `${name}: ${f.path} content`).toBe(0);
        const st = await stat(p);
        // Ignition 2.14 (spec 3.3) drops setuid/setgid/sticky bits: a decimal mistake such as 644 (0o1204) gives 0o204
        expect(st.mode & 0o7777, `${name}: ${f.path} mode`).toBe((f.mode ?? 0o644) & 0o777);
        expect([st.uid, st.gid], `${name}: ${f.path} owner`).toEqual([owner(f.user, passwd, "user"), owner(f.group, group, "group")]);
      }
      for (const d of ign.storage?.directories ?? []) {
        const st = await stat(join(root, d.path));
        expect(st.isDirectory(), `${name}: ${d.path}`).toBe(true);
        expect(st.mode & 0o7777, `${name}: ${d.path} mode`).toBe((d.mode ?? 0o755) & 0o777);
      }
      for (const l of ign.storage?.links ?? []) {
        const p = join(root, l.path);
        if (l.hard) expect((await stat(p)).ino, `${name}: ${l.path} hard link`).toBe((await stat(join(root, l.target))).ino);
        else {
          expect((await lstat(p)).isSymbolicLink(), `${name}: ${l.path}`).toBe(true);
          expect(await readlink(p), `${name}: ${l.path} target`).toBe(l.target);
        }
      }
      for (const u of ign.passwd?.users ?? []) {
        if (u.shouldExist === false) {
          expect(passwd, `${name}: ${u.name} must not exist`).not.toMatch(new RegExp(`^${u.name}:`, "m"));
          continue;
        }
        const line = passwd.split("\n").find((l) => l.startsWith(`${u.name}:`));
        expect(line, `${name}: user ${u.name}`).toBeDefined();
        const [, , uid, , gecos, home, shell] = line!.split(":");
        if (u.uid !== undefined) expect(Number(uid)).toBe(u.uid);
        if (u.gecos !== undefined) expect(gecos).toBe(u.gecos);
        if (u.homeDir !== undefined) expect(home).toBe(u.homeDir);
        if (u.shell !== undefined) expect(shell).toBe(u.shell);
        if (u.sshAuthorizedKeys?.length) {
          const keys = (await readFile(join(root, home!, ".ssh/authorized_keys"), "utf8")).split("\n").filter((k) => k && !k.startsWith("#"));
          expect(keys, `${name}: ${u.name}'s keys`).toEqual(u.sshAuthorizedKeys);
        }
      }
      for (const g of ign.passwd?.groups ?? []) {
        if (g.shouldExist === false) continue;
        const id = idOf(await readFile(join(root, "etc/group"), "utf8"), g.name);
        expect(Number.isNaN(id), `${name}: group ${g.name}`).toBe(false);
        if (g.gid !== undefined) expect(id).toBe(g.gid);
      }
      const units = ign.systemd?.units ?? [];
      const preset = units.some((u: Json) => u.enabled !== undefined) ? await readFile(join(root, "etc/systemd/system-preset/20-ignition.preset"), "utf8") : "";
      for (const u of units) {
        if (u.contents !== undefined) expect(await readFile(join(root, "etc/systemd/system", u.name), "utf8"), `${name}: ${u.name}`).toBe(u.contents);
        for (const d of u.dropins ?? []) if (d.contents !== undefined) expect(await readFile(join(root, "etc/systemd/system", `${u.name}.d`, d.name), "utf8")).toBe(d.contents);
        if (u.enabled === true) expect(preset, `${name}: preset for ${u.name}`).toMatch(new RegExp(`^enable ${u.name.replace(/[.\\]/g, "\\$&")}$`, "m"));
        if (u.enabled === false) expect(preset, `${name}: preset for ${u.name}`).toMatch(new RegExp(`^disable ${u.name.replace(/[.\\]/g, "\\$&")}$`, "m"));
        if (u.mask) expect(await readlink(join(root, "etc/systemd/system", u.name)), `${name}: ${u.name} masked`).toBe("/dev/null");
      }
    }
  }, 300_000);
});
