/**
 * TPM PCR prediction for a UKI (pure, bytes in, hex out).
 *
 * systemd-stub 252 measures the "payload" sections of the UKI it runs from
 * into PCR 11, in a fixed order (the order of its unified-section table, not
 * the order in the file): for each present section, first the section name
 * with its trailing NUL, then the section's bytes (VirtualSize of them).
 * `.pcrsig` is never measured (it holds signatures of these very values).
 * A PCR starts as zeros and each event extends it:
 * PCR = H(PCR || H(event)). Signing a UKI appends an Authenticode table
 * outside every section, so a signed and an unsigned UKI predict the same.
 *
 * systemd-pcrphase (systemd images only, and only when the TPM2 libraries
 * are present) extends PCR 11 later with the boot phase words, without NUL.
 */
import { createHash } from "node:crypto";
import { PeFormatError, peSections, type PeSection } from "./pe.js";

/** systemd 252's measured UKI sections, in measurement order (src/fundamental/tpm-pcr.h). */
export const STUB_MEASURED_SECTIONS = [".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey"] as const;

/** The PCR systemd-stub measures the UKI into. */
export const UKI_PCR = 11;

/** Phases systemd-pcrphase measures after a boot through a non-systemd initramfs (sysinit, then ready). */
export const BOOTED_PHASES = ["sysinit", "ready"] as const;

export type PcrBank = "sha256";

const H = (b: Uint8Array) => createHash("sha256").update(b).digest();

/** One extend: H(pcr || H(data)) for data, or H(pcr || digest) when the event digest is given. */
export function pcrExtend(pcr: Uint8Array, event: { data: Uint8Array } | { digest: Uint8Array }): Buffer {
  const d = "digest" in event ? event.digest : H(event.data);
  if (pcr.length !== 32 || d.length !== 32) throw new RangeError("sha256 PCR values and digests are 32 bytes");
  return createHash("sha256").update(pcr).update(d).digest();
}

export interface MeasuredEvent {
  section: string;
  /** "name": the section name with its NUL; "data": the section's bytes. */
  what: "name" | "data";
  sha256: string;
}

/** The events systemd-stub logs for these sections (name → bytes), in order. */
export function stubEvents(sections: ReadonlyMap<string, Uint8Array>): MeasuredEvent[] {
  const out: MeasuredEvent[] = [];
  for (const name of STUB_MEASURED_SECTIONS) {
    const data = sections.get(name);
    if (!data || data.length === 0) continue; // the stub skips absent (size 0) sections
    out.push({ section: name, what: "name", sha256: H(Buffer.from(name + "\0", "latin1")).toString("hex") });
    out.push({ section: name, what: "data", sha256: H(data).toString("hex") });
  }
  return out;
}

/** PCR 11 after the stub measured these sections, from all-zero. */
export function predictPcr11(sections: ReadonlyMap<string, Uint8Array>): string {
  let pcr: Buffer = Buffer.alloc(32);
  for (const e of stubEvents(sections)) pcr = pcrExtend(pcr, { digest: Buffer.from(e.sha256, "hex") });
  return pcr.toString("hex");
}

/** The measured sections of a UKI's bytes: VirtualSize bytes, as the stub reads them from the loaded image. */
export function ukiMeasuredSections(pe: Uint8Array): Map<string, Uint8Array> {
  const m = new Map<string, Uint8Array>();
  const all = peSections(pe);
  for (const name of STUB_MEASURED_SECTIONS) {
    const s = all.find((x: PeSection) => x.name === name);
    if (!s) continue;
    m.set(name, loadedSection(pe, s));
  }
  return m;
}

/** A section as the firmware loads it: its raw bytes, zero-filled (or cut) to VirtualSize. */
function loadedSection(pe: Uint8Array, s: PeSection): Uint8Array {
  const size = s.virtualSize || s.rawSize;
  if (s.rawOffset + Math.min(size, s.rawSize) > pe.length) throw new PeFormatError(`PE section ${s.name} runs past the end of the file`);
  const raw = pe.subarray(s.rawOffset, s.rawOffset + Math.min(size, s.rawSize));
  if (raw.length === size) return raw;
  const out = new Uint8Array(size);
  out.set(raw);
  return out;
}

/** PCR 11 predicted for a UKI's bytes. */
export function predictUkiPcr11(pe: Uint8Array): string {
  return predictPcr11(ukiMeasuredSections(pe));
}

/** Extend a PCR value with systemd-pcrphase words (each measured as its bytes, no NUL). */
export function extendPhases(pcrHex: string, phases: readonly string[]): string {
  let pcr: Buffer = Buffer.from(pcrHex, "hex");
  for (const p of phases) pcr = pcrExtend(pcr, { data: Buffer.from(p, "utf8") });
  return pcr.toString("hex");
}
