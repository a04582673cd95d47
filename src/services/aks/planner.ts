/**
 * The AKS migration planner: for each pool a strategy and its reasons, the
 * safety rules (Kubernetes version, Trusted Launch, node OS upgrade channel,
 * a ready System pool at every step), waves, surge arithmetic, time
 * estimates, and the agent-pool PUT bodies. Pure: models in, plan out.
 */
import { UserError } from "../../errors.js";
import type { AgentPoolModel, ClusterModel } from "../../config/aks-cluster.js";
import { compareVersions, parseKubernetesVersion } from "../../config/aks-cluster.js";
import type { AksInfo } from "../../pipeline/manifest.js";
import { AKS_API_VERSION, knownOsSkus, toSchemaShape, validateAgentPoolBody } from "./agentpool-schema.js";
import { AksPlan, PLAN_SCHEMA_VERSION, type PoolAction, type PoolPlan, type Wave } from "./plan-schema.js";
import { blueGreenEstimate, inPlaceEstimate, surgePlan, type Estimate } from "./surge.js";

export const AZURE_CONTAINER_LINUX = "AzureContainerLinux";
/** Azure Container Linux on AKS needs at least this Kubernetes version. */
export const ACL_MIN_KUBERNETES = "1.34";
/** Node OS upgrade channels Azure Container Linux supports. */
export const ACL_NODE_OS_CHANNELS = ["NodeImage", "None"] as const;

/**
 * OS SKU changes acl lets AKS do in place (`az aks nodepool update --os-sku`),
 * as from → allowed targets. Anything else is migrated blue/green. Azure
 * Container Linux is built on Azure Linux, so only Azure Linux pools move to
 * it in place; Ubuntu and the deprecated CBLMariner get a new pool.
 */
export const IN_PLACE_SKU_UPDATES: Readonly<Record<string, readonly string[]>> = {
  Ubuntu: ["Ubuntu2204", "Ubuntu2404", "AzureLinux", "AzureLinux3"],
  Ubuntu2204: ["Ubuntu", "Ubuntu2404", "AzureLinux", "AzureLinux3"],
  Ubuntu2404: ["Ubuntu", "Ubuntu2204", "AzureLinux", "AzureLinux3"],
  AzureLinux: ["AzureLinux3", "Ubuntu", "Ubuntu2204", "Ubuntu2404", AZURE_CONTAINER_LINUX],
  AzureLinux3: ["AzureLinux", "Ubuntu", "Ubuntu2204", "Ubuntu2404", AZURE_CONTAINER_LINUX],
  CBLMariner: ["AzureLinux", "AzureLinux3"],
  [AZURE_CONTAINER_LINUX]: ["AzureLinux", "AzureLinux3"],
};

/** Suffixes for the names of blue/green replacement pools (names are at most 12 characters). */
const SKU_SUFFIX: Readonly<Record<string, string>> = {
  AzureContainerLinux: "acl",
  AzureLinux: "azl",
  AzureLinux3: "azl3",
  CBLMariner: "cbl",
  Ubuntu: "ub",
  Ubuntu2204: "ub22",
  Ubuntu2404: "ub24",
};

export interface PlanImage {
  name: string;
  version: string;
  aks: AksInfo;
}

export interface PlanOptions {
  /** Upgrade System pools before or after the User pools (default last). */
  systemPools?: "first" | "last";
  /** Pool to upgrade alone in the first wave (default: the smallest changed User pool). */
  canary?: string;
  /** Allow OS SKU changes in place where AKS supports it (default false: blue/green keeps a way back). */
  inPlaceSkuUpdate?: boolean;
  /** Largest number of pools in one wave after the canary (default 3). */
  maxPoolsPerWave?: number;
  /** Overrides the cluster's resource group (needed when the input does not carry one). */
  resourceGroup?: string;
}

export interface PlanResult {
  plan: AksPlan;
  /** Relative path in the plan folder → PUT body (`{ properties: … }`). */
  bodies: Map<string, unknown>;
}

function ruleError(message: string, hint?: string): UserError {
  return new UserError(message, hint ? { hint } : {});
}

