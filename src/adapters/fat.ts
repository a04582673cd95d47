/**
 * Files on a FAT partition inside a disk image, without mounting: mtools
 * addresses the partition as `IMAGE@@OFFSET`. Used for the ESP's boot
 * entries by `acl update apply` and `acl inspect`.
 */
import { run, runBytes, tools, type Requirement } from "./exec.js";

export const FAT_REQUIREMENTS: readonly Requirement[] = tools("mdir", "mcopy", "mren", "mdel");

export interface FatFile {
  name: string;
  size: number;
}

/** A FAT file system at byte `offset` of `image`. Paths are relative to its root, with '/'. */
export class FatImage {
  constructor(
    readonly image: string,
    readonly offset: number,
  ) {}

  private get drive(): string {
    return `${this.image}@@${this.offset}`;
  }

  private env(epoch?: number): Record<string, string> {
    // mtools refuses some images (odd geometry) unless told not to check; we read what mkfs.vfat made
    return { MTOOLS_SKIP_CHECK: "1", MTOOLS_NO_VFAT: "0", ...(epoch === undefined ? {} : { SOURCE_DATE_EPOCH: String(epoch) }) };
  }

  /** Files (not folders) directly in `dir`, with sizes; empty when the folder does not exist. */
  async list(dir: string): Promise<FatFile[]> {
    const r = await run(["mdir", "-a", "-i", this.drive, `::/${dir}`], { env: this.env(), okCodes: [0, 1] });
    if (r.exitCode !== 0) return [];
    const out: FatFile[] = [];
    // "ACL-A~1  EFI  30547968 2023-11-14  22:13  acl-A.efi": size, date, time, then the long name when there is one
    for (const line of r.stdout.split("\n")) {
      const m = /^(\S+)\s+(\S*)\s+(\d+)\s+\d{4}-\d\d-\d\d\s+\d+:\d\d\s*(.*)$/.exec(line);
      if (!m) continue;
      const long = m[4]!.trim();
      const name = long || (m[2] ? `${m[1]}.${m[2]}` : m[1]!);
      out.push({ name, size: Number(m[3]) });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Free bytes (from mdir's summary line). */
  async freeBytes(): Promise<number> {
    const r = await run(["mdir", "-i", this.drive, "::/"], { env: this.env() });
    const m = /([\d ]+) bytes free/.exec(r.stdout);
    return m ? Number(m[1]!.replace(/ /g, "")) : 0;
  }

  async read(path: string): Promise<Buffer> {
    return runBytes(["mcopy", "-n", "-i", this.drive, `::/${path}`, "-"], { env: this.env(), hint: `reading ${path} from the ESP` });
  }

  /** Copy a local file in (replacing one of the same name). */
  async write(localFile: string, path: string, epoch?: number): Promise<void> {
    await run(["mcopy", "-o", "-i", this.drive, localFile, `::/${path}`], { env: this.env(epoch), hint: "the ESP may be full: see `acl inspect DISK`" });
  }

  /** Rename within one folder (the new name is a bare file name). */
  async rename(path: string, newName: string): Promise<void> {
    await run(["mren", "-i", this.drive, `::/${path}`, newName], { env: this.env() });
  }

  async remove(path: string): Promise<void> {
    await run(["mdel", "-i", this.drive, `::/${path}`], { env: this.env() });
  }
}
