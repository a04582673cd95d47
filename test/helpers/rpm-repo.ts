/**
 * RPM repositories for the tests, built with the real tools from the spec
 * files in test/fixtures/rpm: rpmbuild makes the packages, rpmsign signs
 * them with a throwaway GPG key, createrepo_c indexes them. Four
 * repositories hold the same small packages: signed with the test key,
 * unsigned, signed with another key, and signed then tampered with (one
 * package's payload changed after signing, the index made afterwards so it
 * matches). The signed one also holds Debian's kernel repackaged in
 * kernel-core's layout. Built once per fixture content and kept under
 * .cache/test-rpm (a lock shared by the test workers).
 */
import { execa } from "execa";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { REPO, TEST_CACHE } from "./cli.js";
import { withLock } from "./images.js";

const FIXTURES = join(REPO, "test/fixtures/rpm");
const BUSYBOX = "/bin/busybox";

export interface RpmRepos {
  /** Every package, signed with `key`; and the kernel. */
  signed: string;
  unsigned: string;
  /** Signed with `otherKey`. */
  wrongKey: string;
  /** Signed with `key`; acl-base changed after it was signed. */
  tampered: string;
  /** The test key's public half, ASCII-armored. */
  key: string;
  otherKey: string;
  /** The kernel's release (uname -r) in the signed repository's acl-kernel-core. */
  kernelRelease: string;
}

/** The Debian kernel the tests' images use, unpacked (from the test cache when a build put it there). */
async function debianKernel(work: string): Promise<{ tree: string; release: string; version: string }> {
  const meta = (await execa("apt-cache", ["depends", "--no-recommends", "linux-image-cloud-amd64"])).stdout;
  const pkg = /Depends: (linux-image-\d\S*)/.exec(meta)![1]!;
  const version = /Version: (\S+)/.exec((await execa("apt-cache", ["show", pkg])).stdout)![1]!;
  const cached = join(TEST_CACHE, "kernel/debs", `${pkg}_${version.replace(/:/g, "%3a")}_amd64.deb`);
  let deb = cached;
  if (!existsSync(cached)) {
    await execa("apt-get", ["download", "-o", "APT::Sandbox::User=root", `${pkg}=${version}`], { cwd: work });
    deb = join(work, (await readdir(work)).find((f) => f.endsWith(".deb"))!);
  }
  const tree = join(work, "kernel");
  await execa("dpkg-deb", ["-x", deb, tree]);
  const release = (await readdir(join(tree, "lib/modules")))[0]!;
  return { tree, release, version };
}

async function fixtureDigest(): Promise<string> {
  const h = createHash("sha256");
  for (const f of (await readdir(FIXTURES)).sort()) h.update(f).update(await readFile(join(FIXTURES, f)));
  h.update(await readFile(BUSYBOX));
  h.update((await execa("apt-cache", ["depends", "--no-recommends", "linux-image-cloud-amd64"])).stdout);
  return h.digest("hex").slice(0, 16);
}

const gpgEnv = (home: string) => ({ GNUPGHOME: home });

async function makeKey(home: string, name: string): Promise<string> {
  await mkdir(home, { recursive: true, mode: 0o700 });
  await execa("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", `${name} <${name}@acl.invalid>`, "rsa2048", "sign", "never"], { env: gpgEnv(home) });
  return (await execa("gpg", ["--armor", "--export", name], { env: gpgEnv(home) })).stdout + "\n";
}

async function sign(home: string, name: string, rpms: string[]): Promise<void> {
  await execa("rpmsign", ["--addsign", "--define", `_gpg_name ${name}`, "--define", `_gpg_path ${home}`, "--define", "__gpg /usr/bin/gpg", ...rpms], { env: gpgEnv(home) });
}

async function repo(dir: string, rpms: string[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const r of rpms) await cp(r, join(dir, basename(r)));
  await execa("createrepo_c", ["--quiet", "--no-database", dir]);
}

