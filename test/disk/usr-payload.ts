/**
 * Test helper: a real USR payload (erofs filesystem followed by its dm-verity
 * hash tree, as Flatcar lays out a /usr slot) made with mkfs.erofs (or
 * mksquashfs) and veritysetup from a small tree.
 */
import { mkdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/exec.js";

export const TEST_SALT = "5a17".repeat(16);
export const TEST_VERITY_UUID = "2f6c0e49-8a0c-4b47-9a55-7c8d7b3e2a10";

export interface TestPayload {
  path: string;
  fsBytes: number;
  rootHash: string;
  hashOffset: number;
  dataBlocks: number;
}

/** Build a payload in `dir`; `fillerBytes` of incompressible data make it larger; erofs unless asked for squashfs. */
export async function makeUsrPayload(dir: string, fillerBytes = 64 * 1024, filesystem: "erofs" | "squashfs" = "erofs"): Promise<TestPayload> {
  const tree = join(dir, `usr-tree-${filesystem}`);
  await mkdir(join(tree, "bin"), { recursive: true });
  await mkdir(join(tree, "lib/os-release.d"), { recursive: true });
  await writeFile(join(tree, "bin/hello"), "#!/bin/sh\necho hello\n", { mode: 0o755 });
  await writeFile(join(tree, "lib/os-release"), 'ID=acl-test\nVERSION_ID="1.0.0"\n');
  // deterministic but incompressible-ish filler
  const filler = Buffer.alloc(fillerBytes);
  let x = 0x12345678;
  for (let i = 0; i < filler.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    filler[i] = x >>> 24;
  }
  await writeFile(join(tree, "lib/filler.bin"), filler);
  const img = join(dir, filesystem === "erofs" ? "usr.payload" : "usr-squashfs.payload");
  if (filesystem === "erofs")
    await run(["mkfs.erofs", "-T0", "-U", "6c1f7c1e-2d1a-4e8e-9b1e-0d1f7e2c3a4b", "--all-root", "-Eforce-inode-compact", img, tree], {
      env: { SOURCE_DATE_EPOCH: "1700000000" },
    });
  else await run(["mksquashfs", tree, img, "-noappend", "-no-progress", "-quiet", "-all-root", "-all-time", "1700000000", "-mkfs-time", "1700000000"]);
  const fsBytes = (await stat(img)).size;
  if (fsBytes % 4096 !== 0) throw new Error(`erofs image is ${fsBytes} bytes, not a multiple of 4096`);
  const dataBlocks = fsBytes / 4096;
  const r = await run([
    "veritysetup", "format", img, img,
    "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096",
    `--data-blocks=${dataBlocks}`, `--hash-offset=${fsBytes}`,
    `--salt=${TEST_SALT}`, `--uuid=${TEST_VERITY_UUID}`,
  ]);
  const m = /Root hash:\s+([0-9a-f]{64})/.exec(r.stdout);
  if (!m) throw new Error(`no root hash in veritysetup output:\n${r.stdout}`);
  return { path: img, fsBytes, rootHash: m[1]!, hashOffset: fsBytes, dataBlocks };
}
