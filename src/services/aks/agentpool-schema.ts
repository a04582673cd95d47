/**
 * The AKS REST API spec (2026-08-01) shipped in data/aks/, used three ways:
 * validate generated agent-pool PUT bodies with ajv against the AgentPool
 * definition, list the OS SKUs the API knows, and map input JSON (REST or
 * the camelCase that `az` prints) onto the spec's property names.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import AjvDraft04 from "ajv-draft-04";
import addFormats from "ajv-formats";
import type { ValidateFunction } from "ajv";
import { BugError } from "../../errors.js";

export const AKS_API_VERSION = "2026-08-01";

/** data/aks/ in the package (same depth from src/services/aks and dist/services/aks). */
export const AKS_DATA_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "data", "aks");

/**
 * URIs mirroring each file's path in Azure/azure-rest-api-specs, so that the
 * spec's relative `../../../../../../common-types/...` references resolve.
 */
const BASE = "https://github.com/Azure/azure-rest-api-specs/blob/main/specification/";
const SPEC_FILES = {
  spec: {
    file: "managedClusters-2026-08-01.json",
    uri: `${BASE}containerservice/resource-manager/Microsoft.ContainerService/aks/stable/2026-08-01/managedClusters.json`,
  },
  types: { file: "common-types-v6-types.json", uri: `${BASE}common-types/resource-management/v6/types.json` },
  delegation: {
    file: "common-types-v6-managedidentitywithdelegation.json",
    uri: `${BASE}common-types/resource-management/v6/managedidentitywithdelegation.json`,
  },
} as const;

type JsonSchema = Record<string, unknown> & {
  $ref?: string;
  properties?: Record<string, JsonSchema>;
  allOf?: JsonSchema[];
  items?: JsonSchema;
  additionalProperties?: boolean | JsonSchema;
  readOnly?: boolean;
  enum?: string[];
  type?: string;
};

interface SpecDoc {
  definitions: Record<string, JsonSchema>;
}

let cachedSpec: SpecDoc | undefined;
function readJson(file: string): Record<string, unknown> {
  const path = join(AKS_DATA_DIR, file);
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new BugError(`cannot read the shipped AKS API spec ${path}: ${(e as Error).message}`);
  }
}

export function aksSpec(): SpecDoc {
  cachedSpec ??= readJson(SPEC_FILES.spec.file) as unknown as SpecDoc;
  return cachedSpec;
}

let cachedValidator: ValidateFunction | undefined;

