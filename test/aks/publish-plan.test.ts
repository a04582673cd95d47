/**
 * `acl azure publish-plan` (service level): the ARM template's gallery
 * resources, the parameters taken from the manifest, the VHD checks (with
 * qemu-img as the second opinion on the fixture VHD), publish.sh run with a
 * recording stub az, and a Secure Boot signed image: its db certificate (made
 * here by openssl) in the image version's UEFI db, openssl reading it back.
 */
import { afterAll, describe, expect, test } from "vitest";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { armTemplate, azurePublishPlan, defaultStorageAccount, GALLERY_API_VERSION } from "../../src/services/azure/publish-plan.js";
import type { Reporter } from "../../src/output/reporter.js";
import { IMAGE_ACL, imageWith, readJson, tmp, cleanupTmp } from "./helpers.js";

afterAll(cleanupTmp);

const OPTS = { gallery: "aclGallery", resourceGroup: "images-rg", location: "westeurope" };
const AKS = { osSku: "AzureContainerLinux", nodeImageVersion: "AKSAzureContainerLinux-202611.24.0", minKubernetesVersion: "1.34" };
const VERSIONS = "Microsoft.Compute/galleries/images/versions";

/** A stub az on PATH: lists answer $AZ_EXISTING (a resource name, or empty), "exists" answers false; anything else fails. */
function stubAz(): string {
  const bin = join(tmp(), "bin");
  mkdirSync(bin);
  writeFileSync(
    join(bin, "az"),
    [
      "#!/bin/sh",
      'printf "%s\\n" "$*" >>"$AZ_LOG"',
      'case "$*" in',
      '  *" exists "*) if [ -n "$AZ_EXISTING" ]; then echo true; else echo false; fi ;;',
      '  *" list "*) echo "$AZ_EXISTING" ;;',
      '  *) echo "unexpected: $*" >&2; exit 9 ;;',
      "esac",
      "",
    ].join("\n"),
  );
  chmodSync(join(bin, "az"), 0o755);
  return bin;
}

/** `publish.sh --dry-run` with the stub az: output, and the az calls the stub saw. */
function dryRun(script: string, bin: string, existing: string) {
  const log = join(tmp(), "az.log");
  writeFileSync(log, "");
  const r = spawnSync("bash", [script, "--dry-run"], {
    encoding: "utf8",
    env: { PATH: `${bin}:${process.env.PATH}`, AZ_LOG: log, AZ_EXISTING: existing },
  });
  return { ...r, calls: readFileSync(log, "utf8").trim().split("\n") };
}

const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

function run(argv: string[], input?: Buffer) {
  const r = spawnSync(argv[0]!, argv.slice(1), { input });
  expect(r.error, `${argv[0]} must be installed`).toBeUndefined();
  expect(r.status, r.stderr?.toString()).toBe(0);
  return r.stdout;
}

/**
 * The fixture image, Secure Boot signed: a fresh self-signed certificate (openssl) as the
 * secureboot-cert artifact secureboot/db.der, and boot.secureBoot naming it, as the build writes them.
 */
function signedImage() {
  const img = imageWith(AKS);
  mkdirSync(join(img, "secureboot"));
  const derPath = join(img, "secureboot", "db.der");
  run([
    "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=acl test db", "-days", "1",
    "-keyout", join(tmp(), "db.key"), "-outform", "DER", "-out", derPath,
  ]);
  const der = readFileSync(derPath);
  const m = readJson(join(img, "manifest.json"));
  m.artifacts.push({ path: "secureboot/db.der", kind: "secureboot-cert", size: der.length, sha256: sha256(der) });
  const slot = { uki: { sha256: "a".repeat(64), size: 1 }, pcr11: "b".repeat(64) };
  m.boot = {
    slots: { A: slot, B: slot },
    secureBoot: {
      certificate: { subject: "CN=acl test db", sha256: sha256(der), notAfter: "2026-11-25T00:00:00Z" },
      signed: ["EFI/BOOT/BOOTX64.EFI", "EFI/Linux/acl-a.efi"],
      ownerGuid: "6e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
    },
  };
  writeFileSync(join(img, "manifest.json"), JSON.stringify(m, null, 2));
  return { img, der, derPath };
}

