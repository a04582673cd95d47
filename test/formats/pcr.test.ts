import { execa } from "execa";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { extendPhases, pcrExtend, predictPcr11, stubEvents, STUB_MEASURED_SECTIONS } from "../../src/formats/pcr.js";

const MEASURE = "/lib/systemd/systemd-measure";
const sha = (s: string | Uint8Array) => createHash("sha256").update(s).digest();

/** systemd 252's own prediction for section files (`--phase=` means: right after the stub, no phase words). */
async function systemdMeasure(dir: string, sections: Map<string, Uint8Array>, phase = ""): Promise<string> {
  const args = ["calculate", "--bank=sha256", `--phase=${phase}`, "--json=short"];
  for (const [name, data] of sections) {
    const f = join(dir, name.slice(1));
    await writeFile(f, data);
    args.push(`--${name.slice(1)}=${f}`);
  }
  const r = await execa(MEASURE, args);
  const j = JSON.parse(r.stdout) as { sha256: { pcr: number; hash: string }[] };
  expect(j.sha256).toHaveLength(1);
  expect(j.sha256[0]!.pcr).toBe(11);
  return j.sha256[0]!.hash;
}

const sample = () =>
  new Map<string, Uint8Array>([
    [".linux", Buffer.from("kernel")],
    [".osrel", Buffer.from("ID=x\n")],
    [".cmdline", Buffer.from("quiet\0")],
  ]);

describe("PCR 11 prediction (systemd-stub 252)", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "acl-pcr-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("extends as H(pcr || H(event)) from zeros", () => {
    const once = pcrExtend(Buffer.alloc(32), { data: Buffer.from("x") });
    expect(once.toString("hex")).toBe(createHash("sha256").update(Buffer.alloc(32)).update(sha("x")).digest("hex"));
    expect(() => pcrExtend(Buffer.alloc(20), { digest: Buffer.alloc(32) })).toThrow(RangeError);
  });

  it("golden values, as systemd 252's systemd-measure printed them for these section files", () => {
    expect(predictPcr11(sample())).toBe("eac46b61c6a714ad4ad89e23027f57300cc0886ed66aedfe8cbd34d58e0b8caa");
    expect(predictPcr11(new Map([[".linux", Buffer.from("kernel")]]))).toBe("ff4d55cd85724de92ab538c82df0dd57ae0b5281e088a1a64df159f33c343702");
    expect(extendPhases(predictPcr11(sample()), ["sysinit", "ready"])).toBe("ef434998010e85e2b348c3e408955722f3b05570165779dbd824a677a246c5e0");
  });

  it("measures the name with its NUL, then the bytes, in the stub's order whatever the map's order; skips empty sections", () => {
    const shuffled = new Map([...sample()].reverse());
    shuffled.set(".splash", new Uint8Array(0));
    expect(predictPcr11(shuffled)).toBe(predictPcr11(sample()));
    const ev = stubEvents(shuffled);
    expect(ev.map((e) => `${e.section}:${e.what}`)).toEqual([".linux:name", ".linux:data", ".osrel:name", ".osrel:data", ".cmdline:name", ".cmdline:data"]);
    expect(ev[0]!.sha256).toBe(sha(".linux\0").toString("hex"));
    expect(ev[1]!.sha256).toBe(sha("kernel").toString("hex"));
  });

  it("ignores sections the stub does not measure (.pcrsig, .sbat, .text)", () => {
    const m = sample();
    m.set(".pcrsig", Buffer.from("{}"));
    m.set(".sbat", Buffer.from("sbat,1\n"));
    expect(predictPcr11(m)).toBe(predictPcr11(sample()));
    expect(STUB_MEASURED_SECTIONS).not.toContain(".pcrsig");
  });

  const cases: [string, () => Map<string, Uint8Array>, string][] = [
    ["three small sections", sample, ""],
    ["every measured section", () => new Map(STUB_MEASURED_SECTIONS.map((n, i) => [n, Buffer.from(`${n} content ${i}\n`.repeat(i + 1))])), ""],
    ["a 1 MiB random kernel and an initrd", () => new Map([[".linux", Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => (i * 2654435761) >>> 24))], [".initrd", Buffer.from("initrd")]]), ""],
    ["with the booted phases", sample, "sysinit:ready"],
  ];
  it.each(cases)("%s: agrees with systemd-measure calculate", async (_n, make, phase) => {
    const m = make();
    const ours = phase ? extendPhases(predictPcr11(m), phase.split(":")) : predictPcr11(m);
    expect(ours).toBe(await systemdMeasure(dir, m, phase));
  });
});
