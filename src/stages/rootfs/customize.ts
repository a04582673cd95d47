/**
 * Spec-driven changes applied to the tree after the content sources: extra
 * files, groups and users, systemd units to enable, and os-release fields
 * that identify the image.
 */
import { chmod, chown, lstat, mkdir, readFile, rm, symlink, writeFile, appendFile } from "node:fs/promises";
import { join, posix } from "node:path";
import { UserError } from "../../errors.js";
import type { ImageSpec } from "../../config/spec.js";
import { resolveSpecPath } from "../../config/spec.js";
import { imageRel, mkdirInRoot, resolveInRoot } from "./tree.js";

export async function applyFiles(root: string, spec: Readonly<ImageSpec>): Promise<number> {
  let n = 0;
  for (const [i, f] of spec.files.entries()) {
    const rel = imageRel(f.path, `files[${i}].path`);
    const parent = posix.dirname(rel) === "." ? "" : await mkdirInRoot(root, posix.dirname(rel));
    const dest = join(root, parent, posix.basename(rel));
    try {
      const st = await lstat(dest);
      if (st.isDirectory()) {
        throw new UserError(`${spec.specPath}: 'files[${i}].path' ${f.path} is a folder in the image`, {
          file: spec.specPath,
          hint: "give the path of a file inside it",
        });
      }
      await rm(dest);
    } catch (e) {
      if (e instanceof UserError) throw e;
    }
    const data = f.content !== undefined ? Buffer.from(f.content) : await readFile(resolveSpecPath(spec.specDir, f.source!));
    await writeFile(dest, data);
    await chown(dest, f.uid, f.gid);
    await chmod(dest, f.mode ?? 0o644);
    n++;
  }
  return n;
}

interface PasswdLine {
  fields: string[];
}

async function readLines(p: string): Promise<PasswdLine[]> {
  try {
    return (await readFile(p, "utf8"))
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => ({ fields: l.split(":") }));
  } catch {
    return [];
  }
}

async function writeLines(p: string, lines: PasswdLine[], mode: number): Promise<void> {
  await writeFile(p, lines.map((l) => l.fields.join(":")).join("\n") + "\n");
  await chmod(p, mode);
}

/** Add groups and users (password last changed on the build's day) to /etc/passwd, /etc/group, /etc/shadow, /etc/gshadow (creating them with root if absent). */
export async function applyUsers(root: string, spec: Readonly<ImageSpec>, sourceDateEpoch: number): Promise<void> {
  const etc = join(root, await mkdirInRoot(root, "etc"));
  const passwd = await readLines(join(etc, "passwd"));
  const group = await readLines(join(etc, "group"));
  const shadow = await readLines(join(etc, "shadow"));
  const gshadow = await readLines(join(etc, "gshadow"));
  if (!passwd.some((l) => l.fields[0] === "root")) passwd.unshift({ fields: ["root", "x", "0", "0", "root", "/root", "/bin/sh"] });
  if (!group.some((l) => l.fields[0] === "root")) group.unshift({ fields: ["root", "x", "0", ""] });
  if (!shadow.some((l) => l.fields[0] === "root")) shadow.unshift({ fields: ["root", "*", "0", "0", "99999", "7", "", "", ""] });
  if (spec.users.length === 0 && spec.groups.length === 0) {
    await writeLines(join(etc, "passwd"), passwd, 0o644);
    await writeLines(join(etc, "group"), group, 0o644);
    await writeLines(join(etc, "shadow"), shadow, 0o640);
    return;
  }
  const days = String(Math.floor(sourceDateEpoch / 86400));
  const addGroup = (name: string, gid: number, key: string) => {
    const byName = group.find((l) => l.fields[0] === name);
    if (byName) {
      if (byName.fields[2] !== String(gid)) {
        throw new UserError(`${spec.specPath}: '${key}' group ${name} already exists with gid ${byName.fields[2]}`, {
          file: spec.specPath,
          hint: `use gid ${byName.fields[2]} or another group name`,
        });
      }
      return;
    }
    const byGid = group.find((l) => l.fields[2] === String(gid));
    if (byGid) {
      throw new UserError(`${spec.specPath}: '${key}' gid ${gid} is already used by group ${byGid.fields[0]}`, { file: spec.specPath, hint: "pick a free gid" });
    }
    group.push({ fields: [name, "x", String(gid), ""] });
    gshadow.push({ fields: [name, "!", "", ""] });
  };
  spec.groups.forEach((g, i) => addGroup(g.name, g.gid, `groups[${i}]`));
  for (const [i, u] of spec.users.entries()) {
    if (passwd.some((l) => l.fields[0] === u.name)) {
      throw new UserError(`${spec.specPath}: 'users[${i}].name' ${u.name} already exists in the image`, { file: spec.specPath, hint: "choose another name" });
    }
    const clash = passwd.find((l) => l.fields[2] === String(u.uid));
    if (clash) {
      throw new UserError(`${spec.specPath}: 'users[${i}].uid' ${u.uid} is already used by ${clash.fields[0]}`, { file: spec.specPath, hint: "pick a free uid" });
    }
    const gid = u.gid ?? u.uid;
    if (u.gid === undefined) addGroup(u.name, gid, `users[${i}]`);
    else if (!group.some((l) => l.fields[2] === String(gid))) {
      throw new UserError(`${spec.specPath}: 'users[${i}].gid' ${gid} is not a group in the image`, { file: spec.specPath, hint: "add it under [[groups]]" });
    }
    const home = u.home ?? `/home/${u.name}`;
    passwd.push({ fields: [u.name, "x", String(u.uid), String(gid), u.name, home, u.shell] });
    shadow.push({ fields: [u.name, "!", days, "0", "99999", "7", "", "", ""] });
    for (const g of u.groups) {
      const line = group.find((l) => l.fields[0] === g);
      if (!line) {
        throw new UserError(`${spec.specPath}: 'users[${i}].groups' names ${g}, which is not a group in the image`, {
          file: spec.specPath,
          hint: `add a [[groups]] entry named ${g}`,
        });
      }
      const members = line.fields[3] ? line.fields[3].split(",") : [];
      if (!members.includes(u.name)) members.push(u.name);
      line.fields[3] = members.join(",");
    }
    const homeRel = await mkdirInRoot(root, imageRel(home, `users[${i}].home`), 0o750);
    await chown(join(root, homeRel), u.uid, gid);
    await chmod(join(root, homeRel), 0o750);
    if (u.ssh_authorized_keys.length) {
      const ssh = join(root, homeRel, ".ssh");
      await mkdir(ssh, { recursive: true, mode: 0o700 });
      await writeFile(join(ssh, "authorized_keys"), u.ssh_authorized_keys.join("\n") + "\n");
      await chmod(join(ssh, "authorized_keys"), 0o600);
      await chown(ssh, u.uid, gid);
      await chown(join(ssh, "authorized_keys"), u.uid, gid);
    }
  }
  await writeLines(join(etc, "passwd"), passwd, 0o644);
  await writeLines(join(etc, "group"), group, 0o644);
  await writeLines(join(etc, "shadow"), shadow, 0o640);
  await writeLines(join(etc, "gshadow"), gshadow, 0o640);
}

