import { Args, Flags } from "@oclif/core";
import { AclCommand } from "../../lib/base-command.js";
import { azurePublishPlan, type PublishPlanResult } from "../../services/azure/publish-plan.js";

export default class AzurePublishPlan extends AclCommand<PublishPlanResult> {
  static override summary = "Write the ARM template and az script that publish a build";
  static override description =
    "Write an ARM template and the equivalent az commands that upload a build's fixed VHD and create an Azure Compute Gallery image definition (Linux, Generalized, V2, Trusted Launch supported) and version; a Secure Boot signed image's version carries its db certificate in its UEFI settings";

  static override examples = [
    "<%= config.bin %> azure publish-plan out/container-host --gallery aclGallery --resource-group images-rg --location westeurope",
  ];

  static override args = {
    outDir: Args.string({ description: "output folder of `acl build` (manifest.json with a disk-vhd artifact)", required: true }),
  };

  static override flags = {
    gallery: Flags.string({ description: "Azure Compute Gallery name", required: true }),
    "resource-group": Flags.string({ description: "resource group of the gallery and the storage account", required: true }),
    location: Flags.string({ description: "Azure region, for example westeurope", required: true }),
    "image-definition": Flags.string({ description: "gallery image definition name (default: the image name)" }),
    "image-version": Flags.string({ description: "gallery image version MAJOR.MINOR.PATCH (default: the build's version)" }),
    "storage-account": Flags.string({ description: "storage account for the VHD page blob (default: derived from gallery and image)" }),
    container: Flags.string({ description: "blob container for the VHD", default: "vhds" }),
    publisher: Flags.string({ description: "image definition publisher", default: "acl" }),
    offer: Flags.string({ description: "image definition offer (default: the image name)" }),
    sku: Flags.string({ description: "image definition SKU (default: the image's AKS OS SKU, else its name)" }),
    out: Flags.string({ description: "folder to write (default ./azure-publish-NAME-VERSION)" }),
    force: Flags.boolean({ description: "replace the output folder if it exists", default: false }),
  };

  async run(): Promise<PublishPlanResult> {
    const { args, flags } = await this.parse(AzurePublishPlan);
    const r = await azurePublishPlan({
      imageDir: args.outDir,
      gallery: flags.gallery,
      resourceGroup: flags["resource-group"],
      location: flags.location,
      imageDefinition: flags["image-definition"],
      imageVersion: flags["image-version"],
      storageAccount: flags["storage-account"],
      container: flags.container,
      publisher: flags.publisher,
      offer: flags.offer,
      sku: flags.sku,
      outDir: flags.out,
      force: flags.force,
      reporter: this.reporter(),
    });
    if (!this.jsonEnabled()) {
      this.log(`Image definition ${r.imageDefinition}, version ${r.imageVersion}; VHD ${r.vhd.path} (${r.vhd.size} bytes) -> ${r.storageAccount}/${r.blobName}`);
      this.log(
        r.secureBootDb
          ? `Secure Boot: the image version carries the image's db certificate ${r.secureBootDb.subject} (sha256 ${r.secureBootDb.sha256}) next to ${r.secureBootDb.signatureTemplate}; publish.sh creates the version by deploying azuredeploy.json`
          : "Secure Boot: the image is not signed; the image version carries no db certificate of its own",
      );
      this.log(`Wrote ${r.outDir}: ${r.files.join(", ")}`);
    }
    return r;
  }
}
