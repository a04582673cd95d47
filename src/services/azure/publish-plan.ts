/**
 * `acl azure publish-plan`: from a build's manifest, an ARM template (plus
 * parameters) and the equivalent `az` commands that upload the fixed VHD as a
 * page blob and create an Azure Compute Gallery image definition (Linux,
 * Generalized, HyperVGeneration V2, SecurityType TrustedLaunchSupported) and
 * image version, for self-managed clusters (Cluster API on Azure, …) that
 * boot custom images. The VHD is checked (size, sha256, fixed-VHD footer,
 * whole MiB) before anything is written; the folder is published by rename.
 *
 * A Secure Boot signed image (`boot.secureBoot` in the manifest) gets its db
 * certificate (the "secureboot-cert" artifact, DER) appended to the image
 * version's UEFI db (`properties.securityProfile.uefiSettings`, Compute
 * Gallery API 2022-08-03 and later), next to Microsoft's UEFI CA signature
 * template. Microsoft documents UEFI keys for the REST API (so templates)
 * only, not for `az sig image-version create`, so publish.sh then creates the
 * version by deploying the template. An unsigned image's plan is unchanged.
 */
import { createHash, X509Certificate } from "node:crypto";
import { createReadStream } from "node:fs";
import { chmod, mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { UserError } from "../../errors.js";
import { canonicalJson, MANIFEST_FILE, readManifest, type Manifest } from "../../pipeline/manifest.js";
import { decodeVhdFooter, VHD_DISK_TYPES, VHD_FOOTER_SIZE } from "../../formats/vhd-footer.js";
import { run } from "../../adapters/exec.js";
import type { Reporter } from "../../output/reporter.js";
import { makeDir } from "../../util/fs.js";
import { MiB as MIB } from "../../util/size.js";

/**
 * Microsoft.Compute/galleries API version used by the template. It has the image version's
 * `securityProfile.uefiSettings` (added in 2022-08-03; GalleryRP/stable/2023-07-03/gallery.json).
 */
export const GALLERY_API_VERSION = "2023-07-03";

/**
 * The signature template a signed image's version keeps next to its own db certificate: the
 * Microsoft UEFI CA keys, the CA that signs the shim of common Linux distributions, so those
 * boot chains still boot (Learn's "append keys to a signature template" scenario).
 * "MicrosoftWindowsTemplate" is, by its name, for Windows; "NoSignatureTemplate" replaces all
 * keys and needs a PK and KEK of our own.
 */
export const UEFI_SIGNATURE_TEMPLATE = "MicrosoftUefiCertificateAuthorityTemplate";

/** The image's Secure Boot db certificate as the image version carries it. */
export interface UefiDbCertificate {
  /** The secureboot-cert artifact, relative to the output folder. */
  path: string;
  subject: string;
  /** sha256 of the DER bytes. */
  sha256: string;
  /** base64 of the DER bytes: the value Azure takes for an x509 UEFI key. */
  base64: string;
}

export interface PublishPlanOptions {
  /** Output folder of `acl build`. */
  imageDir: string;
  gallery: string;
  resourceGroup: string;
  location: string;
  /** Image definition name (default: the image name). */
  imageDefinition?: string;
  /** Gallery image version MAJOR.MINOR.PATCH (default: the manifest version when it has that form). */
  imageVersion?: string;
  /** Storage account for the VHD page blob (default derived from gallery + image name). */
  storageAccount?: string;
  container?: string;
  publisher?: string;
  offer?: string;
  sku?: string;
  outDir?: string;
  force?: boolean;
  reporter?: Reporter;
}

export interface PublishPlanResult {
  outDir: string;
  files: string[];
  imageDefinition: string;
  imageVersion: string;
  storageAccount: string;
  blobName: string;
  vhd: { path: string; size: number; sha256: string; virtualSize: number };
  /** Set when the image is Secure Boot signed: the db certificate the image version carries. */
  secureBootDb?: { path: string; subject: string; sha256: string; signatureTemplate: string };
}

function nameRule(value: string, re: RegExp, what: string, rule: string): void {
  if (!re.test(value)) throw new UserError(`${what} '${value}' is not valid: ${rule}`);
}

async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** Storage account names: 3-24 lowercase letters and digits. */
export function defaultStorageAccount(gallery: string, image: string): string {
  const s = `${gallery}${image}`.toLowerCase().replace(/[^a-z0-9]/g, "");
  const digest = createHash("sha256").update(`${gallery}/${image}`).digest("hex").slice(0, 6);
  return `${s.slice(0, 16)}${digest}`.padEnd(3, "0").slice(0, 24);
}

async function checkVhd(imageDir: string, m: Manifest) {
  const art = m.artifacts.find((a) => a.kind === "disk-vhd");
  const mf = join(imageDir, MANIFEST_FILE);
  if (!art) {
    throw new UserError(`${mf}: image '${m.name}' has no disk-vhd artifact (rule: fixed-vhd)`, {
      file: mf,
      hint: "build the Azure fixed VHD: add vhd to the image spec's output formats and run `acl build` again",
    });
  }
  const path = resolve(imageDir, art.path);
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    throw new UserError(`${path}: the VHD the manifest lists is missing (rule: artifact-present)`, { file: path });
  }
  if (size !== art.size) {
    throw new UserError(`${path}: ${size} bytes, the manifest says ${art.size} (rule: artifact-size)`, {
      file: path,
      hint: "the file changed after `acl build`; rebuild or restore it",
    });
  }
  if (size < VHD_FOOTER_SIZE) throw new UserError(`${path}: ${size} bytes is too small for a VHD (rule: fixed-vhd)`, { file: path });
  const fh = await open(path, "r");
  const footerBytes = Buffer.alloc(VHD_FOOTER_SIZE);
  try {
    await fh.read(footerBytes, 0, VHD_FOOTER_SIZE, size - VHD_FOOTER_SIZE);
  } finally {
    await fh.close();
  }
  const footer = decodeVhdFooter(footerBytes);
  if (footer.diskType !== VHD_DISK_TYPES.fixed) {
    throw new UserError(`${path}: VHD disk type ${footer.diskType}, Azure needs a fixed VHD (type 2) (rule: fixed-vhd)`, { file: path });
  }
  const virtualSize = Number(footer.currentSize);
  if (virtualSize % MIB !== 0 || virtualSize + VHD_FOOTER_SIZE !== size) {
    throw new UserError(
      `${path}: virtual size ${virtualSize} bytes is not a whole number of MiB followed by the 512-byte footer (rule: vhd-mib-aligned)`,
      { file: path, hint: "convert with `qemu-img convert -O vpc -o subformat=fixed,force_size=on`" },
    );
  }
  const sha256 = await sha256File(path);
  if (sha256 !== art.sha256) {
    throw new UserError(`${path}: sha256 ${sha256} does not match the manifest's ${art.sha256} (rule: artifact-digest)`, {
      file: path,
      hint: "the VHD is not the one `acl build` wrote; rebuild it",
    });
  }
  return { path, relPath: art.path, size, sha256, virtualSize };
}