function recorder(): Reporter & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    stage: () => ({ progress() {}, end: () => 0 }),
    info: (message) => lines.push(message),
    warn: (message) => lines.push(`warn: ${message}`),
  };
}

describe("ARM template", () => {
  const t = armTemplate() as { resources: Array<Record<string, any>> };
  const byType = (type: string) => t.resources.find((r) => r.type === type)!;

  test("image definition: Linux, Generalized, HyperVGeneration V2, Trusted Launch supported", () => {
    const def = byType("Microsoft.Compute/galleries/images");
    expect(def.properties).toMatchObject({
      osType: "Linux",
      osState: "Generalized",
      hyperVGeneration: "V2",
      features: [{ name: "SecurityType", value: "TrustedLaunchSupported" }],
    });
    expect(def.dependsOn).toEqual(["[resourceId('Microsoft.Compute/galleries', parameters('galleryName'))]"]);
  });

  test("image version from the uploaded VHD blob", () => {
    const v = byType("Microsoft.Compute/galleries/images/versions");
    expect(v.properties.storageProfile.osDiskImage.source).toEqual({
      storageAccountId: "[resourceId('Microsoft.Storage/storageAccounts', parameters('storageAccountName'))]",
      uri: "[parameters('sourceVhdUri')]",
    });
    expect(v.name).toBe("[format('{0}/{1}/{2}', parameters('galleryName'), parameters('imageDefinitionName'), parameters('imageVersionName'))]");
  });

  test("every parameter the resources use is declared, and every declared one is used", () => {
    const text = JSON.stringify(t.resources) + JSON.stringify((t as any).outputs);
    const used = new Set([...text.matchAll(/parameters\('([A-Za-z]+)'\)/g)].map((m) => m[1]));
    expect([...used].sort()).toEqual(Object.keys((t as any).parameters).sort());
  });
});

