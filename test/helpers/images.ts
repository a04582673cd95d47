/**
 * Built images shared by the test files: the first caller builds with the
 * real CLI, others wait on a lock and reuse the output (same spec, same acl).
 */
import { cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { treeDigest } from "../../src/util/hash.js";
import { acl, REPO } from "./cli.js";

export const TEST_OUT = join(REPO, ".cache/test-out");

export async function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(TEST_OUT, `.${name}.lock`);
  await mkdir(TEST_OUT, { recursive: true });
  const deadline = Date.now() + 40 * 60_000;
  for (;;) {
    try {
      await mkdir(lock);
      await writeFile(join(lock, "pid"), String(process.pid));
      break;
    } catch {
      // a lock whose holder is gone (a test worker that ended mid-build), or older than 40 minutes, is stale
      const st = await stat(lock).catch(() => undefined);
      const pid = Number(await readFile(join(lock, "pid"), "utf8").catch(() => "0"));
      let gone = false;
      if (pid > 0) {
        try {
          process.kill(pid, 0);
        } catch (e) {
          gone = (e as NodeJS.ErrnoException).code === "ESRCH";
        }
      }
      if ((st && Date.now() - st.mtimeMs > 40 * 60_000) || gone) await rm(lock, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lock}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

/** Build images/NAME.toml (or another spec) once per spec content, extra arguments and acl build; returns the output folder. */
export async function builtImage(name: string, spec = `images/${name}.toml`, opts: { signKey?: string; args?: string[]; env?: Record<string, string> } = {}): Promise<string> {
  return withLock(name, async () => {
    const out = join(TEST_OUT, name);
    const extra = [...(opts.signKey ? ["--sign-key", opts.signKey] : []), ...(opts.args ?? [])];
    // the spec, the signing key and acl itself (compiled code and data files): a changed acl rebuilds
    const h = createHash("sha256").update(await readFile(join(REPO, spec))).update(await treeDigest(join(REPO, "dist"))).update(await treeDigest(join(REPO, "data"))).update(await treeDigest(join(REPO, "butane")));
    if (opts.signKey) h.update(await readFile(opts.signKey));
    h.update(JSON.stringify([opts.args ?? [], opts.env ?? {}]));
    const key = h.digest("hex");
    const marker = join(TEST_OUT, `.${name}.built`);
    const built = await readFile(marker, "utf8").catch(() => "");
    if (built === key && process.env.ACL_TEST_REBUILD !== "1" && (await stat(join(out, "manifest.json")).catch(() => undefined))) return out;
    const r = await acl(["build", spec, "--out", out, ...extra], { env: { SOURCE_DATE_EPOCH: "1700000000", ...opts.env } });
    if (r.exitCode !== 0) throw new Error(`acl build ${spec} failed (${r.exitCode}):\n${r.stderr.slice(-4000)}`);
    await writeFile(marker, key);
    return out;
  });
}

/** A signing key pair for the tests' A/B images, made once per checkout with `acl keys generate`. */
export async function testSigningKeys(): Promise<{ key: string; pub: string }> {
  return withLock("ab-keys", async () => {
    const dir = join(TEST_OUT, "ab-keys");
    const key = join(dir, "acl-signing.key");
    const pub = join(dir, "acl-signing.pub");
    if (!(await stat(pub).catch(() => undefined))) {
      await rm(dir, { recursive: true, force: true });
      const r = await acl(["keys", "generate", "--out", dir]);
      if (r.exitCode !== 0) throw new Error(`acl keys generate failed: ${r.stderr}`);
    }
    return { key, pub };
  });
}

/** The A/B test images: minimal 1.0.0 and the fixture specs in test/fixtures/specs/ab/, all signed with the test key. */
export async function abImage(which: "1.0.0" | "1.1.0" | "1.2.0" | "bad-health" | "systemd-1.0.0" | "systemd-1.1.0"): Promise<string> {
  const { key } = await testSigningKeys();
  const specs: Record<typeof which, string> = {
    "1.0.0": "images/minimal.toml",
    "1.1.0": "test/fixtures/specs/ab/minimal-1.1.0.toml",
    "1.2.0": "test/fixtures/specs/ab/minimal-1.2.0.toml",
    "bad-health": "test/fixtures/specs/ab/minimal-bad-health.toml",
    "systemd-1.0.0": "test/fixtures/specs/plain-systemd.toml",
    "systemd-1.1.0": "test/fixtures/specs/ab/plain-systemd-1.1.0.toml",
  };
  return builtImage(`ab-${which.startsWith("systemd") ? "plain-" : "minimal-"}${which}`, specs[which], { signKey: key });
}

/** Debian's OVMF test key pair (PK, KEK and db of OVMF_VARS_4M.snakeoil.fd); its passphrase is "snakeoil". */
export const SNAKEOIL = { key: "/usr/share/ovmf/PkKek-1-snakeoil.key", cert: "/usr/share/ovmf/PkKek-1-snakeoil.pem", passphrase: "snakeoil" } as const;

/** minimal, Secure Boot signed with the snakeoil key (passphrase from the environment, as users give it), and signed with the test key. */
export async function secureBootMinimal(version: "1.0.0" | "1.1.0" = "1.0.0"): Promise<string> {
  const { key } = await testSigningKeys();
  const spec = version === "1.0.0" ? "images/minimal.toml" : "test/fixtures/specs/ab/minimal-1.1.0.toml";
  return builtImage(version === "1.0.0" ? "minimal-secureboot" : "minimal-secureboot-1.1.0", spec, {
    signKey: key,
    args: ["--secureboot-key", SNAKEOIL.key, "--secureboot-cert", SNAKEOIL.cert],
    env: { ACL_SECUREBOOT_PASSPHRASE: SNAKEOIL.passphrase },
  });
}

/** container-host, Secure Boot signed with the snakeoil key (the rootfs is shared with the unsigned build's cache entry). */
export function secureBootContainerHost(): Promise<string> {
  return builtImage("container-host-secureboot", "images/container-host.toml", {
    args: ["--secureboot-key", SNAKEOIL.key, "--secureboot-cert", SNAKEOIL.cert],
    env: { ACL_SECUREBOOT_PASSPHRASE: SNAKEOIL.passphrase },
  });
}

/** A copy of images/NAME.toml and its folder in a fresh temporary folder, so a test may edit them: the folder and the spec's path. */
export async function specCopy(prefix: string, name = "minimal"): Promise<{ tmp: string; spec: string }> {
  const tmp = await mkdtemp(join(tmpdir(), prefix));
  await cp(join(REPO, "images", name), join(tmp, "images", name), { recursive: true });
  await cp(join(REPO, "images", `${name}.toml`), join(tmp, "images", `${name}.toml`));
  return { tmp, spec: join(tmp, "images", `${name}.toml`) };
}
