/**
 * `acl azure publish-plan` (service level): the ARM template's gallery
 * resources, the parameters taken from the manifest, the VHD checks (with
 * qemu-img as the second opinion on the fixture VHD), and publish.sh run
 * with a recording stub az.
 */
import { afterAll, describe, expect, test } from "vitest";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { armTemplate, azurePublishPlan, defaultStorageAccount } from "../../src/services/azure/publish-plan.js";
import { IMAGE_ACL, imageWith, readJson, tmp, cleanupTmp } from "./helpers.js";

afterAll(cleanupTmp);

const OPTS = { gallery: "aclGallery", resourceGroup: "images-rg", location: "westeurope" };

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

    // stub az: lists answer from $AZ_EXISTING (a resource name, or empty), "exists" answers false
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
    const runIt = (existing: string) => {
      const log = join(tmp(), "az.log");
      writeFileSync(log, "");
      const r = spawnSync("bash", [join(out, "publish.sh"), "--dry-run"], {
        encoding: "utf8",
        env: { PATH: `${bin}:${process.env.PATH}`, AZ_LOG: log, AZ_EXISTING: existing },
      });
      return { ...r, calls: readFileSync(log, "utf8").trim().split("\n") };
    };
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