/**
 * Read and check the Secure Boot db certificate of a signed image (undefined when the manifest
 * has no `boot.secureBoot`): the "secureboot-cert" artifact exists, has the manifest's size and
 * sha256, is the certificate `boot.secureBoot` names and is a DER X.509 certificate.
 */
export async function readDbCertificate(imageDir: string, m: Manifest): Promise<UefiDbCertificate | undefined> {
  const sb = m.boot?.secureBoot;
  if (!sb) return undefined;
  const mf = join(imageDir, MANIFEST_FILE);
  const hint =
    "rebuild the image with `acl build` and its Secure Boot key, so that the output folder holds the db certificate (secureboot/db.der) the manifest lists";
  const arts = m.artifacts.filter((a) => a.kind === "secureboot-cert");
  if (arts.length === 0) {
    throw new UserError(
      `${mf}: image '${m.name}' is Secure Boot signed but lists no secureboot-cert artifact (the db certificate, secureboot/db.der) (rule: secureboot-cert)`,
      { file: mf, hint },
    );
  }
  const art = arts.find((a) => a.sha256 === sb.certificate.sha256) ?? arts[0]!;
  const path = resolve(imageDir, art.path);
  let der: Buffer;
  try {
    der = await readFile(path);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === "ENOENT" ? "is missing" : `cannot be read (${(e as Error).message})`;
    throw new UserError(`${path}: the Secure Boot db certificate the manifest lists ${why} (rule: artifact-present)`, { file: path, hint });
  }
  const sha256 = createHash("sha256").update(der).digest("hex");
  if (der.length !== art.size || sha256 !== art.sha256) {
    throw new UserError(
      `${path}: ${der.length} bytes with sha256 ${sha256}, the manifest says ${art.size} bytes with sha256 ${art.sha256} (rule: artifact-digest)`,
      { file: path, hint },
    );
  }
  if (sha256 !== sb.certificate.sha256) {
    throw new UserError(
      `${path}: sha256 ${sha256} is not the certificate the boot chain is signed with (boot.secureBoot.certificate.sha256 ${sb.certificate.sha256}) (rule: secureboot-cert)`,
      { file: path, hint },
    );
  }
  let parsed = false;
  try {
    parsed = der[0] === 0x30 && new X509Certificate(der).raw.equals(der);
  } catch {
    parsed = false;
  }
  if (!parsed) {
    throw new UserError(`${path}: not a DER-encoded X.509 certificate (rule: secureboot-cert)`, { file: path, hint });
  }
  // the subject goes into comments of publish.sh and README.md: one line, no control characters
  const subject = sb.certificate.subject.replace(/[\x00-\x1f\x7f]+/g, ", ");
  return { path: art.path, subject, sha256, base64: der.toString("base64") };
}

