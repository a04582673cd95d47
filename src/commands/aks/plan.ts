import { Flags } from "@oclif/core";
import { AclCommand } from "../../lib/base-command.js";
import { aksPlan, type AksPlanResult } from "../../services/aks/plan-service.js";

export default class AksPlanCommand extends AclCommand<AksPlanResult> {
  static override summary = "Plan moving AKS node pools to a built image";
  static override description =
    "Plan moving an AKS cluster's Linux node pools to a built image: strategy per pool, waves, surge and time, PUT bodies, rollout.sh and rollback.sh";

  static override examples = [
    "<%= config.bin %> aks plan --cluster cluster.json --image out/container-host",
    "<%= config.bin %> aks plan --cluster cluster.json --pools pools.json --image out/container-host --canary userpool1 --out plan/",
  ];

  static override flags = {
    cluster: Flags.string({ description: "ManagedCluster JSON (REST GET body or `az aks show -o json`)", required: true }),
    pools: Flags.string({ description: "agent pools JSON (REST list or `az aks nodepool list -o json`); replaces the cluster's agentPoolProfiles" }),
    image: Flags.string({ description: "output folder of `acl build` (its manifest.json needs an aks section)", required: true }),
    out: Flags.string({ description: "folder to write (default ./aks-plan-CLUSTER)" }),
    force: Flags.boolean({ description: "replace the output folder if it exists", default: false }),
    canary: Flags.string({ description: "pool to roll out alone in the first wave (default: the smallest changed User pool)" }),
    "system-pools": Flags.string({ description: "roll System pools before or after the User pools", options: ["first", "last"], default: "last" }),
    "in-place-sku-update": Flags.boolean({
      description: "change OS SKUs in place where AKS allows it (no spare capacity, but a node-image rollback cannot undo it)",
      default: false,
    }),
    "max-pools-per-wave": Flags.integer({ description: "most pools in one wave after the canary", default: 3, min: 1 }),
    "resource-group": Flags.string({ description: "resource group, when the cluster JSON carries none" }),
  };

  async run(): Promise<AksPlanResult> {
    const { flags } = await this.parse(AksPlanCommand);
    const r = await aksPlan({
      clusterFile: flags.cluster,
      poolsFile: flags.pools,
      imageDir: flags.image,
      outDir: flags.out,
      force: flags.force,
      canary: flags.canary,
      systemPools: flags["system-pools"] as "first" | "last",
      inPlaceSkuUpdate: flags["in-place-sku-update"],
      maxPoolsPerWave: flags["max-pools-per-wave"],
      resourceGroup: flags["resource-group"],
      reporter: this.reporter(),
    });
    if (!this.jsonEnabled()) {
      const p = r.plan;
      this.log(`Plan for cluster ${p.cluster.name}: ${p.image.osSku} ${p.image.nodeImageVersion}`);
      for (const pool of p.pools) {
        this.log(`  ${pool.name.padEnd(12)} ${pool.mode.padEnd(6)} ${pool.action}${pool.newPoolName ? ` -> ${pool.newPoolName}` : ""}${pool.wave ? ` (wave ${pool.wave})` : ""}`);
      }
      this.log(`  ${p.waves.length} wave(s), about ${p.estimateMinutes.typical} min (at most ${p.estimateMinutes.worstCase} min)`);
      this.log(`Wrote ${r.outDir}: ${r.files.join(", ")}`);
      this.log(`Review plan.md, then: ${r.outDir}/rollout.sh --dry-run`);
    }
    return r;
  }
}
