/**
 * GPT codec against the real tools: our tables accepted by `sgdisk -v`,
 * `sfdisk --json` and `fdisk -b 4096 -l` with the same partitions, names,
 * GUIDs and attributes; tables written by sgdisk parsed by us.
 */
import { mkdtemp, open, readFile, rm, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireTools, run } from "../../src/adapters/exec.js";
import { chooseSlot, decodeGpt, encodeGpt, formatAttributes, getSlotState, TYPE_GUIDS, type GptTable } from "../../src/formats/gpt.js";
import { layoutTable, planDiskLayout } from "../../src/stages/disk/layout.js";

const MiB = 1024 * 1024;
let dir: string;

beforeAll(async () => {
  await requireTools(["sgdisk", "sfdisk", "fdisk"]);
  dir = await mkdtemp(join(tmpdir(), "acl-gpt-tools-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function writeDisk(path: string, t: GptTable, size: number, ss: 512 | 4096 = 512): Promise<void> {
  const e = encodeGpt(t, size, ss);
  const fh = await open(path, "w");
  await fh.truncate(size);
  await fh.write(e.primary, 0, e.primary.length, 0);
  await fh.write(e.backup, 0, e.backup.length, Number(e.backupOffset));
  await fh.close();
}

/** sfdisk's spelling of an attribute field. */
function sfdiskAttrs(a: bigint): string | undefined {
  const names: string[] = [];
  const bits: number[] = [];
  for (let i = 0; i < 64; i++) {
    if (((a >> BigInt(i)) & 1n) === 0n) continue;
    if (i === 0) names.push("RequiredPartition");
    else if (i === 1) names.push("NoBlockIOProtocol");
    else if (i === 2) names.push("LegacyBIOSBootable");
    else bits.push(i);
  }
  if (bits.length) names.push(`GUID:${bits.join(",")}`);
  return names.length ? names.join(" ") : undefined;
}

/** Fields of `sgdisk -i N`. */
async function sgdiskInfo(path: string, n: number): Promise<{ type: string; guid: string; first: bigint; last: bigint; attrs: string; name: string }> {
  const out = (await run(["sgdisk", "-i", String(n), path])).stdout;
  const m = (re: RegExp) => {
    const r = re.exec(out);
    if (!r) throw new Error(`sgdisk -i ${n}: no match for ${re} in:\n${out}`);
    return r[1]!;
  };
  return {
    type: m(/Partition GUID code: (\S+)/),
    guid: m(/Partition unique GUID: (\S+)/),
    first: BigInt(m(/First sector: (\d+)/)),
    last: BigInt(m(/Last sector: (\d+)/)),
    attrs: m(/Attribute flags: ([0-9A-Fa-f]{16})/).toUpperCase(),
    name: m(/Partition name: '(.*)'/),
  };
}

const table: GptTable = (() => {
  const layout = planDiskLayout({ name: "gpt-tools", version: "1.2.3", sizes: { espMiB: 34, usrMiB: 16, oemMiB: 8, rootMiB: 8, biosBoot: true } });
  const t = layoutTable(layout);
  // one more with a non-ASCII name and attribute bits outside the slot field
  t.partitions.push({
    number: 7,
    typeGuid: TYPE_GUIDS.coreosReserved,
    partGuid: "C0FFEE00-1234-4567-89AB-CDEF01234567",
    firstLba: t.partitions.at(-1)!.lastLba + 1n,
    lastLba: t.partitions.at(-1)!.lastLba + 2048n,
    attributes: 0x9000_0000_0000_0001n,
    name: "Größe-µ",
  });
  return t;
})();
const SIZE = 96 * MiB;

describe("our tables, read by the real tools", () => {
  it("sgdisk -v finds no problems and sgdisk -i sees every field", async () => {
    const p = join(dir, "ours.img");
    await writeDisk(p, table, SIZE);
    const v = await run(["sgdisk", "-v", p]);
    expect(v.stdout).toContain("No problems found");
    const pr = (await run(["sgdisk", "-p", p])).stdout;
    expect(pr).toContain(`Disk identifier (GUID): ${table.diskGuid}`);
    for (const part of table.partitions) {
      const i = await sgdiskInfo(p, part.number);
      expect(i).toEqual({ type: part.typeGuid, guid: part.partGuid, first: part.firstLba, last: part.lastLba, attrs: formatAttributes(part.attributes), name: part.name });
    }
  });

  it("sfdisk --json reports the same partitions, names, GUIDs and attributes", async () => {
    const p = join(dir, "ours-sfdisk.img");
    await writeDisk(p, table, SIZE);
    const j = JSON.parse((await run(["sfdisk", "--json", p])).stdout) as {
      partitiontable: { label: string; id: string; sectorsize: number; firstlba: number; lastlba: number; partitions: { node: string; start: number; size: number; type: string; uuid: string; name?: string; attrs?: string }[] };
    };
    const pt = j.partitiontable;
    expect(pt.label).toBe("gpt");
    expect(pt.id).toBe(table.diskGuid);
    expect(pt.sectorsize).toBe(512);
    expect([pt.firstlba, pt.lastlba]).toEqual([34, SIZE / 512 - 34]);
    const want = [...table.partitions].sort((a, b) => a.number - b.number).map((q) => ({
      node: `${p}${q.number}`,
      start: Number(q.firstLba),
      size: Number(q.lastLba - q.firstLba + 1n),
      type: q.typeGuid,
      uuid: q.partGuid,
      name: q.name,
      ...(sfdiskAttrs(q.attributes) ? { attrs: sfdiskAttrs(q.attributes) } : {}),
    }));
    expect(pt.partitions).toEqual(want);
    expect(pt.partitions.find((q) => q.name === "USR-A")?.attrs).toBe("GUID:48,56");
  });

  it("fdisk -b 4096 lists our 4096-byte-sector table", async () => {
    const p = join(dir, "ours-4k.img");
    const t4: GptTable = {
      diskGuid: "0F0E0D0C-0B0A-4908-8706-050403020100",
      partitions: [
        { number: 1, typeGuid: TYPE_GUIDS.efiSystem, partGuid: "A1A2A3A4-B1B2-4C1C-8D1D-E1E2E3E4E5E6", firstLba: 256n, lastLba: 767n, attributes: 0n, name: "EFI-SYSTEM" },
        { number: 3, typeGuid: TYPE_GUIDS.coreosUsr, partGuid: "7130C94A-213A-4E5A-8E26-6CCE9662F132", firstLba: 768n, lastLba: 1791n, attributes: 0x0101_0000_0000_0000n, name: "USR-A" },
      ],
    };
    await writeDisk(p, t4, 16 * MiB, 4096);
    const out = (await run(["fdisk", "-b", "4096", "-l", "-o", "Device,Start,End,Type-UUID,UUID,Name,Attrs", p])).stdout;
    expect(out).toContain("Disklabel type: gpt");
    expect(out).toContain(`Disk identifier: ${t4.diskGuid}`);
    const rows = out.split("\n").filter((l) => l.startsWith(p));
    expect(rows.map((l) => l.trim().split(/\s+/))).toEqual([
      [`${p}1`, "256", "767", TYPE_GUIDS.efiSystem, "A1A2A3A4-B1B2-4C1C-8D1D-E1E2E3E4E5E6", "EFI-SYSTEM"],
      [`${p}3`, "768", "1791", TYPE_GUIDS.coreosUsr, "7130C94A-213A-4E5A-8E26-6CCE9662F132", "USR-A", "GUID:48,56"],
    ]);
    expect(out).not.toMatch(/corrupt|invalid|mismatch/i);
  });

  it("sgdisk -v complains about a table we damaged, and so do we", async () => {
    const p = join(dir, "damaged.img");
    await writeDisk(p, table, SIZE);
    const fh = await open(p, "r+");
    await fh.write(Buffer.from([0x42]), 0, 1, SIZE - 512 + 60); // backup header's disk GUID
    await fh.close();
    const v = await run(["sgdisk", "-v", p], { okCodes: [0, 2, 3, 4, 5, 6, 7, 8] });
    // sgdisk warns and then verifies the copy it kept, as we do
    expect(v.stdout + v.stderr).toMatch(/corrupt GPT/);
    const d = decodeGpt(await readFile(p));
    expect(d.problems.join("\n")).toMatch(/backup GPT header: CRC32/);
  });
});

describe("tables written by sgdisk, read by us", () => {
  it("parses partitions, names, GUIDs and attributes exactly as sgdisk reports them", async () => {
    const p = join(dir, "sgdisk.img");
    await truncate(p, 0).catch(() => undefined);
    const fh = await open(p, "w");
    await fh.truncate(48 * MiB);
    await fh.close();
    await run([
      "sgdisk",
      "-n", "1:0:+8M", "-t", "1:EF00", "-c", "1:EFI-SYSTEM",
      "-n", "2:0:+1M", "-t", "2:EF02", "-c", "2:BIOS-BOOT",
      "-n", "3:0:+12M", "-t", `3:${TYPE_GUIDS.coreosUsr}`, "-c", "3:USR-A", "-A", "3:set:48", "-A", "3:set:56",
      "-n", "4:0:+12M", "-t", `4:${TYPE_GUIDS.coreosUsr}`, "-c", "4:USR-B", "-A", "4:set:49", "-A", "4:set:52",
      "-n", "9:0:0", "-t", "9:8300", "-c", "9:Dätä ROOT", "-A", "9:set:2", "-A", "9:set:63",
      p,
    ]);
    const d = decodeGpt(await readFile(p));
    expect(d.problems).toEqual([]);
    expect(d.partitions.map((q) => q.number)).toEqual([1, 2, 3, 4, 9]);
    const pr = (await run(["sgdisk", "-p", p])).stdout;
    expect(pr).toContain(`Disk identifier (GUID): ${d.diskGuid}`);
    for (const q of d.partitions) {
      const i = await sgdiskInfo(p, q.number);
      expect({ type: q.typeGuid, guid: q.partGuid, first: q.firstLba, last: q.lastLba, attrs: formatAttributes(q.attributes), name: q.name }).toEqual(i);
    }
    // sgdisk's random GUIDs are version 4
    expect(d.diskGuid).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-/);
    // USR-B was set to priority 2, one try: the next boot tries it and uses the try up
    const c = chooseSlot(d.partitions)!;
    expect(c.partition.name).toBe("USR-B");
    expect(c.decrementTries).toBe(true);
    expect(getSlotState(c.nextAttributes)).toEqual({ priority: 2, tries: 0, successful: false });
  });

  it("reads our disk after sgdisk changed a slot's attributes in place", async () => {
    const p = join(dir, "ours-then-sgdisk.img");
    await writeDisk(p, table, SIZE);
    await run(["sgdisk", "-A", "4:set:49", "-A", "4:set:52", "-A", "3:clear:56", p]);
    const d = decodeGpt(await readFile(p));
    expect(d.problems).toEqual([]);
    const slots = Object.fromEntries(d.partitions.filter((q) => q.typeGuid === TYPE_GUIDS.coreosUsr).map((q) => [q.name, getSlotState(q.attributes)]));
    expect(slots).toEqual({ "USR-A": { priority: 1, tries: 0, successful: false }, "USR-B": { priority: 2, tries: 1, successful: false } });
    // everything else is untouched: encoding what we read gives sgdisk's bytes back
    const bytes = await readFile(p);
    const e = encodeGpt(d, SIZE, 512);
    expect(e.primary.equals(bytes.subarray(0, e.primary.length))).toBe(true);
    expect(e.backup.equals(bytes.subarray(Number(e.backupOffset)))).toBe(true);
  });
});
