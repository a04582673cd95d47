/**
 * Guest-side boot checks, installed into the image's tree before sanitize.
 *
 * /usr/lib/acl/boot-check (POSIX sh) prints `ACL-CHECK <name> <ok|fail|skip> <detail>`
 * lines on the console and then powers the machine off. It only runs when
 * asked: `acl.boot-check=1` on the kernel command line, or the same string as
 * an SMBIOS type 11 vendor string (`qemu -smbios type=11,value=acl.boot-check=1`,
 * which works for UKIs whose command line is sealed). A normal boot of a
 * shipped image is untouched.
 *
 * busybox images: /etc/inittab runs it (::once, after the sysinit mounts);
 * /usr/sbin/init -> busybox when absent.
 * systemd images: acl-boot-check.service, started after multi-user.target
 * (enabled by a symlink in /usr/lib/systemd/system/multi-user.target.wants),
 * given the units the spec enables: the check reports whether each is up, so
 * an image is checked for what it promises (containerd only where enabled).
 */
import { access, mkdir, readFile, symlink, writeFile, chmod } from "node:fs/promises";
import { dirname, join } from "node:path";
import { BugError, UserError } from "../../errors.js";
import { dataText } from "../../util/data.js";
import { exists } from "../../util/fs.js";
import { renderTemplate } from "../../util/template.js";

export type GuestInit = "systemd" | "busybox";

export const BOOT_CHECK_PATH = "usr/lib/acl/boot-check";
export const BOOT_CHECK_UNIT = "acl-boot-check.service";
/** The request string (kernel command line word or SMBIOS type 11 string). */
export const BOOT_CHECK_REQUEST = "acl.boot-check=1";

/** The guest's files, as they are in data/guest/ (real files that shellcheck and systemd-analyze read). */
export const GUEST_DATA = {
  script: "guest/boot-check.sh",
  unit: "guest/acl-boot-check.service",
  inittab: "guest/inittab",
} as const;

/** The boot check script, exactly as installed. */
export function bootCheckScript(): string {
  return dataText(GUEST_DATA.script);
}

/** The inittab lines that run the A/B health step and the check (appended to an image's own inittab). */
function inittabCheckLine(): string {
  const lines = dataText(GUEST_DATA.inittab).split("\n");
  const line = lines.find((l) => l.includes(`/${BOOT_CHECK_PATH} `));
  const ab = lines.find((l) => l.includes("/usr/lib/acl/acl-ab "));
  if (!line || !ab) throw new BugError(`${GUEST_DATA.inittab} has no line running /${BOOT_CHECK_PATH} or /usr/lib/acl/acl-ab`);
  return `${ab}\n${line}\n`;
}

async function writeFileIn(root: string, rel: string, text: string, mode: number): Promise<void> {
  const p = join(root, rel);
  await mkdir(dirname(p), { recursive: true });
  await writeFile(p, text);
  await chmod(p, mode);
}

/** The systemd unit that runs the check, waiting for `units` (the ones the spec enables) to be up. */
export function bootCheckUnit(units: readonly string[]): string {
  return renderTemplate(dataText(GUEST_DATA.unit), { UNITS: units.map((u) => ` ${u}`).join("") }, GUEST_DATA.unit);
}

/**
 * Write the boot check and its hook for the image's init into a rootfs tree.
 * On systemd images the check also reports whether every unit in `units` (the
 * spec's `systemd.enable`) is up.
 */
export async function installGuestChecks(rootDir: string, init: GuestInit, units: readonly string[] = []): Promise<{ files: string[] }> {
  await access(rootDir).catch(() => {
    throw new UserError(`installGuestChecks: no tree at ${rootDir}`);
  });
  const files: string[] = [BOOT_CHECK_PATH];
  await writeFileIn(rootDir, BOOT_CHECK_PATH, bootCheckScript(), 0o755);
  if (init === "systemd") {
    const unit = `usr/lib/systemd/system/${BOOT_CHECK_UNIT}`;
    await writeFileIn(rootDir, unit, bootCheckUnit(units), 0o644);
    const link = join(rootDir, "usr/lib/systemd/system/multi-user.target.wants", BOOT_CHECK_UNIT);
    await mkdir(dirname(link), { recursive: true });
    if (!(await exists(link))) await symlink(`../${BOOT_CHECK_UNIT}`, link);
    files.push(unit, `usr/lib/systemd/system/multi-user.target.wants/${BOOT_CHECK_UNIT}`);
  } else {
    const inittab = join(rootDir, "etc/inittab");
    if (await exists(inittab)) {
      const cur = await readFile(inittab, "utf8");
      if (!cur.includes(BOOT_CHECK_PATH)) await writeFile(inittab, cur.replace(/\n?$/, "\n") + inittabCheckLine());
    } else {
      await writeFileIn(rootDir, "etc/inittab", dataText(GUEST_DATA.inittab), 0o644);
    }
    files.push("etc/inittab");
    const initLink = join(rootDir, "usr/sbin/init");
    if (!(await exists(initLink))) {
      let target: string | undefined;
      for (const c of ["usr/bin/busybox", "usr/sbin/busybox"]) if (await exists(join(rootDir, c))) target = c === "usr/bin/busybox" ? "../bin/busybox" : "busybox";
      if (!target) throw new UserError(`installGuestChecks: busybox init requested but ${rootDir} has no /usr/bin/busybox`, { hint: "add busybox-static to the packages of a debian source ('sources[].packages'), or set 'init' = \"systemd\"" });
      await mkdir(dirname(initLink), { recursive: true });
      await symlink(target, initLink);
      files.push("usr/sbin/init");
    }
  }
  return { files };
}
