/**
 * The node's side of A/B updates, installed into every image's /usr:
 *
 *   /usr/lib/acl/acl-ab        data/guest/acl-ab.sh: health checks, blessing the
 *                              counted boot entry, the GPT attributes kept in step
 *   /usr/lib/acl/health.d/     the image's own health checks (executables; any
 *                              failure before blessing ends in a reboot)
 *   /usr/lib/acl/tools/        sfdisk with its libraries and loader, copied from
 *                              the build host, so acl-ab needs nothing of the image
 *
 * busybox images run `acl-ab boot` from inittab (::wait, before the boot check).
 * systemd images bless with Debian's systemd-bless-boot (package systemd-boot,
 * which the image must contain) and get, in /usr/lib/systemd/system:
 *   efi.mount                   the ESP read-write at /efi, where bless-boot looks
 *   acl-ab-health.service       health checks before boot-complete.target (a failure
 *                               on a boot on trial reboots), then the GPT sync
 *   systemd-bless-boot.service.d/acl-ab.conf   the GPT sync once blessed
 *   systemd-boot-check-no-failures.service     required by boot-complete.target
 * and lose systemd-boot-update.service's link: the ESP's boot loader is the
 * build's (Secure Boot signed), never replaced by a copy from /usr at boot.
 * systemd-pcrphase's units get a drop-in that skips them unless the TPM2
 * libraries they load are in the image (else they fail on any machine with a TPM).
 */
import { createPublicKey } from "node:crypto";
import { chmod, copyFile, mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { owningPackages } from "../../adapters/dpkg.js";
import { run, tools, type Requirement } from "../../adapters/exec.js";
import { resolveSpecPath, type ImageSpec } from "../../config/spec.js";
import { UserError } from "../../errors.js";
import { dataText } from "../../util/data.js";
import { exists } from "../../util/fs.js";
import { parseLdd } from "../initramfs/initramfs.js";

export const AB_SCRIPT = "usr/lib/acl/acl-ab";
export const AB_TOOLS_DIR = "usr/lib/acl/tools";
export const HEALTH_DIR = "usr/lib/acl/health.d";
export const AB_DATA = "guest/acl-ab.sh";
/** systemd units and drop-ins (data file → path under /usr/lib/systemd/system). */
export const AB_UNITS = {
  "guest/efi.mount": "efi.mount",
  "guest/acl-ab-health.service": "acl-ab-health.service",
  "guest/acl-ab-bless.conf": "systemd-bless-boot.service.d/acl-ab.conf",
} as const;
const UNIT_DIR = "usr/lib/systemd/system";
/** Enablement links: folder under UNIT_DIR → unit. */
const AB_LINKS: readonly [string, string][] = [
  ["local-fs.target.wants", "efi.mount"],
  ["multi-user.target.wants", "acl-ab-health.service"],
  ["boot-complete.target.requires", "acl-ab-health.service"],
  ["boot-complete.target.requires", "systemd-boot-check-no-failures.service"],
];
export const BLESS_BOOT = "usr/lib/systemd/systemd-bless-boot";
/** Host programs copied into the image's tool folder: sfdisk writes the GPT bits, openssl checks payloads. */
export const AB_HOST_BINARIES = { sfdisk: "/usr/sbin/sfdisk", openssl: "/usr/bin/openssl" } as const;
/** The public key the on-node updater trusts, and the updater's own name. */
export const UPDATE_KEY_PATH = "usr/lib/acl/update.pub";
export const UPDATE_COMMAND = "usr/lib/acl/acl-update";
const LOADER = "ld-linux-x86-64.so.2";

export const AB_REQUIREMENTS: readonly Requirement[] = [
  ...tools("ldd", "dpkg-query"),
  { file: AB_HOST_BINARIES.sfdisk, package: "fdisk" },
  { file: AB_HOST_BINARIES.openssl, package: "openssl" },
];

/**
 * The key the image's updater trusts (PEM): the spec's [update] key, else the
 * public half of the build's signing key, else none (the updater then refuses
 * every payload, saying why).
 */
export async function updateKeyPem(spec: Readonly<ImageSpec>, signKey: string | undefined): Promise<string | undefined> {
  let pem: string;
  let from: string;
  if (spec.update.key) {
    from = resolveSpecPath(spec.specDir, spec.update.key);
    pem = await readFile(from, "utf8");
    if (pem.includes("PRIVATE KEY-----"))
      throw new UserError(`${spec.specPath}: 'update.key' (${from}) is a private key; the image must carry only the public half`, { file: spec.specPath, key: "update.key", hint: "point update.key at the acl-signing.pub written by `acl keys generate`" });
  } else if (signKey) {
    from = signKey;
    pem = await readFile(signKey, "utf8");
  } else return undefined;
  try {
    return String(createPublicKey(pem).export({ format: "pem", type: "spki" }));
  } catch (e) {
    throw new UserError(`${spec.specPath}: '${spec.update.key ? "update.key" : "signing.key"}' (${from}) is not a PEM key: ${(e as Error).message}`, { file: spec.specPath, key: spec.update.key ? "update.key" : "signing.key" });
  }
}

async function installSystemdUnits(root: string, files: string[]): Promise<void> {
  if (!(await exists(join(root, BLESS_BOOT))))
    throw new UserError("this systemd image has no /usr/lib/systemd/systemd-bless-boot, which blesses a good boot after an A/B update", {
      key: "sources",
      hint: 'add "systemd-boot" to the packages of a debian source (Debian ships systemd-bless-boot in it)',
    });
  for (const [data, rel] of Object.entries(AB_UNITS)) {
    const p = join(root, UNIT_DIR, rel);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, dataText(data));
    await chmod(p, 0o644);
    files.push(`${UNIT_DIR}/${rel}`);
  }
  for (const [dir, unit] of AB_LINKS) {
    if (!(await exists(join(root, UNIT_DIR, unit)))) throw new UserError(`the image has no ${unit} (systemd 252 ships it)`);
    const link = join(root, UNIT_DIR, dir, unit);
    await mkdir(dirname(link), { recursive: true });
    if (!(await exists(link))) await symlink(`../${unit}`, link);
    files.push(`${UNIT_DIR}/${dir}/${unit}`);
  }
  for (const d of [UNIT_DIR, "etc/systemd/system"]) await rm(join(root, d, "sysinit.target.wants/systemd-boot-update.service"), { force: true });
  // systemd-pcrphase runs only where it can reach the TPM (see the drop-in)
  for (const unit of PCRPHASE_UNITS) {
    if (!(await exists(join(root, UNIT_DIR, unit)))) continue;
    const p = join(root, UNIT_DIR, `${unit}.d`, "acl-tpm2-libs.conf");
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, dataText(PCRPHASE_DROPIN));
    await chmod(p, 0o644);
    files.push(`${UNIT_DIR}/${unit}.d/acl-tpm2-libs.conf`);
  }
}

