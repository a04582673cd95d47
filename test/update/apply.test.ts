/**
 * `acl update apply` on real disks built by acl (minimal 1.0.0 and 1.1.0,
 * signed with a test key): what it writes is read back by tools we did not
 * write (cgpt, bootctl on a copy of the ESP, sgdisk, veritysetup), every
 * refusal leaves the disk's bytes unchanged, and an apply stopped before any
 * of its writes leaves the old slot booting and can be run again.
 */
import { execa } from "execa";
import { mkdtemp, readFile, rm, truncate, writeFile, copyFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signBytes } from "../../src/formats/signature.js";
import { sha256File } from "../../src/util/hash.js";
import { decodeUpdateHeader, encodeSignatureBlock, encodeUpdateHeader, type UpdateMetadata } from "../../src/formats/update-payload.js";
import { applyUpdate, type ApplyStep } from "../../src/services/update/apply.js";
import { readBootState } from "../../src/services/update/state.js";
import { loadPrivateKey } from "../../src/stages/release/sign.js";
import { acl } from "../helpers/cli.js";
import { abImage, testSigningKeys } from "../helpers/images.js";
import { bootctlEntries, cgpt } from "../boot/helpers/ab.js";

let v1: string;
let v2: string;
let keys: { key: string; pub: string };
let tmp: string;
const payload = (out: string, version: string) => join(out, `minimal-${version}.update`);

beforeAll(async () => {
  keys = await testSigningKeys();
  v1 = await abImage("1.0.0");
  v2 = await abImage("1.1.0");
  tmp = await mkdtemp(join(tmpdir(), "acl-update-"));
}, 20 * 60_000);
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

let n = 0;
async function freshDisk(from = v1): Promise<string> {
  const d = join(tmp, `disk-${n++}.raw`);
  await execa("cp", ["--sparse=always", join(from, "disk.raw"), d]);
  return d;
}

const sha = async (f: string) => (await sha256File(f)).sha256;

/** A copy of `src` whose header fields are changed and signed again with the test key: a genuine payload of another image. */
async function resigned(src: string, change: Partial<UpdateMetadata>): Promise<string> {
  const bytes = await readFile(src);
  const { meta, dataOffset } = decodeUpdateHeader(bytes);
  const { sections, signatureOffset: _s, format: _f, ...rest } = { ...meta, ...change };
  const { header, meta: m } = encodeUpdateHeader(rest, sections.map(({ offset: _o, ...s }) => s));
  expect(header.length).toBe(dataOffset);
  const signer = await loadPrivateKey(keys.key);
  const out = join(tmp, `resigned-${n++}.update`);
  await writeFile(out, Buffer.concat([header, bytes.subarray(dataOffset, m.signatureOffset), encodeSignatureBlock({ algorithm: signer.type, keyId: signer.keyId, signature: signBytes(signer.key, header).toString("base64") })]));
  return out;
}

