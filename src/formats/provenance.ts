/**
 * The in-toto Statement v1 with a SLSA provenance v1 predicate that acl signs
 * (inside a DSSE envelope) for every build. Pure: builds a plain object from
 * the build's facts; serialization is canonical JSON (sorted keys).
 */
import { comparePaths } from "./sha256sums.js";

/** Resolved build inputs, the same shape as the build manifest's `inputs`. */
export interface BuildInputs {
  packages: readonly { name: string; version: string; arch: string }[];
  images: readonly { ref: string; digest: string }[];
  archives: readonly { path: string; sha256: string }[];
}

export const INTOTO_STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
export const SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1";
/** buildType of acl image builds; its parameters are documented in docs/signing.md. */
export const ACL_BUILD_TYPE = "urn:acl:build-type:image:v1";

export interface ResourceDescriptor {
  uri?: string;
  name?: string;
  digest?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface Subject {
  name: string;
  digest: { sha256: string };
}

export interface ProvenanceFacts {
  builderId: string;
  specPath: string;
  specDigest: string;
  inputs: BuildInputs;
  tools: Record<string, string>;
  /** RFC 3339 UTC timestamps. */
  startedOn: string;
  finishedOn: string;
  /** Build identity, from the manifest. */
  image: { name: string; version: string; arch: string; microarch: string; sourceDateEpoch: number };
}

export interface Statement {
  _type: typeof INTOTO_STATEMENT_TYPE;
  subject: Subject[];
  predicateType: typeof SLSA_PROVENANCE_V1;
  predicate: {
    buildDefinition: {
      buildType: string;
      externalParameters: Record<string, unknown>;
      internalParameters: Record<string, unknown>;
      resolvedDependencies: ResourceDescriptor[];
    };
    runDetails: {
      builder: { id: string; version: Record<string, string> };
      metadata: { startedOn: string; finishedOn: string };
    };
  };
}

/** package-url for a Debian binary package (version percent-encoded: epochs hold ':'). */
export function debPurl(name: string, version: string, arch: string): string {
  return `pkg:deb/debian/${encodeURIComponent(name)}@${encodeURIComponent(version)}?arch=${encodeURIComponent(arch)}`;
}

/** Split an OCI digest `alg:hex` into a DSSE/in-toto digest set; undefined when it is not one. */
export function ociDigest(digest: string): Record<string, string> | undefined {
  const m = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([0-9a-fA-F]{32,})$/.exec(digest);
  return m ? { [m[1]!]: m[2]!.toLowerCase() } : undefined;
}

export function resolvedDependencies(inputs: BuildInputs): ResourceDescriptor[] {
  const pkgs = [...inputs.packages]
    .sort((a, b) => comparePaths(a.name, b.name) || comparePaths(a.arch, b.arch) || comparePaths(a.version, b.version))
    .map((p): ResourceDescriptor => ({ uri: debPurl(p.name, p.version, p.arch), name: p.name, annotations: { version: p.version, arch: p.arch } }));
  const images = [...inputs.images]
    .sort((a, b) => comparePaths(a.ref, b.ref))
    .map((i): ResourceDescriptor => {
      const d = ociDigest(i.digest);
      return d
        ? { name: i.ref, digest: d, annotations: { kind: "container-image" } }
        : { name: i.ref, uri: `docker-image:${i.ref}`, annotations: { kind: "container-image", digest: i.digest } };
    });
  const archives = [...inputs.archives]
    .sort((a, b) => comparePaths(a.path, b.path))
    .map((a): ResourceDescriptor => ({ name: a.path, digest: { sha256: a.sha256.toLowerCase() }, annotations: { kind: "archive" } }));
  return [...pkgs, ...images, ...archives];
}

/** The statement for a set of subjects (sorted here by name). */
export function buildStatement(subjects: readonly Subject[], facts: ProvenanceFacts): Statement {
  return {
    _type: INTOTO_STATEMENT_TYPE,
    subject: [...subjects].sort((a, b) => comparePaths(a.name, b.name)).map((s) => ({ name: s.name, digest: { sha256: s.digest.sha256 } })),
    predicateType: SLSA_PROVENANCE_V1,
    predicate: {
      buildDefinition: {
        buildType: ACL_BUILD_TYPE,
        externalParameters: { spec: { path: facts.specPath, digest: { sha256: facts.specDigest } } },
        internalParameters: {
          name: facts.image.name,
          version: facts.image.version,
          arch: facts.image.arch,
          microarch: facts.image.microarch,
          sourceDateEpoch: facts.image.sourceDateEpoch,
        },
        resolvedDependencies: resolvedDependencies(facts.inputs),
      },
      runDetails: {
        builder: { id: facts.builderId, version: { ...facts.tools } },
        metadata: { startedOn: facts.startedOn, finishedOn: facts.finishedOn },
      },
    },
  };
}
