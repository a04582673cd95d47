/**
 * The release stage: the output folder's content. It gathers the artifacts
 * of the earlier stages (the /usr image and the SBOM from their cache
 * entries, kernel, initramfs and disks from their work folders), writes the
 * update payload and manifest.json (every artifact's size and sha256, the
 * resolved inputs, tool versions, the disk layout) and, when a key is given,
 * SHA256SUMS, its signature and the signed provenance.
 */
import { copyFile, rename, stat, writeFile, constants as fsConstants } from "node:fs/promises";
import { basename, join, relative } from "node:path";
import { checkoutTop } from "../../adapters/git.js";
import { canonicalJson } from "../../formats/canonical-json.js";
import { MANIFEST_FILE, parseManifest, type Artifact, type Manifest, type SecureBootInfo } from "../../pipeline/manifest.js";
import type { BuildContext, Stage, StageResult } from "../../pipeline/stage.js";
import { sha256Files } from "../../util/hash.js";
import type { BootOut } from "../boot/stage.js";
import { FIRST_BOOT_FLAG } from "../boot/esp.js";
import { IGNITION_BASE_DIR } from "../rootfs/ignition.js";
import type { DiskOut } from "../disk/stage.js";
import { ROOTFS_SBOM, type RootfsMeta } from "../rootfs/stage.js";
import { USR_IMAGE, type UsrMeta } from "../usr/stage.js";
import { payloadName, writeUpdatePayload } from "./payload.js";
import { signOutput } from "./sign.js";
import { certSha256, certSubject, writeEnrollment } from "../boot/secureboot.js";
import { mkdir } from "node:fs/promises";

/** Recorded too when the boot chain is signed. */
export const SECUREBOOT_PACKAGES = ["sbsigntool", "efitools", "faketime"] as const;

/** Folder of the output with the Secure Boot enrollment material. */
export const SECUREBOOT_DIR = "secureboot";

/** Debian packages whose tools shape the outputs: their versions go into the manifest and provenance. */
export const TOOL_PACKAGES_RECORDED = [
  "binutils", "busybox-static", "cryptsetup-bin", "dosfstools", "dpkg", "e2fsprogs", "erofs-utils", "kmod",
  "mmdebstrap", "mtools", "qemu-utils", "squashfs-tools", "systemd-boot-efi", "util-linux",
] as const;

export interface ReleaseOut {
  manifest: Manifest;
  /** Files the sign stage added (empty when unsigned). */
  signatures: Artifact[];
}

type ReleaseInput = {
  rootfs: StageResult<RootfsMeta>;
  usr: StageResult<UsrMeta>;
  boot: StageResult<BootOut>;
  disk: StageResult<DiskOut>;
};

export const releaseStage: Stage<ReleaseOut, ReleaseInput> = {
  name: "release",
  requires: () => [],
  detail: (ctx) => (ctx.signKey ? `signed with ${relative(process.cwd(), ctx.signKey) || ctx.signKey}` : "unsigned"),
  async run(ctx, input) {
    const manifest = await writeManifest(ctx, input);
    const signatures = ctx.signKey ? await sign(ctx, manifest, ctx.signKey) : [];
    return { manifest, signatures };
  },
  note: (r) => `${r.manifest.artifacts.length} artifacts${r.signatures.length ? `, signed: ${r.signatures.map((a) => a.path).join(", ")}` : ""}`,
};

/** Copy, using a reflink where the file system can (cache entries stay intact). */
async function cloneFile(src: string, dest: string): Promise<void> {
  await copyFile(src, dest, fsConstants.COPYFILE_FICLONE);
}