describe("azurePublishPlan", () => {
  test("parameters come from the manifest; the VHD is the one qemu-img reads as a fixed VHD", async () => {
    const out = join(tmp(), "pub");
    const r = await azurePublishPlan({ imageDir: IMAGE_ACL, ...OPTS, outDir: out });
    const m = readJson(join(IMAGE_ACL, "manifest.json"));
    const p = readJson(join(out, "azuredeploy.parameters.json")).parameters;
    expect(p.imageVersionName.value).toBe("2026.11.24");
    expect(p.sku.value).toBe("AzureContainerLinux");
    expect(p.storageAccountName.value).toBe(defaultStorageAccount("aclGallery", "container-host"));
    expect(p.storageAccountName.value).toMatch(/^[a-z0-9]{3,24}$/);
    expect(p.sourceVhdUri.value).toBe(`https://${r.storageAccount}.blob.core.windows.net/vhds/container-host-2026.11.24.vhd`);
    expect(p.tags.value).toEqual({
      "acl-image": "container-host-2026.11.24",
      "acl-vhd-sha256": m.artifacts[0].sha256,
      "acl-usr-root-hash": m.verity.rootHash,
    });
    // qemu-img agrees on the virtual size acl read from the footer
    const info = spawnSync("qemu-img", ["info", "-f", "vpc", "--output=json", join(IMAGE_ACL, "disk.vhd")], { encoding: "utf8" });
    expect(info.error, "qemu-img must be installed (apt-get install qemu-utils)").toBeUndefined();
    expect(JSON.parse(info.stdout)["virtual-size"]).toBe(r.vhd.virtualSize);
    expect(r.vhd.virtualSize).toBe(1024 * 1024);
  });

  test("publish.sh passes shellcheck and, with a stub az, uploads then creates gallery, definition and version", async () => {
    const out = join(tmp(), "pub");
    await azurePublishPlan({ imageDir: IMAGE_ACL, ...OPTS, outDir: out });
    const sc = spawnSync("shellcheck", [join(out, "publish.sh")], { encoding: "utf8" });
    expect(sc.error, "shellcheck must be installed").toBeUndefined();
    expect([sc.status, sc.stdout]).toEqual([0, ""]);

    const bin = stubAz();
    const runIt = (existing: string) => dryRun(join(out, "publish.sh"), bin, existing);
    const fresh = runIt("");
    expect(fresh.status, fresh.stderr).toBe(0);
    const would = fresh.stdout
      .split("\n")
      .filter((l) => l.startsWith("would run: "))
      .map((l) => l.slice(11).split(" ").slice(0, 4).join(" "));
    expect(would).toEqual([
      "az storage account create",
      "az storage container create",
      "az storage blob upload",
      "az sig create -g",
      "az sig image-definition create",
      "az sig image-version create",
    ]);
    expect(fresh.stdout).toContain("--type page");
    expect(fresh.stdout).toContain("--os-type Linux --os-state Generalized --hyper-v-generation V2 --architecture x64 --features SecurityType=TrustedLaunchSupported");
    expect(fresh.stdout).toContain("-e 2026.11.24");
    // only lookups ran (what is created later is not looked up again)
    expect(fresh.calls).toEqual([
      "storage account list -g images-rg --query [?name=='aclgallerycontai768560'].name -o tsv",
      "sig list -g images-rg --query [?name=='aclGallery'].name -o tsv",
    ]);

    // everything there already: nothing to do
    const done = runIt("present");
    expect(done.status, done.stderr).toBe(0);
    expect(done.stdout).not.toContain("would run:");
    expect(done.stderr).toContain("image version 2026.11.24 exists");
  });

  test("an image without a disk-vhd artifact", async () => {
    const img = imageWith({ osSku: "AzureContainerLinux", nodeImageVersion: "v", minKubernetesVersion: "1.34" });
    const m = readJson(join(img, "manifest.json"));
    m.artifacts = [];
    writeFileSync(join(img, "manifest.json"), JSON.stringify(m));
    await expect(azurePublishPlan({ imageDir: img, ...OPTS, outDir: join(tmp(), "p") })).rejects.toThrow(/has no disk-vhd artifact \(rule: fixed-vhd\)/);
  });

  test("a dynamic VHD is refused", async () => {
    const img = imageWith({ osSku: "AzureContainerLinux", nodeImageVersion: "v", minKubernetesVersion: "1.34" });
    const vhd = join(img, "disk.vhd");
    const conv = spawnSync("qemu-img", ["create", "-q", "-f", "vpc", "-o", "subformat=dynamic", vhd, "4M"], { encoding: "utf8" });
    expect([conv.error, conv.status]).toEqual([undefined, 0]);
    const bytes = readFileSync(vhd);
    const m = readJson(join(img, "manifest.json"));
    m.artifacts[0].size = bytes.length;
    writeFileSync(join(img, "manifest.json"), JSON.stringify(m));
    await expect(azurePublishPlan({ imageDir: img, ...OPTS, outDir: join(tmp(), "p") })).rejects.toThrow(/Azure needs a fixed VHD \(type 2\) \(rule: fixed-vhd\)/);
  });

  test("names Azure would reject are refused up front", async () => {
    await expect(azurePublishPlan({ imageDir: IMAGE_ACL, ...OPTS, gallery: "bad-name!", outDir: join(tmp(), "p") })).rejects.toThrow(/--gallery 'bad-name!' is not valid/);
    await expect(azurePublishPlan({ imageDir: IMAGE_ACL, ...OPTS, storageAccount: "Has_Upper", outDir: join(tmp(), "p") })).rejects.toThrow(/--storage-account 'Has_Upper'/);
  });
});