function versionOf(text: string, what: string): [number, number, number] {
  const v = parseKubernetesVersion(text);
  if (!v) throw ruleError(`${what}: '${text}' is not a Kubernetes version (expected MAJOR.MINOR[.PATCH])`);
  return v;
}

function isReadySystemPool(p: AgentPoolModel): boolean {
  return (
    p.mode === "System" &&
    p.count > 0 &&
    (p.powerState === undefined || p.powerState === "Running") &&
    (p.provisioningState === undefined || p.provisioningState === "Succeeded")
  );
}

function newPoolName(old: string, targetSku: string, taken: Set<string>): string {
  const suffix = SKU_SUFFIX[targetSku] ?? "new";
  const candidates = [`${old.slice(0, 12 - suffix.length)}${suffix}`];
  for (let i = 2; i <= 9; i++) candidates.push(`${old.slice(0, 11 - suffix.length)}${suffix}${i}`);
  const name = candidates.find((c) => c !== old && !taken.has(c));
  if (!name) throw ruleError(`agent pool '${old}': no free name for its replacement pool (tried ${candidates.join(", ")})`);
  taken.add(name);
  return name;
}

/** The writable part of a pool's input, in REST spelling, as a PUT body base. */
function baseProperties(p: AgentPoolModel): Record<string, unknown> {
  const props = toSchemaShape(p.raw) as Record<string, unknown>;
  // Never send: powerState (would start/stop), nodeImageVersion (a PUT with it means "roll back to it"),
  // creationData (a snapshot of the old image), and the read-only fields toSchemaShape already dropped.
  delete props.powerState;
  delete props.nodeImageVersion;
  delete props.creationData;
  props.osType = p.osType;
  props.osSKU = p.osSku;
  props.mode = p.mode;
  return props;
}

function withTrustedLaunch(props: Record<string, unknown>): Record<string, unknown> {
  const sp = (props.securityProfile as Record<string, unknown> | undefined) ?? {};
  return { ...props, securityProfile: { ...sp, enableSecureBoot: true, enableVTPM: true } };
}

interface Decision {
  action: PoolAction;
  reasons: string[];
}

function decide(p: AgentPoolModel, target: AksInfo, opts: Required<Pick<PlanOptions, "inPlaceSkuUpdate">>): Decision {
  if (p.osType === "Windows") return { action: "leave-windows", reasons: [`Windows pool (${p.osSku}): the image is Linux, so the pool is left alone`] };
  if (p.powerState === "Stopped") {
    return { action: "none", reasons: ["the pool is stopped; AKS cannot upgrade a stopped pool: start it (az aks nodepool start) and plan again"] };
  }
  if (p.count === 0 && !p.enableAutoScaling) {
    return { action: "none", reasons: ["the pool has 0 nodes; new nodes are created from the pool's settings, nothing to roll"] };
  }
  const needsTl = target.osSku === AZURE_CONTAINER_LINUX && !(p.secureBoot && p.vtpm);
  const tlReason =
    "Azure Container Linux needs Trusted Launch (secure boot + vTPM), which this pool does not have; a new pool is created with both on";
  if (p.osSku === target.osSku) {
    if (p.nodeImageVersion === target.nodeImageVersion) {
      return { action: "none", reasons: [`already on ${target.osSku} node image ${target.nodeImageVersion}`] };
    }
    if (needsTl) return { action: "blue-green", reasons: [tlReason] };
    return {
      action: "node-image-upgrade",
      reasons: [
        `same OS SKU (${p.osSku}): only the node image changes (${p.nodeImageVersion ?? "unknown"} → ${target.nodeImageVersion}), done in place with the pool's surge settings`,
        "a node-image rollback (PUT with a recently used nodeImageVersion) can undo it",
      ],
    };
  }
  const allowed = IN_PLACE_SKU_UPDATES[p.osSku]?.includes(target.osSku) ?? false;
  if (!allowed) {
    return {
      action: "blue-green",
      reasons: [`AKS has no in-place OS SKU update from ${p.osSku} to ${target.osSku}: a new ${target.osSku} pool replaces it`],
    };
  }
  if (needsTl) return { action: "blue-green", reasons: [tlReason] };
  if (!opts.inPlaceSkuUpdate) {
    return {
      action: "blue-green",
      reasons: [
        `OS SKU change ${p.osSku} → ${target.osSku}: a node-image rollback cannot revert an OS SKU change, so the old pool is kept until the new one is healthy (pass --in-place-sku-update to update it in place instead)`,
      ],
    };
  }
  return {
    action: "os-sku-update",
    reasons: [
      `AKS updates ${p.osSku} → ${target.osSku} in place (az aks nodepool update --os-sku), reimaging nodes with the pool's surge settings`,
      "requested with --in-place-sku-update: rollback is a second OS SKU update, not a node-image rollback",
    ],
  };
}

