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
 * busybox images run `acl-ab boot` from inittab (::wait, before the boot check);
 * systemd images get it through units (see data/guest/acl-ab-*.service).
 */
import { chmod, copyFile, mkdir, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { run, tools, type Requirement } from "../../adapters/exec.js";
import { UserError } from "../../errors.js";
import { dataText } from "../../util/data.js";
import { parseLdd } from "../boot/initramfs.js";

export const AB_SCRIPT = "usr/lib/acl/acl-ab";
export const AB_TOOLS_DIR = "usr/lib/acl/tools";
export const HEALTH_DIR = "usr/lib/acl/health.d";
export const AB_DATA = "guest/acl-ab.sh";
/** Host programs copied into the image's tool folder. */
export const AB_HOST_BINARIES = { sfdisk: "/usr/sbin/sfdisk" } as const;
const LOADER = "ld-linux-x86-64.so.2";

export const AB_REQUIREMENTS: readonly Requirement[] = [...tools("ldd"), { file: AB_HOST_BINARIES.sfdisk, package: "fdisk" }];

export async function installAbNode(root: string): Promise<{ files: string[] }> {
  const files: string[] = [];
  await mkdir(join(root, "usr/lib/acl"), { recursive: true });
  await writeFile(join(root, AB_SCRIPT), dataText(AB_DATA));
  await chmod(join(root, AB_SCRIPT), 0o755);
  files.push(AB_SCRIPT);
  await mkdir(join(root, HEALTH_DIR), { recursive: true });
  const bin = join(root, AB_TOOLS_DIR, "bin");
  const lib = join(root, AB_TOOLS_DIR, "lib");
  await mkdir(bin, { recursive: true });
  await mkdir(lib, { recursive: true });
  const libs = new Set<string>();
  for (const [name, host] of Object.entries(AB_HOST_BINARIES)) {
    await copyFile(host, join(bin, name));
    await chmod(join(bin, name), 0o755);
    files.push(`${AB_TOOLS_DIR}/bin/${name}`);
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
  }
  if (!names.has(LOADER)) throw new UserError(`ldd named no ${LOADER} for ${Object.values(AB_HOST_BINARIES).join(", ")}`);
  return { files };
}
