import { execa } from "execa";
import { describe, expect, it } from "vitest";
import {
  blessedName,
  compareVersions,
  entrySlot,
  entryState,
  nextBootEntry,
  nextTryName,
  orderEntries,
  parseEntryName,
  parseOsRelease,
  slotEntryName,
  slotStatesFor,
  type BootEntry,
} from "../../src/formats/boot-entries.js";
import { chooseSlot, setSlotState, TYPE_GUIDS } from "../../src/formats/gpt.js";

const entry = (file: string, version: string, sortKey = "minimal"): BootEntry => ({ file, version, sortKey });

describe("boot counter in entry names (systemd-boot 252's parser)", () => {
  it.each([
    ["acl-B+3.efi", "acl-B", 3, 0],
    ["acl-B+3-0.efi", "acl-B", 3, 0],
    ["acl-B+0-3.efi", "acl-B", 0, 3],
    ["foo+bar+12-4.efi", "foo+bar", 12, 4],
    ["ACL-A+1-2.EFI", "ACL-A", 1, 2],
  ])("%s has base %s, %i left, %i done", (file, base, left, done) => {
    expect(parseEntryName(file)).toEqual({ base, counter: { left, done } });
  });

  it.each(["acl-A.efi", "acl-A+.efi", "acl-A+x-1.efi", "acl-A+1-.efi", "acl-A-1.efi", "acl-A+1-2-3.efi"])("%s has no counter (good)", (file) => {
    expect(parseEntryName(file).counter).toBeUndefined();
    expect(entryState(file)).toBe("good");
  });

  it("a try renames LEFT-1, DONE+1, and stops at +0 (the series systemd's source comments give)", () => {
    const series = ["acl-B+3.efi"];
    for (let i = 0; i < 4; i++) series.push(nextTryName(series.at(-1)!));
    expect(series).toEqual(["acl-B+3.efi", "acl-B+2-1.efi", "acl-B+1-2.efi", "acl-B+0-3.efi", "acl-B+0-4.efi"]);
    expect(nextTryName("acl-A.efi")).toBe("acl-A.efi");
    expect(blessedName("acl-B+1-2.efi")).toBe("acl-B.efi");
  });

  it("names acl's entries by slot and reads the slot back", () => {
    expect(slotEntryName("A")).toBe("acl-A.efi");
    expect(slotEntryName("B", { left: 3, done: 0 })).toBe("acl-B+3-0.efi");
    expect(entrySlot("acl-B+0-3.efi")).toBe("B");
    expect(entrySlot("acl-a.efi")).toBe("A");
    expect(entrySlot("debian.efi")).toBeUndefined();
    expect(entryState("acl-B+2-1.efi")).toBe("trying");
    expect(entryState("acl-B+0-3.efi")).toBe("bad");
    expect(entryState("acl-A+0-0.efi")).toBe("fallback");
  });
});

describe("compareVersions (systemd's strverscmp_improved)", () => {
  const pairs: [string, string][] = [
    ["1.0.0", "1.1.0"], ["1.9", "1.10"], ["1.0", "1.0.0"], ["1.0~rc1", "1.0"], ["1.0~rc1", "1.0~rc2"],
    ["1.0-1", "1.0.1"], ["1.0^p1", "1.0"], ["1.0a", "1.0"], ["1.0a", "1.0b"], ["001", "1"], ["2024.1", "2023.12"],
    ["1.2.3", "1.2.3"], ["abc", "abcde"], ["1_2", "1.2"], ["v1", "1"], ["1.0+build1", "1.0+build2"], ["10", "9a"],
  ];

  it.each(pairs)("%s vs %s agrees with `systemd-analyze compare-versions`", async (a, b) => {
    const r = await execa("systemd-analyze", ["compare-versions", a, b], { reject: false });
    // systemd 252 exits 12 for a < b, 0 for equal, 11 for a > b (and prints the relation)
    const want = ({ 12: -1, 0: 0, 11: 1 } as Record<number, number>)[r.exitCode ?? -1];
    expect(want, r.stdout).toBeDefined();
    expect(compareVersions(a, b)).toBe(want);
    expect(compareVersions(b, a)).toBe(-want! || 0);
  });
});

