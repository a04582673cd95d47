import { execa } from "execa";
import { mkdtemp, open, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { sha256Composed, sha256Files } from "../../src/util/hash.js";

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

describe("sha256Composed", () => {
  it("gives sha256sum's digest of the file laid out from its pieces, and with a tail after it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "acl-hash-"));
    const part = join(dir, "part");
    // a piece longer than the worker's 4 MiB buffer, with zeros of its own
    const partBytes = Buffer.concat([Buffer.alloc(3 << 20, 0x5a), Buffer.alloc(2 << 20), Buffer.from("end of part")]);
    await writeFile(part, partBytes);
    const head = Buffer.from("head bytes");
    const size = 13 * 1024 * 1024 + 3;
    const laid = join(dir, "laid");
    const fh = await open(laid, "w");
    await fh.truncate(size);
    await fh.write(head, 0, head.length, 0);
    await fh.write(partBytes, 0, partBytes.length, 4096);
    await fh.write(Buffer.from("last"), 0, 4, size - 4);
    await fh.close();
    const tail = Buffer.from("a footer");
    const withTail = join(dir, "with-tail");
    await writeFile(withTail, Buffer.concat([await readFile(laid), tail]));
    // pieces in any order
    const got = await sha256Composed(size, [{ offset: size - 4, bytes: Buffer.from("last") }, { offset: 4096, file: part }, { offset: 0, bytes: head }], tail);
    const theirs = (await execa("sha256sum", [laid, withTail])).stdout.split("\n").map((l) => l.split(" ")[0]);
    expect([got.sha256, got.withTail]).toEqual(theirs);
  });

  it("refuses pieces that overlap or run past the size", async () => {
    await expect(sha256Composed(100, [{ offset: 0, bytes: Buffer.alloc(10) }, { offset: 5, bytes: Buffer.alloc(10) }])).rejects.toThrow(/pieces overlap at byte 5/);
    await expect(sha256Composed(8, [{ offset: 0, bytes: Buffer.alloc(10) }])).rejects.toThrow(/past the size 8/);
  });
});
