import { Args, Flags } from "@oclif/core";
import { AclCommand } from "../lib/base-command.js";
import { inspectDisk, type InspectResult } from "../services/inspect.js";
import { formatBytes } from "../util/size.js";

export default class Inspect extends AclCommand<InspectResult> {
  static override summary = "Show a disk's partitions, A/B slots and /usr root hashes";
  static override description =
    "Show a disk image's partitions, GUIDs, A/B slot states, the dm-verity root hash of each /usr slot, and the ESP's boot entries with their counters, the one systemd-boot boots next by its own rule and any disagreement with the GPT bits (raw, qcow2 or VHD)";

  static override examples = ["<%= config.bin %> inspect out/minimal/disk.raw", "<%= config.bin %> inspect out/minimal/disk.vhd --json"];

  static override args = {
    disk: Args.string({ description: "disk image (disk.raw, disk.qcow2 or disk.vhd)", required: true }),
  };

  static override flags = {
    format: Flags.string({ description: "image format (default: detected)", options: ["auto", "raw", "qcow2", "vhd"], default: "auto" }),
  };

  async run(): Promise<InspectResult> {
    const { args, flags } = await this.parse(Inspect);
    const r = await inspectDisk({ path: args.disk, format: flags.format as "auto" | "raw" | "qcow2" | "vhd" });
    if (!this.jsonEnabled()) this.log(render(r));
    return r;
  }
}

const size = formatBytes;

function render(r: InspectResult): string {
  const lines = [
    `Disk ${r.path}: ${r.format}, ${r.sizeBytes / r.sectorSize} sectors, ${size(r.sizeBytes)}`,
    `Sector size (logical): ${r.sectorSize} bytes`,
    `Disk identifier (GUID): ${r.diskGuid}`,
    `First usable sector is ${r.firstUsableLba}, last usable sector is ${r.lastUsableLba}`,
  ];
  if (r.vhd) lines.push(`VHD footer: disk type ${r.vhd.diskType}, size ${r.vhd.currentSize}, UUID ${r.vhd.uniqueId}, creator ${r.vhd.creatorApp}`);
  lines.push("", "Number  Start (sector)    End (sector)  Size        Attributes        Name");
  for (const p of r.partitions)
    lines.push(
      `${String(p.number).padStart(4)}  ${String(p.firstLba).padStart(14)}  ${String(p.lastLba).padStart(14)}  ${size(p.sizeBytes).padEnd(10)}  ${p.attributes}  ${p.label}`,
    );
  lines.push("");
  for (const p of r.partitions) {
    lines.push(`${p.number} ${p.label}: type ${p.typeGuid} (${p.typeName}), PARTUUID ${p.partGuid}`);
    if (p.slot) lines.push(`    slot: priority ${p.slot.priority}, tries ${p.slot.tries}, successful ${p.slot.successful ? "yes" : "no"}`);
    if (p.usr) {
      if (!p.usr.filesystem) lines.push("    content: empty");
      else lines.push(`    content: ${p.usr.filesystem} ${size(p.usr.fsBytes ?? 0)}, ${size(p.usr.usedBytes)} used (${p.usr.percent}%)`);
      if (p.usr.verity) lines.push(`    verity root hash: ${p.usr.verity.rootHash} (hash offset ${p.usr.verity.hashOffset}, salt ${p.usr.verity.salt || "none"})`);
      else if (p.usr.verityProblem) lines.push(`    verity: ${p.usr.verityProblem}`);
      else if (p.usr.filesystem) lines.push("    verity: no superblock found behind the filesystem");
    }
  }
  if (r.bootEntries) {
    lines.push("", "Boot entries (EFI/Linux, in systemd-boot's order):");
    if (!r.bootEntries.entries.length) lines.push("    none");
    for (const e of r.bootEntries.entries) {
      const counter = e.left === undefined ? "" : `, ${e.left} tries left, ${e.done} done`;
      lines.push(`    ${e.file.padEnd(20)} ${e.skipped ? `skipped by systemd-boot: ${e.skipped}` : `${e.state}${counter}${e.slot ? `, slot ${e.slot}` : ""}, version ${e.version ?? "?"}`}`);
    }
    lines.push(`systemd-boot boots next: ${r.bootEntries.next ?? "nothing"}${r.bootEntries.nextSlot ? ` (slot ${r.bootEntries.nextSlot})` : ""}`);
    for (const d of r.bootEntries.disagreements) lines.push(`disagreement: ${d}`);
  }
  lines.push("", r.boot ? `GPT (gptprio) boots next: ${r.boot.number} ${r.boot.label}${r.boot.decrementTries ? " (on trial: one try used)" : ""}` : "GPT (gptprio) boots next: no bootable /usr slot");
  for (const p of r.problems) lines.push(`problem: ${p}`);
  return lines.join("\n");
}
