/**
 * The output folder's build stamp: up to date only with the same key and
 * every published file as it was written (size, mtime, inode), nothing added.
 */
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile, copyFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { staleReason, stampPath, writeStamp } from "../../src/pipeline/stamp.js";

let out: string;
beforeEach(async () => {
  out = join(await mkdtemp(join(tmpdir(), "acl-stamp-")), "minimal");
  await mkdir(join(out, "secureboot"), { recursive: true });
  await writeFile(join(out, "manifest.json"), "{}");
  await writeFile(join(out, "disk.raw"), "disk");
  await writeFile(join(out, "secureboot/db.der"), "cert");
  await writeStamp(out, "key-1");
});

describe("build stamp", () => {
  it("lives beside the output folder, which keeps only what the build made", async () => {
    expect(stampPath(out)).toBe(join(dirname(out), ".minimal.acl-stamp.json"));
    expect((await readdir(out)).sort()).toEqual(["disk.raw", "manifest.json", "secureboot"]);
  });

  it("is up to date for the same key and untouched files", async () => {
    expect(await staleReason(out, "key-1")).toBeUndefined();
  });

  it("says why it is not: another key, a missing, rewritten, re-timed or added file, no folder, no stamp", async () => {
    expect(await staleReason(out, "key-2")).toBe("the inputs changed");
    await copyFile(join(out, "disk.raw"), join(out, "disk.copy"));
    expect(await staleReason(out, "key-1")).toBe("disk.copy was added to the output folder");
    await rm(join(out, "disk.copy"));
    // rewritten in place with the same size: a new mtime
    await writeFile(join(out, "disk.raw"), "DISK");
    expect(await staleReason(out, "key-1")).toBe("disk.raw changed since it was built");
    await writeStamp(out, "key-1");
    await utimes(join(out, "secureboot/db.der"), new Date(0), new Date(0));
    expect(await staleReason(out, "key-1")).toBe("secureboot/db.der changed since it was built");
    await rm(join(out, "secureboot/db.der"));
    expect(await staleReason(out, "key-1")).toBe("secureboot/db.der is missing");
    // the folder removed by hand, its stamp left beside it
    await writeStamp(out, "key-1");
    await rm(out, { recursive: true });
    expect(await staleReason(out, "key-1")).toBe("the output folder is gone");
    await rm(stampPath(out));
    expect(await staleReason(out, "key-1")).toBe("no build stamp in the output folder");
  });
});
