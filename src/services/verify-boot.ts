/**
 * The boot chain part of `acl verify`: the UKIs the manifest describes are
 * the ones in the output (slot A's on the raw disk's ESP, both in the update
 * payload), their PCR 11 values are what systemd-stub will measure, and, for
 * a Secure Boot signed build, sbverify accepts every EFI binary with the
 * certificate in secureboot/db.der.
 */
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FatImage } from "../adapters/fat.js";
import type { Slot } from "../formats/boot-entries.js";
import { extendPhases, BOOTED_PHASES, predictUkiPcr11 } from "../formats/pcr.js";
import { decodeUpdateHeader, MAX_METADATA_BYTES, type SectionName } from "../formats/update-payload.js";
import { espOffset, type Manifest } from "../pipeline/manifest.js";
import { ESP_LOADERS, espUkiPath } from "../stages/boot/esp.js";
import { certSha256, sbverify } from "../stages/boot/secureboot.js";
import { readFileRange } from "../util/fs.js";
import { sha256Hex } from "../util/hash.js";

export type AddCheck = (name: string, ok: boolean, detail: string, file?: string) => void;

const SLOTS: readonly Slot[] = ["A", "B"];

/** Add the boot checks for an output whose manifest has `boot` (others have nothing to check). */
export async function verifyBootChain(outDir: string, m: Manifest, add: AddCheck): Promise<void> {
  if (!m.boot) return;
  const boot = m.boot;
  const work = await mkdtemp(join(tmpdir(), "acl-verify-boot-"));
  try {
    // the EFI binaries to check, by where they are
    const binaries: { where: string; file: string; bytes: Buffer; slot?: Slot }[] = [];
    const payload = m.artifacts.find((a) => a.kind === "update-payload");
    if (payload) {
      const path = join(outDir, payload.path);
      try {
        const { meta } = decodeUpdateHeader(await readFileRange(path, 0, Math.min(payload.size, MAX_METADATA_BYTES + 4096)));
        for (const slot of SLOTS) {
          const s = meta.sections.find((x) => x.name === (`uki-${slot}` as SectionName));
          if (!s) {
            add(`uki:${payload.path}:${slot}`, false, `the payload has no uki-${slot} section`, payload.path);
            continue;
          }
          const f = join(work, `payload-uki-${slot}.efi`);
          const bytes = await readFileRange(path, s.offset, s.size);
          await writeFile(f, bytes);
          binaries.push({ where: `${payload.path} uki-${slot}`, file: f, bytes, slot });
        }
      } catch (e) {
        add(`uki:${payload.path}`, false, `cannot read the payload's UKIs: ${(e as Error).message}`, payload.path);
      }
    }
    const raw = m.artifacts.find((a) => a.kind === "disk-raw");
    const esp = espOffset(m);
    if (raw && esp !== undefined) {
      const fat = new FatImage(join(outDir, raw.path), esp);
      const uki = espUkiPath("A");
      for (const e of [...ESP_LOADERS, uki]) {
        try {
          const f = join(work, `esp-${e.replace(/\//g, "_")}`);
          const bytes = await fat.read(e);
          await writeFile(f, bytes);
          binaries.push({ where: `${raw.path} ESP ${e}`, file: f, bytes, slot: e === uki ? "A" : undefined });
        } catch (err) {
          add(`esp:${e}`, false, `${raw.path}: cannot read ${e} from the ESP: ${(err as Error).message.split("\n")[0]}`, raw.path);
        }
      }
    }

    // each UKI is the one the manifest names, and predicts the manifest's PCR 11
    for (const b of binaries.filter((x) => x.slot)) {
      const want = boot.slots[b.slot!];
      const bytes = b.bytes;
      const sha = sha256Hex(bytes);
      if (sha !== want.uki.sha256) {
        add(`uki:${b.where}`, false, `${b.where}: sha256 ${sha}, the manifest's slot ${b.slot} UKI is ${want.uki.sha256}`);
        continue;
      }
      let pcr: string;
      try {
        pcr = predictUkiPcr11(bytes);
      } catch (e) {
        add(`pcr11:${b.where}`, false, `${b.where}: not a readable PE image: ${(e as Error).message}`);
        continue;
      }
      const ready = want.pcr11Ready === undefined || want.pcr11Ready === extendPhases(pcr, BOOTED_PHASES);
      add(
        `pcr11:${b.where}`,
        pcr === want.pcr11 && ready,
        pcr !== want.pcr11
          ? `${b.where}: systemd-stub will measure PCR 11 = ${pcr}, the manifest records ${want.pcr11}`
          : !ready
            ? `${b.where}: the manifest's pcr11Ready ${want.pcr11Ready} is not PCR 11 extended with ${BOOTED_PHASES.join(", ")}`
            : `slot ${b.slot}: PCR 11 ${pcr}`,
      );
    }

    // Secure Boot: the certificate is the one the manifest names, and every binary carries its signature
    const sb = boot.secureBoot;
    if (sb) {
      const certArt = m.artifacts.find((a) => a.kind === "secureboot-cert");
      let cert: X509Certificate | undefined;
      try {
        if (!certArt) throw new Error("the manifest lists no secureboot-cert artifact");
        cert = new X509Certificate(await readFile(join(outDir, certArt.path)));
        const sha = certSha256(cert);
        add("secureboot-cert", sha === sb.certificate.sha256, sha === sb.certificate.sha256 ? `${sb.certificate.subject}, sha256 ${sha}` : `${certArt.path} has sha256 ${sha}, the manifest names ${sb.certificate.sha256}`, certArt.path);
      } catch (e) {
        add("secureboot-cert", false, (e as Error).message, certArt?.path);
      }
      if (cert) {
        for (const b of binaries) {
          const r = await sbverify(b.file, cert, work);
          add(`secureboot:${b.where}`, r.ok, r.ok ? `sbverify --cert: signed by ${sb.certificate.subject}` : `${b.where}: sbverify refuses it: ${r.detail}`);
        }
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
