import { afterAll, describe, expect, test } from "vitest";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { loadCluster, parseCluster, type ClusterModel } from "../../src/config/aks-cluster.js";
import { planMigration, type PlanImage } from "../../src/services/aks/planner.js";
import { AksPlan } from "../../src/services/aks/plan-schema.js";
import { UserError } from "../../src/errors.js";
import { FIXTURES, independentAgentPoolValidator, readJson, tmp, writablePoolProperties, cleanupTmp } from "./helpers.js";

afterAll(cleanupTmp);

const ACL_IMAGE: PlanImage = {
  name: "container-host",
  version: "2026.11.24",
  aks: { osSku: "AzureContainerLinux", nodeImageVersion: "AKSAzureContainerLinux-202611.24.0", minKubernetesVersion: "1.34" },
};

const restCluster = () => loadCluster(join(FIXTURES, "cluster-rest.json"));

/** The REST fixture with its pools changed by `edit` (pool name → properties patch). */
function clusterWith(edit: Record<string, Record<string, unknown>>, top: Record<string, unknown> = {}): ClusterModel {
  const c = readJson(join(FIXTURES, "cluster-rest.json"));
  for (const p of c.properties.agentPoolProfiles) Object.assign(p, edit[p.name] ?? {});
  Object.assign(c.properties, top);
  return parseCluster(c, "cluster.json");
}

function errorOf(f: () => unknown): UserError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return e as UserError;
  }
  throw new Error("expected a UserError");
}

