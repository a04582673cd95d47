/**
 * `oci-archive` content source: an OCI image layout in a tar file
 * (oci-layout, index.json, blobs/sha256/...). The image manifest is found
 * from index.json (a multi-arch index resolves to linux/amd64, `ref` picks
 * one of several images), every blob is checked against its digest and size,
 * and the layers are applied in order.
 */
import { UserError } from "../../../errors.js";
import {
  applyLayers,
  archiveSource,
  blobMember,
  indexArchive,
  memberBytes,
  memberJson,
  MEDIA_DOCKER_LIST,
  MEDIA_OCI_INDEX,
  type ArchiveApplyOptions,
  type ArchiveApplyResult,
  type ArchiveIndex,
  type Descriptor,
  type ImageConfig,
} from "./archive.js";

export interface IndexJson {
  schemaVersion?: number;
  mediaType?: string;
  manifests?: Descriptor[];
}

interface ManifestJson {
  schemaVersion?: number;
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
}

function isIndex(desc: Descriptor, body?: IndexJson): boolean {
  return (
    desc.mediaType === MEDIA_OCI_INDEX ||
    desc.mediaType === MEDIA_DOCKER_LIST ||
    (body !== undefined && Array.isArray(body.manifests) && !("layers" in body))
  );
}

function refNames(d: Descriptor): string[] {
  const a = d.annotations ?? {};
  return [a["org.opencontainers.image.ref.name"], a["io.containerd.image.name"]].filter((x): x is string => !!x);
}

function refMatches(d: Descriptor, ref: string): boolean {
  return refNames(d).some((n) => n === ref || n.endsWith(`:${ref}`) || n === `${ref}:latest` || n.endsWith(`/${ref}`));
}

function platformName(d: Descriptor): string {
  const p = d.platform;
  return p ? [p.os, p.architecture, p.variant].filter(Boolean).join("/") : "(no platform)";
}

function chooseOne(index: ArchiveIndex, images: Descriptor[]): UserError {
  const names = images.flatMap(refNames);
  return new UserError(`${index.path}: the archive holds ${images.length} images; choose one`, {
    file: index.path,
    hint: names.length ? `set 'sources[].ref' on this source to one of: ${names.join(", ")}` : "the images carry no ref.name annotation: re-export the archive with one image",
  });
}

/** Resolve index.json down to one image manifest descriptor. */
export function selectManifest(
  index: ArchiveIndex,
  top: IndexJson,
  opts: ArchiveApplyOptions,
): { desc: Descriptor; manifest: ManifestJson } {
  const want = opts.platform ?? { os: "linux", architecture: "amd64" };
  let candidates = (top.manifests ?? []).filter((d) => d && typeof d.digest === "string");
  if (candidates.length === 0) {
    throw new UserError(`${index.path}: index.json lists no manifests`, {
      file: index.path,
      hint: "the archive holds no image; re-export it",
    });
  }
  if (opts.ref) {
    const ref = opts.ref;
    const hits = candidates.filter((d) => refMatches(d, ref));
    if (hits.length === 0) {
      const names = candidates.flatMap(refNames);
      throw new UserError(`${index.path}: no image named '${ref}' in the archive`, {
        file: index.path,
        hint: names.length ? `the archive holds: ${names.join(", ")}` : "the archive's images carry no names; drop `ref`",
      });
    }
    candidates = hits;
  }

  for (let depth = 0; depth < 4; depth++) {
    // Drop attestation and unknown-platform manifests (buildx provenance).
    const images = candidates.filter(
      (d) => d.platform?.os !== "unknown" && d.annotations?.["vnd.docker.reference.type"] !== "attestation-manifest",
    );
    const distinct = (ds: Descriptor[]) => new Set(ds.map((d) => d.digest)).size;
    let chosen: Descriptor;
    if (images.some((d) => d.platform?.os && d.platform?.architecture)) {
      const plat = images.filter((d) => d.platform?.os === want.os && d.platform?.architecture === want.architecture);
      if (plat.length === 0) {
        throw new UserError(`${index.path}: no ${want.os}/${want.architecture} image in the archive`, {
          file: index.path,
          hint: `platforms present: ${images.map(platformName).join(", ")}`,
        });
      }
      if (distinct(plat) !== 1) throw chooseOne(index, plat);
      chosen = plat[0];
    } else if (images.length > 0 && distinct(images) === 1) {
      chosen = images[0];
    } else {
      throw chooseOne(index, images);
    }
    const member = blobMember(index, chosen, `manifest`);
    let body: IndexJson & ManifestJson;
    try {
      body = JSON.parse(memberBytes(index, member).toString("utf8")) as IndexJson & ManifestJson;
    } catch (err) {
      throw new UserError(`${index.path}: manifest ${chosen.digest} is not valid JSON: ${(err as Error).message}`, {
        file: index.path,
      });
    }
    if (isIndex(chosen, body)) {
      candidates = (body.manifests ?? []).filter((d) => d && typeof d.digest === "string");
      if (candidates.length === 0) {
        throw new UserError(`${index.path}: image index ${chosen.digest} lists no manifests`, { file: index.path });
      }
      continue;
    }
    if (!Array.isArray(body.layers) || !body.config) {
      throw new UserError(`${index.path}: ${chosen.digest} is not an image manifest (no config or layers)`, {
        file: index.path,
        hint: `media type '${chosen.mediaType ?? body.mediaType ?? "unknown"}' is not supported`,
      });
    }
    return { desc: chosen, manifest: body };
  }
  throw new UserError(`${index.path}: image indexes are nested too deeply`, { file: index.path });
}

/** Apply an OCI image layout tarball onto rootDir. */
export async function applyOciArchive(
  archivePath: string,
  rootDir: string,
  opts: ArchiveApplyOptions = {},
): Promise<ArchiveApplyResult> {
  const index = await indexArchive(archivePath);
  return applyOciIndex(index, rootDir, opts);
}

/** The OCI path on an already indexed archive (also used for docker saves without manifest.json). */
export async function applyOciIndex(
  index: ArchiveIndex,
  rootDir: string,
  opts: ArchiveApplyOptions = {},
): Promise<ArchiveApplyResult> {
  const layout = memberJson<{ imageLayoutVersion?: string }>(index, "oci-layout", "oci-layout file");
  if (typeof layout.imageLayoutVersion !== "string") {
    throw new UserError(`${index.path}: oci-layout has no imageLayoutVersion`, {
      file: index.path,
      hint: "this is not an OCI image layout",
    });
  }
  const top = memberJson<IndexJson>(index, "index.json", "index.json");
  const { desc, manifest } = selectManifest(index, top, opts);
  const configMember = blobMember(index, manifest.config!, "image config");
  let config: ImageConfig;
  try {
    config = JSON.parse(memberBytes(index, configMember).toString("utf8")) as ImageConfig;
  } catch (err) {
    throw new UserError(`${index.path}: image config ${manifest.config!.digest} is not valid JSON: ${(err as Error).message}`, {
      file: index.path,
    });
  }
  const layers = (manifest.layers ?? []).map((d, i) => ({
    member: blobMember(index, d, `layer ${i + 1}`),
    name: d.digest,
  }));
  const layerStats = await applyLayers(index, layers, config, rootDir, opts);
  return {
    digest: desc.digest,
    configDigest: manifest.config!.digest,
    archiveSha256: index.sha256,
    layers: layers.length,
    layerStats,
  };
}

export const ociArchiveSource = archiveSource("oci-archive", applyOciArchive);
