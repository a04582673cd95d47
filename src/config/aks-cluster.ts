/**
 * Input model for `acl aks plan`: a ManagedCluster and its agent pools as
 * JSON, either in the REST API shape (objects with `properties`, as the
 * 2026-08-01 examples) or in the flattened camelCase shape that `az aks show`
 * and `az aks nodepool list` print. Both are normalised into one readonly
 * model and checked with zod; unknown extra fields are kept (in `raw`) and
 * otherwise ignored; a missing required field is an error naming the pool.
 */
import { z } from "zod";
import { readFile } from "node:fs/promises";
import { UserError, fsReason } from "../errors.js";

export const UpgradeSettingsInput = z.looseObject({
  maxSurge: z.union([z.string(), z.number()]).optional(),
  maxUnavailable: z.union([z.string(), z.number()]).optional(),
  drainTimeoutInMinutes: z.number().int().min(1).max(1440).optional(),
  nodeSoakDurationInMinutes: z.number().int().min(0).max(30).optional(),
  undrainableNodeBehavior: z.enum(["Cordon", "Schedule"]).optional(),
});

export const AgentPoolInput = z.looseObject({
  name: z.string().regex(/^[a-z][a-z0-9]{0,11}$/, "must be 1-12 lowercase letters and digits, starting with a letter"),
  count: z.number().int().min(0).max(1000),
  vmSize: z.string().min(1),
  mode: z.enum(["System", "User", "Gateway"]),
  osType: z.enum(["Linux", "Windows"]).default("Linux"),
  osSKU: z.string().optional(),
  enableAutoScaling: z.boolean().default(false),
  minCount: z.number().int().min(0).optional(),
  maxCount: z.number().int().min(0).optional(),
  orchestratorVersion: z.string().optional(),
  currentOrchestratorVersion: z.string().optional(),
  nodeImageVersion: z.string().optional(),
  provisioningState: z.string().optional(),
  powerState: z.looseObject({ code: z.string().optional() }).optional(),
  upgradeSettings: UpgradeSettingsInput.optional(),
  securityProfile: z
    .looseObject({ enableSecureBoot: z.boolean().optional(), enableVTPM: z.boolean().optional() })
    .optional(),
});

export const ClusterInput = z.looseObject({
  name: z.string().min(1),
  id: z.string().optional(),
  location: z.string().optional(),
  resourceGroup: z.string().optional(),
  kubernetesVersion: z.string().optional(),
  currentKubernetesVersion: z.string().optional(),
  autoUpgradeProfile: z
    .looseObject({ nodeOSUpgradeChannel: z.string().optional(), upgradeChannel: z.string().optional() })
    .optional(),
  agentPoolProfiles: z.array(z.unknown()).optional(),
});

export interface AgentPoolModel {
  readonly name: string;
  readonly mode: "System" | "User" | "Gateway";
  readonly osType: "Linux" | "Windows";
  /** As given, or the API default (Ubuntu for Linux, Windows2022 for Windows). */
  readonly osSku: string;
  readonly osSkuDefaulted: boolean;
  readonly count: number;
  readonly vmSize: string;
  readonly enableAutoScaling: boolean;
  readonly minCount?: number;
  readonly maxCount?: number;
  /** Kubernetes version the pool runs (current, else requested). */
  readonly kubernetesVersion?: string;
  readonly nodeImageVersion?: string;
  readonly provisioningState?: string;
  readonly powerState?: string;
  readonly upgradeSettings: {
    readonly maxSurge?: string;
    readonly maxUnavailable?: string;
    readonly drainTimeoutInMinutes?: number;
    readonly nodeSoakDurationInMinutes?: number;
    readonly undrainableNodeBehavior?: "Cordon" | "Schedule";
  };
  readonly secureBoot: boolean;
  readonly vtpm: boolean;
  /** The pool's JSON as given (flattened: REST `properties` merged up), unknown fields included. */
  readonly raw: Readonly<Record<string, unknown>>;
}

export interface ClusterModel {
  readonly name: string;
  readonly resourceGroup?: string;
  readonly subscriptionId?: string;
  readonly location?: string;
  readonly kubernetesVersion: string;
  readonly nodeOSUpgradeChannel: string;
  readonly nodeOSUpgradeChannelDefaulted: boolean;
  readonly pools: readonly AgentPoolModel[];
}

