/**
 * The source registry: every `type` the spec schema allows for [[sources]],
 * mapped to its implementation. The mapped type makes a schema entry without
 * an implementation (or the reverse) a compile error.
 */
import type { Source } from "../../../config/spec-schema.js";
import { debianSource } from "./debian.js";
import { dirSource } from "./dir.js";
import { dockerArchiveSource } from "./docker-archive.js";
import { dockerSource } from "./docker.js";
import { ociArchiveSource } from "./oci-archive.js";
import { rpmSource } from "./rpm.js";
import type { SourceType } from "./source.js";

export const SOURCE_TYPES: { readonly [K in Source["type"]]: SourceType<Extract<Source, { type: K }>> } = {
  debian: debianSource,
  rpm: rpmSource,
  docker: dockerSource,
  "oci-archive": ociArchiveSource,
  "docker-archive": dockerArchiveSource,
  dir: dirSource,
};

/** The implementation of one spec source. */
export function sourceType<S extends Source>(s: S): SourceType<S> {
  return SOURCE_TYPES[s.type] as unknown as SourceType<S>;
}
