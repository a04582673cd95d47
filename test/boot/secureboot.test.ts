/**
 * Trusted Launch end to end on minimal, signed with Debian's OVMF test key
 * (snakeoil): the signatures are checked by sbverify, the PCR 11 predictions
 * by systemd 252's systemd-measure and by a real vTPM (swtpm) under OVMF's
 * Secure Boot firmware, which must also refuse the unsigned image and a UKI
 * with one flipped byte.
 */
import { execa } from "execa";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FatImage } from "../../src/adapters/fat.js";
import { readManifest, type Manifest } from "../../src/pipeline/manifest.js";
import { decodeUpdateHeader } from "../../src/formats/update-payload.js";
import { readFileRange } from "../../src/util/fs.js";
import { sha256File, sha256Hex } from "../../src/util/hash.js";
import { acl } from "../helpers/cli.js";
import { abImage, builtImage, secureBootContainerHost, secureBootMinimal, SNAKEOIL, TEST_OUT, testSigningKeys } from "../helpers/images.js";

const MEASURE = "/lib/systemd/systemd-measure";
const ESP_FILES = ["EFI/BOOT/BOOTX64.EFI", "EFI/systemd/systemd-bootx64.efi", "EFI/Linux/acl-A.efi"];

interface BootRunJson { case: string; expected: string; passed: boolean; reason: string; checks: { name: string; status: string; detail: string }[] }

async function espFiles(out: string, m: Manifest, dir: string): Promise<Record<string, string>> {
  const esp = m.disk!.partitions.find((p) => p.label === "EFI-SYSTEM")!;
  const fat = new FatImage(join(out, "disk.raw"), esp.firstLba * m.disk!.sectorSize);
  const files: Record<string, string> = {};
  for (const f of ESP_FILES) {
    files[f] = join(dir, f.replace(/\//g, "_"));
    await writeFile(files[f], await fat.read(f));
  }
  return files;
}

async function payloadUkis(out: string, m: Manifest, dir: string): Promise<Record<"A" | "B", string>> {
  const p = join(out, m.artifacts.find((a) => a.kind === "update-payload")!.path);
  const { meta } = decodeUpdateHeader(await readFileRange(p, 0, 1 << 20));
  const r = {} as Record<"A" | "B", string>;
  for (const slot of ["A", "B"] as const) {
    const s = meta.sections.find((x) => x.name === `uki-${slot}`)!;
    r[slot] = join(dir, `payload-uki-${slot}.efi`);
    await writeFile(r[slot], await readFileRange(p, s.offset, s.size));
  }
  return r;
}

/** Does `needle` occur in the file? (streamed, with an overlap so a match across chunks is found) */
async function fileContains(file: string, needle: Buffer): Promise<boolean> {
  let tail = Buffer.alloc(0);
  for await (const c of createReadStream(file, { highWaterMark: 8 << 20 })) {
    const b = Buffer.concat([tail, c as Buffer]);
    if (b.includes(needle)) return true;
    tail = b.subarray(Math.max(0, b.length - needle.length + 1));
  }
  return false;
}

async function allFiles(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await allFiles(dir, r)));
    else out.push(r);
  }
  return out.sort();
}