/** systemd 252's boot-phase measurements into PCR 11. */
export const PCRPHASE_UNITS = ["systemd-pcrphase-initrd.service", "systemd-pcrphase-sysinit.service", "systemd-pcrphase.service"] as const;
export const PCRPHASE_DROPIN = "guest/pcrphase-tpm2.conf";

/** A Debian package of the build host whose files acl copied into the image (for the SBOM). */
export interface HostPackage {
  name: string;
  version: string;
  arch: string;
  /** Image paths (relative to the root) of the copies. */
  files: string[];
}

export const UPDATE_CONF_PATH = "usr/lib/acl/update.conf";

export async function installAbNode(root: string, init: "systemd" | "busybox", updateKey?: string, tries = 3): Promise<{ files: string[]; hostPackages: HostPackage[] }> {
  const files: string[] = [];
  if (init === "systemd") await installSystemdUnits(root, files);
  if (updateKey) files.push(UPDATE_KEY_PATH);
  await mkdir(join(root, "usr/lib/acl"), { recursive: true });
  if (updateKey) await writeFile(join(root, UPDATE_KEY_PATH), updateKey);
  await writeFile(join(root, UPDATE_CONF_PATH), `# the node's updater (/usr/lib/acl/acl-update): written by acl from the spec's [update] section\nTRIES=${tries}\n`);
  files.push(UPDATE_CONF_PATH);
  await writeFile(join(root, AB_SCRIPT), dataText(AB_DATA));
  await chmod(join(root, AB_SCRIPT), 0o755);
  await rm(join(root, UPDATE_COMMAND), { force: true });
  await symlink("acl-ab", join(root, UPDATE_COMMAND));
  files.push(AB_SCRIPT, UPDATE_COMMAND);
  await mkdir(join(root, HEALTH_DIR), { recursive: true });
  const bin = join(root, AB_TOOLS_DIR, "bin");
  const lib = join(root, AB_TOOLS_DIR, "lib");
  await mkdir(bin, { recursive: true });
  await mkdir(lib, { recursive: true });
  const libs = new Set<string>();
  const copied = new Map<string, string>(); // host path -> image path
  for (const [name, host] of Object.entries(AB_HOST_BINARIES)) {
    await copyFile(host, join(bin, name));
    await chmod(join(bin, name), 0o755);
    files.push(`${AB_TOOLS_DIR}/bin/${name}`);
    copied.set(host, `${AB_TOOLS_DIR}/bin/${name}`);
    for (const l of parseLdd((await run(["ldd", host])).stdout)) libs.add(l);
  }
  const names = new Set<string>();
  for (const l of [...libs].sort()) {
    const name = basename(l);
    if (names.has(name)) throw new UserError(`two libraries named ${name} in the closure of ${Object.keys(AB_HOST_BINARIES).join(", ")}`);
    names.add(name);
    await copyFile(l, join(lib, name));
    await chmod(join(lib, name), 0o755);
    files.push(`${AB_TOOLS_DIR}/lib/${name}`);
    copied.set(l, `${AB_TOOLS_DIR}/lib/${name}`);
  }
  if (!names.has(LOADER)) throw new UserError(`ldd named no ${LOADER} for ${Object.values(AB_HOST_BINARIES).join(", ")}`);
  // which host package each copy came from, so the SBOM lists them
  const owners = await owningPackages([...copied.keys()]);
  const byPkg = new Map<string, HostPackage>();
  for (const [host, rel] of [...copied].sort()) {
    const o = owners.get(host);
    if (!o) throw new UserError(`no installed Debian package owns ${host}, which acl copies into the image's tool folder`, { hint: "reinstall the package that provides it (dpkg -S shows the owner)" });
    const key = `${o.name}:${o.arch}`;
    const p = byPkg.get(key) ?? { name: o.name, version: o.version, arch: o.arch, files: [] };
    p.files.push(rel);
    byPkg.set(key, p);
  }
  return { files, hostPackages: [...byPkg.values()].sort((a, b) => a.name.localeCompare(b.name)) };
}
