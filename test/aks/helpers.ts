/**
 * Shared test helpers for test/aks: fixture paths, image folders with a
 * chosen [aks] section, an ajv validator built here (independently of
 * src/services/aks/agentpool-schema.ts) over the shipped 2026-08-01 spec,
 * and the stub az/kubectl/sleep environment.
 */
import { cpSync, existsSync, rmSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { spawnSync } from "node:child_process";
import AjvDraft04 from "ajv-draft-04";
import addFormats from "ajv-formats";

export const ROOT = resolve(import.meta.dirname, "..", "..");
export const FIXTURES = join(ROOT, "test", "fixtures", "aks");
export const IMAGE_ACL = join(FIXTURES, "image-acl");
export const STUBS = join(FIXTURES, "stubs");
export const DATA = join(ROOT, "data", "aks");

export function readJson<T = any>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

const made: string[] = [];
export function tmp(prefix = "acl-aks-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}

/** Remove the folders tmp() made (call from afterAll). */
export function cleanupTmp(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Copy the fixture image folder, replacing its manifest's aks section (undefined removes it). */
export function imageWith(aks: Record<string, string> | undefined): string {
  const dir = join(tmp("acl-aks-image-"), "image");
  cpSync(IMAGE_ACL, dir, { recursive: true });
  const m = readJson(join(dir, "manifest.json"));
  if (aks) m.aks = aks;
  else delete m.aks;
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(m, null, 2));
  return dir;
}

/**
 * Validator for AgentPool built in the test: the spec's relative
 * "../../../../../../common-types/resource-management/v6/types.json" refs are
 * rewritten to the id under which the shipped types.json is registered.
 */
export function independentAgentPoolValidator() {
  const ajv = new AjvDraft04.default({ strict: false, allErrors: true, validateSchema: false });
  addFormats.default(ajv);
  for (const f of ["int32", "int64", "float", "double", "arm-id", "password"]) ajv.addFormat(f, true);
  const specText = readFileSync(join(DATA, "managedClusters-2026-08-01.json"), "utf8").replaceAll(
    "../../../../../../common-types/resource-management/v6/",
    "https://test.invalid/common-types/",
  );
  ajv.addSchema({ ...JSON.parse(specText), id: "https://test.invalid/aks.json" });
  ajv.addSchema({ ...readJson(join(DATA, "common-types-v6-types.json")), id: "https://test.invalid/common-types/types.json" });
  ajv.addSchema({
    ...readJson(join(DATA, "common-types-v6-managedidentitywithdelegation.json")),
    id: "https://test.invalid/common-types/managedidentitywithdelegation.json",
  });
  const v = ajv.getSchema("https://test.invalid/aks.json#/definitions/AgentPool");
  if (!v) throw new Error("AgentPool not found in the shipped spec");
  return v;
}

/** Writable property names of ManagedClusterAgentPoolProfileProperties (read-only ones excluded). */
export function writablePoolProperties(): Set<string> {
  const spec = readJson(join(DATA, "managedClusters-2026-08-01.json"));
  const props = spec.definitions.ManagedClusterAgentPoolProfileProperties.properties as Record<string, { readOnly?: boolean }>;
  return new Set(Object.entries(props).filter(([, p]) => !p.readOnly).map(([k]) => k));
}

export interface StubPool {
  provisioningState: string;
  mode: string;
  osSku: string;
  nodeImageVersion: string;
  enableAutoScaling: boolean;
  count: number;
}

export interface StubState {
  cluster: Record<string, string>;
  pools: Record<string, StubPool>;
  latest: string;
  recent?: Record<string, string[]>;
  cordoned?: string[];
  failOn?: string;
  bodies?: Record<string, Record<string, unknown>>;
}

/** Stub state for the pools of a fixture pools file (REST list shape). */
export function stubStateFromPools(poolsFile: string, latest: string): StubState {
  const list = readJson<{ value: Array<{ name: string; properties: Record<string, any> }> }>(poolsFile).value;
  const pools: Record<string, StubPool> = {};
  for (const p of list) {
    pools[p.name] = {
      provisioningState: "Succeeded",
      mode: p.properties.mode,
      osSku: p.properties.osSKU ?? "Ubuntu",
      nodeImageVersion: p.properties.nodeImageVersion,
      enableAutoScaling: p.properties.enableAutoScaling ?? false,
      count: p.properties.count,
    };
  }
  return { cluster: { provisioningState: "Succeeded" }, pools, latest };
}

/** Lay the state out as the folder test/fixtures/aks/stubs/stub.sh reads and updates. */
export function writeStubState(state: StubState): string {
  const dir = join(tmp("acl-aks-stub-"), "state");
  mkdirSync(join(dir, "pools"), { recursive: true });
  mkdirSync(join(dir, "cordoned"));
  mkdirSync(join(dir, "recent"));
  for (const [k, v] of Object.entries(state.cluster)) writeFileSync(join(dir, `cluster_${k}`), v);
  writeFileSync(join(dir, "latest"), state.latest);
  if (state.failOn) writeFileSync(join(dir, "fail_on"), state.failOn);
  for (const [name, p] of Object.entries(state.pools)) {
    mkdirSync(join(dir, "pools", name));
    for (const [k, v] of Object.entries(p)) writeFileSync(join(dir, "pools", name, k), typeof v === "boolean" ? (v ? "True" : "False") : String(v));
  }
  for (const [pool, versions] of Object.entries(state.recent ?? {})) writeFileSync(join(dir, "recent", pool), versions.join("\n") + "\n");
  for (const n of state.cordoned ?? []) writeFileSync(join(dir, "cordoned", n), "");
  return dir;
}

export function readStubState(dir: string): StubState {
  const txt = (...p: string[]) => readFileSync(join(dir, ...p), "utf8");
  const pools: Record<string, StubPool> = {};
  for (const name of readdirSync(join(dir, "pools")).sort()) {
    const f = (k: string) => txt("pools", name, k);
    pools[name] = {
      provisioningState: f("provisioningState"),
      mode: f("mode"),
      osSku: f("osSku"),
      nodeImageVersion: f("nodeImageVersion"),
      enableAutoScaling: f("enableAutoScaling") === "True",
      count: Number(f("count")),
    };
  }
  const bodies: Record<string, Record<string, unknown>> = {};
  if (existsSync(join(dir, "bodies"))) {
    for (const b of readdirSync(join(dir, "bodies"))) bodies[b.replace(/\.json$/, "")] = readJson(join(dir, "bodies", b)).properties;
  }
  return {
    cluster: { provisioningState: txt("cluster_provisioningState") },
    pools,
    latest: txt("latest"),
    cordoned: readdirSync(join(dir, "cordoned")).sort(),
    bodies,
  };
}

export interface ScriptRun {
  status: number | null;
  stdout: string;
  stderr: string;
  calls: string[][];
  state: StubState;
}

/** Run a generated script with the stubs first on PATH; returns output, recorded calls and the final state. */
export function runWithStubs(script: string, args: string[], stateDir: string): ScriptRun {
  const log = `${stateDir}.calls`;
  writeFileSync(log, "");
  const r = spawnSync("bash", [script, ...args], {
    encoding: "utf8",
    env: {
      PATH: `${STUBS}:${process.env.PATH}`,
      ACL_STUB_LOG: log,
      ACL_STUB_STATE: stateDir,
      ACL_POLL_SECONDS: "0",
      ACL_WAIT_MINUTES: "1",
    },
  });
  const calls = readFileSync(log, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as string[]);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, calls, state: readStubState(stateDir) };
}

/** Calls that change something (everything but show/list/get queries). */
export function changingCalls(calls: string[][]): string[] {
  const readOnly = (c: string[]) =>
    (c[0] === "az" && (c[2] === "show" || c[3] === "show" || c[3] === "list" || c[3] === "get-upgrades")) ||
    (c[0] === "kubectl" && c[1] === "get");
  return calls.filter((c) => !readOnly(c)).map(describe);
}

/** Short text for a call: "az rest put NAME", "az nodepool update NAME --os-sku X", "kubectl drain N…". */
export function describe(c: string[]): string {
  const opt = (n: string) => {
    const i = c.indexOf(n);
    return i >= 0 ? c[i + 1] : undefined;
  };
  if (c[0] === "az" && c[1] === "rest") return `az rest ${opt("--method")} ${/agentPools\/([^?]+)/.exec(opt("--url") ?? "")?.[1]}`;
  if (c[0] === "az" && c[1] === "aks" && c[2] === "nodepool") {
    const extra = c.slice(4).filter((a) => ["--os-sku", "--node-image-only", "--disable-cluster-autoscaler", "--enable-cluster-autoscaler"].includes(a));
    const sku = opt("--os-sku");
    return [`az nodepool ${c[3]} ${opt("-n")}`, ...extra.map((e) => (e === "--os-sku" ? `--os-sku ${sku}` : e))].join(" ");
  }
  if (c[0] === "kubectl") return `kubectl ${c.filter((a) => !a.startsWith("--")).slice(1).join(" ")}`;
  return c.join(" ");
}