describe("Secure Boot signing and measured boot (minimal, snakeoil test key)", () => {
  let out: string;
  let m: Manifest;
  let work: string;
  let pub: string;
  beforeAll(async () => {
    pub = (await testSigningKeys()).pub;
    out = await secureBootMinimal();
    m = await readManifest(out);
    work = await mkdtemp(join(tmpdir(), "acl-sb-test-"));
  }, 30 * 60_000);
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("signs both systemd-boot copies and every UKI (ESP and payload); sbverify --cert accepts each, and refuses the unsigned build's", async () => {
    expect(m.boot?.secureBoot?.signed).toEqual([...ESP_FILES, "update:uki-A", "update:uki-B"]);
    const cert = new X509Certificate(await readFile(SNAKEOIL.cert));
    expect(m.boot!.secureBoot!.certificate.subject).toBe(cert.subject.replace(/\n/g, ", "));
    const files = { ...(await espFiles(out, m, work)), ...Object.fromEntries(Object.entries(await payloadUkis(out, m, work)).map(([k, v]) => [`payload uki-${k}`, v])) };
    expect(Object.keys(files)).toHaveLength(5);
    for (const [where, f] of Object.entries(files)) {
      const r = await execa("sbverify", ["--cert", SNAKEOIL.cert, f], { reject: false });
      expect(r.exitCode, `${where}: ${r.stderr}`).toBe(0);
      expect(r.stdout + r.stderr).toContain("Signature verification OK");
    }
    // the slot A UKI on the ESP is the manifest's, signed
    expect(sha256Hex(await readFile(files["EFI/Linux/acl-A.efi"]!))).toBe(m.boot!.slots.A.uki.sha256);
    const plain = await builtImage("minimal");
    const pm = await readManifest(plain);
    expect(pm.boot?.secureBoot).toBeUndefined();
    const pd = await mkdtemp(join(work, "plain-"));
    const pf = await espFiles(plain, pm, pd);
    const r = await execa("sbverify", ["--cert", SNAKEOIL.cert, pf["EFI/Linux/acl-A.efi"]!], { reject: false });
    expect(r.exitCode).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/No signature table present|Signature verification failed/);
  }, 5 * 60_000);

  it("writes the db enrollment material: the certificate as DER and an EFI signature list that efitools reads back", async () => {
    const der = await readFile(join(out, "secureboot/db.der"));
    const viaOpenssl = await execa("openssl", ["x509", "-in", SNAKEOIL.cert, "-outform", "DER"], { encoding: "buffer" });
    expect(Buffer.compare(der, Buffer.from(viaOpenssl.stdout as Uint8Array))).toBe(0);
    const d = await mkdtemp(join(work, "esl-"));
    await execa("sig-list-to-certs", [join(out, "secureboot/db.esl"), join(d, "cert")]);
    expect(Buffer.compare(await readFile(join(d, "cert-0.der")), der)).toBe(0);
    expect(m.artifacts.filter((a) => a.path.startsWith("secureboot/")).map((a) => [a.path, a.kind])).toEqual([
      ["secureboot/db.der", "secureboot-cert"],
      ["secureboot/db.esl", "efi-signature-list"],
    ]);
  });

  it("records per slot the PCR 11 value systemd-measure calculate predicts for that UKI's sections", async () => {
    const ukis = await payloadUkis(out, m, work);
    for (const slot of ["A", "B"] as const) {
      const d = await mkdtemp(join(work, `sections-${slot}-`));
      const args = ["calculate", "--bank=sha256", "--phase=", "--json=short"];
      for (const s of ["linux", "osrel", "cmdline", "initrd"]) {
        await execa("objcopy", ["-O", "binary", `--only-section=.${s}`, ukis[slot], join(d, s)]);
        expect((await stat(join(d, s))).size).toBeGreaterThan(0);
        args.push(`--${s}=${join(d, s)}`);
      }
      const r = await execa(MEASURE, args);
      const j = JSON.parse(r.stdout) as { sha256: { pcr: number; hash: string }[] };
      expect(m.boot!.slots[slot].pcr11).toBe(j.sha256[0]!.hash);
    }
    // the slots differ (each UKI names its own /usr partition), and a busybox image has no pcrphase words
    expect(m.boot!.slots.A.pcr11).not.toBe(m.boot!.slots.B.pcr11);
    expect(m.boot!.slots.A.pcr11Ready).toBeUndefined();
  }, 5 * 60_000);

  it("never puts the private key in the output", async () => {
    const key = createPrivateKey({ key: await readFile(SNAKEOIL.key), passphrase: SNAKEOIL.passphrase });
    const der = key.export({ format: "der", type: "pkcs8" });
    const jwk = key.export({ format: "jwk" }) as { d: string; p: string };
    const needles = [der.subarray(der.length - 64), Buffer.from(jwk.p, "base64url").subarray(0, 48), Buffer.from("PRIVATE KEY-----")];
    const files = await allFiles(out);
    expect(files).toContain("secureboot/db.der");
    for (const f of files) for (const n of needles) expect(await fileContains(join(out, f), n), `${f} holds key material`).toBe(false);
  }, 10 * 60_000);

  it("gives the same signed bytes when built again (sbsign under a clock frozen at SOURCE_DATE_EPOCH)", async () => {
    const again = join(TEST_OUT, "minimal-secureboot-again");
    const r = await acl(["build", "images/minimal.toml", "--out", again, "--sign-key", (await testSigningKeys()).key, "--secureboot-key", SNAKEOIL.key, "--secureboot-cert", SNAKEOIL.cert], {
      env: { SOURCE_DATE_EPOCH: "1700000000", ACL_SECUREBOOT_PASSPHRASE: SNAKEOIL.passphrase },
    });
    expect(r.exitCode, r.stderr.slice(-2000)).toBe(0);
    const m2 = await readManifest(again);
    expect(m2.boot).toEqual(m.boot);
    expect(m2.artifacts).toEqual(m.artifacts);
    await rm(again, { recursive: true, force: true });
  }, 20 * 60_000);

  it("acl verify checks every UKI's digest, PCR 11 and Secure Boot signature", async () => {
    const r = await acl(["verify", out, "--key", pub, "--json"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const checks = (JSON.parse(r.stdout) as { checks: { name: string; ok: boolean }[] }).checks.map((c) => c.name);
    expect(checks.filter((c) => c.startsWith("pcr11:"))).toHaveLength(3);
    expect(checks.filter((c) => c.startsWith("secureboot:"))).toHaveLength(5);
    expect(checks).toContain("secureboot-cert");
  }, 5 * 60_000);

  it("boots under enforced Secure Boot with a vTPM whose PCR 11 is the manifest's; the firmware refuses a UKI with one flipped byte", async () => {
    const r = await acl(["boot-test", out, "--json", "--secure-boot", "--tpm", "--case", "boot", "--case", "uki-tamper", "--timeout", "300"], { timeoutMs: 20 * 60_000 });
    const res = JSON.parse(r.stdout) as { runs: BootRunJson[] };
    expect(r.exitCode, res.runs.map((x) => `${x.case}: ${x.reason}`).join("\n") + r.stderr.slice(-2000)).toBe(0);
    const boot = res.runs.find((x) => x.case === "boot")!;
    expect(boot).toMatchObject({ expected: "boot", passed: true });
    expect(boot.checks.find((c) => c.name === "secureboot")?.detail).toBe("Secure boot enabled");
    expect(boot.checks.find((c) => c.name === "pcr11")?.detail.toLowerCase()).toBe(m.boot!.slots.A.pcr11);
    const tamper = res.runs.find((x) => x.case === "uki-tamper")!;
    expect(tamper).toMatchObject({ expected: "refuse-signature", passed: true });
    expect(tamper.reason).toMatch(/Error loading \\EFI\\Linux\\acl-A\.efi: Access Denied/);
  }, 25 * 60_000);

  it("acl update apply refuses an unsigned update on a Secure Boot signed disk (its bytes unchanged); a signed update installs a signed UKI", async () => {
    const disk = join(work, "update-disk.raw");
    await execa("cp", ["--sparse=always", join(out, "disk.raw"), disk]);
    const before = (await sha256File(disk)).sha256;
    const unsigned = await abImage("1.1.0");
    const r = await acl(["update", "apply", disk, join(unsigned, "minimal-1.1.0.update"), "--key", pub]);
    expect(r.exitCode, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/boot loader is Secure Boot signed, but the payload's UKI for slot B is not/);
    expect(r.stderr).toMatch(/--secureboot-key/);
    expect((await sha256File(disk)).sha256).toBe(before);
    const signed = await secureBootMinimal("1.1.0");
    const ok = await acl(["update", "apply", disk, join(signed, "minimal-1.1.0.update"), "--key", pub, "--json"]);
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ slot: "B", entry: "acl-B+3-0.efi" });
    const esp = m.disk!.partitions.find((p) => p.label === "EFI-SYSTEM")!;
    const entry = join(work, "installed-B.efi");
    await writeFile(entry, await new FatImage(disk, esp.firstLba * m.disk!.sectorSize).read("EFI/Linux/acl-B+3-0.efi"));
    const v = await execa("sbverify", ["--cert", SNAKEOIL.cert, entry], { reject: false });
    expect(v.exitCode, v.stderr).toBe(0);
    expect(sha256Hex(await readFile(entry))).toBe((await readManifest(signed)).boot!.slots.B.uki.sha256);
  }, 20 * 60_000);

  it("the firmware refuses the unsigned image before it starts", async () => {
    const plain = await builtImage("minimal");
    const r = await acl(["boot-test", plain, "--json", "--secure-boot", "--case", "boot", "--timeout", "300"], { timeoutMs: 20 * 60_000 });
    const res = JSON.parse(r.stdout) as { runs: BootRunJson[] };
    expect(r.exitCode, res.runs.map((x) => x.reason).join("\n")).toBe(0);
    expect(res.runs).toHaveLength(1);
    expect(res.runs[0]).toMatchObject({ expected: "refuse-signature", passed: true, checks: [] });
    expect(res.runs[0]!.reason).toMatch(/BdsDxe: failed to load .*: Access Denied/);
  }, 25 * 60_000);
});