describe("strategies, waves and surge on the mixed cluster", async () => {
  const { plan, bodies } = planMigration(await restCluster(), ACL_IMAGE);
  const pool = (n: string) => plan.pools.find((p) => p.name === n)!;

  test("plan.json schema holds", () => {
    expect(AksPlan.parse(plan)).toEqual(plan);
  });

  test("one strategy per pool, with reasons", () => {
    expect(Object.fromEntries(plan.pools.map((p) => [p.name, p.action]))).toEqual({
      systempool: "blue-green",
      userpool1: "blue-green",
      azlpool: "blue-green",
      spotpool: "blue-green",
      win1: "leave-windows",
      aclpool: "node-image-upgrade",
    });
    expect(pool("userpool1").reasons[0]).toMatch(/no in-place OS SKU update from Ubuntu to AzureContainerLinux/);
    expect(pool("azlpool").reasons[0]).toMatch(/node-image rollback cannot revert an OS SKU change/);
    expect(pool("win1").reasons[0]).toMatch(/Windows pool/);
    expect(pool("aclpool").reasons[0]).toMatch(/AKSAzureContainerLinux-202610\.01\.0 → AKSAzureContainerLinux-202611\.24\.0/);
    expect(pool("systempool").newPoolName).toBe("systempooacl");
    expect(pool("userpool1").newPoolName).toBe("userpool1acl");
  });

  test("canary first, user pools by size, system pools last", () => {
    expect(plan.waves.map((w) => [w.kind, w.pools])).toEqual([
      ["canary", ["userpool1"]],
      ["user", ["azlpool", "spotpool", "aclpool"]],
      ["system", ["systempool"]],
    ]);
    expect(plan.options.canary).toBe("userpool1");
    expect(pool("win1").wave).toBeNull();
  });

  test("surge arithmetic: percent rounded up, counts, maxUnavailable, batches", () => {
    const s = (n: string) => {
      const x = pool(n).surge!;
      return [x.maxSurge, x.surgeNodes, x.unavailableNodes, x.batchSize, x.batches, x.drainTimeoutMinutes, x.soakMinutes];
    };
    expect(s("systempool")).toEqual(["33%", 1, 0, 1, 3, 30, 0]); // ceil(0.33 × 3) = 1
    expect(s("azlpool")).toEqual(["2", 2, 0, 2, 2, 20, 0]);
    expect(s("spotpool")).toEqual(["50%", 3, 1, 4, 2, 45, 5]); // ceil(2.5) = 3, + 1 unavailable
    expect(s("aclpool")).toEqual(["10%", 1, 0, 1, 10, 30, 0]); // default 10% of 10
    expect(pool("win1").surge).toBeNull();
  });

  test("time estimates add up per wave and in total", () => {
    // node-image upgrade of aclpool: 10 batches × (5 surge + 3 drain + 0 soak + 2 remove)
    expect(pool("aclpool").estimateMinutes).toEqual({ typical: 100, worstCase: 370 });
    // blue/green spotpool: 8 create + 2 batches × (3 + 5 soak) + 5 delete; worst 2 × (45 + 5)
    expect(pool("spotpool").estimateMinutes).toEqual({ typical: 29, worstCase: 113 });
    const sum = plan.waves.reduce((a, w) => a + w.estimateMinutes.typical, 0);
    expect(plan.estimateMinutes.typical).toBe(sum);
    expect(plan.waves[1]!.estimateMinutes.typical).toBe(
      ["azlpool", "spotpool", "aclpool"].reduce((a, n) => a + pool(n).estimateMinutes.typical, 0),
    );
    expect(plan.peakExtraNodes).toBe(5);
  });

  test("every PUT body validates against the 2026-08-01 AgentPool schema and has only writable fields", () => {
    const validate = independentAgentPoolValidator();
    const writable = writablePoolProperties();
    expect([...bodies.keys()].sort()).toEqual([
      "agentpools/aclpool.json",
      "agentpools/aclpool.rollback.json",
      "agentpools/azlpool.rollback.json",
      "agentpools/azlpoolacl.json",
      "agentpools/spotpool.rollback.json",
      "agentpools/spotpoolacl.json",
      "agentpools/systempooacl.json",
      "agentpools/systempool.rollback.json",
      "agentpools/userpool1.rollback.json",
      "agentpools/userpool1acl.json",
    ]);
    for (const [path, body] of bodies) {
      const ok = validate(body);
      expect({ path, errors: validate.errors ?? null }).toEqual({ path, errors: null });
      expect(ok).toBe(true);
      for (const k of Object.keys((body as { properties: object }).properties)) expect(writable.has(k), `${path}: ${k}`).toBe(true);
    }
  });

  test("bodies: target SKU with Trusted Launch forward, original SKU back, node-image rollback version", () => {
    const props = (p: string) => (bodies.get(p) as { properties: Record<string, any> }).properties;
    expect(props("agentpools/userpool1acl.json")).toMatchObject({
      osSKU: "AzureContainerLinux",
      mode: "User",
      count: 3,
      securityProfile: { enableSecureBoot: true, enableVTPM: true },
    });
    expect(props("agentpools/systempooacl.json").mode).toBe("System");
    expect(props("agentpools/azlpoolacl.json")).toMatchObject({ enableAutoScaling: true, minCount: 2, maxCount: 10, kubeletConfig: { cpuManagerPolicy: "static" } });
    expect(props("agentpools/spotpoolacl.json")).toMatchObject({ scaleSetPriority: "Spot", nodeTaints: ["Key1=Value1:NoSchedule"], nodeLabels: { key1: "val1" } });
    expect(props("agentpools/userpool1.rollback.json").osSKU).toBe("Ubuntu");
    expect(props("agentpools/userpool1.rollback.json").securityProfile).toBeUndefined();
    expect(props("agentpools/aclpool.rollback.json").nodeImageVersion).toBe("AKSAzureContainerLinux-202610.01.0");
    expect(props("agentpools/aclpool.json").nodeImageVersion).toBeUndefined();
    for (const b of bodies.values()) expect((b as { properties: object }).properties).not.toHaveProperty("powerState");
  });
});

