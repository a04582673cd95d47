/**
 * The content-source contract. A source type is one file in this folder
 * (plus its entry in config/spec-schema.ts and one line in index.ts): what
 * it needs on the host, how the build names it, what its cache input is
 * (everything outside the spec that can change what it puts in the tree)
 * and how it is applied onto the tree.
 */
import type { Requirement } from "../../../adapters/exec.js";
import type { ImageSpec } from "../../../config/spec.js";
import type { Source } from "../../../config/spec-schema.js";
import type { Reporter } from "../../../output/reporter.js";

export interface SourceContext {
  readonly spec: Readonly<ImageSpec>;
  /** The source's spec key, e.g. "sources[1]". */
  readonly key: string;
  /** The image tree the source is applied onto. */
  readonly root: string;
  /** Scratch space for this stage. */
  readonly workDir: string;
  /** Downloads kept between builds (CACHE/debs). */
  readonly downloadDir: string;
  /** The cache's root, for a source that keeps its own downloads (CACHE/rpm). */
  readonly cacheRoot: string;
  readonly epoch: number;
  readonly reporter: Reporter;
}

export interface DebPackage {
  name: string;
  /** Debian: the version; RPM: [epoch:]version-release. */
  version: string;
  arch: string;
  /** From /var/lib/dpkg/status or the .deb control file; for an RPM, its header tags (License, SourceRPM, Vendor, Epoch…). */
  fields: Record<string, string>;
  /** The .deb in the cache, for packages that were only extracted (no dpkg database). */
  deb?: string;
  /** Present for a package from an RPM repository: "rpm". */
  kind?: "rpm";
  /** An RPM's files as installed (its database is removed before the SBOM is written). */
  files?: string[];
}

/** What a source contributed, for the SBOM and the manifest. */
export interface SourceContribution {
  packages?: DebPackage[];
  images?: { ref: string; digest: string }[];
  archives?: { path: string; sha256: string }[];
  /** Tool versions the manifest records (e.g. mmdebstrap's own version line). */
  tools?: Record<string, string>;
}

export interface SourceType<S extends Source> {
  requires(s: S): readonly Requirement[];
  /** One line for the build log. */
  describe(s: S): string;
  /** The source as it goes into the rootfs stage id, with its resolved inputs (digests, mirror). */
  cacheInput(s: S, ctx: Pick<SourceContext, "spec" | "key">): Promise<Record<string, unknown>>;
  apply(s: S, ctx: SourceContext): Promise<SourceContribution>;
}
