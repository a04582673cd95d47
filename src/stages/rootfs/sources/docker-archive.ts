/**
 * `docker-archive` content source: the tarball `docker save` writes.
 * Two shapes exist: the classic one (manifest.json, <id>.json config,
 * <id>/layer.tar, duplicate layers as symlinks) and the newer one (Docker 25+)
 * that is an OCI image layout with a manifest.json beside index.json, whose
 * Layers point into blobs/sha256/. Both are read through manifest.json; an
 * archive with only an OCI layout is handed to the OCI reader. Layers are
 * checked against the config's diff_ids and the config against the image ID.
 */
import { createHash } from "node:crypto";
import { UserError } from "../../../errors.js";
import {
  applyLayers,
  archiveSource,
  findMember,
  indexArchive,
  memberBytes,
  memberJson,
  type ArchiveApplyOptions,
  type ArchiveApplyResult,
  type ImageConfig,
} from "./archive.js";
import { applyOciIndex } from "./oci-archive.js";

interface DockerManifestEntry {
  Config?: string;
  RepoTags?: string[] | null;
  Layers?: string[];
}

function tagMatches(tags: string[], ref: string): boolean {
  return tags.some((t) => t === ref || t === `${ref}:latest` || t === `docker.io/${ref}` || t === `docker.io/library/${ref}`);
}

/** Apply a `docker save` tarball onto rootDir. */
export async function applyDockerArchive(
  archivePath: string,
  rootDir: string,
  opts: ArchiveApplyOptions = {},
): Promise<ArchiveApplyResult> {
  const index = await indexArchive(archivePath);
  if (!findMember(index, "manifest.json") && findMember(index, "oci-layout")) {
    return applyOciIndex(index, rootDir, opts);
  }
  const entries = memberJson<DockerManifestEntry[]>(index, "manifest.json", "manifest.json (docker save)");
  if (!Array.isArray(entries) || entries.length === 0) {
    throw new UserError(`${archivePath}: manifest.json lists no images`, {
      file: archivePath,
      hint: "re-create the archive with `docker save -o FILE IMAGE`",
    });
  }
  let entry: DockerManifestEntry;
  const tagsOf = (e: DockerManifestEntry) => e.RepoTags ?? [];
  if (opts.ref) {
    const ref = opts.ref;
    const hits = entries.filter((e) => tagMatches(tagsOf(e), ref));
    if (hits.length !== 1) {
      const all = entries.flatMap(tagsOf);
      throw new UserError(`${archivePath}: ${hits.length === 0 ? "no" : "more than one"} image tagged '${ref}' in the archive`, {
        file: archivePath,
        hint: all.length ? `the archive holds: ${all.join(", ")}` : "the archive's images are untagged; drop `ref`",
      });
    }
    entry = hits[0];
  } else if (entries.length === 1) {
    entry = entries[0];
  } else {
    throw new UserError(`${archivePath}: the archive holds ${entries.length} images; choose one`, {
      file: archivePath,
      hint: `set 'sources[].ref' on this source to one of: ${entries.flatMap(tagsOf).join(", ") || "(untagged images)"}`,
    });
  }
  if (typeof entry.Config !== "string" || !Array.isArray(entry.Layers)) {
    throw new UserError(`${archivePath}: manifest.json entry has no Config or Layers`, {
      file: archivePath,
      hint: "the archive is corrupt; re-create it with `docker save`",
    });
  }

  const configMember = findMember(index, entry.Config);
  if (!configMember) {
    throw new UserError(`${archivePath}: the image config '${entry.Config}' is missing`, {
      file: archivePath,
      hint: "the archive is incomplete; re-create it with `docker save`",
    });
  }
  const configBytes = memberBytes(index, configMember);
  const configHex = createHash("sha256").update(configBytes).digest("hex");
  // The config's file name is the image ID (classic: HEX.json, OCI: blobs/sha256/HEX).
  const named = /([0-9a-f]{64})(\.json)?$/.exec(entry.Config);
  if (named && named[1] !== configHex) {
    throw new UserError(`${archivePath}: the image config '${entry.Config}' hashes to sha256:${configHex}`, {
      file: archivePath,
      hint: "the archive is corrupt or was tampered with; re-create it",
    });
  }
  let config: ImageConfig;
  try {
    config = JSON.parse(configBytes.toString("utf8")) as ImageConfig;
  } catch (err) {
    throw new UserError(`${archivePath}: '${entry.Config}' is not valid JSON: ${(err as Error).message}`, { file: archivePath });
  }
  const layers = entry.Layers.map((name, i) => {
    const member = findMember(index, name);
    if (!member) {
      throw new UserError(`${archivePath}: layer ${i + 1} '${name}' is missing`, {
        file: archivePath,
        hint: "the archive is incomplete; re-create it with `docker save`",
      });
    }
    const blob = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name);
    if (blob && blob[1] !== member.sha256) {
      throw new UserError(`${archivePath}: layer ${i + 1} '${name}' does not match its digest`, {
        file: archivePath,
        hint: "the archive is corrupt or was tampered with; re-create it",
      });
    }
    return { member, name };
  });
  const layerStats = await applyLayers(index, layers, config, rootDir, opts);
  return {
    digest: `sha256:${configHex}`,
    configDigest: `sha256:${configHex}`,
    archiveSha256: index.sha256,
    layers: layers.length,
    layerStats,
  };
}

export const dockerArchiveSource = archiveSource("docker-archive", applyDockerArchive);