/** ajv validator for `#/definitions/AgentPool` of the 2026-08-01 spec (Swagger 2.0 schemas are draft-04). */
export function agentPoolValidator(): ValidateFunction {
  if (cachedValidator) return cachedValidator;
  const ajv = new AjvDraft04.default({ strict: false, allErrors: true, validateSchema: false });
  addFormats.default(ajv);
  // Swagger/autorest formats that JSON Schema does not define.
  ajv.addFormat("int32", { type: "number", validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat("int64", { type: "number", validate: (n: number) => Number.isInteger(n) });
  ajv.addFormat("float", { type: "number", validate: () => true });
  ajv.addFormat("double", { type: "number", validate: () => true });
  ajv.addFormat("arm-id", /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/.+/i);
  ajv.addFormat("password", true);
  for (const { file, uri } of Object.values(SPEC_FILES)) ajv.addSchema({ ...readJson(file), id: uri }, uri);
  const v = ajv.getSchema(`${SPEC_FILES.spec.uri}#/definitions/AgentPool`);
  if (!v) throw new BugError("AgentPool definition missing from the shipped AKS spec");
  cachedValidator = v;
  return v;
}

/** Validate an agent-pool PUT body; returns readable error lines (empty when valid). */
export function validateAgentPoolBody(body: unknown): string[] {
  const v = agentPoolValidator();
  const errors: string[] = [];
  if (!v(body)) {
    for (const e of v.errors ?? []) errors.push(`${e.instancePath || "(root)"} ${e.message ?? "is invalid"}`);
  }
  // A PUT body must not carry read-only or unknown properties: AKS ignores or rejects them.
  errors.push(...unknownOrReadOnly(body, { $ref: "#/definitions/AgentPool" }, ""));
  return errors;
}

function unknownOrReadOnly(value: unknown, schema: JsonSchema, path: string): string[] {
  const s = flatten(schema);
  if (Array.isArray(value)) {
    return s.items ? value.flatMap((v, i) => unknownOrReadOnly(v, s.items!, `${path}/${i}`)) : [];
  }
  if (!value || typeof value !== "object" || !s.properties) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(value)) {
    const p = s.properties[k];
    if (!p) {
      if (!s.additionalProperties) out.push(`${path}/${k} is not a property of the AKS ${AKS_API_VERSION} schema`);
      continue;
    }
    if (p.readOnly || flatten(p).readOnly) out.push(`${path}/${k} is read-only and must not be sent in a PUT body`);
    else out.push(...unknownOrReadOnly(v, p, `${path}/${k}`));
  }
  return out;
}

/** Resolve local $refs and merge allOf into one schema with all properties (for walking, not validating). */
function flatten(schema: JsonSchema): JsonSchema {
  let s = schema;
  const seen = new Set<string>();
  while (s.$ref && s.$ref.startsWith("#/definitions/") && !seen.has(s.$ref)) {
    seen.add(s.$ref);
    const target = aksSpec().definitions[s.$ref.slice("#/definitions/".length)];
    if (!target) throw new BugError(`unresolved $ref ${s.$ref}`);
    const { $ref: _r, ...rest } = s;
    s = { ...target, ...rest };
  }
  if (s.$ref && s.$ref.includes("common-types")) {
    // ProxyResource / Resource: id, name, type, systemData (all read-only).
    const name = s.$ref.split("/").pop()!;
    const types = readJson(SPEC_FILES.types.file) as unknown as SpecDoc;
    const t = types.definitions[name] ?? {};
    const merged = { ...t };
    if (t.allOf) merged.properties = { ...Object.assign({}, ...t.allOf.map((x) => flattenTypes(x, types).properties)), ...t.properties };
    return merged;
  }
  if (!s.allOf) return s;
  const props: Record<string, JsonSchema> = {};
  for (const part of s.allOf) Object.assign(props, flatten(part).properties);
  return { ...s, properties: { ...props, ...s.properties } };
}

function flattenTypes(s: JsonSchema, types: SpecDoc): JsonSchema {
  if (s.$ref?.startsWith("#/definitions/")) return types.definitions[s.$ref.slice(14)] ?? {};
  return s;
}

/** Every OS SKU the 2026-08-01 API knows (the `OSSKU` enum). */
export function knownOsSkus(): readonly string[] {
  return aksSpec().definitions.OSSKU?.enum ?? [];
}

/** Writable property names of ManagedClusterAgentPoolProfileProperties. */
export function agentPoolPropertySchema(): JsonSchema {
  return { $ref: "#/definitions/ManagedClusterAgentPoolProfileProperties" };
}

/**
 * Map a JSON value onto the spec's property names, case-insensitively
 * (`az` prints `osSku`, `enableVtpm`, `vnetSubnetId`; REST says `osSKU`,
 * `enableVTPM`, `vnetSubnetID`). Unknown keys, nulls and read-only properties
 * are dropped; free-form maps (tags, nodeLabels) are kept as they are.
 */
export function toSchemaShape(value: unknown, schema: JsonSchema = agentPoolPropertySchema()): unknown {
  const s = flatten(schema);
  if (value === null || value === undefined) return undefined;
  if (Array.isArray(value)) return s.items ? value.map((v) => toSchemaShape(v, s.items!)).filter((v) => v !== undefined) : value;
  if (typeof value !== "object") return value;
  if (!s.properties) return s.additionalProperties ? value : value;
  const byLower = new Map(Object.keys(s.properties).map((k) => [k.toLowerCase(), k]));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const name = byLower.get(k.toLowerCase());
    if (!name) continue;
    const p = s.properties[name]!;
    if (p.readOnly || flatten(p).readOnly) continue;
    const mapped = toSchemaShape(v, p);
    if (mapped !== undefined) out[name] = mapped;
  }
  return out;
}
