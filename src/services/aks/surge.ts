/**
 * AKS rolling-upgrade arithmetic: how many nodes are surged and taken out
 * at once, how many batches that makes, and a time estimate. Pure.
 */
import { UserError } from "../../errors.js";
import type { SurgePlan } from "./plan-schema.js";

/** API defaults (AgentPoolUpgradeSettings, 2026-08-01). */
export const DEFAULT_MAX_SURGE = "10%";
export const DEFAULT_MAX_UNAVAILABLE = "0";
export const DEFAULT_DRAIN_TIMEOUT_MINUTES = 30;
export const DEFAULT_SOAK_MINUTES = 0;

/** Estimates (minutes) for the time model; typical cloud figures, not guarantees. */
export const MINUTES = {
  /** Create surge VMs with the new image and wait for the nodes to be Ready. */
  surgeNodeReady: 5,
  /** Drain of a node whose pods evict without waiting on PodDisruptionBudgets. */
  typicalDrain: 3,
  /** Delete (or reimage) the drained nodes of a batch. */
  nodeRemove: 2,
  /** Create a whole new pool (VMs in parallel) and wait for it to be Ready. */
  poolCreate: 8,
  /** Delete a pool. */
  poolDelete: 5,
} as const;

export interface SurgeQuantity {
  kind: "count" | "percent";
  value: number;
}

/** Parse "5" or "33%" (as maxSurge/maxUnavailable are given); the pool and field are named on error. */
export function parseQuantity(text: string, field: string, pool: string): SurgeQuantity {
  const m = /^\s*(\d+)\s*(%?)\s*$/.exec(text);
  if (!m) {
    throw new UserError(
      `agent pool '${pool}': upgradeSettings.${field} '${text}' is neither a node count nor a percentage (rule: surge-format)`,
      { hint: `write it as a whole number ("3") or a percentage ("33%")` },
    );
  }
  const value = Number(m[1]);
  if (m[2] && value > 100) {
    throw new UserError(`agent pool '${pool}': upgradeSettings.${field} '${text}' is above 100% (rule: surge-format)`);
  }
  return { kind: m[2] ? "percent" : "count", value };
}

/** Nodes for a quantity: percentages are of the pool's size at upgrade time, fractions rounded up as AKS does. */
export function nodesFor(q: SurgeQuantity, count: number): number {
  if (q.kind === "count") return q.value;
  if (q.value === 0 || count === 0) return 0;
  return Math.max(1, Math.ceil((q.value * count) / 100));
}

export interface SurgeInput {
  maxSurge?: string;
  maxUnavailable?: string;
  drainTimeoutInMinutes?: number;
  nodeSoakDurationInMinutes?: number;
  undrainableNodeBehavior?: "Cordon" | "Schedule";
}

export function surgePlan(pool: string, count: number, s: SurgeInput): SurgePlan {
  const maxSurge = s.maxSurge ?? DEFAULT_MAX_SURGE;
  const maxUnavailable = s.maxUnavailable ?? DEFAULT_MAX_UNAVAILABLE;
  const surgeNodes = nodesFor(parseQuantity(maxSurge, "maxSurge", pool), count);
  const unavailableNodes = Math.min(count, nodesFor(parseQuantity(maxUnavailable, "maxUnavailable", pool), count));
  if (count > 0 && surgeNodes === 0 && unavailableNodes === 0) {
    throw new UserError(
      `agent pool '${pool}': maxSurge '${maxSurge}' and maxUnavailable '${maxUnavailable}' are both 0 nodes for ${count} nodes, so no node could ever be upgraded (rule: surge-or-unavailable)`,
      { hint: `set upgradeSettings.maxSurge to at least 1 (az aks nodepool update --max-surge 1 ...)` },
    );
  }
  const batchSize = Math.min(count, surgeNodes + unavailableNodes);
  return {
    maxSurge,
    maxUnavailable,
    surgeNodes,
    unavailableNodes,
    batchSize,
    batches: count === 0 ? 0 : Math.ceil(count / batchSize),
    drainTimeoutMinutes: s.drainTimeoutInMinutes ?? DEFAULT_DRAIN_TIMEOUT_MINUTES,
    soakMinutes: s.nodeSoakDurationInMinutes ?? DEFAULT_SOAK_MINUTES,
    ...(s.undrainableNodeBehavior ? { undrainableNodeBehavior: s.undrainableNodeBehavior } : {}),
  };
}

export interface Estimate {
  typical: number;
  worstCase: number;
}

/** In-place (node image or OS SKU): each batch surges, drains, soaks and removes nodes. */
export function inPlaceEstimate(s: SurgePlan): Estimate {
  const perBatch = (drain: number) => MINUTES.surgeNodeReady + drain + s.soakMinutes + MINUTES.nodeRemove;
  return {
    typical: s.batches * perBatch(Math.min(MINUTES.typicalDrain, s.drainTimeoutMinutes)),
    worstCase: s.batches * perBatch(s.drainTimeoutMinutes),
  };
}

/**
 * Blue/green: create the new pool, drain the old nodes a batch at a time (the
 * pool's own batch size, so disruption stays within what its surge settings
 * allow; soaking after each batch), delete the old pool.
 */
export function blueGreenEstimate(s: SurgePlan): Estimate {
  const drains = (drain: number) => s.batches * (drain + s.soakMinutes);
  return {
    typical: MINUTES.poolCreate + drains(Math.min(MINUTES.typicalDrain, s.drainTimeoutMinutes)) + MINUTES.poolDelete,
    worstCase: MINUTES.poolCreate + drains(s.drainTimeoutMinutes) + MINUTES.poolDelete,
  };
}
