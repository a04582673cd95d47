/**
 * plan.json: the schema-checked record of an AKS node-pool migration plan.
 * rollout.sh, rollback.sh and plan.md are generated from it.
 */
import { z } from "zod";

export const PLAN_SCHEMA_VERSION = 1;

export const PoolAction = z.enum([
  /** same OS SKU: `az aks nodepool upgrade --node-image-only` (surge, drain, reimage) */
  "node-image-upgrade",
  /** `az aks nodepool update --os-sku TARGET`: AKS reimages the pool's nodes in place */
  "os-sku-update",
  /** new pool with the target SKU, cordon + drain the old nodes, delete the old pool */
  "blue-green",
  /** Linux pool already on the target, or not touched */
  "none",
  /** Windows pools are left alone */
  "leave-windows",
]);
export type PoolAction = z.infer<typeof PoolAction>;

const Minutes = z.strictObject({ typical: z.number().int().nonnegative(), worstCase: z.number().int().nonnegative() });

export const SurgePlan = z.strictObject({
  /** maxSurge as configured (or the AKS default "10%"). */
  maxSurge: z.string(),
  maxUnavailable: z.string(),
  /** Nodes added per batch: percent → ceil(percent × count / 100), at least 1 when non-zero. */
  surgeNodes: z.number().int().nonnegative(),
  unavailableNodes: z.number().int().nonnegative(),
  /** Nodes handled at once: min(count, surgeNodes + unavailableNodes). */
  batchSize: z.number().int().nonnegative(),
  batches: z.number().int().nonnegative(),
  drainTimeoutMinutes: z.number().int().positive(),
  soakMinutes: z.number().int().nonnegative(),
  undrainableNodeBehavior: z.enum(["Cordon", "Schedule"]).optional(),
});
export type SurgePlan = z.infer<typeof SurgePlan>;

export const PoolPlan = z.strictObject({
  name: z.string(),
  mode: z.enum(["System", "User", "Gateway"]),
  osType: z.enum(["Linux", "Windows"]),
  osSku: z.string(),
  targetOsSku: z.string(),
  nodeImageVersion: z.string().nullable(),
  targetNodeImageVersion: z.string().nullable(),
  kubernetesVersion: z.string(),
  vmSize: z.string(),
  count: z.number().int().nonnegative(),
  autoscaling: z.strictObject({ minCount: z.number().int().nullable(), maxCount: z.number().int().nullable() }).nullable(),
  action: PoolAction,
  /** Why this action: one sentence per reason, most important first. */
  reasons: z.array(z.string()).min(1),
  /** Blue/green: the pool that replaces this one. */
  newPoolName: z.string().nullable(),
  canary: z.boolean(),
  wave: z.number().int().positive().nullable(),
  surge: SurgePlan.nullable(),
  /** Extra nodes (and their vCPU quota) needed at the peak of this pool's step. */
  peakExtraNodes: z.number().int().nonnegative(),
  estimateMinutes: Minutes,
  /** Relative paths of the PUT bodies in the plan folder. */
  putBody: z.string().nullable(),
  rollbackBody: z.string().nullable(),
  /** How rollback.sh undoes this pool's step. */
  rollback: z.string(),
});
export type PoolPlan = z.infer<typeof PoolPlan>;

export const Wave = z.strictObject({
  index: z.number().int().positive(),
  kind: z.enum(["canary", "user", "system"]),
  pools: z.array(z.string()).min(1),
  estimateMinutes: Minutes,
});
export type Wave = z.infer<typeof Wave>;

export const AksPlan = z.strictObject({
  schemaVersion: z.literal(PLAN_SCHEMA_VERSION),
  apiVersion: z.string(),
  cluster: z.strictObject({
    name: z.string(),
    resourceGroup: z.string(),
    subscriptionId: z.string().nullable(),
    kubernetesVersion: z.string(),
    nodeOSUpgradeChannel: z.string(),
  }),
  image: z.strictObject({
    name: z.string(),
    version: z.string(),
    osSku: z.string(),
    nodeImageVersion: z.string(),
    minKubernetesVersion: z.string(),
  }),
  options: z.strictObject({
    systemPools: z.enum(["first", "last"]),
    canary: z.string().nullable(),
    inPlaceSkuUpdate: z.boolean(),
    maxPoolsPerWave: z.number().int().positive(),
  }),
  pools: z.array(PoolPlan),
  waves: z.array(Wave),
  peakExtraNodes: z.number().int().nonnegative(),
  estimateMinutes: Minutes,
  /** Things a reviewer must know (defaults assumed, quota, labels). */
  notes: z.array(z.string()),
});
export type AksPlan = z.infer<typeof AksPlan>;
