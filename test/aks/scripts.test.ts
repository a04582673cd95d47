/**
 * rollout.sh / rollback.sh as generated for the mixed fixture cluster, run by
 * bash with stub az, kubectl and sleep first on PATH (test/fixtures/aks/stubs):
 * the stubs record every call and keep a small cluster state, so the
 * recorded sequence and the end state are asserted. bash -n and shellcheck
 * (Debian's) check the scripts themselves.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { aksPlan } from "../../src/services/aks/plan-service.js";
import {
  changingCalls,
  cleanupTmp,
  FIXTURES,
  IMAGE_ACL,
  readJson,
  ROOT,
  runWithStubs,
  stubStateFromPools,
  tmp,
  writeStubState,
  type StubState,
} from "./helpers.js";

afterAll(cleanupTmp);

const TARGET = "AKSAzureContainerLinux-202611.24.0";
const OLD_ACL = "AKSAzureContainerLinux-202610.01.0";
let dir: string;

function initialState(): StubState {
  const s = stubStateFromPools(join(FIXTURES, "pools-rest.json"), TARGET);
  s.recent = { aclpool: [OLD_ACL] };
  return s;
}

const stateFile = (s: StubState) => writeStubState(s);

const nodes = (pool: string, n: number) => Array.from({ length: n }, (_, i) => `aks-${pool}-vmss${String(i).padStart(6, "0")}`);

/** The changes rollout.sh makes for the fixture cluster, in order. */
function expectedRollout(): string[] {
  const cordon = (pool: string, n: number) => nodes(pool, n).map((x) => `kubectl cordon ${x}`);
  const drains = (pool: string, n: number, batch: number) => {
    const all = nodes(pool, n);
    const out: string[] = [];
    for (let i = 0; i < n; i += batch) out.push(`kubectl drain ${all.slice(i, i + batch).join(" ")}`);
    return out;
  };
  return [
    // wave 1, canary: userpool1 blue/green
    "az rest put userpool1acl",
    ...cordon("userpool1", 3),
    ...drains("userpool1", 3, 1),
    "az nodepool delete userpool1",
    // wave 2: azlpool (4 nodes, batches of 2), spotpool (5 nodes, batches of 4, 5 min soak), aclpool node image
    "az rest put azlpoolacl",
    "az nodepool update azlpool --disable-cluster-autoscaler",
    ...cordon("azlpool", 4),
    ...drains("azlpool", 4, 2),
    "az nodepool delete azlpool",
    "az rest put spotpoolacl",
    "az nodepool update spotpool --disable-cluster-autoscaler",
    ...cordon("spotpool", 5),
    "kubectl drain aks-spotpool-vmss000000 aks-spotpool-vmss000001 aks-spotpool-vmss000002 aks-spotpool-vmss000003",
    "sleep 300",
    "kubectl drain aks-spotpool-vmss000004",
    "sleep 300",
    "az nodepool delete spotpool",
    "az nodepool upgrade aclpool --node-image-only",
    // wave 3: the System pool last
    "az rest put systempooacl",
    ...cordon("systempool", 3),
    ...drains("systempool", 3, 1),
    "az nodepool delete systempool",
  ];
}

/** "would run: …" lines of a dry run, condensed like changingCalls(). */
function wouldRun(stdout: string): string[] {
  return stdout
    .split("\n")
    .filter((l) => l.startsWith("would run: "))
    .map((l) => {
      const a = l.slice("would run: ".length).split(" ");
      if (a[0] === "az" && a[1] === "rest") return `az rest put ${/agentPools\/([a-z0-9]+)/.exec(l)![1]}`;
      if (a[0] === "az" && a[2] === "nodepool") {
        const n = a[a.indexOf("-n") + 1];
        const flags = a.filter((x) => ["--node-image-only", "--disable-cluster-autoscaler"].includes(x));
        return [`az nodepool ${a[3]} ${n}`, ...flags].join(" ");
      }
      if (a[0] === "kubectl") return `kubectl ${a.filter((x) => !x.startsWith("--")).slice(1).join(" ")}`;
      return a.join(" ");
    });
}

beforeAll(async () => {
  dir = join(tmp(), "plan");
  await aksPlan({ clusterFile: join(FIXTURES, "cluster-rest.json"), imageDir: IMAGE_ACL, outDir: dir });
});

