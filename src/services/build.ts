/**
 * `acl build`: spec → rootfs → sanitize/audit → /usr image + dm-verity →
 * kernel, initramfs, UKI → GPT disk (raw, qcow2, vhd) → manifest → signatures,
 * all in a temporary folder next to the output, published by rename.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile, constants as fsConstants } from "node:fs/promises";
import { basename, dirname, join, relative, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { requireTools, run } from "../adapters/exec.js";
import { loadSpec, resolveSpecPath, type ImageSpec } from "../config/spec.js";
import { UserError } from "../errors.js";
import { StageCache, defaultCacheDir, stageId } from "../pipeline/cache.js";
import { canonicalJson, MANIFEST_FILE, parseManifest, type Artifact, type Manifest } from "../pipeline/manifest.js";
import type { Reporter } from "../output/reporter.js";
import { walk } from "../stages/tree.js";
import { buildRootfs, type RootfsMeta } from "../stages/rootfs.js";
import { makeUsrImage } from "../stages/usr.js";
import { appendVerity, deriveSalt, deriveUuid } from "../stages/verity.js";
import { buildInitramfs } from "../stages/initramfs.js";
import { buildEsp } from "../stages/uki.js";
import { assembleDisk, diskTools } from "../stages/disk.js";
import { USR_A_PARTUUID } from "../stages/disk-layout.js";
import { encodeUpdateHeader } from "../formats/update-payload.js";
import { signOutput } from "../stages/sign.js";
import { sha256Files } from "../stages/hash.js";

export interface BuildOptions {
  specPath: string;
  /** Output folder; default out/NAME next to the current directory. */
  outDir?: string;
  /** Private key (PEM) to sign with; overrides the spec's [signing] key. */
  signKey?: string;
  cacheDir?: string;
  /** Ignore cached stages (they are still refreshed). */
  noCache?: boolean;
  /** Keep the temporary build folder (for debugging). */
  keepWork?: boolean;
  reporter: Reporter;
}

export interface StageTiming {
  stage: string;
  ms: number;
  cached: boolean;
}

export interface BuildResult {
  outDir: string;
  manifest: Manifest;
  stages: StageTiming[];
  signed: boolean;
}

export const ACL_VERSION = JSON.parse(
  await readFile(new URL("../../package.json", import.meta.url), "utf8"),
) as { version: string };

/**
 * Digest of acl's own compiled code that shapes stage outputs: part of every
 * stage id, so a changed acl never reuses stale cache entries.
 */
let codeDigestMemo: string | undefined;
export async function codeDigest(): Promise<string> {
  if (codeDigestMemo) return codeDigestMemo;
  const root = new URL("..", import.meta.url).pathname;
  const h = createHash("sha256").update(ACL_VERSION.version);
  for (const sub of ["stages", "formats", "adapters", "pipeline", "config"]) {
    for await (const e of walk(join(root, sub))) {
      if (e.stat.isFile() && e.rel.endsWith(".js")) h.update(e.rel).update(await readFile(join(root, sub, e.rel)));
    }
  }
  codeDigestMemo = h.digest("hex");
  return codeDigestMemo;
}

/** Debian packages whose tools shape the outputs; their versions go into the manifest and provenance. */
export const TOOL_PACKAGES_RECORDED = [
  "binutils", "busybox-static", "cryptsetup-bin", "dosfstools", "dpkg", "e2fsprogs", "erofs-utils", "kmod",
  "mmdebstrap", "mtools", "qemu-utils", "squashfs-tools", "systemd-boot-efi", "util-linux",
] as const;

export async function hostToolVersions(): Promise<Record<string, string>> {
  const r = await run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", ...TOOL_PACKAGES_RECORDED], { okCodes: [0, 1] });
  const out: Record<string, string> = {};
  for (const line of r.stdout.split("\n")) {
    const [name, version] = line.trim().split(" ");
    if (name && version) out[name] = version;
  }
  return out;
}

/** The spec's path as provenance records it: relative to its git checkout, else its file name. */
async function specPathForProvenance(specPath: string): Promise<string> {
  try {
    const top = (await run(["git", "rev-parse", "--show-toplevel"], { cwd: dirname(specPath) })).stdout.trim();
    if (top) return relative(top, specPath);
  } catch {
    /* not in git */
  }
  return basename(specPath);
}

