import { execa } from "execa";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildSbom, treeFileDigests } from "../../src/stages/rootfs/sbom.js";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const PKG_TIME = 1_600_000_000;
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const pkg = { name: "hello", version: "1.0-1", arch: "amd64", fields: { Maintainer: "Someone <a@b>" } };

/** A tree with one package owning two files, as dpkg leaves it. */
async function packagesTree(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "acl-sbom-"));
  dirs.push(d);
  const t = join(d, "tree");
  await mkdir(join(t, "var/lib/dpkg/info"), { recursive: true });
  await mkdir(join(t, "usr/bin"), { recursive: true });
  await mkdir(join(t, "etc"), { recursive: true });
  await writeFile(join(t, "usr/bin/hello"), "binary v1\n");
  await writeFile(join(t, "etc/hello.conf"), "greeting=hi\n");
  await writeFile(join(t, "var/lib/dpkg/info/hello:amd64.list"), "/.\n/usr\n/usr/bin\n/usr/bin/hello\n/etc\n/etc/hello.conf\n");
  // whole seconds, as a .deb's times are, so an edit can put the same mtime back exactly
  for (const f of ["usr/bin/hello", "etc/hello.conf"]) await utimes(join(t, f), PKG_TIME, PKG_TIME);
  return t;
}

const sbomFiles = (json: string) =>
  Object.fromEntries(
    (JSON.parse(json) as { files: { fileName: string; checksums: { algorithm: string; checksumValue: string }[] }[] }).files.map((f) => [
      f.fileName,
      f.checksums.find((c) => c.algorithm === "SHA256")!.checksumValue,
    ]),
  );

describe("SBOM file digests taken from the packages tree", () => {
  it("reuses a copied file's digests, and reads again a file changed after the copy even with its size and mtime kept", async () => {
    const src = await packagesTree();
    const sums = await treeFileDigests(src);
    expect(sums["usr/bin/hello"]).toMatchObject({ size: 10, sha256: sha256("binary v1\n") });
    expect((await execa("sha1sum", [join(src, "etc/hello.conf")])).stdout.split(" ")[0]).toBe(sums["etc/hello.conf"]!.sha1);

    const root = join(src, "..", "copy");
    await execa("cp", ["-a", src, root]);
    const marker = join(src, "..", "marker");
    await writeFile(marker, "");
    const copiedBeforeCtimeMs = (await stat(marker)).ctimeMs;
    // an overlay's edit: same size, and the old mtime put back
    const conf = join(root, "etc/hello.conf");
    await writeFile(conf, "greeting=yo\n");
    await utimes(conf, PKG_TIME, PKG_TIME);
    expect((await stat(conf)).mtimeMs).toBe(sums["etc/hello.conf"]!.mtimeMs);

    // a recorded digest that is not the file's shows which files were not read again
    const known = { sums: { ...sums, "usr/bin/hello": { ...sums["usr/bin/hello"]!, sha256: "f".repeat(64) } }, copiedBeforeCtimeMs };
    const input = { root, name: "t", version: "1", specDigest: "0", sourceDateEpoch: 1, toolVersion: "0", packages: [pkg], images: [] };
    const reused = sbomFiles((await buildSbom({ ...input, known })).json);
    expect(reused["./usr/bin/hello"]).toBe("f".repeat(64));
    expect(reused["./etc/hello.conf"]).toBe(sha256("greeting=yo\n"));
    // without recorded digests every file is read: the same SBOM as with true ones
    const fresh = (await buildSbom(input)).json;
    expect(sbomFiles(fresh)).toEqual({ "./usr/bin/hello": sha256("binary v1\n"), "./etc/hello.conf": sha256("greeting=yo\n") });
    expect((await buildSbom({ ...input, known: { sums, copiedBeforeCtimeMs } })).json).toBe(fresh);
  });
});