/** `properties.securityProfile` of an image version whose UEFI db gets these certificates (base64 DER). */
export function uefiSecurityProfile(dbCertificates: readonly string[]): Record<string, unknown> {
  return {
    uefiSettings: {
      signatureTemplateNames: [UEFI_SIGNATURE_TEMPLATE],
      additionalSignatures: { db: [{ type: "x509", value: [...dbCertificates] }] },
    },
  };
}

export interface ArmTemplateOptions {
  /** base64 DER X.509 certificates appended to the image version's UEFI db (none: no securityProfile). */
  dbCertificates?: readonly string[];
}

export function armTemplate(opts: ArmTemplateOptions = {}): Record<string, unknown> {
  const p = (name: string) => `[parameters('${name}')]`;
  const db = opts.dbCertificates ?? [];
  return {
    $schema: "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
    contentVersion: "1.0.0.0",
    metadata: { generator: "acl azure publish-plan" },
    parameters: {
      location: { type: "string" },
      galleryName: { type: "string" },
      imageDefinitionName: { type: "string" },
      imageVersionName: { type: "string" },
      publisher: { type: "string" },
      offer: { type: "string" },
      sku: { type: "string" },
      storageAccountName: { type: "string" },
      sourceVhdUri: { type: "string", metadata: { description: "page blob the fixed VHD was uploaded to" } },
      tags: { type: "object", defaultValue: {} },
    },
    resources: [
      {
        type: "Microsoft.Compute/galleries",
        apiVersion: GALLERY_API_VERSION,
        name: p("galleryName"),
        location: p("location"),
        properties: { description: "Images built by acl" },
      },
      {
        type: "Microsoft.Compute/galleries/images",
        apiVersion: GALLERY_API_VERSION,
        name: "[format('{0}/{1}', parameters('galleryName'), parameters('imageDefinitionName'))]",
        location: p("location"),
        dependsOn: ["[resourceId('Microsoft.Compute/galleries', parameters('galleryName'))]"],
        properties: {
          osType: "Linux",
          osState: "Generalized",
          hyperVGeneration: "V2",
          architecture: "x64",
          identifier: { publisher: p("publisher"), offer: p("offer"), sku: p("sku") },
          features: [{ name: "SecurityType", value: "TrustedLaunchSupported" }],
        },
      },
      {
        type: "Microsoft.Compute/galleries/images/versions",
        apiVersion: GALLERY_API_VERSION,
        name: "[format('{0}/{1}/{2}', parameters('galleryName'), parameters('imageDefinitionName'), parameters('imageVersionName'))]",
        location: p("location"),
        tags: p("tags"),
        dependsOn: [
          "[resourceId('Microsoft.Compute/galleries/images', parameters('galleryName'), parameters('imageDefinitionName'))]",
        ],
        properties: {
          publishingProfile: {
            targetRegions: [{ name: p("location"), regionalReplicaCount: 1, storageAccountType: "Standard_LRS" }],
            excludeFromLatest: false,
          },
          storageProfile: {
            osDiskImage: {
              hostCaching: "ReadOnly",
              source: {
                storageAccountId: "[resourceId('Microsoft.Storage/storageAccounts', parameters('storageAccountName'))]",
                uri: p("sourceVhdUri"),
              },
            },
          },
          ...(db.length > 0 ? { securityProfile: uefiSecurityProfile(db) } : {}),
        },
      },
    ],
    outputs: {
      imageVersionId: {
        type: "string",
        value:
          "[resourceId('Microsoft.Compute/galleries/images/versions', parameters('galleryName'), parameters('imageDefinitionName'), parameters('imageVersionName'))]",
      },
    },
  };
}

