/**
 * `acl aks plan` and `acl azure publish-plan` through the built CLI
 * (`tsc -p .`, then ./bin/acl), as a user runs them: success with --json,
 * and each kind of bad input (exit code, message naming pool and rule, and
 * no output folder left behind).
 */
import { afterAll, describe, expect, test } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AksPlan } from "../../src/services/aks/plan-schema.js";
import { FIXTURES, IMAGE_ACL, imageWith, readJson, ROOT, tmp, cleanupTmp } from "./helpers.js";

afterAll(cleanupTmp);

const ACL = join(ROOT, "bin", "acl");

function acl(args: string[]) {
  const r = spawnSync(ACL, args, { cwd: ROOT, encoding: "utf8", env: { ...process.env, ACL_DEBUG: "" } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}


/** The REST fixture cluster with pool properties patched, written to a temp file. */
function clusterFile(edit: Record<string, Record<string, unknown>> = {}, top: Record<string, unknown> = {}): string {
  const c = readJson(join(FIXTURES, "cluster-rest.json"));
  for (const p of c.properties.agentPoolProfiles) Object.assign(p, edit[p.name] ?? {});
  Object.assign(c.properties, top);
  const f = join(tmp(), "cluster.json");
  writeFileSync(f, JSON.stringify(c));
  return f;
}

/** Runs a failing plan and checks: non-zero exit, JSON error naming what it must, nothing left in the parent folder. */
function expectPlanError(args: string[], message: RegExp) {
  const parent = tmp("acl-aks-out-");
  const out = join(parent, "plan");
  const r = acl(["aks", "plan", ...args, "--out", out, "--json"]);
  expect(r.status, r.stderr).not.toBe(0);
  const err = JSON.parse(r.stdout).error;
  expect(err.kind).toBe("UserError");
  expect(err.message).toMatch(message);
  expect(readdirSync(parent)).toEqual([]);
  return err as { message: string; hint?: string };
}

describe("acl aks plan (CLI)", () => {
  test("--json: writes the plan folder and returns the plan", () => {
    const out = join(tmp(), "plan");
    const r = acl(["aks", "plan", "--cluster", join(FIXTURES, "cluster-az.json"), "--pools", join(FIXTURES, "pools-az.json"), "--image", IMAGE_ACL, "--out", out, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.outDir).toBe(out);
    expect(res.files).toEqual([
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
      "plan.json",
      "plan.md",
      "rollback.sh",
      "rollout.sh",
    ]);
    for (const f of res.files) expect(existsSync(join(out, f)), f).toBe(true);
    const plan = AksPlan.parse(readJson(join(out, "plan.json")));
    expect(plan).toEqual(res.plan);
    expect(plan.waves.map((w) => w.kind)).toEqual(["canary", "user", "system"]);
    expect(readFileSync(join(out, "plan.md"), "utf8")).toContain("| `userpool1` (canary) | User | 3 | Ubuntu | AzureContainerLinux | blue-green → `userpool1acl` | 1 |");
    // no temporary folder left beside it
    expect(readdirSync(join(out, ".."))).toEqual(["plan"]);
  });

  test("human output, --system-pools first and --in-place-sku-update", () => {
    const out = join(tmp(), "plan");
    const r = acl(["aks", "plan", "--cluster", join(FIXTURES, "cluster-rest.json"), "--image", IMAGE_ACL, "--out", out, "--system-pools", "first", "--in-place-sku-update"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/systempool\s+System os-sku-update \(wave 2\)/);
    expect(r.stdout).toMatch(/win1\s+User\s+leave-windows/);
    expect(r.stdout).toContain(`Review plan.md, then: ${out}/rollout.sh --dry-run`);
  });

  test("an existing output folder is not replaced without --force", () => {
    const out = join(tmp(), "plan");
    const base = ["aks", "plan", "--cluster", join(FIXTURES, "cluster-rest.json"), "--image", IMAGE_ACL, "--out", out];
    expect(acl(base).status).toBe(0);
    writeFileSync(join(out, "mine.txt"), "keep");
    const again = acl([...base, "--json"]);
    expect(again.status).toBe(1);
    expect(JSON.parse(again.stdout).error.hint).toMatch(/--force/);
    expect(readFileSync(join(out, "mine.txt"), "utf8")).toBe("keep");
    expect(acl([...base, "--force"]).status).toBe(0);
    expect(existsSync(join(out, "mine.txt"))).toBe(false);
  });

  test("unknown OS SKU on a pool", () => {
    expectPlanError(["--cluster", clusterFile({ spotpool: { osSKU: "Debian12" } }), "--image", IMAGE_ACL], /agent pool 'spotpool': osSKU 'Debian12'.*rule: known-os-sku/);
  });

  test("unknown OS SKU in the image's aks section", () => {
    const img = imageWith({ osSku: "Flatcar", nodeImageVersion: "x", minKubernetesVersion: "1.34" });
    expectPlanError(["--cluster", join(FIXTURES, "cluster-rest.json"), "--image", img], /aks\.osSku 'Flatcar'.*rule: known-os-sku/);
  });

  test("cluster too old", () => {
    const old = { orchestratorVersion: "1.33.5", currentOrchestratorVersion: "1.33.5" };
    const err = expectPlanError(
      ["--cluster", clusterFile({ systempool: old, userpool1: old, azlpool: old, spotpool: old, aclpool: old, win1: old }, { kubernetesVersion: "1.33.5", currentKubernetesVersion: "1.33.5" }), "--image", IMAGE_ACL],
      /agent pool 'systempool' runs Kubernetes 1\.33\.5; Azure Container Linux needs Kubernetes >= 1\.34 \(rule: min-kubernetes-version\)/,
    );
    expect(err.hint).toContain("az aks upgrade -g rg1 -n clustername1 --kubernetes-version 1.34");
  });

  test("a plan that would leave no System pool", () => {
    expectPlanError(
      ["--cluster", clusterFile({ systempool: { count: 1, upgradeSettings: { maxSurge: "0", maxUnavailable: "1" } } }), "--image", IMAGE_ACL, "--in-place-sku-update"],
      /agent pool 'systempool'.*no other System pool has ready nodes.*rule: keep-system-pool/,
    );
  });

  test("node OS upgrade channel", () => {
    expectPlanError(
      ["--cluster", clusterFile({}, { autoUpgradeProfile: { nodeOSUpgradeChannel: "Unmanaged" } }), "--image", IMAGE_ACL],
      /'Unmanaged'; it must be NodeImage or None \(rule: node-os-upgrade-channel\)/,
    );
  });

  test("malformed cluster file", () => {
    const f = join(tmp(), "cluster.json");
    writeFileSync(f, "{ not json");
    expectPlanError(["--cluster", f, "--image", IMAGE_ACL], new RegExp(`${f} is not valid JSON`));
  });

  test("a pool missing a required field", () => {
    expectPlanError(["--cluster", clusterFile({ azlpool: { count: undefined } }), "--image", IMAGE_ACL], /agent pool 'azlpool': field 'count' is required but missing/);
  });

  test("an image without an aks section", () => {
    expectPlanError(["--cluster", join(FIXTURES, "cluster-rest.json"), "--image", imageWith(undefined)], /has no aks section \(rule: image-aks-section\)/);
  });

  test("human error output on stderr", () => {
    const r = acl(["aks", "plan", "--cluster", clusterFile({ spotpool: { osSKU: "Debian12" } }), "--image", IMAGE_ACL, "--out", join(tmp(), "p")]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^error: agent pool 'spotpool': osSKU 'Debian12'/m);
    expect(r.stderr).toMatch(/^hint: known OS SKUs: Ubuntu, AzureLinux/m);
  });
});

describe("acl azure publish-plan (CLI)", () => {
  const base = ["azure", "publish-plan", IMAGE_ACL, "--gallery", "aclGallery", "--resource-group", "images-rg", "--location", "westeurope"];

  test("--json: template, parameters and publish.sh from the manifest", () => {
    const out = join(tmp(), "pub");
    const r = acl([...base, "--out", out, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res).toMatchObject({ imageDefinition: "container-host", imageVersion: "2026.11.24", blobName: "container-host-2026.11.24.vhd" });
    expect(res.files).toEqual(["README.md", "azuredeploy.json", "azuredeploy.parameters.json", "publish.sh"]);
    const m = readJson(join(IMAGE_ACL, "manifest.json"));
    expect(res.vhd.sha256).toBe(m.artifacts[0].sha256);
  });

  test("a VHD that does not match the manifest is refused, nothing written", () => {
    const img = imageWith({ osSku: "AzureContainerLinux", nodeImageVersion: "AKSAzureContainerLinux-202611.24.0", minKubernetesVersion: "1.34" });
    const vhd = join(img, "disk.vhd");
    const bytes = readFileSync(vhd);
    bytes[4096] = 1;
    writeFileSync(vhd, bytes);
    const parent = tmp();
    const r = acl(["azure", "publish-plan", img, "--gallery", "g1", "--resource-group", "rg", "--location", "westeurope", "--out", join(parent, "pub"), "--json"]);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout).error.message).toMatch(/sha256 [0-9a-f]{64} does not match the manifest's.*rule: artifact-digest/);
    expect(readdirSync(parent)).toEqual([]);
  });

  test("a version that is not MAJOR.MINOR.PATCH needs --image-version", () => {
    const r = acl([...base, "--image-version", "1.0-rc1", "--out", join(tmp(), "pub"), "--json"]);
    expect(r.status).toBe(1);
    const err = JSON.parse(r.stdout).error;
    expect(err.message).toMatch(/image version '1\.0-rc1'.*rule: gallery-version/);
  });
});
