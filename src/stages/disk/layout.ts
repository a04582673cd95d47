/**
 * The disk layout as data: which partitions, in which order, how large, with
 * which type GUIDs, names, unique GUIDs and A/B attributes. Pure (no I/O);
 * `assembleDisk` (disk.ts) fills the partitions in.
 *
 * In the spirit of Flatcar's UEFI layout:
 *   1 EFI-SYSTEM  FAT32                     C12A7328-F81F-11D2-BA4B-00A0C93EC93B
 *   2 BIOS-BOOT   optional, 2 MiB, empty    21686148-6449-6E6F-744E-656564454649
 *   3 USR-A       /usr image + verity tree  5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6
 *   4 USR-B       empty until an update     5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6
 *   6 OEM         ext4                      0FC63DAF-8483-4772-8E79-3D69D8477DE4
 *   9 ROOT        ext4, last so it can grow 3884DD41-8582-4404-B9A8-E9B84F2DF50E
 * Every partition starts and ends on a 1 MiB boundary; the disk is a whole
 * number of MiB (1 MiB in front for the MBR and primary GPT, 1 MiB behind for
 * the backup GPT), so its fixed VHD has a whole-MiB virtual size as Azure needs.
 *
 * GUIDs. The disk GUID and the GUIDs of EFI-SYSTEM, BIOS-BOOT, OEM and ROOT
 * are derived from name + version (see `deriveGuid`), so two builds of the
 * same version are identical and different versions differ. USR-A and USR-B
 * carry fixed PARTUUIDs (Flatcar's, see USR_A_PARTUUID): the kernel command
 * line of a UKI names its /usr slot by PARTUUID, and an A/B update writes a
 * new version into a slot of a disk made by an older version, so the slot
 * identity must not depend on the version that happened to create the disk.
 */
import { createHash } from "node:crypto";
import { UserError } from "../../errors.js";
import { setSlotState, TYPE_GUIDS, type GptPartition, type GptTable, type SectorSize } from "../../formats/gpt.js";
import { MiB } from "../../util/size.js";


/** Flatcar's fixed PARTUUID of USR-A (`verity.usr=PARTUUID=...`). */
export const USR_A_PARTUUID = "7130C94A-213A-4E5A-8E26-6CCE9662F132";
/** Flatcar's fixed PARTUUID of USR-B. */
export const USR_B_PARTUUID = "E03DD35C-7C2D-4A47-B3FE-27F15780A57C";

export const BIOS_BOOT_MIB = 2;
/** The spec key each size comes from. */
const SPEC_KEYS = { espMiB: "partitions.esp", usrMiB: "partitions.usr", oemMiB: "partitions.oem", rootMiB: "partitions.root" } as const;
/** Free space kept in front of the first partition (MBR + primary GPT) and after the last (backup GPT). */
export const LEAD_MIB = 1;
export const TRAIL_MIB = 1;

export interface DiskSizes {
  espMiB: number;
  usrMiB: number;
  oemMiB: number;
  rootMiB: number;
  biosBoot?: boolean;
}

/**
 * Reference sizes (Flatcar's UKI layout uses a ~192 MiB ESP and 1 GiB slots);
 * image specs choose their own, a CI image much smaller.
 */
export const DEFAULT_DISK_SIZES: Readonly<DiskSizes> = { espMiB: 192, usrMiB: 1024, oemMiB: 128, rootMiB: 512, biosBoot: false };

/** FAT32 with 512-byte clusters needs at least 65525 clusters: ~33 MiB with the FATs. */
export const MIN_ESP_MIB = 34;
/** ext4 with a journal in a few MiB still works; below that mkfs fails. */
export const MIN_EXT4_MIB = 4;

export type PartitionRole = "esp" | "bios-boot" | "usr-a" | "usr-b" | "oem" | "root";
export type PartitionFs = "vfat" | "ext4" | "usr" | "none";

export interface LayoutPartition extends GptPartition {
  role: PartitionRole;
  filesystem: PartitionFs;
  offsetBytes: number;
  sizeBytes: number;
}

export interface DiskLayout {
  sectorSize: SectorSize;
  sizeBytes: number;
  diskGuid: string;
  partitions: LayoutPartition[];
}

/** A/B attributes of a fresh disk: USR-A priority 1, successful, no tries. */
export const FRESH_USR_A_ATTRIBUTES = setSlotState(0n, { priority: 1, tries: 0, successful: true });
export const FRESH_USR_B_ATTRIBUTES = 0n;

/**
 * A name-based GUID: the first 16 bytes of sha256("acl:" + parts joined by
 * NUL), with the RFC 9562 version nibble set to 8 (custom/hash based) and the
 * RFC variant bits. Deterministic, like UUIDv5, but with sha256.
 */