function q(v: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}

function azScript(o: {
  rg: string;
  location: string;
  gallery: string;
  def: string;
  version: string;
  account: string;
  container: string;
  blob: string;
  vhdName: string;
  sha256: string;
  publisher: string;
  offer: string;
  sku: string;
  tags: Record<string, string>;
  m: Manifest;
  /** Signed image: the version is created by deploying azuredeploy.json, which carries this certificate. */
  uefiDb?: UefiDbCertificate;
  deployment: string;
}): string {
  const tags = Object.entries(o.tags).map(([k, v]) => `${k}=${v}`);
  const signed = o.uefiDb
    ? [
        "# The image is Secure Boot signed: its image version must carry the image's db certificate",
        `# (${o.uefiDb.subject}, sha256 ${o.uefiDb.sha256}),`,
        "# which azuredeploy.json holds in properties.securityProfile.uefiSettings. Microsoft documents UEFI keys",
        "# for the REST API (templates) only, not for `az sig image-version create`, so the version is created",
        "# by deploying azuredeploy.json (with azuredeploy.parameters.json, next to this script); the deployment",
        "# also puts the gallery and the image definition as the template states them.",
      ]
    : [];
  const versionCreate = o.uefiDb
    ? [
        '  change az deployment group create -g "$RG" -n ' + q(o.deployment) + ' --template-file "$HERE/azuredeploy.json" \\',
        '    --parameters "@$HERE/azuredeploy.parameters.json" sourceVhdUri="$VHD_URI"',
      ]
    : [
        '  change az sig image-version create -g "$RG" -r "$GALLERY" -i "$IMAGE_DEFINITION" -e "$IMAGE_VERSION" -l "$LOCATION" \\',
        '    --os-vhd-uri "$VHD_URI" --os-vhd-storage-account "$STORAGE_ACCOUNT" --target-regions "$LOCATION=1=Standard_LRS" \\',
        '    --tags "${TAGS[@]}"',
      ];
  return [
    "#!/usr/bin/env bash",
    `# publish.sh: generated by \`acl azure publish-plan\` for ${o.m.name} ${o.m.version}.`,
    "# The az commands equivalent to azuredeploy.json: upload the fixed VHD as a page blob, then create the",
    "# Compute Gallery, the image definition (Linux, Generalized, V2, TrustedLaunchSupported) and the version.",
    ...signed,
    "# Usage: ./publish.sh [--dry-run] [VHD]   (VHD defaults to the path in the build folder)",
    "# Safe to run again: each resource is looked up first and created only when missing.",
    "set -euo pipefail",
    "",
    `RG=${q(o.rg)}`,
    `LOCATION=${q(o.location)}`,
    `GALLERY=${q(o.gallery)}`,
    `IMAGE_DEFINITION=${q(o.def)}`,
    `IMAGE_VERSION=${q(o.version)}`,
    `STORAGE_ACCOUNT=${q(o.account)}`,
    `CONTAINER=${q(o.container)}`,
    `BLOB=${q(o.blob)}`,
    `VHD_SHA256=${q(o.sha256)}`,
    ...(o.uefiDb ? ['HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"'] : [`TAGS=(${tags.map(q).join(" ")})`]),
    "DRY_RUN=0",
    'VHD=""',
    "for arg in \"$@\"; do",
    '  case "$arg" in',
    "    --dry-run) DRY_RUN=1 ;;",
    '    *) VHD="$arg" ;;',
    "  esac",
    "done",
    `: "\${VHD:=${q(o.vhdName)}}"`,
    "",
    "log() { printf '==> %s\\n' \"$*\" >&2; }",
    "die() { printf 'error: %s\\n' \"$*\" >&2; exit 1; }",
    "change() {",
    '  if [ "$DRY_RUN" = 1 ]; then printf \'would run:\'; printf \' %q\' "$@"; printf \'\\n\'; else "$@"; fi',
    "}",
    "",
    '[ -f "$VHD" ] || die "no VHD at $VHD: pass the path of the fixed VHD as the argument"',
    'log "checking the sha256 of $VHD"',
    'printf \'%s  %s\\n\' "$VHD_SHA256" "$VHD" | sha256sum -c --quiet - || die "$VHD is not the VHD this plan was made for"',
    "",
    "# Each lookup dies when az fails, so an error is never taken for \"missing\"; under --dry-run a resource",
    "# that would be created is treated as empty below.",
    "lookup() {",
    '  local out',
    '  out="$("$@")" || die "lookup failed: $*"',
    '  [ -n "$out" ] && [ "$out" != false ]',
    "}",
    "",
    "NEW_ACCOUNT=0",
    'if ! lookup az storage account list -g "$RG" --query "[?name==\'$STORAGE_ACCOUNT\'].name" -o tsv; then',
    '  change az storage account create -g "$RG" -n "$STORAGE_ACCOUNT" -l "$LOCATION" --sku Standard_LRS --kind StorageV2 --allow-blob-public-access false',
    "  NEW_ACCOUNT=1",
    "fi",
    'if [ "$NEW_ACCOUNT" = 1 ] || ! lookup az storage container exists --account-name "$STORAGE_ACCOUNT" -n "$CONTAINER" --auth-mode login --query exists -o tsv; then',
    '  change az storage container create --account-name "$STORAGE_ACCOUNT" -n "$CONTAINER" --auth-mode login',
    "  NEW_ACCOUNT=1",
    "fi",
    'if [ "$NEW_ACCOUNT" = 1 ] || ! lookup az storage blob exists --account-name "$STORAGE_ACCOUNT" -c "$CONTAINER" -n "$BLOB" --auth-mode login --query exists -o tsv; then',
    '  change az storage blob upload --account-name "$STORAGE_ACCOUNT" -c "$CONTAINER" -n "$BLOB" -f "$VHD" --type page --auth-mode login',
    "fi",
    'VHD_URI="https://$STORAGE_ACCOUNT.blob.core.windows.net/$CONTAINER/$BLOB"',
    "",
    "NEW_GALLERY=0",
    'if ! lookup az sig list -g "$RG" --query "[?name==\'$GALLERY\'].name" -o tsv; then',
    '  change az sig create -g "$RG" -r "$GALLERY" -l "$LOCATION"',
    "  NEW_GALLERY=1",
    "fi",
    'if [ "$NEW_GALLERY" = 1 ] || ! lookup az sig image-definition list -g "$RG" -r "$GALLERY" --query "[?name==\'$IMAGE_DEFINITION\'].name" -o tsv; then',
    '  change az sig image-definition create -g "$RG" -r "$GALLERY" -i "$IMAGE_DEFINITION" -l "$LOCATION" \\',
    `    --publisher ${q(o.publisher)} --offer ${q(o.offer)} --sku ${q(o.sku)} \\`,
    "    --os-type Linux --os-state Generalized --hyper-v-generation V2 --architecture x64 \\",
    "    --features SecurityType=TrustedLaunchSupported",
    "  NEW_GALLERY=1",
    "fi",
    'if [ "$NEW_GALLERY" = 1 ] || ! lookup az sig image-version list -g "$RG" -r "$GALLERY" -i "$IMAGE_DEFINITION" --query "[?name==\'$IMAGE_VERSION\'].name" -o tsv; then',
    ...versionCreate,
    "else",
    '  log "image version $IMAGE_VERSION exists"',
    "fi",
    'log "image version: /subscriptions/.../resourceGroups/$RG/providers/Microsoft.Compute/galleries/$GALLERY/images/$IMAGE_DEFINITION/versions/$IMAGE_VERSION"',
    "",
  ].join("\n");
}

