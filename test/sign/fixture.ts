/**
 * A small, deterministic build output folder for the signing tests: a few
 * artifact files (one in a subfolder) and a manifest.json that passes
 * parseManifest, written the way `acl build` writes it (canonical JSON).
 */
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, writeFile, readFile, copyFile, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { canonicalJson, MANIFEST_FILE, parseManifest, type Artifact, type Manifest } from "../../src/pipeline/manifest.js";
import type { ProvenanceOptions } from "../../src/stages/release/sign.js";

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "sign");
export const TEST_KEY = join(FIXTURES, "rfc8032-test1.key");
export const TEST_PUB = join(FIXTURES, "rfc8032-test1.pub");
export const GOLDEN = join(FIXTURES, "golden");
export const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** SOURCE_DATE_EPOCH of the fixture build: 2026-01-01T00:00:00Z. */
export const FIXTURE_EPOCH = 1767225600;

/** Deterministic pseudo-random bytes (sha256 counter mode) so files are not all zeros. */
export function fixtureBytes(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let off = 0, i = 0; off < size; off += 32, i++) {
    createHash("sha256").update(`${seed}/${i}`).digest().copy(out, off);
  }
  return out;
}

const FILES: { path: string; kind: Artifact["kind"]; bytes: () => Buffer }[] = [
  { path: "disk.raw", kind: "disk-raw", bytes: () => Buffer.concat([fixtureBytes("disk", 96 * 1024), Buffer.alloc(32 * 1024)]) },
  { path: "usr.erofs", kind: "usr-image", bytes: () => fixtureBytes("usr", 40 * 1024 + 7) },
  { path: "sbom/packages.spdx.json", kind: "sbom", bytes: () => Buffer.from('{"spdxVersion":"SPDX-2.3","name":"fixture"}\n') },
  { path: "empty.txt", kind: "other", bytes: () => Buffer.alloc(0) },
];

export async function tempDir(prefix = "acl-sign-"): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Write the fixture output into `dir`; returns its manifest. */
export async function makeFixture(dir: string): Promise<Manifest> {
  const artifacts: Artifact[] = [];
  for (const f of FILES) {
    const b = f.bytes();
    await mkdir(dirname(join(dir, f.path)), { recursive: true });
    await writeFile(join(dir, f.path), b);
    artifacts.push({ path: f.path, kind: f.kind, size: b.length, sha256: createHash("sha256").update(b).digest("hex") });
  }
  const manifest = parseManifest({
    schemaVersion: 1,
    name: "fixture",
    version: "1.2.3",
    arch: "x86_64",
    microarch: "x86-64-v2",
    sourceDateEpoch: FIXTURE_EPOCH,
    specDigest: createHash("sha256").update("name = 'fixture'\n").digest("hex"),
    usr: { filesystem: "erofs", size: 40 * 1024 + 7, uuid: "6a1c8e1e-0000-4000-8000-000000000001" },
    verity: {
      rootHash: "ab".repeat(32),
      salt: "cd".repeat(32),
      hashOffset: 40960,
      dataBlocks: 10,
      dataBlockSize: 4096,
      hashBlockSize: 4096,
      algorithm: "sha256",
      hashType: 1,
      uuid: "6a1c8e1e-0000-4000-8000-000000000002",
    },
    artifacts,
    inputs: {
      packages: [
        { name: "systemd", version: "252.38-1~deb12u1", arch: "amd64" },
        { name: "bash", version: "5.2.15-2+b7", arch: "amd64" },
        { name: "libc6", version: "2.36-9+deb12u10", arch: "amd64" },
        { name: "tzdata", version: "1:2025b-0+deb12u1", arch: "all" },
      ],
      images: [{ ref: "docker.io/library/busybox:1.36", digest: "sha256:" + "12".repeat(32) }],
      archives: [{ path: "overlay/extra.tar", sha256: "34".repeat(32) }],
    },
    tools: { "mkfs.erofs": "mkfs.erofs 1.5", veritysetup: "veritysetup 2.6.1", acl: "0.1.0" },
    setuid: [],
  });
  await writeFile(join(dir, MANIFEST_FILE), canonicalJson(manifest));
  return manifest;
}

export function fixtureProvenance(manifest: Manifest): ProvenanceOptions {
  const t = new Date(FIXTURE_EPOCH * 1000).toISOString();
  return {
    builderId: "https://example.invalid/acl/builder@v0.1.0",
    specPath: "images/fixture.toml",
    specDigest: manifest.specDigest,
    inputs: manifest.inputs,
    tools: manifest.tools,
    startedOn: t,
    finishedOn: t,
  };
}

/** Copy every regular file of a folder tree (to make a tampered copy). */
export async function copyTree(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const e of await readdir(from, { withFileTypes: true })) {
    if (e.isDirectory()) await copyTree(join(from, e.name), join(to, e.name));
    else await copyFile(join(from, e.name), join(to, e.name));
  }
}

/** Flip one bit of a file at `offset` (negative: from the end). */
export async function flipByte(file: string, offset = 0): Promise<void> {
  const b = await readFile(file);
  const i = offset < 0 ? b.length + offset : offset;
  b[i] = b[i]! ^ 0x01;
  await writeFile(file, b);
}