export async function rpmRepos(): Promise<RpmRepos> {
  const out = join(REPO, ".cache/test-rpm", await fixtureDigest());
  return withLock("rpm-repos", async () => {
    const done = join(out, "repos.json");
    if (existsSync(done)) return JSON.parse(await readFile(done, "utf8")) as RpmRepos;
    const work = await mkdtemp(join(tmpdir(), "acl-rpm-fixtures-"));
    try {
      const top = join(work, "rpmbuild");
      const kernel = await debianKernel(work);
      const [kver, krel] = [kernel.version.slice(0, kernel.version.lastIndexOf("-")), kernel.version.slice(kernel.version.lastIndexOf("-") + 1)];
      const defines = [
        ["_topdir", top],
        ["busybox", BUSYBOX],
        ["kernel_release", kernel.release],
        ["kernel_version", kver],
        ["kernel_rel", krel.replace(/[^A-Za-z0-9.]/g, ".")],
        ["kernel_tree", kernel.tree],
        // the same bytes from the same spec files: build times and hosts fixed
        ["use_source_date_epoch_as_buildtime", "1"],
        ["clamp_mtime_to_source_date_epoch", "1"],
        ["_buildhost", "acl-tests"],
      ].flatMap(([k, v]) => ["--define", `${k} ${v}`]);
      for (const f of (await readdir(FIXTURES)).filter((f) => f.endsWith(".spec")).sort())
        await execa("rpmbuild", ["-bb", "--quiet", ...defines, join(FIXTURES, f)], { env: { SOURCE_DATE_EPOCH: "1700000000" } });
      const built = join(top, "RPMS");
      const all: string[] = [];
      for (const arch of await readdir(built)) for (const f of await readdir(join(built, arch))) all.push(join(built, arch, f));
      const small = all.filter((f) => !basename(f).startsWith("acl-kernel-core-")).sort();
      const kernelRpm = all.find((f) => basename(f).startsWith("acl-kernel-core-"))!;

      const keys = join(work, "gnupg");
      const other = join(work, "gnupg-other");
      const staging = join(work, "out");
      await mkdir(staging);
      await writeFile(join(staging, "RPM-GPG-KEY-acl-test"), await makeKey(keys, "acl-test"));
      await writeFile(join(staging, "RPM-GPG-KEY-other"), await makeKey(other, "acl-other"));

      await repo(join(staging, "unsigned"), small);
      const copies = async (tag: string, rpms: string[]) => {
        const d = join(work, tag);
        await mkdir(d);
        const got: string[] = [];
        for (const r of rpms) {
          await cp(r, join(d, basename(r)));
          got.push(join(d, basename(r)));
        }
        return got;
      };
      const signed = await copies("signed", [...small, kernelRpm]);
      await sign(keys, "acl-test", signed);
      await repo(join(staging, "signed"), signed);
      const wrong = await copies("wrong", small);
      await sign(other, "acl-other", wrong);
      await repo(join(staging, "wrong-key"), wrong);
      const tampered = await copies("tampered", small);
      await sign(keys, "acl-test", tampered);
      const base = tampered.find((f) => basename(f).startsWith("acl-base-"))!;
      // one byte near the end (in the payload), after signing: the digests in the signed header no longer match
      const size = (await stat(base)).size;
      const fh = await open(base, "r+");
      try {
        const b = Buffer.alloc(1);
        await fh.read(b, 0, 1, size - 20);
        b[0]! ^= 0xff;
        await fh.write(b, 0, 1, size - 20);
      } finally {
        await fh.close();
      }
      await repo(join(staging, "tampered"), tampered);

      const repos: RpmRepos = {
        signed: join(out, "signed"),
        unsigned: join(out, "unsigned"),
        wrongKey: join(out, "wrong-key"),
        tampered: join(out, "tampered"),
        key: join(out, "RPM-GPG-KEY-acl-test"),
        otherKey: join(out, "RPM-GPG-KEY-other"),
        kernelRelease: kernel.release,
      };
      await writeFile(join(staging, "repos.json"), JSON.stringify(repos));
      await mkdir(join(out, ".."), { recursive: true });
      await rm(out, { recursive: true, force: true });
      await rename(staging, out).catch(async () => cp(staging, out, { recursive: true }));
      return repos;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
}