describe("generated scripts", () => {
  test("bash -n and shellcheck pass", () => {
    for (const s of ["rollout.sh", "rollback.sh"]) {
      const n = spawnSync("bash", ["-n", join(dir, s)], { encoding: "utf8" });
      expect([s, n.status, n.stderr]).toEqual([s, 0, ""]);
      const sc = spawnSync("shellcheck", ["--severity=style", join(dir, s)], { encoding: "utf8" });
      expect(sc.error, "shellcheck must be installed (apt-get install shellcheck)").toBeUndefined();
      expect([s, sc.status, sc.stdout]).toEqual([s, 0, ""]);
    }
    // the parts in data/aks/scripts/ on their own, and the stub
    const parts = ["lib.sh", "rollout-steps.sh", "rollback-steps.sh"].map((f) => join(ROOT, "data", "aks", "scripts", f));
    const sc = spawnSync("shellcheck", ["-s", "bash", ...parts, join(FIXTURES, "stubs", "stub.sh")], { encoding: "utf8" });
    expect([sc.status, sc.stdout]).toEqual([0, ""]);
  });

  test("--help prints the usage from the header", () => {
    const r = spawnSync("bash", [join(dir, "rollout.sh"), "--help"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("# Usage: ./rollout.sh [--dry-run] [--waves N]");
    expect(r.stdout).toContain("ACL_WAIT_MINUTES");
    const bad = spawnSync("bash", [join(dir, "rollout.sh"), "--bogus"], { encoding: "utf8" });
    expect([bad.status, bad.stderr]).toEqual([2, "error: unknown argument --bogus (try --help)\n"]);
  });

  test("set -euo pipefail, executable, drains with the required flags", () => {
    const text = readFileSync(join(dir, "rollout.sh"), "utf8");
    expect(text.startsWith("#!/usr/bin/env bash\n")).toBe(true);
    expect(text).toContain("\nset -euo pipefail\n");
    expect(text).toContain("--ignore-daemonsets --delete-emptydir-data --timeout=");
    expect(text).toContain("blue_green spotpool spotpoolacl agentpools/spotpoolacl.json 45 5 4");
    expect(spawnSync("test", ["-x", join(dir, "rollback.sh")]).status).toBe(0);
  });
});

describe("rollout.sh with stub az/kubectl", () => {
  test("--dry-run only queries and prints every change, in wave order", () => {
    const s = initialState();
    const f = stateFile(s);
    const r = runWithStubs(join(dir, "rollout.sh"), ["--dry-run"], f);
    expect(r.status, r.stderr).toBe(0);
    expect(changingCalls(r.calls)).toEqual([]);
    expect(r.state.pools).toEqual(s.pools);
    expect(r.state.cordoned).toEqual([]);
    // sleep is printed, not run
    expect(wouldRun(r.stdout)).toEqual(expectedRollout());
    expect(r.stdout).toContain(
      "would run: kubectl drain aks-spotpool-vmss000004 --ignore-daemonsets --delete-emptydir-data --timeout=45m",
    );
    expect(r.stdout).toMatch(/would run: az rest --method put --url https:\/\/management\.azure\.com\/subscriptions\/00000000-0000-0000-0000-000000000000\/resourceGroups\/rg1\/providers\/Microsoft\.ContainerService\/managedClusters\/clustername1\/agentPools\/userpool1acl\\\?api-version=2026-08-01 --body @\S+\/agentpools\/userpool1acl\.json/);
    expect(r.stdout).toContain("would wait: agent pool userpool1acl provisioningState Succeeded");
    expect(r.stdout).toContain("would wait: nodes of agent pool userpool1acl Ready");
    // the queries it made: state checks before acting
    const queries = r.calls.map((c) => c.slice(0, 4).join(" "));
    expect(queries[0]).toBe("az aks show -g");
    expect(queries).toContain("az aks nodepool get-upgrades");
    expect(r.calls.some((c) => c[0] === "kubectl" && c.includes("kubernetes.azure.com/mode=system"))).toBe(true);
  });

  test("a real run makes exactly the planned changes, then a second run changes nothing", () => {
    const f = stateFile(initialState());
    const r = runWithStubs(join(dir, "rollout.sh"), [], f);
    expect(r.status, r.stderr).toBe(0);
    expect(changingCalls(r.calls)).toEqual(expectedRollout());
    // waits polled the pool state and node readiness
    expect(r.calls.some((c) => c.join(" ").includes("nodepool show -g rg1 --cluster-name clustername1 -n spotpoolacl --query provisioningState"))).toBe(true);
    expect(r.calls.some((c) => c[0] === "kubectl" && c.includes("kubernetes.azure.com/agentpool=spotpoolacl") && c.join(" ").includes("conditions"))).toBe(true);
    const pools = r.state.pools;
    expect(Object.keys(pools).sort()).toEqual(["aclpool", "azlpoolacl", "spotpoolacl", "systempooacl", "userpool1acl", "win1"]);
    for (const [name, p] of Object.entries(pools)) {
      if (name === "win1") expect(p.osSku).toBe("Windows2022");
      else expect([name, p.osSku, p.nodeImageVersion]).toEqual([name, "AzureContainerLinux", TARGET]);
    }
    expect(pools.systempooacl!.mode).toBe("System");
    expect(r.state.bodies!.spotpoolacl).toMatchObject({ securityProfile: { enableSecureBoot: true, enableVTPM: true }, enableAutoScaling: true });
    expect(r.stderr).toContain("==> rollout of AzureContainerLinux AKSAzureContainerLinux-202611.24.0 complete");

    const again = runWithStubs(join(dir, "rollout.sh"), [], f);
    expect(again.status, again.stderr).toBe(0);
    expect(changingCalls(again.calls)).toEqual([]);
    expect(again.stderr).toContain("agent pool aclpool: already on node image AKSAzureContainerLinux-202611.24.0");
    expect(again.stderr).toContain("agent pool userpool1: already replaced by userpool1acl");
  }, 300_000);

  test("resumes after a partial run: finished steps are skipped", () => {
    const s = initialState();
    // as if a first run died after creating userpool1acl and cordoning one old node
    s.pools.userpool1acl = { ...s.pools.userpool1!, osSku: "AzureContainerLinux", nodeImageVersion: TARGET };
    s.cordoned = ["aks-userpool1-vmss000000"];
    const r = runWithStubs(join(dir, "rollout.sh"), ["--waves", "1"], stateFile(s));
    expect(r.status, r.stderr).toBe(0);
    expect(changingCalls(r.calls)).toEqual([
      "kubectl cordon aks-userpool1-vmss000001",
      "kubectl cordon aks-userpool1-vmss000002",
      "kubectl drain aks-userpool1-vmss000000",
      "kubectl drain aks-userpool1-vmss000001",
      "kubectl drain aks-userpool1-vmss000002",
      "az nodepool delete userpool1",
    ]);
    expect(r.stderr).toContain("stopping after wave 1");
    expect(r.state.pools.azlpool).toBeDefined();
  });

  test("a failing az lookup stops the script before any change", () => {
    const s = initialState();
    s.failOn = "nodepool list";
    const r = runWithStubs(join(dir, "rollout.sh"), [], stateFile(s));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("error: az aks nodepool list failed for cluster clustername1");
    expect(changingCalls(r.calls)).toEqual([]);
  });

  test("a node image AKS does not offer yet stops before upgrading", () => {
    const s = initialState();
    s.latest = "AKSAzureContainerLinux-202611.10.0";
    s.pools = { systempool: s.pools.systempool!, aclpool: s.pools.aclpool! };
    s.pools.systempool!.osSku = "AzureContainerLinux";
    const r = runWithStubs(join(dir, "rollout.sh"), [], stateFile(s));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("agent pool aclpool: AKS offers node image AKSAzureContainerLinux-202611.10.0 here, the plan expects AKSAzureContainerLinux-202611.24.0");
    expect(changingCalls(r.calls).some((c) => c.includes("upgrade"))).toBe(false);
  });
});

describe("rollback.sh with stub az/kubectl", () => {
  test("after a full rollout, restores every pool in reverse order; a second run changes nothing", () => {
    const f = stateFile(initialState());
    expect(runWithStubs(join(dir, "rollout.sh"), [], f).status).toBe(0);
    const r = runWithStubs(join(dir, "rollback.sh"), [], f);
    expect(r.status, r.stderr).toBe(0);
    const changes = changingCalls(r.calls);
    const puts = changes.filter((c) => c.startsWith("az rest put") || c.startsWith("az nodepool delete"));
    expect(puts).toEqual([
      "az rest put systempool",
      "az nodepool delete systempooacl",
      "az rest put aclpool",
      "az rest put spotpool",
      "az nodepool delete spotpoolacl",
      "az rest put azlpool",
      "az nodepool delete azlpoolacl",
      "az rest put userpool1",
      "az nodepool delete userpool1acl",
    ]);
    const original = initialState().pools;
    const pools = r.state.pools;
    expect(Object.keys(pools).sort()).toEqual(Object.keys(original).sort());
    for (const name of Object.keys(original)) {
      expect([name, pools[name]!.osSku, pools[name]!.mode, pools[name]!.count, pools[name]!.enableAutoScaling]).toEqual([
        name,
        original[name]!.osSku,
        original[name]!.mode,
        original[name]!.count,
        original[name]!.enableAutoScaling,
      ]);
    }
    expect(pools.aclpool!.nodeImageVersion).toBe(OLD_ACL);
    expect(r.state.bodies!.aclpool).toMatchObject({ nodeImageVersion: OLD_ACL, osSKU: "AzureContainerLinux" });

    const again = runWithStubs(join(dir, "rollback.sh"), [], f);
    expect(again.status, again.stderr).toBe(0);
    expect(changingCalls(again.calls)).toEqual([]);
  }, 300_000);

  test("mid-rollout: the old pool still exists, so it is uncordoned and autoscaling comes back", () => {
    const s = initialState();
    // azlpool's replacement exists, the old pool is cordoned with its autoscaler off
    s.pools.azlpoolacl = { ...s.pools.azlpool!, osSku: "AzureContainerLinux", nodeImageVersion: TARGET, enableAutoScaling: true };
    s.pools.azlpool!.enableAutoScaling = false;
    s.cordoned = nodes("azlpool", 4);
    const r = runWithStubs(join(dir, "rollback.sh"), [], stateFile(s));
    expect(r.status, r.stderr).toBe(0);
    const changes = changingCalls(r.calls);
    expect(changes.filter((c) => c.includes("azlpool"))).toEqual([
      ...nodes("azlpool", 4).map((n) => `kubectl uncordon ${n}`),
      "az nodepool update azlpool --enable-cluster-autoscaler",
      ...nodes("azlpoolacl", 4).map((n) => `kubectl cordon ${n}`),
      `kubectl drain ${nodes("azlpoolacl", 4).slice(0, 2).join(" ")}`,
      `kubectl drain ${nodes("azlpoolacl", 4).slice(2).join(" ")}`,
      "az nodepool delete azlpoolacl",
    ]);
    expect(r.state.pools.azlpool!.enableAutoScaling).toBe(true);
    // azlpool's nodes are schedulable again; azlpoolacl's went with the pool
    expect(r.state.cordoned).toEqual([]);
    // pools the rollout never reached are left alone
    expect(changes.some((c) => c.includes("userpool1"))).toBe(false);
  });
});

test("plan.json in the folder is the plan the scripts were made from", () => {
  const plan = readJson(join(dir, "plan.json"));
  expect(plan.waves.map((w: { pools: string[] }) => w.pools)).toEqual([["userpool1"], ["azlpool", "spotpool", "aclpool"], ["systempool"]]);
});

describe("in-place OS SKU updates (--in-place-sku-update)", () => {
  test("rollout updates the Azure Linux pools in place; rollback puts their SKU back", async () => {
    const inPlace = join(tmp(), "plan");
    await aksPlan({ clusterFile: join(FIXTURES, "cluster-rest.json"), imageDir: IMAGE_ACL, outDir: inPlace, inPlaceSkuUpdate: true });
    const f = stateFile(initialState());
    const r = runWithStubs(join(inPlace, "rollout.sh"), [], f);
    expect(r.status, r.stderr).toBe(0);
    const changes = changingCalls(r.calls);
    // azlpool (wave 2) and the System pool (wave 3) are updated in place, nothing else touches them
    expect(changes.filter((c) => /azlpool|systempool/.test(c))).toEqual([
      "az nodepool update azlpool --os-sku AzureContainerLinux",
      "az nodepool update systempool --os-sku AzureContainerLinux",
    ]);
    expect(changes.indexOf("az nodepool update azlpool --os-sku AzureContainerLinux")).toBeLessThan(changes.indexOf("az nodepool upgrade aclpool --node-image-only"));
    expect(r.state.pools.systempool).toMatchObject({ osSku: "AzureContainerLinux", nodeImageVersion: TARGET, mode: "System" });
    expect(r.state.pools.azlpool).toMatchObject({ osSku: "AzureContainerLinux", enableAutoScaling: true });

    const back = runWithStubs(join(inPlace, "rollback.sh"), [], f);
    expect(back.status, back.stderr).toBe(0);
    expect(changingCalls(back.calls).filter((c) => c.includes("--os-sku"))).toEqual([
      "az nodepool update systempool --os-sku AzureLinux",
      "az nodepool update azlpool --os-sku AzureLinux",
    ]);
    expect(back.state.pools.systempool!.osSku).toBe("AzureLinux");
    expect(back.state.pools.azlpool!.osSku).toBe("AzureLinux");
  }, 300_000);
});
