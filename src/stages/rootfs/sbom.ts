/**
 * SPDX 2.3 JSON SBOM from the package database, recorded before sanitize
 * removes it: packages (name, version, declared license where the copyright
 * file is machine readable, purl) and their files with SHA1/SHA256.
 */
import { createHash } from "node:crypto";
import { lstat, readFile } from "node:fs/promises";
import { join } from "node:path";
import { run, tools } from "../../adapters/exec.js";
import type { DebPackage } from "./sources/source.js";
import { walk } from "../../util/fs.js";
import { mapLimit } from "../../util/pool.js";
import { resolveInRoot } from "./tree.js";

/** Listing the files of an extracted .deb. */
export const SBOM_TOOLS = tools("sh", "awk", "dpkg-deb");

/** A regular file's digests, by its path in a tree (see treeFileDigests). */
export interface FileSums {
  size: number;
  mtimeMs: number;
  sha1: string;
  sha256: string;
}

/**
 * Digests taken earlier of a tree this one was copied from (the packages stage's), and the
 * ctime of a file made right after the copy: a file whose ctime is older, with the same size
 * and mtime, is the copy untouched (any write, rename, chmod or chown since sets its ctime to
 * at least the marker's), so its digests are reused instead of read again.
 */
export interface KnownSums {
  sums: Readonly<Record<string, FileSums>>;
  copiedBeforeCtimeMs: number;
}

/** Every regular file's size, mtime, SHA1 and SHA256 in a tree, by relative path (16 read at a time). */
export async function treeFileDigests(root: string): Promise<Record<string, FileSums>> {
  const files: { rel: string; size: number; mtimeMs: number }[] = [];
  for await (const e of walk(root)) if (e.stat.isFile()) files.push({ rel: e.rel, size: e.stat.size, mtimeMs: e.stat.mtimeMs });
  const sums = await mapLimit(files, FILE_PARALLEL, async (f) => {
    const data = await readFile(join(root, f.rel));
    return { size: f.size, mtimeMs: f.mtimeMs, sha1: createHash("sha1").update(data).digest("hex"), sha256: createHash("sha256").update(data).digest("hex") };
  });
  return Object.fromEntries(files.map((f, i) => [f.rel, sums[i]!]));
}

export interface SbomInput {
  root: string;
  /** Digests to reuse for files unchanged since the tree was copied. */
  known?: KnownSums;
  name: string;
  version: string;
  specDigest: string;
  sourceDateEpoch: number;
  toolVersion: string;
  packages: readonly DebPackage[];
  /** Container images and archives that contributed content. */
  images: readonly { ref: string; digest: string }[];
  /** Packages of the build host whose files acl copied in (the A/B tool folder), with the copies' paths. */
  hostPackages?: readonly { name: string; version: string; arch: string; files: readonly string[] }[];
}

interface SpdxFile {
  fileName: string;
  SPDXID: string;
  checksums: { algorithm: "SHA1" | "SHA256"; checksumValue: string }[];
  licenseConcluded: "NOASSERTION";
  copyrightText: "NOASSERTION";
}

/** Files of one package resolved and hashed at once. */
const FILE_PARALLEL = 16;

const spdxId = (s: string) => s.replace(/[^A-Za-z0-9.-]/g, "-");