export function planMigration(cluster: ClusterModel, image: PlanImage, options: PlanOptions = {}): PlanResult {
  const opts = {
    systemPools: options.systemPools ?? "last",
    inPlaceSkuUpdate: options.inPlaceSkuUpdate ?? false,
    maxPoolsPerWave: options.maxPoolsPerWave ?? 3,
  } as const;
  const target = image.aks;
  const skus = knownOsSkus();
  const notes: string[] = [];

  // --- the image's SKU and the pools' SKUs must be ones the API knows
  if (!skus.includes(target.osSku) || target.osSku.startsWith("Windows")) {
    throw ruleError(
      `image '${image.name}' ${image.version}: aks.osSku '${target.osSku}' is not a Linux OS SKU of the AKS ${AKS_API_VERSION} API (rule: known-os-sku)`,
      `use one of: ${skus.filter((s) => !s.startsWith("Windows")).join(", ")} as 'aks.os_sku' in the image spec`,
    );
  }
  for (const p of cluster.pools) {
    if (!skus.includes(p.osSku)) {
      throw ruleError(
        `agent pool '${p.name}': osSKU '${p.osSku}' is not an OS SKU of the AKS ${AKS_API_VERSION} API (rule: known-os-sku)`,
        `known OS SKUs: ${skus.join(", ")}`,
      );
    }
  }
  const resourceGroup = options.resourceGroup ?? cluster.resourceGroup;
  if (!resourceGroup) {
    throw ruleError(
      `managed cluster '${cluster.name}': no resource group in the input (no 'resourceGroup' field and no ARM 'id') (rule: resource-group)`,
      "pass --resource-group RG",
    );
  }

  // --- Kubernetes version floor
  const isAcl = target.osSku === AZURE_CONTAINER_LINUX;
  const floors: Array<{ v: [number, number, number]; text: string; why: string }> = [
    { v: versionOf(target.minKubernetesVersion, `image '${image.name}' aks.minKubernetesVersion`), text: target.minKubernetesVersion, why: `image ${image.name} ${image.version} needs` },
  ];
  if (isAcl) floors.push({ v: versionOf(ACL_MIN_KUBERNETES, "ACL minimum"), text: ACL_MIN_KUBERNETES, why: "Azure Container Linux needs" });
  const floor = floors.reduce((a, b) => (compareVersions(b.v, a.v) >= 0 ? b : a));

  const decisions = new Map<string, Decision>();
  for (const p of cluster.pools) decisions.set(p.name, decide(p, target, opts));
  const changed = cluster.pools.filter((p) => ["node-image-upgrade", "os-sku-update", "blue-green"].includes(decisions.get(p.name)!.action));

  const clusterVersion = versionOf(cluster.kubernetesVersion, `managed cluster '${cluster.name}' kubernetesVersion`);
  for (const p of changed) {
    const text = p.kubernetesVersion ?? cluster.kubernetesVersion;
    const v = versionOf(text, `agent pool '${p.name}' orchestratorVersion`);
    if (compareVersions(v, floor.v) < 0 || compareVersions(clusterVersion, floor.v) < 0) {
      const tooOld = compareVersions(v, floor.v) < 0 ? `runs Kubernetes ${text}` : `is in cluster '${cluster.name}' whose control plane runs ${cluster.kubernetesVersion}`;
      throw ruleError(
        `agent pool '${p.name}' ${tooOld}; ${floor.why} Kubernetes >= ${floor.text} (rule: min-kubernetes-version)`,
        `upgrade the cluster first: az aks upgrade -g ${resourceGroup} -n ${cluster.name} --kubernetes-version ${floor.text}`,
      );
    }
  }

  // --- node OS upgrade channel (cluster-wide)
  if (isAcl && changed.length && !(ACL_NODE_OS_CHANNELS as readonly string[]).includes(cluster.nodeOSUpgradeChannel)) {
    throw ruleError(
      `managed cluster '${cluster.name}': agent pool '${changed[0]!.name}'${changed.length > 1 ? ` (and ${changed.length - 1} more)` : ""} cannot move to Azure Container Linux while the node OS upgrade channel is '${cluster.nodeOSUpgradeChannel}'; it must be NodeImage or None (rule: node-os-upgrade-channel)`,
      `az aks update -g ${resourceGroup} -n ${cluster.name} --node-os-upgrade-channel NodeImage`,
    );
  }
  if (cluster.nodeOSUpgradeChannelDefaulted) notes.push("the input has no autoUpgradeProfile.nodeOSUpgradeChannel; the API default NodeImage was assumed");

  // --- canary
  let canary: string | null = null;
  if (options.canary !== undefined) {
    const c = cluster.pools.find((p) => p.name === options.canary);
    if (!c) throw ruleError(`--canary '${options.canary}': no agent pool of that name in cluster '${cluster.name}' (pools: ${cluster.pools.map((p) => p.name).join(", ")})`);
    if (!changed.includes(c)) {
      throw ruleError(
        `--canary '${c.name}': agent pool '${c.name}' has nothing to roll out (${decisions.get(c.name)!.reasons[0]}) (rule: canary-must-change)`,
        "pick a pool the plan changes",
      );
    }
    canary = c.name;
  } else {
    const users = changed.filter((p) => p.mode !== "System").sort((a, b) => a.count - b.count || a.name.localeCompare(b.name));
    canary = users[0]?.name ?? null;
  }

  // --- waves
  const rest = changed.filter((p) => p.name !== canary);
  const chunk = (ps: AgentPoolModel[]) => {
    const sorted = [...ps].sort((a, b) => a.count - b.count || a.name.localeCompare(b.name));
    const out: string[][] = [];
    for (let i = 0; i < sorted.length; i += opts.maxPoolsPerWave) out.push(sorted.slice(i, i + opts.maxPoolsPerWave).map((p) => p.name));
    return out;
  };
  const userWaves = chunk(rest.filter((p) => p.mode !== "System")).map((pools) => ({ kind: "user" as const, pools }));
  // System pools go one at a time, so that one is always untouched while another is rolled.
  const systemWaves = rest
    .filter((p) => p.mode === "System")
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((p) => ({ kind: "system" as const, pools: [p.name] }));
  const ordered = [
    ...(canary ? [{ kind: "canary" as const, pools: [canary] }] : []),
    ...(opts.systemPools === "first" ? [...systemWaves, ...userWaves] : [...userWaves, ...systemWaves]),
  ];

  // --- per-pool plans and bodies
  const taken = new Set(cluster.pools.map((p) => p.name));
  const bodies = new Map<string, unknown>();
  const poolPlans: PoolPlan[] = [];
  const waveOf = new Map<string, number>();
  ordered.forEach((w, i) => w.pools.forEach((n) => waveOf.set(n, i + 1)));
  for (const p of cluster.pools) {
    const d = decisions.get(p.name)!;
    const changes = changed.includes(p);
    const surge = changes ? surgePlan(p.name, p.count, p.upgradeSettings) : null;
    let est: Estimate = { typical: 0, worstCase: 0 };
    let peak = 0;
    let newName: string | null = null;
    let putBody: string | null = null;
    let rollbackBody: string | null = null;
    let rollback = "nothing to undo";
    const base = changes ? baseProperties(p) : {};
    const targetProps = (props: Record<string, unknown>) =>
      isAcl ? withTrustedLaunch({ ...props, osSKU: target.osSku }) : { ...props, osSKU: target.osSku };
    if (d.action === "blue-green") {
      est = blueGreenEstimate(surge!);
      peak = p.count;
      newName = newPoolName(p.name, target.osSku, taken);
      putBody = `agentpools/${newName}.json`;
      rollbackBody = `agentpools/${p.name}.rollback.json`;
      bodies.set(putBody, { properties: targetProps(base) });
      bodies.set(rollbackBody, { properties: base });
      rollback = `uncordon '${p.name}' (or recreate it from ${rollbackBody} if it was already deleted), then drain and delete '${newName}'`;
    } else if (d.action === "os-sku-update") {
      est = inPlaceEstimate(surge!);
      peak = Math.min(surge!.surgeNodes, p.count);
      putBody = `agentpools/${p.name}.json`;
      rollbackBody = `agentpools/${p.name}.rollback.json`;
      bodies.set(putBody, { properties: targetProps(base) });
      bodies.set(rollbackBody, { properties: base });
      rollback = `az aks nodepool update --os-sku ${p.osSku} (a second in-place OS SKU update, with the same surge settings)`;
    } else if (d.action === "node-image-upgrade") {
      est = inPlaceEstimate(surge!);
      peak = Math.min(surge!.surgeNodes, p.count);
      putBody = `agentpools/${p.name}.json`;
      bodies.set(putBody, { properties: base });
      if (p.nodeImageVersion) {
        rollbackBody = `agentpools/${p.name}.rollback.json`;
        bodies.set(rollbackBody, { properties: { ...base, nodeImageVersion: p.nodeImageVersion } });
        rollback = `PUT ${rollbackBody} (nodeImageVersion ${p.nodeImageVersion}, allowed while it is in the pool's recentlyUsedVersions)`;
      } else {
        rollback = "not possible: the input does not say which node image the pool ran";
        notes.push(`agent pool '${p.name}': no nodeImageVersion in the input, so rollback.sh cannot roll its node image back`);
      }
    }
    if (p.osSkuDefaulted && p.osType === "Linux") notes.push(`agent pool '${p.name}': no osSKU in the input; the API default Ubuntu was assumed`);
    poolPlans.push({
      name: p.name,
      mode: p.mode,
      osType: p.osType,
      osSku: p.osSku,
      targetOsSku: changes ? target.osSku : p.osSku,
      nodeImageVersion: p.nodeImageVersion ?? null,
      targetNodeImageVersion: changes ? target.nodeImageVersion : (p.nodeImageVersion ?? null),
      kubernetesVersion: p.kubernetesVersion ?? cluster.kubernetesVersion,
      vmSize: p.vmSize,
      count: p.count,
      autoscaling: p.enableAutoScaling ? { minCount: p.minCount ?? null, maxCount: p.maxCount ?? null } : null,
      action: d.action,
      reasons: d.reasons,
      newPoolName: newName,
      canary: p.name === canary,
      wave: waveOf.get(p.name) ?? null,
      surge,
      peakExtraNodes: peak,
      estimateMinutes: est,
      putBody,
      rollbackBody,
      rollback,
    });
  }

  // --- every body must match the AKS schema
  for (const [path, body] of bodies) {
    const errs = validateAgentPoolBody(body);
    if (errs.length) {
      const pool = path.replace(/^agentpools\//, "").replace(/(\.rollback)?\.json$/, "");
      throw ruleError(
        `agent pool '${pool}': the PUT body built from the input does not match the AKS ${AKS_API_VERSION} AgentPool schema (rule: agentpool-schema): ${errs.slice(0, 3).join("; ")}`,
        "check the pool's fields in the input against `az aks nodepool show -o json`",
      );
    }
  }

  // --- a ready System pool at every step
  checkSystemPools(cluster, ordered, poolPlans);

  const byName = new Map(poolPlans.map((p) => [p.name, p]));
  const waves: Wave[] = ordered.map((w, i) => {
    const est = w.pools.reduce(
      (a, n) => ({ typical: a.typical + byName.get(n)!.estimateMinutes.typical, worstCase: a.worstCase + byName.get(n)!.estimateMinutes.worstCase }),
      { typical: 0, worstCase: 0 },
    );
    return { index: i + 1, kind: w.kind, pools: w.pools, estimateMinutes: est };
  });
  if (poolPlans.some((p) => p.action === "blue-green")) {
    notes.push(
      "blue/green replacement pools get new names: workloads that select nodes by the kubernetes.azure.com/agentpool label must be updated; node labels and taints are copied",
    );
  }
  const peakExtraNodes = Math.max(0, ...poolPlans.map((p) => p.peakExtraNodes));
  if (peakExtraNodes > 0) notes.push(`check the regional vCPU quota: up to ${peakExtraNodes} extra node(s) exist at the peak of one step`);
  if (isAcl) notes.push("Trusted Launch needs a Generation 2 VM size with Trusted Launch support for every pool moved to Azure Container Linux");

  const plan = AksPlan.parse({
    schemaVersion: PLAN_SCHEMA_VERSION,
    apiVersion: AKS_API_VERSION,
    cluster: {
      name: cluster.name,
      resourceGroup,
      subscriptionId: cluster.subscriptionId ?? null,
      kubernetesVersion: cluster.kubernetesVersion,
      nodeOSUpgradeChannel: cluster.nodeOSUpgradeChannel,
    },
    image: { name: image.name, version: image.version, ...target },
    options: { systemPools: opts.systemPools, canary, inPlaceSkuUpdate: opts.inPlaceSkuUpdate, maxPoolsPerWave: opts.maxPoolsPerWave },
    pools: poolPlans,
    waves,
    peakExtraNodes,
    estimateMinutes: waves.reduce(
      (a, w) => ({ typical: a.typical + w.estimateMinutes.typical, worstCase: a.worstCase + w.estimateMinutes.worstCase }),
      { typical: 0, worstCase: 0 },
    ),
    notes,
  });
  return { plan, bodies };
}

/**
 * Walk the steps in order and check that, during each one, at least one
 * System pool has ready nodes: an in-place step keeps count − maxUnavailable
 * nodes ready (surge nodes come up before old ones drain); a blue/green step
 * keeps the old pool until the new one is ready, then the new one serves.
 */
function checkSystemPools(
  cluster: ClusterModel,
  waves: ReadonlyArray<{ pools: string[] }>,
  plans: readonly PoolPlan[],
): void {
  const ready = new Map<string, boolean>(cluster.pools.map((p) => [p.name, isReadySystemPool(p)]));
  if (![...ready.values()].some(Boolean)) {
    const sys = cluster.pools.filter((p) => p.mode === "System");
    throw ruleError(
      sys.length
        ? `managed cluster '${cluster.name}': no System pool has ready nodes before the rollout (${sys.map((p) => `'${p.name}': ${p.count} nodes, ${p.powerState ?? "Running"}, ${p.provisioningState ?? "Succeeded"}`).join("; ")}) (rule: keep-system-pool)`
        : `managed cluster '${cluster.name}': no agent pool has mode System (rule: keep-system-pool)`,
      "a cluster must keep at least one System pool with ready nodes at every step; fix the cluster before planning",
    );
  }
  const byName = new Map(plans.map((p) => [p.name, p]));
  for (const w of waves) {
    for (const name of w.pools) {
      const p = byName.get(name)!;
      if (p.mode !== "System") continue;
      const others = [...ready.entries()].some(([n, r]) => r && n !== name);
      if (p.action === "blue-green") {
        // old pool serves until the new System pool is Ready; the new one serves afterwards
        ready.set(name, false);
        ready.set(p.newPoolName!, p.count > 0);
        if (p.count === 0 && !others) {
          throw ruleError(
            `agent pool '${name}': its replacement '${p.newPoolName}' would have 0 nodes and no other System pool has ready nodes (rule: keep-system-pool)`,
          );
        }
        continue;
      }
      const keeps = p.count - (p.surge?.unavailableNodes ?? 0);
      if (keeps <= 0 && !others) {
        throw ruleError(
          `agent pool '${name}': the ${p.action} takes up to ${p.surge!.unavailableNodes} of its ${p.count} node(s) out at once (maxSurge ${p.surge!.maxSurge}, maxUnavailable ${p.surge!.maxUnavailable}) and no other System pool has ready nodes, so the plan would leave no System pool (rule: keep-system-pool)`,
          `set maxUnavailable below the node count (az aks nodepool update -g ${cluster.resourceGroup ?? "RG"} --cluster-name ${cluster.name} -n ${name} --max-unavailable 0 --max-surge 1), or add a second System pool`,
        );
      }
    }
  }
}