/** Parse the [Install] section of a unit file. */
export function parseInstall(text: string): { wantedBy: string[]; requiredBy: string[]; also: string[]; alias: string[] } {
  const out = { wantedBy: [] as string[], requiredBy: [] as string[], also: [] as string[], alias: [] as string[] };
  let inInstall = false;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("[")) {
      inInstall = line === "[Install]";
      continue;
    }
    if (!inInstall || line.startsWith("#") || line.startsWith(";")) continue;
    const m = line.match(/^(WantedBy|RequiredBy|Also|Alias)\s*=\s*(.*)$/);
    if (!m) continue;
    const vals = m[2]!.split(/\s+/).filter(Boolean);
    const key = ({ WantedBy: "wantedBy", RequiredBy: "requiredBy", Also: "also", Alias: "alias" } as const)[m[1] as "WantedBy"];
    out[key].push(...vals);
  }
  return out;
}

const UNIT_DIRS = ["etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system"];

/** Enable units like `systemctl enable` would: .wants/.requires symlinks in /etc/systemd/system. */
export async function enableUnits(root: string, spec: Readonly<ImageSpec>): Promise<string[]> {
  const links: string[] = [];
  const done = new Set<string>();
  const enable = async (unit: string, key: string): Promise<void> => {
    if (done.has(unit)) return;
    done.add(unit);
    let found: string | undefined;
    for (const d of UNIT_DIRS) {
      const real = await resolveInRoot(root, `${d}/${unit}`);
      try {
        await lstat(join(root, real));
        found = real;
        break;
      } catch {
        /* next */
      }
    }
    if (!found) {
      throw new UserError(`${spec.specPath}: '${key}' names ${unit}, but no such unit is in the image`, {
        file: spec.specPath,
        hint: "check the unit name, or add the package that ships it to a [[sources]] entry",
      });
    }
    const inst = parseInstall(await readFile(join(root, found), "utf8"));
    const target = "/" + found.replace(/^lib\//, "usr/lib/");
    for (const [list, suffix] of [[inst.wantedBy, "wants"], [inst.requiredBy, "requires"]] as const) {
      for (const t of list) {
        const dir = await mkdirInRoot(root, `etc/systemd/system/${t}.${suffix}`);
        const link = join(root, dir, unit);
        await rm(link, { force: true });
        await symlink(target, link);
        links.push(`/etc/systemd/system/${t}.${suffix}/${unit}`);
      }
    }
    for (const a of inst.alias) {
      const link = join(root, await mkdirInRoot(root, "etc/systemd/system"), a);
      await rm(link, { force: true });
      await symlink(target, link);
      links.push(`/etc/systemd/system/${a}`);
    }
    for (const also of inst.also) await enable(also, key);
  };
  for (const [i, u] of spec.systemd.enable.entries()) await enable(u, `systemd.enable[${i}]`);
  return links.sort();
}

/** Identify the image in /usr/lib/os-release (IMAGE_ID, IMAGE_VERSION, ACL_MICROARCH). */
export async function stampOsRelease(root: string, spec: Readonly<ImageSpec>): Promise<void> {
  const rel = await resolveInRoot(root, "usr/lib/os-release");
  await mkdirInRoot(root, "usr/lib");
  let text = "";
  try {
    text = await readFile(join(root, rel), "utf8");
  } catch {
    text = `NAME="acl ${spec.name}"\nID=acl\nPRETTY_NAME="acl ${spec.name} ${spec.version}"\n`;
    await writeFile(join(root, rel), text);
  }
  const filtered = text
    .split("\n")
    .filter((l) => l && !/^(IMAGE_ID|IMAGE_VERSION|ACL_MICROARCH)=/.test(l))
    .join("\n");
  await writeFile(join(root, rel), filtered + "\n");
  await appendFile(join(root, rel), `IMAGE_ID=${spec.name}\nIMAGE_VERSION=${spec.version}\nACL_MICROARCH=${spec.microarch}\n`);
}