/** Files a package owns, as image paths. */
async function packageFiles(root: string, p: DebPackage): Promise<string[]> {
  if (p.files) return [...p.files];
  if (p.deb) {
    const list = await run(["sh", "-c", 'dpkg-deb -c "$1" | awk \'{ $1=$2=$3=$4=$5=""; sub(/^ +/, ""); sub(/ -> .*$/, ""); print }\'', "sh", p.deb]);
    return list.stdout.split("\n").map((l) => l.replace(/^\.\//, "/").replace(/\/$/, "")).filter((l) => l && l !== "/");
  }
  for (const name of [`${p.name}:${p.arch}.list`, `${p.name}.list`]) {
    try {
      const text = await readFile(join(root, "var/lib/dpkg/info", name), "utf8");
      return text.split("\n").filter((l) => l && l !== "/." && l !== "/");
    } catch {
      /* try the next name */
    }
  }
  return [];
}

/** Licenses named in a DEP-5 copyright file (`License:` fields), sorted and unique. */
export function licensesFromCopyright(text: string): string[] {
  if (!/^Format:\s*\S*copyright-format/m.test(text)) return [];
  const set = new Set<string>();
  for (const m of text.matchAll(/^License:\s*(.+)$/gm)) {
    const v = m[1]!.trim();
    if (v) set.add(v);
  }
  return [...set].sort();
}

/** Map Debian short names to SPDX identifiers where they differ; unknown names become LicenseRef-. */
export function toSpdxExpression(licenses: readonly string[]): string {
  if (licenses.length === 0) return "NOASSERTION";
  const map: Record<string, string> = {
    "GPL-2": "GPL-2.0-only", "GPL-2+": "GPL-2.0-or-later", "GPL-3": "GPL-3.0-only", "GPL-3+": "GPL-3.0-or-later",
    "LGPL-2": "LGPL-2.0-only", "LGPL-2+": "LGPL-2.0-or-later", "LGPL-2.1": "LGPL-2.1-only", "LGPL-2.1+": "LGPL-2.1-or-later",
    "LGPL-3": "LGPL-3.0-only", "LGPL-3+": "LGPL-3.0-or-later", "Apache-2.0": "Apache-2.0", "Expat": "MIT", "MIT": "MIT",
    "BSD-2-clause": "BSD-2-Clause", "BSD-3-clause": "BSD-3-Clause", "BSD-4-clause": "BSD-4-Clause", "ISC": "ISC",
    "Zlib": "Zlib", "public-domain": "LicenseRef-public-domain", "MPL-2.0": "MPL-2.0", "Artistic": "Artistic-1.0",
  };
  const ids = new Set<string>();
  for (const l of licenses) {
    for (const part of l.split(/\s+(?:or|and)\s+|\s*[|,]\s*/i)) {
      const t = part.trim();
      if (!t) continue;
      ids.add(map[t] ?? `LicenseRef-${spdxId(t)}`);
    }
  }
  return [...ids].sort().join(" AND ");
}

/**
 * An RPM's License tag as an SPDX expression: Fedora writes SPDX expressions
 * (GPL-2.0-or-later AND MIT), older packages short names (GPLv2+), which
 * become LicenseRef- identifiers.
 */
export function rpmLicenseExpression(tag: string | undefined): string {
  const t = (tag ?? "").trim();
  if (!t || t === "(none)") return "NOASSERTION";
  const tokens = t.replace(/[()]/g, " ").split(/\s+/).filter(Boolean);
  // an SPDX identifier has a hyphen (GPL-2.0-or-later, BSD-3-Clause) or is one of the few without;
  // GPLv2+ or "ASL 2.0" are not SPDX, and are kept as one LicenseRef
  const id = (x: string) => /^[A-Za-z0-9.+-]+$/.test(x) && (x.includes("-") || SPDX_WITHOUT_HYPHEN.has(x));
  return tokens.every((x) => ["AND", "OR", "WITH"].includes(x) || id(x)) ? t : `LicenseRef-${spdxId(t)}`;
}

const SPDX_WITHOUT_HYPHEN = new Set(["MIT", "ISC", "Zlib", "Unlicense", "curl", "Vim", "Ruby", "Beerware", "WTFPL", "NCSA", "TCL", "HPND", "ICU", "IJG", "JSON", "NTP", "OpenSSL", "PostgreSQL", "Sendmail", "W3C", "Libpng", "libtiff", "blessing", "bzip2-1.0.6", "Info-ZIP", "MirOS", "Xnet", "SMLNJ", "Naumen", "Fair", "Spencer-94"]);

/** The package URL of a package: pkg:deb/debian/… or pkg:rpm/VENDOR/… (epoch as a qualifier, as the purl spec has it). */
function purlOf(p: DebPackage): string {
  if (p.kind !== "rpm") return `pkg:deb/debian/${encodeURIComponent(p.name)}@${encodeURIComponent(p.version)}?arch=${p.arch}`;
  const vendor = (p.fields.Vendor ?? "").toLowerCase().match(/[a-z0-9]+/)?.[0];
  const [epoch, rest] = /^\d+:/.test(p.version) ? [p.version.split(":")[0], p.version.slice(p.version.indexOf(":") + 1)] : [undefined, p.version];
  return `pkg:rpm/${vendor ? `${vendor}/` : ""}${encodeURIComponent(p.name)}@${encodeURIComponent(rest)}?arch=${p.arch}${epoch ? `&epoch=${epoch}` : ""}`;
}

export async function buildSbom(input: SbomInput): Promise<{ json: string; packages: number; files: number }> {
  const { root } = input;
  const files: SpdxFile[] = [];
  const packages: Record<string, unknown>[] = [];
  const relationships: { spdxElementId: string; relationshipType: string; relatedSpdxElement: string }[] = [];
  const seenFiles = new Map<string, SpdxFile>();
  // a path resolved as its folder (followed, remembered: packages share a few hundred folders) plus its name
  const folders = new Map<string, Promise<string>>();
  const resolveLeaf = async (rel: string): Promise<string> => {
    const cut = rel.lastIndexOf("/");
    if (cut < 0) return rel;
    const dir = rel.slice(0, cut);
    let resolved = folders.get(dir);
    if (!resolved) folders.set(dir, (resolved = resolveInRoot(root, dir)));
    const d = await resolved;
    return d ? `${d}/${rel.slice(cut + 1)}` : rel.slice(cut + 1);
  };
  const docId = "SPDXRef-DOCUMENT";
  const imageId = `SPDXRef-Image-${spdxId(input.name)}`;
  packages.push({
    SPDXID: imageId,
    name: input.name,
    versionInfo: input.version,
    downloadLocation: "NOASSERTION",
    filesAnalyzed: false,
    licenseConcluded: "NOASSERTION",
    licenseDeclared: "NOASSERTION",
    copyrightText: "NOASSERTION",
    primaryPackagePurpose: "OPERATING-SYSTEM",
  });
  relationships.push({ spdxElementId: docId, relationshipType: "DESCRIBES", relatedSpdxElement: imageId });

  type Entry = DebPackage & { hostFiles?: readonly string[] };
  const host: Entry[] = (input.hostPackages ?? []).map((h) => ({ name: h.name, version: h.version, arch: h.arch, fields: {}, hostFiles: h.files }));
  const sorted: Entry[] = [...input.packages].sort((a, b) => a.name.localeCompare(b.name) || a.arch.localeCompare(b.arch));
  for (const p of [...sorted, ...host]) {
    const pid = p.hostFiles ? `SPDXRef-Package-host-deb-${spdxId(p.name)}-${spdxId(p.arch)}` : `SPDXRef-Package-${p.kind ?? "deb"}-${spdxId(p.name)}-${spdxId(p.arch)}`;
    let licenses: string[] = [];
    // an RPM says its license in its header (rpmLicenseExpression); a .deb in its DEP-5 copyright file
    if (p.kind !== "rpm") {
      try {
        // a host package's copyright file is the host's
        const copyright = p.hostFiles ? `/usr/share/doc/${p.name}/copyright` : join(root, await resolveInRoot(root, `usr/share/doc/${p.name}/copyright`));
        licenses = licensesFromCopyright(await readFile(copyright, "utf8"));
      } catch {
        licenses = [];
      }
    }
    const fileIds: string[] = [];
    const sha1s: string[] = [];
    // each file resolved, stat'ed and read with a few in flight (one at a time, the waits on the
    // thread pool were most of an SBOM's time); deduplicated in the list's order afterwards
    const paths = (p.hostFiles ? [...p.hostFiles] : await packageFiles(root, p)).sort();
    const hashed = await mapLimit(paths, FILE_PARALLEL, async (path) => {
      const rel = await resolveLeaf(path.replace(/^\/+/, ""));
      if (seenFiles.has(rel)) return { rel };
      let st;
      try {
        st = await lstat(join(root, rel));
      } catch {
        return undefined;
      }
      if (!st.isFile()) return undefined;
      const k = input.known?.sums[rel];
      if (k && st.ctimeMs < input.known!.copiedBeforeCtimeMs && k.size === st.size && k.mtimeMs === st.mtimeMs) return { rel, sha1: k.sha1, sha256: k.sha256 };
      const data = await readFile(join(root, rel));
      return { rel, sha1: createHash("sha1").update(data).digest("hex"), sha256: createHash("sha256").update(data).digest("hex") };
    });
    for (const h of hashed) {
      if (!h) continue;
      const seen = seenFiles.get(h.rel);
      if (seen) {
        sha1s.push(seen.checksums[0]!.checksumValue);
        fileIds.push(seen.SPDXID);
        continue;
      }
      if (!h.sha1) continue; // seen when resolved: a file an earlier package listed, recorded above
      const f: SpdxFile = {
        fileName: "./" + h.rel,
        SPDXID: `SPDXRef-File-${createHash("sha256").update(h.rel).digest("hex").slice(0, 16)}`,
        checksums: [
          { algorithm: "SHA1", checksumValue: h.sha1 },
          { algorithm: "SHA256", checksumValue: h.sha256! },
        ],
        licenseConcluded: "NOASSERTION",
        copyrightText: "NOASSERTION",
      };
      seenFiles.set(h.rel, f);
      files.push(f);
      sha1s.push(h.sha1);
      fileIds.push(f.SPDXID);
    }
    const pkg: Record<string, unknown> = {
      SPDXID: pid,
      name: p.name,
      versionInfo: p.version,
      supplier: p.fields.Maintainer ? `Organization: ${p.fields.Maintainer.replace(/\s*<.*$/, "")}` : p.fields.Vendor ? `Organization: ${p.fields.Vendor}` : "NOASSERTION",
      downloadLocation: "NOASSERTION",
      filesAnalyzed: fileIds.length > 0,
      licenseConcluded: "NOASSERTION",
      licenseDeclared: p.kind === "rpm" ? rpmLicenseExpression(p.fields.License) : toSpdxExpression(licenses),
      ...(p.kind === "rpm" && p.fields.SourceRPM && p.fields.SourceRPM !== "(none)" ? { sourceInfo: `built from the source RPM ${p.fields.SourceRPM}` } : {}),
      copyrightText: "NOASSERTION",
      ...(p.hostFiles ? { comment: "copied from the build host into /usr/lib/acl/tools (acl's A/B updater)" } : {}),
      externalRefs: [
        {
          referenceCategory: "PACKAGE-MANAGER",
          referenceType: "purl",
          referenceLocator: purlOf(p),
        },
      ],
    };
    if (fileIds.length) {
      pkg.packageVerificationCode = {
        packageVerificationCodeValue: createHash("sha1").update([...sha1s].sort().join("")).digest("hex"),
      };
      pkg.hasFiles = fileIds;
    }
    packages.push(pkg);
    relationships.push({ spdxElementId: imageId, relationshipType: "CONTAINS", relatedSpdxElement: pid });
  }
  for (const img of [...input.images].sort((a, b) => a.ref.localeCompare(b.ref))) {
    const pid = `SPDXRef-Container-${createHash("sha256").update(img.ref + img.digest).digest("hex").slice(0, 16)}`;
    packages.push({
      SPDXID: pid,
      name: img.ref,
      versionInfo: img.digest,
      downloadLocation: "NOASSERTION",
      filesAnalyzed: false,
      licenseConcluded: "NOASSERTION",
      licenseDeclared: "NOASSERTION",
      copyrightText: "NOASSERTION",
      checksums: /^sha256:[0-9a-f]{64}$/.test(img.digest) ? [{ algorithm: "SHA256", checksumValue: img.digest.slice(7) }] : undefined,
      primaryPackagePurpose: "CONTAINER",
    });
    relationships.push({ spdxElementId: imageId, relationshipType: "CONTAINS", relatedSpdxElement: pid });
  }
  const doc = {
    spdxVersion: "SPDX-2.3",
    dataLicense: "CC0-1.0",
    SPDXID: docId,
    name: `${input.name}-${input.version}`,
    documentNamespace: `https://acl.invalid/spdx/${encodeURIComponent(input.name)}/${encodeURIComponent(input.version)}/${input.specDigest}`,
    creationInfo: {
      created: new Date(input.sourceDateEpoch * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"),
      creators: [`Tool: acl-${input.toolVersion}`],
    },
    packages,
    files,
    relationships,
  };
  return { json: JSON.stringify(doc, null, 1) + "\n", packages: packages.length - 1, files: files.length };
}
