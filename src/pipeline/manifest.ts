/**
 * The build manifest (`manifest.json` in an output folder): the source of
 * truth for every command that runs after `acl build`. Schema-checked on
 * write and on read.
 */
import { z } from "zod";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { UserError } from "../errors.js";
import { MICROARCHES } from "../formats/microarch.js";

export const MANIFEST_FILE = "manifest.json";
export const MANIFEST_SCHEMA_VERSION = 1;

export const ArtifactKind = z.enum([
  "usr-image",
  "usr-payload",
  "update-payload",
  "disk-raw",
  "disk-qcow2",
  "disk-vhd",
  "kernel",
  "initramfs",
  "uki",
  "sbom",
  "file-list",
  "provenance",
  "checksums",
  "signature",
  "public-key",
  /** Secure Boot enrollment material: the db certificate (DER), its EFI signature list, a KEK-signed db update. */
  "secureboot-cert",
  "efi-signature-list",
  "efi-auth",
  "other",
]);
export type ArtifactKind = z.infer<typeof ArtifactKind>;

export const Artifact = z.strictObject({
  /** Relative to the manifest's folder, POSIX separators. */
  path: z.string().regex(/^(?!\/)(?!.*(^|\/)\.\.(\/|$)).+$/, "must be a relative path inside the output folder"),
  kind: ArtifactKind,
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type Artifact = z.infer<typeof Artifact>;

export const VerityInfo = z.strictObject({
  rootHash: z.string().regex(/^[0-9a-f]{64}$/),
  salt: z.string().regex(/^[0-9a-f]*$/),
  /** Byte offset of the verity superblock (= filesystem size) in the USR payload. */
  hashOffset: z.number().int().nonnegative(),
  dataBlocks: z.number().int().positive(),
  dataBlockSize: z.number().int().positive(),
  hashBlockSize: z.number().int().positive(),
  algorithm: z.literal("sha256"),
  hashType: z.literal(1),
  uuid: z.string(),
});
export type VerityInfo = z.infer<typeof VerityInfo>;

export const AksInfo = z.strictObject({
  osSku: z.string(),
  nodeImageVersion: z.string(),
  minKubernetesVersion: z.string(),
});
export type AksInfo = z.infer<typeof AksInfo>;

export const IsaAudit = z.strictObject({
  /** Highest level any ELF file needs: "x86-64", "x86-64-v2", ... or "none". */
  highest: z.string(),
  /** Files needing the highest level (first 50, sorted). */
  files: z.array(z.string()),
  counts: z.record(z.string(), z.number().int()),
});

const Hex64 = z.string().regex(/^[0-9a-f]{64}$/);

/** One A/B slot's boot entry: its UKI and the PCR 11 value systemd-stub measures for it. */
export const SlotBootInfo = z.strictObject({
  /** sha256 and size of the UKI file (signed, when the build is signed). */
  uki: z.strictObject({ sha256: Hex64, size: z.number().int().positive() }),
  /** sha256-bank PCR 11 after systemd-stub measured the UKI's sections (at the kernel's start). */
  pcr11: Hex64,
  /** PCR 11 once systemd-pcrphase has measured "sysinit" and "ready" (systemd images only). */
  pcr11Ready: Hex64.optional(),
});
export type SlotBootInfo = z.infer<typeof SlotBootInfo>;

export const SecureBootInfo = z.strictObject({
  /** The certificate the boot chain is signed with (what firmware's db must hold). */
  certificate: z.strictObject({
    subject: z.string(),
    /** sha256 of the certificate's DER bytes. */
    sha256: Hex64,
    notAfter: z.string(),
  }),
  /** ESP paths and payload sections signed with it. */
  signed: z.array(z.string()),
  /** EFI signature owner GUID used in the signature lists. */
  ownerGuid: z.string(),
  /** Subject of the KEK certificate that signed the db update (.auth), when one was given. */
  kek: z.string().optional(),
});
export type SecureBootInfo = z.infer<typeof SecureBootInfo>;

export const BootInfo = z.strictObject({
  slots: z.strictObject({ A: SlotBootInfo, B: SlotBootInfo }),
  secureBoot: SecureBootInfo.optional(),
});
export type BootInfo = z.infer<typeof BootInfo>;

export const Manifest = z.strictObject({
  schemaVersion: z.literal(MANIFEST_SCHEMA_VERSION),
  name: z.string(),
  version: z.string(),
  arch: z.literal("x86_64"),
  microarch: z.enum(MICROARCHES),
  sourceDateEpoch: z.number().int().nonnegative(),
  /** sha256 of the spec file's bytes. */
  specDigest: z.string().regex(/^[0-9a-f]{64}$/),
  usr: z.strictObject({
    filesystem: z.enum(["erofs", "squashfs"]),
    size: z.number().int().nonnegative(),
    uuid: z.string(),
  }),
  verity: VerityInfo,
  artifacts: z.array(Artifact),
  /** Resolved inputs: packages with versions, base image digests. */
  inputs: z.strictObject({
    packages: z.array(z.strictObject({ name: z.string(), version: z.string(), arch: z.string() })),
    images: z.array(z.strictObject({ ref: z.string(), digest: z.string() })),
    archives: z.array(z.strictObject({ path: z.string(), sha256: z.string() })),
  }),
  tools: z.record(z.string(), z.string()),
  setuid: z.array(z.string()),
  isa: IsaAudit.optional(),
  kernel: z
    .strictObject({ package: z.string(), version: z.string(), release: z.string(), cmdline: z.string() })
    .optional(),
  disk: z
    .strictObject({
      sectorSize: z.number().int(),
      diskGuid: z.string(),
      sizeBytes: z.number().int(),
      partitions: z.array(
        z.strictObject({
          number: z.number().int(),
          label: z.string(),
          typeGuid: z.string(),
          partGuid: z.string(),
          firstLba: z.number().int(),
          lastLba: z.number().int(),
          attributes: z.string(),
          used: z.number().int().optional(),
        }),
      ),
    })
    .optional(),
  aks: AksInfo.optional(),
  boot: BootInfo.optional(),
  /** The image runs Ignition at first boot ([ignition]): where it reads the user config, the base config it carries, the ESP flag. */
  ignition: z
    .strictObject({
      platforms: z.array(z.string()),
      /** The base config as baked into /usr/lib/ignition/base.d (its path there and its JSON), for boot-test to check what it applies. */
      base: z.strictObject({ path: z.string(), config: z.string() }).optional(),
      firstBootFlag: z.string(),
    })
    .optional(),
});
export type Manifest = z.infer<typeof Manifest>;

/** Byte offset of the ESP (partition EFI-SYSTEM) in the manifest's disk, for reading its files. */
export function espOffset(m: Manifest): number | undefined {
  const esp = m.disk?.partitions.find((p) => p.label === "EFI-SYSTEM");
  return esp ? esp.firstLba * m.disk!.sectorSize : undefined;
}

export function parseManifest(json: unknown, file = MANIFEST_FILE): Manifest {
  const r = Manifest.safeParse(json);
  if (!r.success) {
    const first = r.error.issues[0]!;
    throw new UserError(`${file}: invalid build manifest at '${first.path.join(".") || "(root)"}': ${first.message}`, {
      file,
      hint: "rebuild the image with `acl build`; manifests are written by acl and not meant to be edited",
    });
  }
  return r.data;
}

export async function readManifest(outDir: string): Promise<Manifest> {
  const file = join(outDir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new UserError(`no build manifest at ${file}`, { file, hint: "pass the output folder of `acl build` (for example out/minimal)" });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file} is not valid JSON: ${(e as Error).message}`, { file });
  }
  return parseManifest(json, file);
}

export { canonicalJson } from "../formats/canonical-json.js";