describe("[secureboot] in the spec, with a KEK and a passphrase file", () => {
  it("signs like the flags do and adds db.auth, the KEK-signed append update of db, whose tail is db.esl", async () => {
    // signed with the test key as secureBootMinimal is, so the images' /usr (and its update key) are the same
    const out = await builtImage("minimal-secureboot-kek", "test/fixtures/specs/secureboot/minimal-kek.toml", { signKey: (await testSigningKeys()).key });
    const m = await readManifest(out);
    expect(m.boot?.secureBoot).toMatchObject({ signed: [...ESP_FILES, "update:uki-A", "update:uki-B"], kek: "C=US, ST=Colorado, L=Fort Collins, O=SnakeOil" });
    expect(m.artifacts.filter((a) => a.path.startsWith("secureboot/")).map((a) => [a.path, a.kind])).toEqual([
      ["secureboot/db.auth", "efi-auth"],
      ["secureboot/db.der", "secureboot-cert"],
      ["secureboot/db.esl", "efi-signature-list"],
    ]);
    const auth = await readFile(join(out, "secureboot/db.auth"));
    const esl = await readFile(join(out, "secureboot/db.esl"));
    expect(Buffer.compare(auth.subarray(auth.length - esl.length), esl)).toBe(0);
    // EFI_TIME at the start: SOURCE_DATE_EPOCH 1700000000 = 2023-11-14 22:13:20 UTC
    expect([auth.readUInt16LE(0), auth[2], auth[3], auth[4], auth[5], auth[6]]).toEqual([2023, 11, 14, 22, 13, 20]);
    // the same signed boot chain as the flags give: the same UKIs and PCR 11
    const byFlags = await readManifest(await secureBootMinimal());
    expect(m.boot!.slots).toEqual(byFlags.boot!.slots);
  }, 20 * 60_000);
});