describe("options", () => {
  test("--in-place-sku-update moves Azure Linux pools in place, Ubuntu still blue/green", async () => {
    const { plan } = planMigration(await restCluster(), ACL_IMAGE, { inPlaceSkuUpdate: true });
    const a = Object.fromEntries(plan.pools.map((p) => [p.name, p.action]));
    expect(a).toMatchObject({ systempool: "os-sku-update", azlpool: "os-sku-update", userpool1: "blue-green", spotpool: "blue-green" });
    const sys = plan.pools.find((p) => p.name === "systempool")!;
    expect(sys.peakExtraNodes).toBe(1);
    expect(sys.rollback).toMatch(/--os-sku AzureLinux/);
  });

  test("system pools first, chosen canary, one pool per wave", async () => {
    const { plan } = planMigration(await restCluster(), ACL_IMAGE, { systemPools: "first", canary: "aclpool", maxPoolsPerWave: 1 });
    expect(plan.waves.map((w) => `${w.kind}:${w.pools.join("+")}`)).toEqual([
      "canary:aclpool",
      "system:systempool",
      "user:userpool1",
      "user:azlpool",
      "user:spotpool",
    ]);
  });

  test("a pool without Trusted Launch is not moved to ACL in place", async () => {
    const c = clusterWith({ azlpool: { securityProfile: undefined } });
    const { plan } = planMigration(c, ACL_IMAGE, { inPlaceSkuUpdate: true });
    const p = plan.pools.find((x) => x.name === "azlpool")!;
    expect(p.action).toBe("blue-green");
    expect(p.reasons[0]).toMatch(/Trusted Launch/);
  });

  test("an Ubuntu 24.04 image: same SKU upgrades the node image, ACL pool goes blue/green, no ACL rules", async () => {
    const c = clusterWith({}, { autoUpgradeProfile: { nodeOSUpgradeChannel: "SecurityPatch" } });
    const { plan } = planMigration(c, {
      name: "ubuntu-host",
      version: "1.0.0",
      aks: { osSku: "Ubuntu2404", nodeImageVersion: "AKSUbuntu-2404gen2containerd-202611.20.0", minKubernetesVersion: "1.32" },
    });
    const a = Object.fromEntries(plan.pools.map((p) => [p.name, p.action]));
    expect(a).toMatchObject({ spotpool: "node-image-upgrade", aclpool: "blue-green", userpool1: "blue-green", win1: "leave-windows" });
    expect(plan.pools.find((p) => p.name === "aclpool")!.newPoolName).toBe("aclpoolub24");
    expect(plan.pools.find((p) => p.name === "aclpool")!.reasons[0]).toMatch(/no in-place OS SKU update from AzureContainerLinux to Ubuntu2404/);
  });

  test("pools already on the target are left as they are", async () => {
    const c = clusterWith({ aclpool: { nodeImageVersion: ACL_IMAGE.aks.nodeImageVersion } });
    const { plan } = planMigration(c, ACL_IMAGE);
    const p = plan.pools.find((x) => x.name === "aclpool")!;
    expect([p.action, p.wave, p.putBody]).toEqual(["none", null, null]);
    expect(p.reasons[0]).toMatch(/already on AzureContainerLinux/);
  });
});

describe("REST and az shapes give the same plan", () => {
  test("cluster-az.json, pools files in both shapes", async () => {
    const strip = (plan: AksPlan) => plan.pools.map((p) => [p.name, p.action, p.wave, p.surge, p.newPoolName, p.osSku]);
    const rest = planMigration(await restCluster(), ACL_IMAGE).plan;
    const az = planMigration(await loadCluster(join(FIXTURES, "cluster-az.json")), ACL_IMAGE);
    const azPools = planMigration(await loadCluster(join(FIXTURES, "cluster-rest.json"), join(FIXTURES, "pools-az.json")), ACL_IMAGE).plan;
    const restPools = planMigration(await loadCluster(join(FIXTURES, "cluster-az.json"), join(FIXTURES, "pools-rest.json")), ACL_IMAGE).plan;
    expect(strip(az.plan)).toEqual(strip(rest));
    expect(strip(azPools)).toEqual(strip(rest));
    expect(strip(restPools)).toEqual(strip(rest));
    expect(az.plan.cluster).toEqual(rest.cluster);
    // az spellings (osSku, enableVtpm, osDiskSizeGb, linuxOsConfig) land on the REST names in the bodies
    const body = (az.bodies.get("agentpools/azlpoolacl.json") as { properties: Record<string, any> }).properties;
    expect(body).toMatchObject({ osSKU: "AzureContainerLinux", osDiskSizeGB: 128, linuxOSConfig: { swapFileSizeMB: 1500 } });
    const validate = independentAgentPoolValidator();
    for (const [path, b] of az.bodies) expect([path, validate(b), validate.errors ?? null]).toEqual([path, true, null]);
  });

  test("unknown extra fields are kept in raw and ignored", async () => {
    const c = await loadCluster(join(FIXTURES, "cluster-az.json"), join(FIXTURES, "pools-az.json"));
    const p = c.pools.find((x) => x.name === "systempool")!;
    expect(p.raw.etag).toBe("2f0c6e2a-0000-0000-0000-000000000000");
    expect(p.vtpm).toBe(true);
  });
});

