/**
 * The `docker` content source: put an image from a Docker engine into the
 * tree, by default through `docker save` (exact, digests checked), or through
 * a created (never started) container's `docker export`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import {
  connectDocker,
  inspectImage,
  isImageContent,
  saveImage,
  withContainerExport,
  type DockerCallOptions,
} from "../../../adapters/docker.js";
import { tools } from "../../../adapters/exec.js";
import type { Source } from "../../../config/spec-schema.js";
import { applyDockerArchive } from "./docker-archive.js";
import type { SourceType } from "./source.js";
import { applyLayerTar, LAYER_TOOLS, type LayerStats } from "./tar-apply.js";

export const dockerSource: SourceType<Extract<Source, { type: "docker" }>> = {
  requires: () => tools(...LAYER_TOOLS),
  describe: (s) => `docker ${s.image}`,
  cacheInput: async (s, ctx) => ({ ...s, id: (await inspectImage(s.image, { key: `${ctx.key}.image`, specFile: ctx.spec.specPath })).id }),
  async apply(s, ctx) {
    const res = await exportImage(s.image, ctx.root, { key: `${ctx.key}.image`, specFile: ctx.spec.specPath });
    return { images: [{ ref: res.ref, digest: res.digest }] };
  },
};

export interface ExportImageOptions extends DockerCallOptions {
  /** Apply uid/gid from the image (default: when running as root). */
  ownership?: boolean;
  /**
   * "save" (default): `docker save` of the image ID into a temporary file beside
   * rootDir, then its layers applied with digests checked: the image exactly.
   * "export": a created (never started) container's `docker export`. The engine
   * masks the image's etc/hosts, etc/hostname and etc/resolv.conf with empty
   * placeholders in every container, so this method loses those three files.
   */
  method?: "save" | "export";
}

/** Put an image's filesystem into rootDir; see ExportImageOptions.method. */
export interface DockerExportResult {
  ref: string;
  /** A RepoDigest ("name@sha256:...") when the image has one, else the image ID. */
  digest: string;
  imageId: string;
  stats: LayerStats;
}

/** Put an image's filesystem into rootDir; see ExportImageOptions.method. */
export async function exportImage(ref: string, rootDir: string, opts: ExportImageOptions = {}): Promise<DockerExportResult> {
  const engine = opts.engine ?? (await connectDocker(opts.hostOrSocket));
  const info = await inspectImage(ref, { ...opts, engine });
  const digest = info.repoDigests[0] ?? info.id;
  if ((opts.method ?? "save") === "save") {
    const tmp = fs.mkdtempSync(path.join(path.dirname(path.resolve(rootDir)), ".acl-docker-save-"));
    try {
      const file = path.join(tmp, "image.tar");
      // By ID, so that a tag moved meanwhile cannot change what is applied.
      await saveImage(info.id, file, { engine });
      const res = await applyDockerArchive(file, rootDir, { ownership: opts.ownership });
      return { ref, digest, imageId: info.id, stats: sumStats(res.layerStats) };
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  const label = `docker image ${ref} (${engine.where})`;
  const stats = await withContainerExport(
    info.id,
    (stream) => applyLayerTar(stream, rootDir, { label, ownership: opts.ownership, filter: isImageContent }),
    { engine },
  );
  return { ref, digest, imageId: info.id, stats };
}

function sumStats(all: LayerStats[]): LayerStats {
  const out: LayerStats = {
    entries: 0, files: 0, dirs: 0, symlinks: 0, hardlinks: 0, specials: 0, whiteouts: 0,
    opaqueDirs: 0, xattrs: 0, bytes: 0, skipped: 0, compression: "none", diffId: "",
  };
  for (const s of all) {
    for (const k of ["entries", "files", "dirs", "symlinks", "hardlinks", "specials", "whiteouts", "opaqueDirs", "xattrs", "bytes", "skipped"] as const) {
      out[k] += s[k];
    }
  }
  out.diffId = all.at(-1)?.diffId ?? "";
  return out;
}

