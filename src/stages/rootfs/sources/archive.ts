/**
 * The image-archive reader shared by the `oci-archive` and `docker-archive`
 * sources: one pass over the tar file records each member's offset, size and
 * sha256 (random access afterwards, links followed inside the archive), OCI
 * blobs are checked against their descriptors, and layers are applied in
 * order and checked against the image config's diff_ids.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { Readable } from "node:stream";
import * as tar from "tar-stream";
import { tools } from "../../../adapters/exec.js";
import { resolveSpecPath } from "../../../config/spec.js";
import type { Source } from "../../../config/spec-schema.js";
import { UserError } from "../../../errors.js";
import { sha256Files } from "../../../util/hash.js";
import type { SourceType } from "./source.js";
import { applyLayerTar, LAYER_TOOLS, type ApplyLayerOptions, type LayerStats } from "./tar-apply.js";
import { MiB } from "../../../util/size.js";

export interface ArchiveApplyOptions {
  /** Pick one image when the archive holds several (a ref.name annotation or a RepoTag). */
  ref?: string;
  /** Apply uid/gid from the layers (default: when running as root). */
  ownership?: boolean;
  /** Platform to pick from a multi-arch index (default linux/amd64). */
  platform?: { os: string; architecture: string };
  /** Called after each layer (for progress reporting). */
  onLayer?: (index: number, total: number, stats: LayerStats) => void;
}

export interface ArchiveApplyResult {
  /** Image digest: the manifest digest (OCI) or the image ID, i.e. the config digest (docker save). */
  digest: string;
  /** Digest of the image config blob ("sha256:HEX"). */
  configDigest: string;
  /** sha256 of the whole archive file (hex), for provenance. */
  archiveSha256: string;
  /** Number of layers applied. */
  layers: number;
  /** Per-layer statistics, in order. */
  layerStats: LayerStats[];
}

// ---------------------------------------------------------------------------
// Reading a tar archive with random access to its members.

export interface ArchiveMember {
  name: string;
  type: string;
  /** Byte offset of the member's data in the archive file. */
  offset: number;
  size: number;
  linkname: string;
  /** sha256 (hex) of the member's data (regular files only). */
  sha256: string;
}