export function deriveGuid(...parts: string[]): string {
  const d = createHash("sha256").update("acl:" + parts.join("\0")).digest().subarray(0, 16);
  d[6] = (d[6]! & 0x0f) | 0x80;
  d[8] = (d[8]! & 0x3f) | 0x80;
  const h = d.toString("hex").toUpperCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

interface Row {
  number: number;
  name: string;
  role: PartitionRole;
  filesystem: PartitionFs;
  typeGuid: string;
  mib: number;
  partGuid: string;
  attributes: bigint;
  sizeKey: string;
}

/** Plan the layout for image `name` at `version`. Sizes are whole MiB. */
export function planDiskLayout(opts: { name: string; version: string; sizes: DiskSizes; sectorSize?: SectorSize }): DiskLayout {
  const { name, version, sizes } = opts;
  const sectorSize = opts.sectorSize ?? 512;
  const checks: [string, number, number][] = [
    ["espMiB", sizes.espMiB, MIN_ESP_MIB],
    ["usrMiB", sizes.usrMiB, 1],
    ["oemMiB", sizes.oemMiB, MIN_EXT4_MIB],
    ["rootMiB", sizes.rootMiB, MIN_EXT4_MIB],
  ];
  for (const [key, v, min] of checks)
    if (!Number.isInteger(v) || v < min)
      throw new UserError(`disk size '${key}' is ${v}; it must be a whole number of MiB, at least ${min}`, {
        hint: `set '${SPEC_KEYS[key as keyof typeof SPEC_KEYS]}' in the image spec to "${min}MiB" or more`,
      });
  const g = (label: string) => deriveGuid("partition", name, version, label);
  const rows: Row[] = [
    { number: 1, name: "EFI-SYSTEM", role: "esp", filesystem: "vfat", typeGuid: TYPE_GUIDS.efiSystem, mib: sizes.espMiB, partGuid: g("EFI-SYSTEM"), attributes: 0n, sizeKey: "espMiB" },
  ];
  if (sizes.biosBoot)
    rows.push({ number: 2, name: "BIOS-BOOT", role: "bios-boot", filesystem: "none", typeGuid: TYPE_GUIDS.biosBoot, mib: BIOS_BOOT_MIB, partGuid: g("BIOS-BOOT"), attributes: 0n, sizeKey: "biosBoot" });
  rows.push(
    { number: 3, name: "USR-A", role: "usr-a", filesystem: "usr", typeGuid: TYPE_GUIDS.coreosUsr, mib: sizes.usrMiB, partGuid: USR_A_PARTUUID, attributes: FRESH_USR_A_ATTRIBUTES, sizeKey: "usrMiB" },
    { number: 4, name: "USR-B", role: "usr-b", filesystem: "none", typeGuid: TYPE_GUIDS.coreosUsr, mib: sizes.usrMiB, partGuid: USR_B_PARTUUID, attributes: FRESH_USR_B_ATTRIBUTES, sizeKey: "usrMiB" },
    { number: 6, name: "OEM", role: "oem", filesystem: "ext4", typeGuid: TYPE_GUIDS.linuxFilesystem, mib: sizes.oemMiB, partGuid: g("OEM"), attributes: 0n, sizeKey: "oemMiB" },
    { number: 9, name: "ROOT", role: "root", filesystem: "ext4", typeGuid: TYPE_GUIDS.coreosResize, mib: sizes.rootMiB, partGuid: g("ROOT"), attributes: 0n, sizeKey: "rootMiB" },
  );
  const perMiB = MiB / sectorSize;
  let mib = LEAD_MIB;
  const partitions: LayoutPartition[] = rows.map((r) => {
    const p: LayoutPartition = {
      number: r.number,
      name: r.name,
      role: r.role,
      filesystem: r.filesystem,
      typeGuid: r.typeGuid,
      partGuid: r.partGuid,
      attributes: r.attributes,
      firstLba: BigInt(mib * perMiB),
      lastLba: BigInt((mib + r.mib) * perMiB - 1),
      offsetBytes: mib * MiB,
      sizeBytes: r.mib * MiB,
    };
    mib += r.mib;
    return p;
  });
  return { sectorSize, sizeBytes: (mib + TRAIL_MIB) * MiB, diskGuid: deriveGuid("disk", name, version), partitions };
}

/** The GPT table of a layout (what encodeGpt takes). */
export function layoutTable(layout: DiskLayout): GptTable {
  return {
    diskGuid: layout.diskGuid,
    partitions: layout.partitions.map(({ number, typeGuid, partGuid, firstLba, lastLba, attributes, name }) => ({
      number, typeGuid, partGuid, firstLba, lastLba, attributes, name,
    })),
  };
}