/** SOURCE_DATE_EPOCH from the environment, else the spec's last git commit, else a fixed date. */
export async function resolveSourceDateEpoch(spec: Readonly<ImageSpec>): Promise<number> {
  const env = process.env.SOURCE_DATE_EPOCH;
  if (env !== undefined && env !== "") {
    if (!/^\d+$/.test(env)) throw new UserError(`SOURCE_DATE_EPOCH must be a whole number of seconds, got '${env}'`, { hint: "unset it or set it to e.g. $(git log -1 --format=%ct)" });
    return Number(env);
  }
  try {
    const r = await run(["git", "log", "-1", "--format=%ct", "--", basename(spec.specPath)], { cwd: spec.specDir });
    const t = Number(r.stdout.trim());
    if (t > 0) return t;
  } catch {
    /* not in git */
  }
  return 1704067200; // 2024-01-01T00:00:00Z
}


/** Copy, using a reflink where the filesystem can. */
async function cloneFile(src: string, dest: string): Promise<void> {
  await copyFile(src, dest, fsConstants.COPYFILE_FICLONE);
}

export async function build(opts: BuildOptions): Promise<BuildResult> {
  const r = opts.reporter;
  const timings: StageTiming[] = [];
  const timed = async <T>(name: string, detail: string | undefined, fn: (h: ReturnType<Reporter["stage"]>) => Promise<{ value: T; cached?: boolean; note?: string }>): Promise<T> => {
    const h = r.stage(name, detail);
    const res = await fn(h);
    const ms = h.end({ cached: res.cached, note: res.note });
    timings.push({ stage: name, ms: Math.round(ms), cached: !!res.cached });
    return res.value;
  };

  const spec = await timed("load spec", opts.specPath, async () => ({ value: await loadSpec(opts.specPath) }));
  const outDir = resolve(opts.outDir ?? join("out", spec.name));
  const signKey = opts.signKey ?? (spec.signing ? resolveSpecPath(spec.specDir, spec.signing.key) : undefined);
  if (signKey) {
    try {
      await stat(signKey);
    } catch {
      throw new UserError(`signing key ${signKey} does not exist`, { hint: "create one with `acl keys generate --out keys/` or fix --sign-key / [signing] key" });
    }
  }
  const formats = [...spec.output.formats];
  const needs = new Set<string>(["mkfs.erofs", "dpkg-deb", "depmod", "apt-get", "objcopy", ...diskTools(formats.includes("raw") ? formats : ["raw", ...formats])]);
  if (spec.sources.some((s) => s.type === "debian")) needs.add("mmdebstrap");
  if (spec.usr.filesystem === "squashfs") needs.add("mksquashfs");
  await requireTools([...needs].sort());

  const sde = await resolveSourceDateEpoch(spec);
  process.env.SOURCE_DATE_EPOCH = String(sde);
  const startedOn = new Date(sde * 1000).toISOString();
  const cache = new StageCache(opts.cacheDir ?? defaultCacheDir(), !opts.noCache);
  await mkdir(dirname(outDir), { recursive: true });
  const work = await mkdtemp(join(dirname(outDir), `.${basename(outDir)}.build-`));
  const staging = join(work, "out");
  await mkdir(staging);
  let published = false;
  try {
    // ---- rootfs: sources, customizations, kernel modules, sanitize, SBOM, audits (cached)
    const rootfs = await timed("rootfs", `${spec.sources.length} source(s)`, async (h) => {
      const res = await buildRootfs({ spec, cache, sourceDateEpoch: sde, aclVersion: ACL_VERSION.version, codeDigest: await codeDigest(), reporter: r, progress: h });
      return { value: res, cached: res.cached, note: `${res.meta.packages.length} packages, ${res.meta.fileCount} files` };
    });
    const meta: RootfsMeta = rootfs.meta;
    const tree = join(rootfs.dir, "tree");

    // ---- /usr filesystem + dm-verity (cached)
    const salt = deriveSalt(spec.name, spec.version);
    const fsUuid = deriveUuid(`${spec.name}-usr-fs`, spec.version);
    const verityUuid = deriveUuid(spec.name, spec.version);
    const hostTools = await hostToolVersions();
    const fsTool = hostTools[spec.usr.filesystem === "erofs" ? "erofs-utils" : "squashfs-tools"] ?? "unknown";
    const usrId = stageId("usr", { rootfs: rootfs.id, fs: spec.usr, salt: salt.toString("hex"), fsUuid, verityUuid, fsTool, code: await codeDigest() });
    const usr = await timed("usr", `${spec.usr.filesystem} + dm-verity`, async () => {
      const hit = await cache.lookup<{ size: number; verity: Manifest["verity"]; imageSha256: string }>("usr", usrId);
      if (hit) return { value: { dir: cache.dir("usr", usrId), ...hit }, cached: true, note: `root hash ${hit.verity.rootHash.slice(0, 16)}…` };
      const scratch = await cache.scratch("usr");
      let size: number;
      let verity: Manifest["verity"];
      let imageSha256: string;
      try {
        const img = join(scratch, "usr.img");
        ({ size } = await makeUsrImage({ root: tree, outFile: img, filesystem: spec.usr.filesystem, compression: spec.usr.compression, uuid: fsUuid, sourceDateEpoch: sde }));
        verity = await appendVerity(img, { salt, uuid: verityUuid });
        // hashed once here and kept with the cache entry: the payload header and the manifest reuse it
        [imageSha256] = (await sha256Files([img])) as [string];
      } catch (e) {
        await rm(scratch, { recursive: true, force: true });
        throw e;
      }
      const dir = await cache.commit(scratch, "usr", usrId, { size, verity, imageSha256 });
      return { value: { dir, size, verity, imageSha256 }, note: `${(size / 1048576).toFixed(1)} MiB, root hash ${verity.rootHash.slice(0, 16)}…` };
    });
    await cloneFile(join(usr.dir, "usr.img"), join(staging, "usr.img"));

    // ---- boot: kernel, initramfs, UKI per slot on the ESP
    const boot = await timed("boot", `kernel ${meta.kernel.release}`, async () => {
      await cloneFile(join(rootfs.dir, "vmlinuz"), join(staging, "vmlinuz"));
      const initramfs = await buildInitramfs({
        release: meta.kernel.release,
        rootDir: tree,
        microarch: spec.microarch,
        corruption: spec.usr.verity_corruption,
        init: spec.init,
        outFile: join(staging, "initramfs.img"),
        sourceDateEpoch: sde,
        reporter: r,
      });
      const espDir = join(work, "esp");
      await mkdir(espDir);
      const esp = await buildEsp({
        espDir,
        vmlinuz: join(staging, "vmlinuz"),
        initramfs: initramfs.path,
        slots: [{ slot: "A", partUuid: USR_A_PARTUUID.toLowerCase(), rootHash: usr.verity.rootHash, hashOffset: usr.verity.hashOffset }],
        extraCmdline: spec.kernel.cmdline.join(" "),
        osRelease: { name: spec.name, version: spec.version },
        sourceDateEpoch: sde,
      });
      return { value: { espDir, initramfs, cmdline: esp.ukis[0]!.cmdline }, note: `${initramfs.modules.length} modules in the initramfs` };
    });

    // ---- disk: GPT with ESP, USR-A, USR-B, OEM, ROOT; raw, qcow2, vhd
    const disk = await timed("disk", formats.join(", "), async () => {
      const res = await assembleDisk({
        workDir: join(work, "disk"),
        outDir: staging,
        name: spec.name,
        version: spec.version,
        sourceDateEpoch: sde,
        usrPayload: join(staging, "usr.img"),
        espDir: boot.espDir,
        sizes: {
          espMiB: Math.ceil(spec.partitions.esp / 1048576),
          usrMiB: Math.ceil(spec.partitions.usr / 1048576),
          oemMiB: Math.ceil(spec.partitions.oem / 1048576),
          rootMiB: Math.ceil(spec.partitions.root / 1048576),
          biosBoot: spec.partitions.bios_boot,
        },
        formats,
        reporter: r,
      });
      const usrA = res.slots.find((s) => s.label === "USR-A");
      return { value: res, note: usrA ? `USR-A ${usrA.percent}% full` : undefined };
    });

    // ---- update payload, SBOM, manifest
    const manifest = await timed("manifest", undefined, async () => {
      const payloadName = `${spec.name}-${spec.version}.update`;
      const header = encodeUpdateHeader({
        name: spec.name,
        version: spec.version,
        microarch: spec.microarch,
        filesystem: spec.usr.filesystem,
        size: (await stat(join(staging, "usr.img"))).size,
        sha256: usr.imageSha256,
        verity: usr.verity,
      });
      await writeFile(join(staging, payloadName), header);
      await pipeline(createReadStream(join(staging, "usr.img")), createWriteStream(join(staging, payloadName), { flags: "a" }));
      await cloneFile(join(rootfs.dir, "sbom.spdx.json"), join(staging, "sbom.spdx.json"));

      const listed: { path: string; kind: Artifact["kind"] }[] = [
        { path: payloadName, kind: "update-payload" },
        { path: "vmlinuz", kind: "kernel" },
        { path: "initramfs.img", kind: "initramfs" },
        ...disk.files.map((f) => ({ path: relative(staging, resolve(staging, f.path)), kind: f.kind })),
        { path: "sbom.spdx.json", kind: "sbom" },
      ];
      const digests = await sha256Files(listed.map((a) => join(staging, a.path)));
      const artifacts: Artifact[] = [
        { path: "usr.img", kind: "usr-image", size: (await stat(join(staging, "usr.img"))).size, sha256: usr.imageSha256 },
      ];
      for (const [i, a] of listed.entries()) {
        artifacts.push({ ...a, size: (await stat(join(staging, a.path))).size, sha256: digests[i]! });
      }
      artifacts.sort((a, b) => a.path.localeCompare(b.path));
      const tools: Record<string, string> = { ...hostTools, ...meta.tools, acl: ACL_VERSION.version };
      const m: Manifest = parseManifest({
        schemaVersion: 1,
        name: spec.name,
        version: spec.version,
        arch: spec.arch,
        microarch: spec.microarch,
        sourceDateEpoch: sde,
        specDigest: spec.specDigest,
        usr: { filesystem: spec.usr.filesystem, size: usr.size, uuid: fsUuid },
        verity: usr.verity,
        artifacts,
        inputs: { packages: meta.packages, images: meta.images, archives: meta.archives },
        tools,
        setuid: meta.setuid,
        isa: meta.isa,
        kernel: { package: meta.kernel.pkg, version: meta.kernel.version, release: meta.kernel.release, cmdline: boot.cmdline },
        disk: disk.disk,
        aks: spec.aks
          ? { osSku: spec.aks.os_sku, nodeImageVersion: spec.aks.node_image_version, minKubernetesVersion: spec.aks.min_kubernetes_version }
          : undefined,
      });
      await writeFile(join(staging, MANIFEST_FILE), canonicalJson(m));
      return { value: m, note: `${artifacts.length} artifacts` };
    });

    // ---- signatures and provenance
    if (signKey) {
      await timed("sign", relative(process.cwd(), signKey), async () => {
        const extra = await signOutput({
          stagingDir: staging,
          manifest,
          privateKeyPath: signKey,
          provenance: {
            builderId: `https://github.com/acl-project/acl/builder@v${ACL_VERSION.version}`,
            specPath: await specPathForProvenance(spec.specPath),
            specDigest: spec.specDigest,
            inputs: manifest.inputs,
            tools: manifest.tools,
            startedOn,
            finishedOn: startedOn,
          },
        });
        return { value: extra, note: extra.map((a) => a.path).join(", ") };
      });
    }

    // ---- publish by rename
    await timed("publish", relative(process.cwd(), outDir) || outDir, async () => {
      const old = join(work, "previous");
      let hadOld = false;
      try {
        await rename(outDir, old);
        hadOld = true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
      try {
        await rename(staging, outDir);
      } catch (e) {
        if (hadOld) await rename(old, outDir); // put the previous good output back
        throw e;
      }
      published = true;
      if (hadOld) await rm(old, { recursive: true, force: true });
      return { value: undefined };
    });
    return { outDir, manifest, stages: timings, signed: !!signKey };
  } finally {
    if (!opts.keepWork || published) await rm(work, { recursive: true, force: true });
  }
}