export interface ArchiveIndex {
  path: string;
  sha256: string;
  members: Map<string, ArchiveMember>;
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const MAX_JSON_BYTES = 16 * MiB;
const MAX_LINK_HOPS = 16;

export const MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";
export const MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";

function cleanName(name: string): string {
  return name
    .split("/")
    .filter((s) => s !== "" && s !== ".")
    .join("/");
}

/** Read the archive once: member offsets and digests, and the archive's sha256. */
export async function indexArchive(archivePath: string): Promise<ArchiveIndex> {
  let fd: number;
  try {
    fd = fs.openSync(archivePath, "r");
  } catch (err) {
    throw new UserError(`cannot open the image archive '${archivePath}': ${(err as Error).message}`, {
      file: archivePath,
      hint: "check the path in the spec's content source",
    });
  }
  const head = Buffer.alloc(4);
  fs.readSync(fd, head, 0, 4, 0);
  fs.closeSync(fd);
  if (head.subarray(0, 2).equals(GZIP_MAGIC) || head.equals(ZSTD_MAGIC)) {
    throw new UserError(`the image archive '${archivePath}' is compressed`, {
      file: archivePath,
      hint: `decompress it first (gunzip / zstd -d); acl reads the archive with random access`,
    });
  }

  const whole = createHash("sha256");
  const members = new Map<string, ArchiveMember>();
  const input = fs.createReadStream(archivePath);
  input.on("data", (c) => whole.update(c as Buffer));
  const extract = tar.extract();
  input.on("error", (e) => extract.destroy(e));
  input.pipe(extract as unknown as NodeJS.WritableStream);
  try {
    for await (const entry of extract) {
      const h = entry.header;
      const name = cleanName(h.name);
      const hash = createHash("sha256");
      for await (const chunk of entry as unknown as AsyncIterable<Uint8Array>) hash.update(chunk);
      members.set(name, {
        name,
        type: h.type ?? "file",
        // tar-stream records where the member's data starts (after its 512-byte header).
        offset: (h as unknown as { byteOffset: number }).byteOffset,
        size: h.size ?? 0,
        linkname: h.linkname ?? "",
        sha256: hash.digest("hex"),
      });
    }
  } catch (err) {
    input.destroy();
    throw new UserError(`the image archive '${archivePath}' is not a readable tar file: ${(err as Error).message}`, {
      file: archivePath,
      hint: "re-create it with `docker save -o FILE IMAGE` or `skopeo copy ... oci-archive:FILE`",
    });
  }
  return { path: archivePath, sha256: whole.digest("hex"), members };
}

/** Find a member, following symlinks and hard links inside the archive. */
export function findMember(index: ArchiveIndex, name: string): ArchiveMember | undefined {
  let cur = cleanName(name);
  for (let hop = 0; hop < MAX_LINK_HOPS; hop++) {
    const m = index.members.get(cur);
    if (!m) return undefined;
    if (m.type === "file" || m.type === "contiguous-file") return m;
    if (m.type === "link") cur = cleanName(m.linkname);
    else if (m.type === "symlink") {
      const dir = cur.includes("/") ? cur.slice(0, cur.lastIndexOf("/")) : "";
      const parts: string[] = m.linkname.startsWith("/") ? [] : dir.split("/").filter(Boolean);
      for (const seg of m.linkname.split("/")) {
        if (seg === "" || seg === ".") continue;
        if (seg === "..") parts.pop();
        else parts.push(seg);
      }
      cur = parts.join("/");
    } else return undefined;
  }
  return undefined;
}

export function memberStream(index: ArchiveIndex, m: ArchiveMember): Readable {
  if (m.size === 0) return Readable.from([]);
  return fs.createReadStream(index.path, { start: m.offset, end: m.offset + m.size - 1 });
}

export function memberBytes(index: ArchiveIndex, m: ArchiveMember): Buffer {
  const buf = Buffer.alloc(m.size);
  const fd = fs.openSync(index.path, "r");
  try {
    let off = 0;
    while (off < m.size) {
      const n = fs.readSync(fd, buf, off, m.size - off, m.offset + off);
      if (n === 0) break;
      off += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return buf;
}

/** Parse a JSON member; errors name the archive and the member. */
export function memberJson<T = unknown>(index: ArchiveIndex, name: string, what: string): T {
  const m = findMember(index, name);
  if (!m) {
    throw new UserError(`the image archive '${index.path}' has no ${what} ('${name}')`, {
      file: index.path,
      hint: "the archive is incomplete or not of the declared type (oci-archive vs docker-archive)",
    });
  }
  if (m.size > MAX_JSON_BYTES) {
    throw new UserError(`${index.path}: '${name}' (${what}) is too large (${m.size} bytes)`, { file: index.path });
  }
  try {
    return JSON.parse(memberBytes(index, m).toString("utf8")) as T;
  } catch (err) {
    throw new UserError(`${index.path}: '${name}' (${what}) is not valid JSON: ${(err as Error).message}`, {
      file: index.path,
      hint: "the archive is corrupt; re-create it",
    });
  }
}

// ---------------------------------------------------------------------------
// OCI descriptors and blobs.

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  annotations?: Record<string, string>;
}

export interface ImageConfig {
  architecture?: string;
  os?: string;
  rootfs?: { type?: string; diff_ids?: string[] };
}

const DIGEST_RE = /^sha256:([0-9a-f]{64})$/;

/** The blob member for a descriptor, verified against its digest and size. */
export function blobMember(index: ArchiveIndex, desc: Descriptor, what: string): ArchiveMember {
  const m = DIGEST_RE.exec(desc.digest ?? "");
  if (!m) {
    throw new UserError(`${index.path}: ${what} has an unsupported digest '${desc.digest}'`, {
      file: index.path,
      hint: "only sha256 digests are supported",
    });
  }
  const member = findMember(index, `blobs/sha256/${m[1]}`);
  if (!member) {
    throw new UserError(`${index.path}: ${what} ${desc.digest} is missing (no blobs/sha256/${m[1]})`, {
      file: index.path,
      hint: "the archive is incomplete; re-export the image",
    });
  }
  if (member.sha256 !== m[1]) {
    throw new UserError(
      `${index.path}: ${what} blobs/sha256/${m[1]} does not match its digest (content hashes to sha256:${member.sha256})`,
      { file: index.path, hint: "the archive is corrupt or was tampered with; re-export the image" },
    );
  }
  if (desc.size !== undefined && desc.size !== member.size) {
    throw new UserError(
      `${index.path}: ${what} ${desc.digest} has ${member.size} bytes, its descriptor says ${desc.size}`,
      { file: index.path, hint: "the archive is corrupt; re-export the image" },
    );
  }
  return member;
}

/** Apply layers (verified members) in order and check them against the config's diff_ids. */
export async function applyLayers(
  index: ArchiveIndex,
  layers: { member: ArchiveMember; name: string }[],
  config: ImageConfig,
  rootDir: string,
  opts: ArchiveApplyOptions,
): Promise<LayerStats[]> {
  const diffIds = config.rootfs?.diff_ids;
  if (Array.isArray(diffIds) && diffIds.length !== layers.length) {
    throw new UserError(
      `${index.path}: the image config lists ${diffIds.length} diff_ids but the manifest has ${layers.length} layers`,
      { file: index.path, hint: "the archive is corrupt; re-export the image" },
    );
  }
  const out: LayerStats[] = [];
  for (let i = 0; i < layers.length; i++) {
    const { member, name } = layers[i];
    const label = `${index.path} (layer ${i + 1}/${layers.length}: ${name})`;
    const layerOpts: ApplyLayerOptions = { label, ownership: opts.ownership };
    const stats = await applyLayerTar(memberStream(index, member), rootDir, layerOpts);
    if (Array.isArray(diffIds) && diffIds[i] !== stats.diffId) {
      throw new UserError(
        `${label}: the uncompressed layer hashes to ${stats.diffId}, the image config says ${diffIds[i]}`,
        { file: index.path, hint: "the archive is corrupt or was tampered with; re-export the image" },
      );
    }
    out.push(stats);
    opts.onLayer?.(i, layers.length, stats);
  }
  return out;
}


type ArchiveSpec = Extract<Source, { type: "oci-archive" | "docker-archive" }>;

/** The source type of an archive kind: cached by the archive's sha256, applied with `ref` choosing the image. */
export function archiveSource(
  type: ArchiveSpec["type"],
  applyArchive: (path: string, root: string, opts: ArchiveApplyOptions) => Promise<ArchiveApplyResult>,
): SourceType<ArchiveSpec> {
  return {
    requires: () => tools(...LAYER_TOOLS),
    describe: (s) => `${type} ${s.path}`,
    cacheInput: async (s, ctx) => ({ ...s, sha256: (await sha256Files([resolveSpecPath(ctx.spec.specDir, s.path)]))[0] }),
    async apply(s, ctx) {
      const res = await applyArchive(resolveSpecPath(ctx.spec.specDir, s.path), ctx.root, s.ref === undefined ? {} : { ref: s.ref });
      return { archives: [{ path: s.path, sha256: res.archiveSha256 }], images: [{ ref: s.path, digest: res.digest }] };
    },
  };
}