/** Merge a REST object's `properties` up into one flat object (name, id, … kept). */
function flattenRest(v: unknown): unknown {
  if (!v || typeof v !== "object" || Array.isArray(v)) return v;
  const o = v as Record<string, unknown>;
  const props = o.properties;
  if (!props || typeof props !== "object" || Array.isArray(props)) return o;
  const { properties: _p, type, ...top } = o;
  // the resource type never overrides the pool's own `type` property
  const keepType = typeof type === "string" && !type.includes("/") ? { type } : {};
  return { ...top, ...keepType, ...(props as Record<string, unknown>) };
}

/**
 * Rename keys to the REST spelling when they differ only in case (`osSku` →
 * `osSKU`, `enableVtpm` → `enableVTPM`); drop nulls (az prints unset fields as null).
 */
function canonicalKeys(o: Record<string, unknown>, names: readonly string[]): Record<string, unknown> {
  const byLower = new Map(names.map((n) => [n.toLowerCase(), n]));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (v === null) continue;
    out[byLower.get(k.toLowerCase()) ?? k] = v;
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === "object" && !Array.isArray(v);
}

function issueText(issue: z.core.$ZodIssue, obj: unknown): { field: string; text: string } {
  const field = issue.path.join(".") || "(root)";
  let cur: unknown = obj;
  for (const p of issue.path) cur = isObject(cur) || Array.isArray(cur) ? (cur as Record<string, unknown>)[p as string] : undefined;
  const text = cur === undefined ? "is required but missing" : issue.message;
  return { field, text };
}

const POOL_KEYS = Object.keys(AgentPoolInput.shape);
const UPGRADE_KEYS = Object.keys(UpgradeSettingsInput.shape);
const SECURITY_KEYS = ["enableSecureBoot", "enableVTPM", "sshAccess"];

export function parseAgentPool(json: unknown, file: string, index: number): AgentPoolModel {
  const flat = flattenRest(json);
  if (!isObject(flat)) {
    throw new UserError(`${file}: agent pool #${index + 1} is not a JSON object`, { file });
  }
  const o = canonicalKeys(flat, POOL_KEYS);
  // `type` at the top of a REST object or in az output is the resource type
  // ("Microsoft.ContainerService/managedClusters/agentPools"); az prints the
  // pool's own type (VirtualMachineScaleSets, …) as typePropertiesType.
  if (typeof o.type === "string" && o.type.includes("/")) delete o.type;
  if (o.typePropertiesType !== undefined) {
    o.type = o.typePropertiesType;
    delete o.typePropertiesType;
  }
  if (isObject(o.upgradeSettings)) o.upgradeSettings = canonicalKeys(o.upgradeSettings, UPGRADE_KEYS);
  if (isObject(o.securityProfile)) o.securityProfile = canonicalKeys(o.securityProfile, SECURITY_KEYS);
  const label = typeof o.name === "string" ? `agent pool '${o.name}'` : `agent pool #${index + 1}`;
  const r = AgentPoolInput.safeParse(o);
  if (!r.success) {
    const { field, text } = issueText(r.error.issues[0]!, o);
    throw new UserError(`${file}: ${label}: field '${field}' ${text}`, {
      file,
      hint:
        field === "mode"
          ? "every pool needs its mode (System or User): acl must know the System pools to keep one ready at every step; export pools with `az aks nodepool list -o json`"
          : `give '${field}' for ${label} (as \`az aks nodepool list -o json\` or the REST API prints it)`,
    });
  }
  const p = r.data;
  const us = p.upgradeSettings ?? {};
  const str = (v: string | number | undefined) => (v === undefined ? undefined : String(v));
  return {
    name: p.name,
    mode: p.mode,
    osType: p.osType,
    osSku: p.osSKU ?? (p.osType === "Windows" ? "Windows2022" : "Ubuntu"),
    osSkuDefaulted: p.osSKU === undefined,
    count: p.count,
    vmSize: p.vmSize,
    enableAutoScaling: p.enableAutoScaling,
    minCount: p.minCount,
    maxCount: p.maxCount,
    kubernetesVersion: p.currentOrchestratorVersion || p.orchestratorVersion || undefined,
    nodeImageVersion: p.nodeImageVersion,
    provisioningState: p.provisioningState,
    powerState: p.powerState?.code,
    upgradeSettings: {
      maxSurge: str(us.maxSurge),
      maxUnavailable: str(us.maxUnavailable),
      drainTimeoutInMinutes: us.drainTimeoutInMinutes,
      nodeSoakDurationInMinutes: us.nodeSoakDurationInMinutes,
      undrainableNodeBehavior: us.undrainableNodeBehavior,
    },
    secureBoot: p.securityProfile?.enableSecureBoot === true,
    vtpm: p.securityProfile?.enableVTPM === true,
    raw: o,
  };
}