export async function azurePublishPlan(o: PublishPlanOptions): Promise<PublishPlanResult> {
  const m = await readManifest(o.imageDir);
  const def = o.imageDefinition ?? m.name;
  const version = o.imageVersion ?? m.version;
  nameRule(o.gallery, /^[A-Za-z0-9][A-Za-z0-9._]{0,78}[A-Za-z0-9]$/, "--gallery", "gallery names are 2-80 letters, digits, dots and underscores, starting and ending with a letter or digit");
  nameRule(def, /^[A-Za-z0-9][A-Za-z0-9._-]{0,78}[A-Za-z0-9]$/, "image definition", "1-80 letters, digits, dots, dashes and underscores, starting and ending with a letter or digit");
  nameRule(o.resourceGroup, /^[-\w._()]{1,89}[-\w_()]$/, "--resource-group", "1-90 letters, digits, '-', '_', '.', '(' or ')', not ending with '.'");
  nameRule(o.location, /^[a-z0-9]+$/, "--location", "a region name such as westeurope (lowercase, no spaces)");
  const vm = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  if (!vm || vm.slice(1).some((x) => Number(x) > 2 ** 31 - 1)) {
    throw new UserError(`image version '${version}' is not MAJOR.MINOR.PATCH with 32-bit integers, as a gallery image version must be (rule: gallery-version)`, {
      hint: "pass --image-version, for example --image-version 2026.11.24",
    });
  }
  const account = o.storageAccount ?? defaultStorageAccount(o.gallery, def);
  nameRule(account, /^[a-z0-9]{3,24}$/, "--storage-account", "storage account names are 3-24 lowercase letters and digits");
  const container = o.container ?? "vhds";
  nameRule(container, /^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/, "--container", "3-63 lowercase letters, digits and single dashes");
  const vhd = await checkVhd(o.imageDir, m);
  const uefiDb = await readDbCertificate(o.imageDir, m);
  const blob = `${def}-${version}.vhd`;
  const publisher = o.publisher ?? "acl";
  const offer = o.offer ?? m.name;
  const sku = o.sku ?? (m.aks?.osSku ?? m.name);
  const tags: Record<string, string> = {
    "acl-image": `${m.name}-${m.version}`,
    "acl-vhd-sha256": vhd.sha256,
    "acl-usr-root-hash": m.verity.rootHash,
  };
  const parameters = {
    $schema: "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
    contentVersion: "1.0.0.0",
    parameters: {
      location: { value: o.location },
      galleryName: { value: o.gallery },
      imageDefinitionName: { value: def },
      imageVersionName: { value: version },
      publisher: { value: publisher },
      offer: { value: offer },
      sku: { value: sku },
      storageAccountName: { value: account },
      sourceVhdUri: { value: `https://${account}.blob.core.windows.net/${container}/${blob}` },
      tags: { value: tags },
    },
  };
  const script = azScript({
    rg: o.resourceGroup,
    location: o.location,
    gallery: o.gallery,
    def,
    version,
    account,
    container,
    blob,
    vhdName: vhd.path,
    sha256: vhd.sha256,
    publisher,
    offer,
    sku,
    tags,
    m,
    uefiDb,
    deployment: `acl-${def}-${version}`.slice(0, 64).replace(/\.+$/, ""),
  });
  const readme = [
    `# Publish ${m.name} ${m.version} to Azure Compute Gallery ${o.gallery}`,
    "",
    `1. Upload the fixed VHD (${vhd.size} bytes, sha256 ${vhd.sha256}) as a page blob:`,
    `   \`az storage blob upload --account-name ${account} -c ${container} -n ${blob} -f ${vhd.relPath} --type page --auth-mode login\``,
    `2. Deploy the template: \`az deployment group create -g ${o.resourceGroup} --template-file azuredeploy.json --parameters @azuredeploy.parameters.json\``,
    "",
    "Or run `./publish.sh` (the same steps as az commands; `--dry-run` prints them).",
    `Image definition ${def}: Linux, Generalized, HyperVGeneration V2, SecurityType TrustedLaunchSupported; version ${version} in ${o.location}.`,
    ...(uefiDb
      ? [
          "",
          "The image is Secure Boot signed: its image version carries the image's db certificate",
          `(${uefiDb.subject}, sha256 ${uefiDb.sha256}, from ${uefiDb.path})`,
          `as an additional UEFI db signature, next to the signature template ${UEFI_SIGNATURE_TEMPLATE}`,
          "(`properties.securityProfile.uefiSettings` in azuredeploy.json). Microsoft documents UEFI keys for the REST",
          "API (templates) only, not for `az sig image-version create`, so `./publish.sh` creates the version by",
          "deploying the template.",
        ]
      : []),
    "",
  ].join("\n");

  const outDir = resolve(o.outDir ?? `azure-publish-${m.name}-${version}`);
  try {
    await stat(outDir);
    if (!o.force) throw new UserError(`output folder ${outDir} already exists`, { hint: "pass --force to replace it, or choose another --out" });
  } catch (e) {
    if (e instanceof UserError) throw e;
  }
  await makeDir(dirname(outDir));
  const tmp = join(dirname(outDir), `.${basename(outDir)}.tmp-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  const files = new Map<string, string>([
    ["azuredeploy.json", canonicalJson(armTemplate({ dbCertificates: uefiDb ? [uefiDb.base64] : [] }))],
    ["azuredeploy.parameters.json", canonicalJson(parameters)],
    ["publish.sh", script],
    ["README.md", readme],
  ]);
  try {
    await mkdir(tmp, { recursive: true });
    for (const [name, text] of files) await writeFile(join(tmp, name), text);
    await chmod(join(tmp, "publish.sh"), 0o755);
    await run(["bash", "-n", join(tmp, "publish.sh")], { hint: "the generated script does not parse: a bug in acl" });
    await rm(outDir, { recursive: true, force: true });
    await rename(tmp, outDir);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  o.reporter?.info(`wrote ${files.size} files to ${outDir}`);
  o.reporter?.info(
    uefiDb
      ? `image version ${version} carries the image's Secure Boot db certificate ${uefiDb.subject} (sha256 ${uefiDb.sha256}) next to ${UEFI_SIGNATURE_TEMPLATE}; publish.sh deploys azuredeploy.json for it`
      : `image version ${version} carries no db certificate of its own: the image is not Secure Boot signed`,
  );
  return {
    outDir,
    files: [...files.keys()].sort(),
    imageDefinition: def,
    imageVersion: version,
    storageAccount: account,
    blobName: blob,
    vhd: { path: vhd.path, size: vhd.size, sha256: vhd.sha256, virtualSize: vhd.virtualSize },
    ...(uefiDb
      ? { secureBootDb: { path: uefiDb.path, subject: uefiDb.subject, sha256: uefiDb.sha256, signatureTemplate: UEFI_SIGNATURE_TEMPLATE } }
      : {}),
  };
}
