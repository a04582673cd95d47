/**
 * The A/B scenario judge, pure: splitting a console into boots, which slot
 * each ran and what it did, and what the disk must hold afterwards.
 */
import { describe, expect, it } from "vitest";
import { judgeDisk, parseAbBoots } from "../../src/services/boot-test-ab.js";
import type { SlotState } from "../../src/formats/gpt.js";

const uuids = { A: "7130C94A-213A-4E5A-8E26-6CCE9662F132", B: "E03DD35C-7C2D-4A47-B3FE-27F15780A57C" };
const lines = (t: string) => t.split("\n").map((text) => ({ text }));
const st = (p: number, t: number, s: boolean): SlotState => ({ priority: p, tries: t, successful: s });

describe("parseAbBoots", () => {
  it("splits at each kernel start and reads slot, verity failures, health and blessing", () => {
    const boots = parseAbBoots(lines(`BdsDxe: loading Boot0001
[    0.000000] Linux version 6.1.0-57-cloud-amd64
acl-init: usr slot /dev/vda4 (PARTUUID=e03dd35c-7c2d-4a47-b3fe-27f15780a57c)
[    3.36] device-mapper: verity: 254:4: data block 0 is corrupted
[    0.000000] Linux version 6.1.0-57-cloud-amd64
acl-init: usr slot /dev/vda4 (PARTUUID=e03dd35c-7c2d-4a47-b3fe-27f15780a57c)
acl-ab: health check failed: 50-always-fails: rebooting without blessing this boot
acl-ab: gpt in step: USR-B acl-B+0-2.efi (running), USR-A acl-A.efi (good)
[    0.000000] Linux version 6.1.0-57-cloud-amd64
acl-init: usr slot /dev/vda3 (PARTUUID=7130c94a-213a-4e5a-8e26-6cce9662f132)
[   16.3] acl-ab[322]: acl-ab: gpt in step: USR-A acl-A.efi (running), USR-B acl-B+0-2.efi (bad)`), uuids);
    expect(boots).toEqual([
      { slot: "B", verityCorrupted: true },
      { slot: "B", verityCorrupted: false, healthFailed: "50-always-fails" },
      { slot: "A", verityCorrupted: false, blessed: "acl-A.efi" },
    ]);
  });

  it("a busybox bless line counts, and firmware text before the first kernel is not a boot", () => {
    const boots = parseAbBoots(lines(`OVMF
[    0.0] Linux version 6.1
acl-init: usr slot /dev/vda4 (PARTUUID=E03DD35C-7C2D-4A47-B3FE-27F15780A57C)
acl-ab: blessed acl-B.efi (was acl-B+2-1.efi)`), uuids);
    expect(boots).toEqual([{ slot: "B", verityCorrupted: false, blessed: "acl-B.efi" }]);
  });
});

describe("judgeDisk", () => {
  const entries = (a: string, b: string) => [
    { file: a, slot: "A" as const, state: a.includes("+") ? ("bad" as const) : ("good" as const), size: 1, done: 2 },
    { file: b, slot: "B" as const, state: b.includes("+0-") ? ("bad" as const) : ("good" as const), size: 1, done: 2 },
  ];
  it("accepts a blessed update and a recorded rollback", () => {
    const e = entries("acl-A.efi", "acl-B.efi");
    expect(judgeDisk({ entries: e, next: e[1], slots: { A: { gpt: st(1, 0, true) }, B: { gpt: st(2, 0, true) } } as never, disagreements: [] }, { boots: "B" })).toEqual([]);
    const r = entries("acl-A.efi", "acl-B+0-2.efi");
    expect(judgeDisk({ entries: r, next: r[0], slots: { A: { gpt: st(1, 0, true) }, B: { gpt: st(0, 0, false) } } as never, disagreements: [] }, { boots: "A", bad: "B", tries: 2 })).toEqual([]);
  });

  it("names each thing that is wrong", () => {
    const r = entries("acl-A.efi", "acl-B+0-2.efi");
    const problems = judgeDisk({ entries: r, next: r[1], slots: { A: { gpt: st(1, 0, true) }, B: { gpt: st(2, 3, false) } } as never, disagreements: ["USR-B: GPT says …"] }, { boots: "A", bad: "B", tries: 3 });
    expect(problems).toEqual([
      "systemd-boot would boot acl-B+0-2.efi, expected slot A",
      "slot B's entry is acl-B+0-2.efi, expected bad after 3 tries (+0-3)",
      "GPT of slot B is 2/3/0, expected 0/0/0 (bad)",
      "ESP and GPT disagree: USR-B: GPT says …",
    ]);
  });
});