describe("Secure Boot: the image's db certificate in the image version's UEFI settings", () => {
  test("a signed image: the template appends the DER certificate (base64) to db, next to Microsoft's UEFI CA template", async () => {
    const { img, der, derPath } = signedImage();
    const out = join(tmp(), "pub");
    const reporter = recorder();
    const r = await azurePublishPlan({ imageDir: img, ...OPTS, outDir: out, reporter });
    const t = readJson(join(out, "azuredeploy.json"));
    const v = t.resources.find((x: any) => x.type === VERSIONS);
    // openssl is the oracle for the encoding: base64 of the DER file's bytes, on one line
    const b64 = run(["openssl", "base64", "-A", "-in", derPath]).toString().trim();
    expect(b64).toBe(der.toString("base64"));
    expect(v.properties.securityProfile).toEqual({
      uefiSettings: {
        signatureTemplateNames: ["MicrosoftUefiCertificateAuthorityTemplate"],
        additionalSignatures: { db: [{ type: "x509", value: [b64] }] },
      },
    });
    // what Azure gets decodes to the same certificate: openssl reads the subject and the fingerprint back
    const value = Buffer.from(v.properties.securityProfile.uefiSettings.additionalSignatures.db[0].value[0], "base64");
    const back = run(["openssl", "x509", "-inform", "DER", "-noout", "-subject", "-fingerprint", "-sha256", "-nameopt", "RFC2253"], value).toString();
    expect(back).toContain("subject=CN=acl test db");
    expect(back).toContain(`sha256 Fingerprint=${sha256(der).toUpperCase().match(/../g)!.join(":")}`);
    // the API version that has securityProfile.uefiSettings on image versions; the other resources are as for an unsigned image
    expect(t.resources.map((x: any) => x.apiVersion)).toEqual(["2023-07-03", "2023-07-03", "2023-07-03"]);
    expect(GALLERY_API_VERSION).toBe("2023-07-03");
    const plain = armTemplate() as { resources: Array<Record<string, any>> };
    expect(t.resources.filter((x: any) => x.type !== VERSIONS)).toEqual(plain.resources.filter((x) => x.type !== VERSIONS));
    const { securityProfile, ...rest } = v.properties;
    expect(securityProfile).toBeDefined();
    expect(rest).toEqual(plain.resources.find((x) => x.type === VERSIONS)!.properties);
    // the summary says so, in the result, the log and README.md
    expect(r.secureBootDb).toEqual({
      path: "secureboot/db.der",
      subject: "CN=acl test db",
      sha256: sha256(der),
      signatureTemplate: "MicrosoftUefiCertificateAuthorityTemplate",
    });
    expect(reporter.lines).toContain(
      `image version 2026.11.24 carries the image's Secure Boot db certificate CN=acl test db (sha256 ${sha256(der)}) next to MicrosoftUefiCertificateAuthorityTemplate; publish.sh deploys azuredeploy.json for it`,
    );
    const readme = readFileSync(join(out, "README.md"), "utf8");
    expect(readme).toContain(
      [
        "The image is Secure Boot signed: its image version carries the image's db certificate",
        `(CN=acl test db, sha256 ${sha256(der)}, from secureboot/db.der)`,
        "as an additional UEFI db signature, next to the signature template MicrosoftUefiCertificateAuthorityTemplate",
      ].join("\n"),
    );
    expect(readme).toContain("so `./publish.sh` creates the version by\ndeploying the template.\n");
  });

  test("publish.sh of a signed image creates the version by deploying the template, not with az sig image-version create", async () => {
    const { img } = signedImage();
    // a subject with a line break (as X.509 subjects print) stays inside the script's comment
    const m = readJson(join(img, "manifest.json"));
    m.boot.secureBoot.certificate.subject = "CN=acl test db\nO=acl\necho injected";
    writeFileSync(join(img, "manifest.json"), JSON.stringify(m));
    const out = join(tmp(), "pub");
    await azurePublishPlan({ imageDir: img, ...OPTS, outDir: out });
    const script = join(out, "publish.sh");
    const sc = spawnSync("shellcheck", [script], { encoding: "utf8" });
    expect(sc.error, "shellcheck must be installed").toBeUndefined();
    expect([sc.status, sc.stdout]).toEqual([0, ""]);
    const text = readFileSync(script, "utf8");
    expect(text).toContain("# The image is Secure Boot signed: its image version must carry the image's db certificate\n# (CN=acl test db, O=acl, echo injected, sha256 ");
    expect(text).not.toMatch(/^echo injected/m);
    expect(text).toContain("# for the REST API (templates) only, not for `az sig image-version create`, so the version is created\n");
    expect(text).not.toMatch(/^\s*change az sig image-version create/m);

    const fresh = dryRun(script, stubAz(), "");
    expect(fresh.status, fresh.stderr).toBe(0);
    const would = fresh.stdout.split("\n").filter((l) => l.startsWith("would run: ")).map((l) => l.slice(11));
    expect(would.map((l) => l.split(" ").slice(0, 4).join(" "))).toEqual([
      "az storage account create",
      "az storage container create",
      "az storage blob upload",
      "az sig create -g",
      "az sig image-definition create",
      "az deployment group create",
    ]);
    expect(would[5]).toBe(
      `az deployment group create -g images-rg -n acl-container-host-2026.11.24 --template-file ${out}/azuredeploy.json --parameters @${out}/azuredeploy.parameters.json sourceVhdUri=https://aclgallerycontai768560.blob.core.windows.net/vhds/container-host-2026.11.24.vhd`,
    );
  });

  test("an unsigned image gets no securityProfile: the plan is byte for byte the one acl wrote before Secure Boot", async () => {
    // sha256 of the four files for the fixture image (publish.sh with the image folder replaced by <IMAGE>),
    // recorded from acl before this change
    const golden = {
      "README.md": "339adba76810fd8f4740616dc9bf0c3ea68a95225467386666bea2fbcd1d3100",
      "azuredeploy.json": "61a1aae2f8cceeec45923ff67d6a48f3b0f2bd4ef80984f08a58fed71edd7940",
      "azuredeploy.parameters.json": "d48b6ca3cf1fd76e90c44632daf974656a6ee26b41e690ff9f96c87d2a3950e4",
      "publish.sh": "0ac66b2a294f68619a48cca3cb54662f736b2f6f0814c2764f6adbb90d863eab",
    };
    // the fixture (no boot section) and a manifest with boot slots but no boot.secureBoot
    const withSlots = imageWith(AKS);
    const m = readJson(join(withSlots, "manifest.json"));
    const slot = { uki: { sha256: "a".repeat(64), size: 1 }, pcr11: "b".repeat(64) };
    m.boot = { slots: { A: slot, B: slot } };
    writeFileSync(join(withSlots, "manifest.json"), JSON.stringify(m, null, 2));
    for (const img of [IMAGE_ACL, withSlots]) {
      const out = join(tmp(), "pub");
      const reporter = recorder();
      const r = await azurePublishPlan({ imageDir: img, ...OPTS, outDir: out, reporter });
      const digests = Object.fromEntries(
        Object.keys(golden).map((f) => [f, sha256(readFileSync(join(out, f), "utf8").replaceAll(img, "<IMAGE>"))]),
      );
      expect(digests).toEqual(golden);
      const v = readJson(join(out, "azuredeploy.json")).resources.find((x: any) => x.type === VERSIONS);
      expect(Object.keys(v.properties).sort()).toEqual(["publishingProfile", "storageProfile"]);
      expect(r.secureBootDb).toBeUndefined();
      expect(reporter.lines).toContain("image version 2026.11.24 carries no db certificate of its own: the image is not Secure Boot signed");
    }
    expect(JSON.stringify(armTemplate())).not.toMatch(/securityProfile|uefiSettings/);
    expect(JSON.stringify(armTemplate({ dbCertificates: [] }))).toBe(JSON.stringify(armTemplate()));
  });

  test("signed, but the DER certificate is missing: a user error naming the file and the rebuild, nothing written", async () => {
    const { img, derPath } = signedImage();
    rmSync(derPath);
    const parent = tmp();
    const err = await azurePublishPlan({ imageDir: img, ...OPTS, outDir: join(parent, "pub") }).catch((e) => e);
    expect(err.name).toBe("UserError");
    expect(err.message).toBe(`${derPath}: the Secure Boot db certificate the manifest lists is missing (rule: artifact-present)`);
    expect(err.file).toBe(derPath);
    expect(err.hint).toMatch(/^rebuild the image with `acl build` and its Secure Boot key/);
    expect(existsSync(join(parent, "pub"))).toBe(false);
  });

  test("signed, but the certificate cannot be used: unreadable, not listed, changed, or not DER", async () => {
    const plan = (img: string) => azurePublishPlan({ imageDir: img, ...OPTS, outDir: join(tmp(), "p") }).catch((e) => e);

    const unreadable = signedImage();
    rmSync(unreadable.derPath);
    mkdirSync(unreadable.derPath); // a folder where the DER file should be
    const e1 = await plan(unreadable.img);
    expect(e1.message).toMatch(new RegExp(`^${unreadable.derPath}: the Secure Boot db certificate the manifest lists cannot be read \\(.*EISDIR.*\\) \\(rule: artifact-present\\)$`));
    expect([e1.name, e1.file]).toEqual(["UserError", unreadable.derPath]);
    expect(e1.hint).toMatch(/rebuild/);

    const unlisted = signedImage();
    const m = readJson(join(unlisted.img, "manifest.json"));
    m.artifacts = m.artifacts.filter((a: any) => a.kind !== "secureboot-cert");
    writeFileSync(join(unlisted.img, "manifest.json"), JSON.stringify(m));
    const e2 = await plan(unlisted.img);
    expect(e2.message).toBe(
      `${join(unlisted.img, "manifest.json")}: image 'container-host' is Secure Boot signed but lists no secureboot-cert artifact (the db certificate, secureboot/db.der) (rule: secureboot-cert)`,
    );
    expect(e2.hint).toMatch(/rebuild/);

    const changed = signedImage();
    const bytes = Buffer.from(changed.der);
    bytes[bytes.length - 1]! ^= 1;
    writeFileSync(changed.derPath, bytes);
    const e3 = await plan(changed.img);
    expect(e3.message).toBe(
      `${changed.derPath}: ${bytes.length} bytes with sha256 ${sha256(bytes)}, the manifest says ${changed.der.length} bytes with sha256 ${sha256(changed.der)} (rule: artifact-digest)`,
    );

    // PEM in place of DER, with a manifest that agrees with the file: still refused
    const pem = signedImage();
    const pemBytes = run(["openssl", "x509", "-inform", "DER", "-in", pem.derPath, "-outform", "PEM"]);
    writeFileSync(pem.derPath, pemBytes);
    const pm = readJson(join(pem.img, "manifest.json"));
    const art = pm.artifacts.find((a: any) => a.kind === "secureboot-cert");
    Object.assign(art, { size: pemBytes.length, sha256: sha256(pemBytes) });
    pm.boot.secureBoot.certificate.sha256 = sha256(pemBytes);
    writeFileSync(join(pem.img, "manifest.json"), JSON.stringify(pm));
    const e4 = await plan(pem.img);
    expect(e4.message).toBe(`${pem.derPath}: not a DER-encoded X.509 certificate (rule: secureboot-cert)`);
  });
});
