import { execa } from "execa";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { sha256Files } from "../../src/util/hash.js";

describe("sha256Files", () => {
  it("matches sha256sum for several files, in order, hashed in parallel", async () => {
    const dir = await mkdtemp(join(tmpdir(), "acl-hash-"));
    const files = [join(dir, "empty"), join(dir, "small"), join(dir, "big")];
    await writeFile(files[0]!, "");
    await writeFile(files[1]!, "hello\n");
    await writeFile(files[2]!, Buffer.alloc(5 * 1024 * 1024 + 7, 0xab));
    const ours = await sha256Files(files, 2);
    const theirs = (await execa("sha256sum", files)).stdout.split("\n").map((l) => l.split(" ")[0]);
    expect(ours).toEqual(theirs);
    expect(ours[0]).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  });

  it("names a file it cannot read", async () => {
    await expect(sha256Files(["/nonexistent/acl-file"])).rejects.toThrow(/cannot hash \/nonexistent\/acl-file/);
  });
});