describe("acl update apply", () => {
  it("writes slot B, installs its UKI with 3 tries, and cgpt, bootctl, sgdisk and veritysetup agree", async () => {
    const disk = await freshDisk();
    const r = await acl(["update", "apply", disk, payload(v2, "1.1.0"), "--key", keys.pub, "--json"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout) as { slot: string; entry: string; next: { entry: string; slot: string }; from: { slot: string } };
    expect(res).toMatchObject({ slot: "B", entry: "acl-B+3-0.efi", next: { entry: "acl-B+3-0.efi", slot: "B" }, from: { slot: "A" } });
    // Flatcar's bits after an update: new slot priority above the old, tries, not yet successful
    expect(await cgpt(disk, 4)).toBe("2/3/0");
    expect(await cgpt(disk, 3)).toBe("1/0/1");
    const bc = await bootctlEntries(disk, tmp);
    expect(bc.map((e) => e.file)).toEqual(["acl-B+3-0.efi", "acl-A.efi"]);
    expect(bc[0]).toMatchObject({ isDefault: true, tries: "3 left; 0 done" });
    const st = await readBootState(disk);
    expect(st.entries.map((e) => e.file)).toEqual(bc.map((e) => e.file));
    expect(st.disagreements).toEqual([]);
    expect((await execa("sgdisk", ["-v", disk])).stdout).toMatch(/No problems found/);
    // the slot as written, checked by veritysetup against the root hash in the 1.1.0 manifest
    const m = JSON.parse(await readFile(join(v2, "manifest.json"), "utf8")) as { verity: { rootHash: string; hashOffset: number } };
    const slot = join(tmp, "slot-b.img");
    const size = st.slots.B.sizeBytes;
    await execa("dd", [`if=${disk}`, `of=${slot}`, "bs=1M", `skip=${st.slots.B.offset / 1048576}`, `count=${size / 1048576}`, "status=none"]);
    const v = await execa("veritysetup", ["verify", slot, slot, m.verity.rootHash, `--hash-offset=${m.verity.hashOffset}`], { reject: false });
    expect(v.exitCode, v.stderr).toBe(0);
    await rm(slot);
    // acl inspect names the same next entry and no disagreement
    const ins = JSON.parse((await acl(["inspect", disk, "--json"])).stdout) as { bootEntries: { next: string; disagreements: string[] } };
    expect(ins.bootEntries).toMatchObject({ next: "acl-B+3-0.efi", disagreements: [] });
  });

  it("refuses bad payloads and leaves every byte of the disk as it was", async () => {
    const disk = await freshDisk();
    const before = await sha(disk);
    const good = payload(v2, "1.1.0");
    const bytes = await readFile(good);
    const { meta } = decodeUpdateHeader(bytes);
    const usr = meta.sections.find((s) => s.name === "usr")!;
    const flipped = join(tmp, "flipped.update");
    const b = Buffer.from(bytes);
    b[usr.offset + 5000] ^= 0x01;
    await writeFile(flipped, b);
    const flippedHeader = join(tmp, "flipped-header.update");
    const h = Buffer.from(bytes);
    h[100] ^= 0x01;
    await writeFile(flippedHeader, h);
    const cut = join(tmp, "truncated.update");
    await copyFile(good, cut);
    await truncate(cut, bytes.length - 4096 * 3);
    const otherKeys = await mkdtemp(join(tmp, "other-key-"));
    expect((await acl(["keys", "generate", "--out", otherKeys])).exitCode).toBe(0);
    const cases: [string, string[], RegExp][] = [
      ["wrong key", [disk, good, "--key", join(otherKeys, "acl-signing.pub")], /signed by key .* not by the trusted key/],
      ["one flipped byte in /usr", [disk, flipped, "--key", keys.pub], /section usr .* has sha256/],
      ["one flipped byte in the header", [disk, flippedHeader, "--key", keys.pub], /signature does not verify|metadata/],
      ["truncated", [disk, cut, "--key", keys.pub], /truncated|wrong length|not signed/],
      ["the installed version", [disk, payload(v1, "1.0.0"), "--key", keys.pub], /1\.0\.0 is already installed/],
      ["another image", [disk, await resigned(good, { name: "other-image" }), "--key", keys.pub], /for image 'other-image', the disk runs 'minimal'/],
      ["a higher microarch", [disk, await resigned(good, { microarch: "x86-64-v4" }), "--key", keys.pub], /needs x86-64-v4, the installed image needs only x86-64-v3/],
      ["a newer minimum version", [disk, await resigned(good, { minVersion: "1.0.5" }), "--key", keys.pub], /updates only from 1\.0\.5 or later/],
      ["a qcow2 disk", [join(v1, "disk.qcow2"), good, "--key", keys.pub], /is a qcow2 image/],
    ];
    for (const [what, args, re] of cases) {
      const r = await acl(["update", "apply", ...args]);
      expect(r.exitCode, `${what}: ${r.stderr}`).toBe(1);
      expect(r.stderr, what).toMatch(re);
      expect(r.stderr, what).not.toMatch(/\n\s+at /);
    }
    expect(await sha(disk)).toBe(before);
  });

  it("refuses a downgrade unless allowed; allowed, the newer entry is ranked below it and stays the fallback", async () => {
    const disk = await freshDisk(v2);
    const before = await sha(disk);
    const r = await acl(["update", "apply", disk, payload(v1, "1.0.0"), "--key", keys.pub]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/1\.0\.0 is older than the installed 1\.1\.0/);
    expect(r.stderr).toMatch(/--allow-downgrade/);
    expect(await sha(disk)).toBe(before);
    const ok = await acl(["update", "apply", disk, payload(v1, "1.0.0"), "--key", keys.pub, "--allow-downgrade", "--tries", "2"]);
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/boots next: acl-B\+2-0\.efi \(slot B, 1\.0\.0\)/);
    const bc = await bootctlEntries(disk, tmp);
    expect(bc.map((e) => e.file)).toEqual(["acl-B+2-0.efi", "acl-A+0-0.efi"]);
    expect(bc[0]!.isDefault).toBe(true);
    expect(await cgpt(disk, 4)).toBe("2/2/0");
    expect(await cgpt(disk, 3)).toBe("1/0/1");
    expect((await readBootState(disk)).disagreements).toEqual([]);
  });

  it("stopped before any write step, the old slot still boots and the next apply succeeds", async () => {
    const steps: ApplyStep[] = ["clear-gpt", "remove-old-entry", "write-slot", "copy-entry", "install-entry", "set-gpt"];
    for (const stop of steps) {
      const disk = await freshDisk();
      await expect(applyUpdate({ disk, payload: payload(v2, "1.1.0"), key: keys.pub, onStep: (s) => { if (s === stop) throw new Error(`stopped at ${s}`); } })).rejects.toThrow(`stopped at ${stop}`);
      const st = await readBootState(disk);
      // systemd-boot's choice: slot A until the rename that installs B's entry has happened
      const installed = stop === "set-gpt";
      expect(st.next?.slot, stop).toBe(installed ? "B" : "A");
      expect((await bootctlEntries(disk, tmp)).find((e) => e.isDefault)?.file, stop).toBe(installed ? "acl-B+3-0.efi" : "acl-A.efi");
      // stopped after the rename, the GPT bits lag behind the ESP, and inspect says so
      if (installed) expect(st.disagreements.join("\n"), stop).toMatch(/USR-B: GPT says priority 0, tries 0, successful 0; the ESP \(acl-B\+3-0\.efi\) means priority 2, tries 3/);
      else expect(st.disagreements, stop).toEqual([]);
      const again = await applyUpdate({ disk, payload: payload(v2, "1.1.0"), key: keys.pub });
      expect(again.next, stop).toMatchObject({ entry: "acl-B+3-0.efi", slot: "B" });
      expect((await readBootState(disk)).disagreements, stop).toEqual([]);
      await rm(disk);
    }
  });
});

describe("acl update verify", () => {
  it("prints the payload's sections and key; refuses an unsigned payload", async () => {
    const r = await acl(["update", "verify", payload(v2, "1.1.0"), "--key", keys.pub]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ok: .*minimal 1\.1\.0 \(x86-64-v3\)/);
    expect(r.stdout).toMatch(/uki-A .*\n.*uki-B .*\n.*usr /);
    const bytes = await readFile(payload(v2, "1.1.0"));
    const unsigned = join(tmp, "unsigned.update");
    await writeFile(unsigned, bytes.subarray(0, decodeUpdateHeader(bytes).meta.signatureOffset));
    const u = await acl(["update", "verify", unsigned, "--key", keys.pub]);
    expect(u.exitCode).toBe(1);
    expect(u.stderr).toMatch(/it is not signed/);
    expect(u.stderr).toMatch(/--sign-key/);
  });
});
