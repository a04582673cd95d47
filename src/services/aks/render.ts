/**
 * plan.md: the human review copy of plan.json. Pure.
 */
import type { AksPlan } from "./plan-schema.js";

function mins(m: number): string {
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min`;
}

function cell(s: string | number | null | undefined): string {
  return String(s ?? "–").replace(/\|/g, "\\|");
}

export function renderPlanMarkdown(plan: AksPlan): string {
  const c = plan.cluster;
  const out: string[] = [];
  out.push(`# AKS node-pool migration plan: ${c.name}`, "");
  out.push(
    `Image **${plan.image.name} ${plan.image.version}**: OS SKU \`${plan.image.osSku}\`, node image \`${plan.image.nodeImageVersion}\`, ` +
      `needs Kubernetes ≥ ${plan.image.minKubernetesVersion}.`,
  );
  out.push(
    `Cluster \`${c.name}\` in resource group \`${c.resourceGroup}\`${c.subscriptionId ? ` (subscription \`${c.subscriptionId}\`)` : ""}: ` +
      `Kubernetes ${c.kubernetesVersion}, node OS upgrade channel ${c.nodeOSUpgradeChannel}. API version ${plan.apiVersion}.`,
    "",
  );
  out.push(
    `Estimated time: about **${mins(plan.estimateMinutes.typical)}**, at most ${mins(plan.estimateMinutes.worstCase)} ` +
      `if every drain runs to its timeout. Peak extra nodes in one step: ${plan.peakExtraNodes}.`,
    "",
  );
  out.push(
    `Options: System pools ${plan.options.systemPools}, canary ${plan.options.canary ? `\`${plan.options.canary}\`` : "none"}, ` +
      `in-place OS SKU updates ${plan.options.inPlaceSkuUpdate ? "allowed" : "not used (blue/green keeps a way back)"}, ` +
      `at most ${plan.options.maxPoolsPerWave} pools per wave.`,
    "",
  );

  out.push("## Pools", "");
  out.push("| pool | mode | nodes | OS SKU | → | action | wave |", "|---|---|---|---|---|---|---|");
  for (const p of plan.pools) {
    const nodes = p.autoscaling ? `${p.count} (autoscale ${p.autoscaling.minCount ?? "?"}–${p.autoscaling.maxCount ?? "?"})` : String(p.count);
    const action = p.action === "blue-green" ? `blue-green → \`${p.newPoolName}\`` : p.action;
    out.push(
      `| \`${p.name}\`${p.canary ? " (canary)" : ""} | ${p.mode} | ${cell(nodes)} | ${cell(p.osSku)} | ${cell(p.targetOsSku)} | ${cell(action)} | ${cell(p.wave)} |`,
    );
  }
  out.push("");
  for (const p of plan.pools) {
    out.push(`### \`${p.name}\`: ${p.action}`, "");
    for (const r of p.reasons) out.push(`- ${r}`);
    if (p.surge) {
      const s = p.surge;
      out.push(
        `- surge: maxSurge ${s.maxSurge} → ${s.surgeNodes} node(s), maxUnavailable ${s.maxUnavailable} → ${s.unavailableNodes}; ` +
          `${s.batchSize} node(s) per batch, ${s.batches} batch(es); drain timeout ${s.drainTimeoutMinutes} min, soak ${s.soakMinutes} min` +
          (s.undrainableNodeBehavior ? `, undrainable nodes: ${s.undrainableNodeBehavior}` : ""),
      );
      out.push(`- time: about ${mins(p.estimateMinutes.typical)}, at most ${mins(p.estimateMinutes.worstCase)}; extra nodes at peak: ${p.peakExtraNodes}`);
    }
    if (p.putBody) out.push(`- PUT body: \`${p.putBody}\``);
    if (p.action !== "none" && p.action !== "leave-windows") out.push(`- rollback: ${p.rollback}`);
    out.push("");
  }

  out.push("## Waves", "");
  if (!plan.waves.length) out.push("Nothing to roll out: every pool is already on the target or left alone.", "");
  for (const w of plan.waves) {
    out.push(
      `${w.index}. **${w.kind}**: ${w.pools.map((n) => `\`${n}\``).join(", ")} (about ${mins(w.estimateMinutes.typical)}, at most ${mins(w.estimateMinutes.worstCase)})`,
    );
  }
  out.push("");
  out.push(
    "Pools in a wave run one after another; after each wave the scripts check that a System pool has Ready nodes. ",
    "`./rollout.sh --dry-run` shows every change without making it; `./rollout.sh --waves 1` stops after the first wave.",
    "",
  );
  if (plan.notes.length) {
    out.push("## Notes", "");
    for (const n of plan.notes) out.push(`- ${n}`);
    out.push("");
  }
  return out.join("\n");
}