describe("bad input is a UserError naming the pool and the rule", () => {
  test("unknown OS SKU in the image", async () => {
    const e = errorOf(() => planMigration(clusterWith({}), { ...ACL_IMAGE, aks: { ...ACL_IMAGE.aks, osSku: "Flatcar" } }));
    expect(e.message).toMatch(/aks\.osSku 'Flatcar'.*rule: known-os-sku/);
  });

  test("unknown OS SKU on a pool", () => {
    const e = errorOf(() => planMigration(clusterWith({ azlpool: { osSKU: "Debian12" } }), ACL_IMAGE));
    expect(e.message).toMatch(/agent pool 'azlpool': osSKU 'Debian12'.*rule: known-os-sku/);
  });

  test("cluster too old for Azure Container Linux", () => {
    const e = errorOf(() =>
      planMigration(clusterWith({ userpool1: { orchestratorVersion: "1.33.4", currentOrchestratorVersion: "1.33.4" } }), ACL_IMAGE),
    );
    expect(e.message).toMatch(/agent pool 'userpool1' runs Kubernetes 1\.33\.4; Azure Container Linux needs Kubernetes >= 1\.34 \(rule: min-kubernetes-version\)/);
    expect(e.hint).toMatch(/az aks upgrade/);
  });

  test("the image's own minimum counts too", () => {
    const e = errorOf(() => planMigration(clusterWith({}), { ...ACL_IMAGE, aks: { ...ACL_IMAGE.aks, minKubernetesVersion: "1.35" } }));
    expect(e.message).toMatch(/needs Kubernetes >= 1\.35 \(rule: min-kubernetes-version\)/);
  });

  test("node OS upgrade channel must be NodeImage or None", () => {
    const e = errorOf(() => planMigration(clusterWith({}, { autoUpgradeProfile: { nodeOSUpgradeChannel: "SecurityPatch" } }), ACL_IMAGE));
    expect(e.message).toMatch(/agent pool '.*'.*'SecurityPatch'; it must be NodeImage or None \(rule: node-os-upgrade-channel\)/);
  });

  test("a plan that would leave no System pool with ready nodes", () => {
    const c = clusterWith({ systempool: { count: 1, upgradeSettings: { maxSurge: "0", maxUnavailable: "1" } } });
    const e = errorOf(() => planMigration(c, ACL_IMAGE, { inPlaceSkuUpdate: true }));
    expect(e.message).toMatch(/agent pool 'systempool': the os-sku-update takes up to 1 of its 1 node\(s\) out.*rule: keep-system-pool/);
    // blue/green keeps the old System pool until the new one is ready: allowed
    expect(planMigration(c, ACL_IMAGE).plan.pools.find((p) => p.name === "systempool")!.action).toBe("blue-green");
  });

  test("no System pool ready before the rollout", () => {
    const e = errorOf(() => planMigration(clusterWith({ systempool: { powerState: { code: "Stopped" } } }), ACL_IMAGE));
    expect(e.message).toMatch(/no System pool has ready nodes.*'systempool': 3 nodes, Stopped.*rule: keep-system-pool/);
  });

  test("maxSurge and maxUnavailable both zero", () => {
    const e = errorOf(() => planMigration(clusterWith({ azlpool: { upgradeSettings: { maxSurge: "0%", maxUnavailable: "0" } } }), ACL_IMAGE));
    expect(e.message).toMatch(/agent pool 'azlpool'.*rule: surge-or-unavailable/);
  });

  test("malformed surge value", () => {
    const e = errorOf(() => planMigration(clusterWith({ spotpool: { upgradeSettings: { maxSurge: "half" } } }), ACL_IMAGE));
    expect(e.message).toMatch(/agent pool 'spotpool': upgradeSettings\.maxSurge 'half'.*rule: surge-format/);
  });

  test("a missing required field names the pool and the field", () => {
    const e = errorOf(() => clusterWith({ spotpool: { mode: undefined } }));
    expect(e.message).toMatch(/agent pool 'spotpool': field 'mode' is required but missing/);
    const e2 = errorOf(() => clusterWith({ azlpool: { vmSize: undefined } }));
    expect(e2.message).toMatch(/agent pool 'azlpool': field 'vmSize' is required but missing/);
  });

  test("unknown canary", async () => {
    const e = errorOf(() => planMigration(clusterWith({}), ACL_IMAGE, { canary: "win1" }));
    expect(e.message).toMatch(/--canary 'win1'.*rule: canary-must-change/);
  });

  test("malformed JSON file names the file", async () => {
    const f = join(tmp(), "cluster.json");
    writeFileSync(f, '{"name": "c", ');
    await expect(loadCluster(f)).rejects.toThrow(new RegExp(`${f} is not valid JSON`));
  });

  test("a pools file that is not a list", async () => {
    const f = join(tmp(), "pools.json");
    writeFileSync(f, JSON.stringify({ name: "x" }));
    await expect(loadCluster(join(FIXTURES, "cluster-rest.json"), f)).rejects.toThrow(/expected a JSON array of agent pools/);
  });
});