describe("entry order (config_entry_compare) and the next boot", () => {
  it("newest version first within one image id; entries without tries left last", () => {
    const a = entry("acl-A.efi", "1.0.0");
    const b = entry("acl-B+3-0.efi", "1.1.0");
    expect(nextBootEntry([a, b])!.file).toBe("acl-B+3-0.efi");
    const bBad = entry("acl-B+0-3.efi", "1.1.0");
    expect(orderEntries([bBad, a]).map((e) => e.file)).toEqual(["acl-A.efi", "acl-B+0-3.efi"]);
  });

  it("among entries with no tries left, the newest still wins (the fallback after a failed downgrade)", () => {
    const demoted = entry("acl-A+0-0.efi", "1.2.0");
    const failed = entry("acl-B+0-3.efi", "1.1.0");
    expect(nextBootEntry([failed, demoted])!.file).toBe("acl-A+0-0.efi");
    expect(nextBootEntry([entry("acl-B+3-0.efi", "1.1.0"), demoted])!.file).toBe("acl-B+3-0.efi");
  });

  it("same version: the higher id first; entries without .osrel are skipped", () => {
    expect(nextBootEntry([entry("acl-A.efi", "1.0.0"), entry("acl-B.efi", "1.0.0")])!.file).toBe("acl-B.efi");
    expect(orderEntries([{ file: "acl-B.efi" }, entry("acl-A.efi", "1.0.0")]).map((e) => e.file)).toEqual(["acl-A.efi"]);
  });

  it("reads .osrel the way the stub writes it", () => {
    expect(parseOsRelease('NAME="acl \\"x\\""\nIMAGE_ID=minimal\n# c\nIMAGE_VERSION=\'1.0\'\n')).toEqual({ NAME: 'acl "x"', IMAGE_ID: "minimal", IMAGE_VERSION: "1.0" });
  });
});

describe("GPT bits in step with the ESP", () => {
  const cases: [string, BootEntry[]][] = [
    ["fresh disk", [entry("acl-A.efi", "1.0.0")]],
    ["update installed", [entry("acl-A.efi", "1.0.0"), entry("acl-B+3-0.efi", "1.1.0")]],
    ["on trial", [entry("acl-A.efi", "1.0.0"), entry("acl-B+1-2.efi", "1.1.0")]],
    ["blessed", [entry("acl-A.efi", "1.0.0"), entry("acl-B.efi", "1.1.0")]],
    ["found bad", [entry("acl-A.efi", "1.0.0"), entry("acl-B+0-3.efi", "1.1.0")]],
    ["downgrade installed", [entry("acl-A+0-0.efi", "1.2.0"), entry("acl-B+3-0.efi", "1.1.0")]],
    ["downgrade failed", [entry("acl-A+0-0.efi", "1.2.0"), entry("acl-B+0-3.efi", "1.1.0")]],
  ];

  it.each(cases)("%s: gptprio chooses the slot systemd-boot boots", (_name, entries) => {
    const states = slotStatesFor(entries);
    const parts = (["A", "B"] as const).map((s, i) => ({ number: 3 + i, typeGuid: TYPE_GUIDS.coreosUsr, attributes: setSlotState(0n, states[s]), slot: s }));
    const choice = chooseSlot(parts);
    expect(choice?.partition.slot).toBe(entrySlot(nextBootEntry(entries)!.file));
  });

  it("writes Flatcar's fresh-disk and new-update bits", () => {
    expect(slotStatesFor([entry("acl-A.efi", "1.0.0")])).toEqual({ A: { priority: 1, tries: 0, successful: true }, B: { priority: 0, tries: 0, successful: false } });
    expect(slotStatesFor([entry("acl-A.efi", "1.0.0"), entry("acl-B+3-0.efi", "1.1.0")]).B).toEqual({ priority: 2, tries: 3, successful: false });
    expect(slotStatesFor([entry("acl-A.efi", "1.0.0"), entry("acl-B+0-3.efi", "1.1.0")])).toEqual({ A: { priority: 1, tries: 0, successful: true }, B: { priority: 0, tries: 0, successful: false } });
  });
});