async function writeManifest(ctx: BuildContext, { rootfs, usr, boot, disk }: ReleaseInput): Promise<Manifest> {
  const { spec, stagingDir: staging } = ctx;
  const meta = rootfs.value;
  await rename(boot.value.vmlinuz, join(staging, "vmlinuz"));
  await rename(boot.value.initramfs, join(staging, "initramfs.img"));
  for (const f of disk.value.files) await rename(f.path, join(staging, basename(f.path)));
  await cloneFile(join(rootfs.dir, ROOTFS_SBOM), join(staging, "sbom.spdx.json"));
  const payload = payloadName(spec);
  // the /usr image copied out of its cache entry while the payload is written from that entry too
  const [payloadSha256] = await Promise.all([
    writeUpdatePayload(join(staging, payload), { spec, usr: usr.value, usrImage: join(usr.dir, USR_IMAGE), ukis: boot.value.ukis, signKey: ctx.signKey }),
    cloneFile(join(usr.dir, USR_IMAGE), join(staging, USR_IMAGE)),
  ]);
  const usrBytes = (await stat(join(staging, USR_IMAGE))).size;

  const listed: { path: string; kind: Artifact["kind"] }[] = [
    { path: payload, kind: "update-payload" },
    { path: "vmlinuz", kind: "kernel" },
    { path: "initramfs.img", kind: "initramfs" },
    ...disk.value.files.map((f) => ({ path: basename(f.path), kind: f.kind })),
    { path: "sbom.spdx.json", kind: "sbom" },
  ];
  let secureBoot: SecureBootInfo | undefined;
  const sb = ctx.secureBoot;
  if (sb) {
    // what a user enrolls in firmware's db: never the private key
    const dir = join(staging, SECUREBOOT_DIR);
    await mkdir(dir);
    const e = await writeEnrollment(dir, sb, ctx.epoch);
    listed.push({ path: `${SECUREBOOT_DIR}/db.der`, kind: "secureboot-cert" }, { path: `${SECUREBOOT_DIR}/db.esl`, kind: "efi-signature-list" });
    if (e.auth) listed.push({ path: `${SECUREBOOT_DIR}/db.auth`, kind: "efi-auth" });
    secureBoot = {
      certificate: { subject: certSubject(sb.cert), sha256: certSha256(sb.cert), notAfter: new Date(sb.cert.validTo).toISOString() },
      signed: boot.value.signed,
      ownerGuid: e.ownerGuid,
      ...(sb.kek ? { kek: certSubject(sb.kek.cert) } : {}),
    };
  }
  // the raw disk's and the VHD's digests come from the disk stage (computed from the data it wrote),
  // the payload's from its writing; the rest are read here, on every core
  const known = new Map(disk.value.files.filter((f) => f.sha256).map((f) => [basename(f.path), f.sha256!]));
  known.set(payload, payloadSha256);
  const toHash = listed.filter((a) => !known.has(a.path));
  const hashed = await sha256Files(toHash.map((a) => join(staging, a.path)));
  const digests = listed.map((a) => known.get(a.path) ?? hashed[toHash.indexOf(a)]!);
  const artifacts: Artifact[] = [{ path: USR_IMAGE, kind: "usr-image", size: usrBytes, sha256: usr.value.imageSha256 }];
  for (const [i, a] of listed.entries()) artifacts.push({ ...a, size: (await stat(join(staging, a.path))).size, sha256: digests[i]! });
  artifacts.sort((a, b) => a.path.localeCompare(b.path));
  const recorded: Record<string, string> = {};
  for (const p of [...TOOL_PACKAGES_RECORDED, ...(sb ? SECUREBOOT_PACKAGES : [])]) if (ctx.hostTools[p]) recorded[p] = ctx.hostTools[p]!;
  const base = meta.ignitionBase;
  const m: Manifest = parseManifest({
    schemaVersion: 1,
    name: spec.name,
    version: spec.version,
    arch: spec.arch,
    microarch: spec.microarch,
    sourceDateEpoch: ctx.epoch,
    specDigest: spec.specDigest,
    usr: { filesystem: spec.usr.filesystem, size: usr.value.size, uuid: usr.value.fsUuid },
    verity: usr.value.verity,
    artifacts,
    inputs: { packages: meta.packages, images: meta.images, archives: meta.archives },
    tools: { ...recorded, ...meta.tools, acl: ctx.aclVersion },
    setuid: meta.setuid,
    isa: meta.isa,
    kernel: { package: meta.kernel.pkg, version: meta.kernel.version, release: meta.kernel.release, cmdline: boot.value.cmdline },
    disk: disk.value.disk,
    boot: { slots: boot.value.slots, ...(secureBoot ? { secureBoot } : {}) },
    ignition: spec.ignition?.enabled
      ? { platforms: [...spec.ignition.platforms], base: base ? { path: `/${IGNITION_BASE_DIR}/${base.name}`, config: base.json } : undefined, firstBootFlag: FIRST_BOOT_FLAG }
      : undefined,
    aks: spec.aks
      ? { osSku: spec.aks.os_sku, nodeImageVersion: spec.aks.node_image_version, minKubernetesVersion: spec.aks.min_kubernetes_version }
      : undefined,
  });
  await writeFile(join(staging, MANIFEST_FILE), canonicalJson(m));
  return m;
}

async function sign(ctx: BuildContext, manifest: Manifest, key: string): Promise<Artifact[]> {
  const { spec } = ctx;
  const top = await checkoutTop(spec.specDir);
  const startedOn = new Date(ctx.epoch * 1000).toISOString();
  return signOutput({
    stagingDir: ctx.stagingDir,
    manifest,
    privateKeyPath: key,
    provenance: {
      builderId: `https://github.com/acl-project/acl/builder@v${ctx.aclVersion}`,
      specPath: top ? relative(top, spec.specPath) : basename(spec.specPath),
      specDigest: spec.specDigest,
      inputs: manifest.inputs,
      tools: manifest.tools,
      startedOn,
      finishedOn: startedOn,
    },
  });
}