/** Pools file: an array of pools, or a list result `{ "value": [...] }`. */
export function parseAgentPools(json: unknown, file: string): AgentPoolModel[] {
  const list = Array.isArray(json) ? json : isObject(json) && Array.isArray(json.value) ? json.value : undefined;
  if (!list) {
    throw new UserError(`${file}: expected a JSON array of agent pools (or an object with a 'value' array)`, {
      file,
      hint: "export it with `az aks nodepool list -g RG --cluster-name NAME -o json`",
    });
  }
  const pools = list.map((p, i) => parseAgentPool(p, file, i));
  const seen = new Set<string>();
  for (const p of pools) {
    if (seen.has(p.name)) throw new UserError(`${file}: agent pool '${p.name}' is listed twice`, { file });
    seen.add(p.name);
  }
  return pools;
}

const ARM_ID = /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\//i;

export function parseCluster(json: unknown, file: string, poolsOverride?: { pools: AgentPoolModel[] }): ClusterModel {
  const flat = flattenRest(json);
  if (!isObject(flat)) throw new UserError(`${file}: a managed cluster must be a JSON object`, { file });
  const o = canonicalKeys(flat, Object.keys(ClusterInput.shape));
  if (isObject(o.autoUpgradeProfile)) o.autoUpgradeProfile = canonicalKeys(o.autoUpgradeProfile, ["nodeOSUpgradeChannel", "upgradeChannel"]);
  const r = ClusterInput.safeParse(o);
  if (!r.success) {
    const { field, text } = issueText(r.error.issues[0]!, o);
    throw new UserError(`${file}: managed cluster: field '${field}' ${text}`, {
      file,
      hint: "export the cluster with `az aks show -g RG -n NAME -o json` (or GET the managedClusters resource)",
    });
  }
  const c = r.data;
  const version = c.currentKubernetesVersion || c.kubernetesVersion;
  if (!version) {
    throw new UserError(`${file}: managed cluster '${c.name}': field 'kubernetesVersion' is required but missing`, {
      file,
      hint: "the plan checks each pool against the image's minimum Kubernetes version",
    });
  }
  const m = c.id ? ARM_ID.exec(c.id) : null;
  let pools: AgentPoolModel[];
  if (poolsOverride) pools = poolsOverride.pools;
  else if (c.agentPoolProfiles && c.agentPoolProfiles.length) pools = parseAgentPools(c.agentPoolProfiles, `${file} (agentPoolProfiles)`);
  else {
    throw new UserError(`${file}: managed cluster '${c.name}' lists no agent pools`, {
      file,
      hint: "pass --pools POOLS.json (from `az aks nodepool list -o json`)",
    });
  }
  const channel = c.autoUpgradeProfile?.nodeOSUpgradeChannel;
  return {
    name: c.name,
    resourceGroup: c.resourceGroup ?? m?.[2],
    subscriptionId: m?.[1],
    location: c.location,
    kubernetesVersion: version,
    nodeOSUpgradeChannel: channel ?? "NodeImage",
    nodeOSUpgradeChannelDefaulted: channel === undefined,
    pools,
  };
}

async function readJsonFile(file: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new UserError(`cannot read ${what} ${file}: ${fsReason(e)}`, { file });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file} is not valid JSON: ${(e as Error).message}`, {
      file,
      hint: `export it with \`az ... -o json\` and pass the file unchanged`,
    });
  }
}

/** Read the cluster file and (optionally) a pools file that replaces the cluster's agentPoolProfiles. */
export async function loadCluster(clusterFile: string, poolsFile?: string): Promise<ClusterModel> {
  const clusterJson = await readJsonFile(clusterFile, "cluster file");
  const pools = poolsFile ? { pools: parseAgentPools(await readJsonFile(poolsFile, "pools file"), poolsFile) } : undefined;
  return parseCluster(clusterJson, clusterFile, pools);
}

/** "1.34.2" → [1, 34, 2]; "1.34" → [1, 34, 0]; undefined for anything else. */
export function parseKubernetesVersion(v: string): [number, number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?$/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

export function compareVersions(a: [number, number, number], b: [number, number, number]): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}