describe("Secure Boot and measured boot phases (container-host, snakeoil test key)", () => {
  it("boots signed under enforced Secure Boot with a vTPM; systemd-pcrphase measures sysinit and ready, and PCR 11 is the manifest's pcr11Ready", async () => {
    const out = await secureBootContainerHost();
    const m = await readManifest(out);
    expect(m.boot?.secureBoot?.signed).toHaveLength(5);
    // the image carries the TPM2 libraries systemd-pcrphase loads, so the manifest predicts the phase words too
    const { extendPhases } = await import("../../src/formats/pcr.js");
    expect(m.boot!.slots.A.pcr11Ready).toBe(extendPhases(m.boot!.slots.A.pcr11, ["sysinit", "ready"]));
    const r = await acl(["boot-test", out, "--json", "--secure-boot", "--tpm", "--case", "boot", "--timeout", "400"], { timeoutMs: 20 * 60_000 });
    const res = JSON.parse(r.stdout) as { runs: BootRunJson[] };
    expect(r.exitCode, res.runs.map((x) => x.reason).join("\n") + r.stderr.slice(-2000)).toBe(0);
    const run = res.runs[0]!;
    expect(run.checks.find((c) => c.name === "failed-units")?.detail).toBe("none");
    expect(run.checks.find((c) => c.name === "secureboot")?.detail).toBe("Secure boot enabled");
    expect(run.checks.find((c) => c.name === "pcr11")?.detail.toLowerCase()).toBe(m.boot!.slots.A.pcr11Ready);
  }, 40 * 60_000);
});

