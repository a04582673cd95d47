/**
 * `acl aks plan`: read the build manifest and the cluster JSON, plan, and
 * publish plan.json, plan.md, the PUT bodies, rollout.sh and rollback.sh
 * into one folder (written beside it, then renamed into place).
 */
import { chmod, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { UserError } from "../../errors.js";
import { canonicalJson, readManifest } from "../../pipeline/manifest.js";
import { loadCluster } from "../../config/aks-cluster.js";
import { run } from "../../adapters/exec.js";
import type { Reporter } from "../../output/reporter.js";
import { planMigration, type PlanOptions } from "./planner.js";
import { AksPlan } from "./plan-schema.js";
import { renderPlanMarkdown } from "./render.js";
import { rollbackScript, rolloutScript } from "./scripts.js";
import { makeDir } from "../../util/fs.js";
import { exists } from "../../util/fs.js";

export interface AksPlanOptions extends PlanOptions {
  clusterFile: string;
  poolsFile?: string;
  /** The `acl build` output folder (holds manifest.json). */
  imageDir: string;
  /** Folder to create (default ./aks-plan-CLUSTER). */
  outDir?: string;
  /** Replace an existing output folder. */
  force?: boolean;
  reporter?: Reporter;
}

export interface AksPlanResult {
  outDir: string;
  files: string[];
  plan: AksPlan;
}

export async function aksPlan(o: AksPlanOptions): Promise<AksPlanResult> {
  const manifest = await readManifest(o.imageDir);
  if (!manifest.aks) {
    throw new UserError(`${join(o.imageDir, "manifest.json")}: image '${manifest.name}' has no aks section (rule: image-aks-section)`, {
      file: join(o.imageDir, "manifest.json"),
      hint: "add an [aks] section (os_sku, node_image_version, min_kubernetes_version) to the image spec and rebuild",
    });
  }
  const cluster = await loadCluster(o.clusterFile, o.poolsFile);
  const { plan, bodies } = planMigration(cluster, { name: manifest.name, version: manifest.version, aks: manifest.aks }, o);

  const outDir = resolve(o.outDir ?? `aks-plan-${cluster.name}`);
  if ((await exists(outDir)) && !o.force) {
    throw new UserError(`output folder ${outDir} already exists`, { hint: "pass --force to replace it, or choose another --out" });
  }
  await makeDir(dirname(outDir));
  const tmp = join(dirname(outDir), `.${basename(outDir)}.tmp-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  try {
    await mkdir(join(tmp, "agentpools"), { recursive: true });
    const files = new Map<string, string>();
    files.set("plan.json", canonicalJson(AksPlan.parse(plan)));
    files.set("plan.md", renderPlanMarkdown(plan));
    files.set("rollout.sh", rolloutScript(plan));
    files.set("rollback.sh", rollbackScript(plan));
    for (const [path, body] of bodies) files.set(path, canonicalJson(body));
    for (const [path, text] of files) {
      await writeFile(join(tmp, path), text);
      if (path.endsWith(".sh")) await chmod(join(tmp, path), 0o755);
    }
    for (const s of ["rollout.sh", "rollback.sh"]) {
      await run(["bash", "-n", join(tmp, s)], { hint: "the generated script does not parse: a bug in acl" });
    }
    if (await exists(outDir)) await rm(outDir, { recursive: true, force: true });
    await rename(tmp, outDir);
    o.reporter?.info(`wrote ${files.size} files to ${outDir}`);
    return { outDir, files: [...files.keys()].sort(), plan };
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}
