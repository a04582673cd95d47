/**
 * The rootfs side of [ignition]: the spec section, the base config
 * translated from Butane into base.d (checked by Debian's ignition-validate),
 * and the clear errors: no engine in the image, a base config Debian's
 * Ignition cannot apply (3.4.0) or cannot fetch (remote sources), a
 * broken Butane file named with its line.
 */
import { execFile } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeEach, describe, expect, it } from "vitest";
import { parseSpec } from "../../src/config/spec.js";
import { UserError } from "../../src/errors.js";
import { IGNITION_BASE_DIR, IGNITION_ENGINE, installIgnition, remoteSources, translateBase } from "../../src/stages/rootfs/ignition.js";

const sh = promisify(execFile);
let dir: string;
let root: string;

async function spec(extra: string) {
  const text = `name = "t"\nversion = "2.0"\ninit = "systemd"\n[[sources]]\ntype = "dir"\npath = "."\n${extra}`;
  return parseSpec(Buffer.from(text), join(dir, "t.toml"));
}

async function withEngine(): Promise<void> {
  for (const p of [IGNITION_ENGINE, "usr/bin/sh"]) {
    await mkdir(join(root, p, ".."), { recursive: true });
    await writeFile(join(root, p), "#!/bin/sh\n");
    await chmod(join(root, p), 0o755);
  }
}

async function userError(p: Promise<unknown>): Promise<UserError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(UserError);
  return e as UserError;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "acl-ignition-stage-"));
  root = join(dir, "root");
  await mkdir(root);
  await writeFile(join(dir, "base.bu"), "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/base-note\n      mode: 0640\n      contents:\n        local: note.txt\n");
  await mkdir(join(dir, "base"));
  await writeFile(join(dir, "base/note.txt"), "from the base config\n");
});

describe("[ignition] in the spec", () => {
  it("defaults: on, platforms qemu then file, no base", async () => {
    const s = await spec("[ignition]\n");
    expect(s.ignition).toEqual({ enabled: true, platforms: ["qemu", "file"] });
    expect((await spec("")).ignition).toBeUndefined();
  });

  it("refuses an unknown platform, a repeated one and an empty list, naming the key", async () => {
    for (const [toml, msg] of [
      ['platforms = ["azure"]', /ignition\.platforms\[0\]. must be one of "qemu", "file"/],
      ['platforms = ["qemu", "qemu"]', /lists a platform twice/],
      ["platforms = []", /ignition\.platforms/],
    ] as const) {
      const e = await userError(spec(`[ignition]\n${toml}\n`));
      expect(`${e.message} ${e.key ?? ""}`).toMatch(msg);
    }
  });
});

describe("the base config and the engine", () => {
  it("bakes the translated base config into base.d, which ignition-validate accepts", async () => {
    await withEngine();
    const s = await spec('[ignition]\nbase = "base.bu"\nfiles_dir = "base"\n');
    const base = await translateBase(s);
    expect(base!.name).toBe("50-base.ign");
    await installIgnition(root, s, base);
    const baked = await readFile(join(root, IGNITION_BASE_DIR, "50-base.ign"), "utf8");
    expect(JSON.parse(baked)).toEqual({
      ignition: { version: "3.3.0" },
      storage: { files: [{ path: "/etc/base-note", contents: { compression: "", source: "data:,from%20the%20base%20config%0A" }, mode: 0o640 }] },
    });
    await sh("ignition-validate", [join(root, IGNITION_BASE_DIR, "50-base.ign")]);
  });

  it("a spec without a base bakes nothing; an image with Ignition off needs no engine", async () => {
    await withEngine();
    const s = await spec("[ignition]\n");
    await installIgnition(root, s, await translateBase(s));
    await expect(readFile(join(root, IGNITION_BASE_DIR, "50-base.ign"))).rejects.toThrow();
    const off = await spec('[ignition]\nenabled = false\nbase = "base.bu"\nfiles_dir = "base"\n');
    expect(await translateBase(off)).toBeUndefined();
    await installIgnition(join(dir, "empty"), off, undefined);
  });

  it("no engine in the image: names the spec key and the package to add", async () => {
    const s = await spec("[ignition]\n");
    const e = await userError(installIgnition(root, s, undefined));
    expect(e.message).toContain(`/${IGNITION_ENGINE}`);
    expect(e.key).toBe("ignition.enabled");
    expect(e.hint).toMatch(/add "ignition".*packages/);
  });

  it("refuses a base config for Ignition 3.4.0 (flatcar 1.1.0), which Debian's engine cannot apply", async () => {
    await writeFile(join(dir, "new.bu"), "variant: flatcar\nversion: 1.1.0\n");
    const e = await userError(translateBase(await spec('[ignition]\nbase = "new.bu"\n')));
    expect(e.message).toMatch(/Ignition 3\.4\.0.*3\.3\.0 at most/);
    expect(e.key).toBe("ignition.base");
    expect(e.hint).toMatch(/version: 1\.0\.0/);
  });

  it("refuses remote sources (the initramfs has no network), naming each", async () => {
    await writeFile(join(dir, "remote.bu"), "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/x\n      contents:\n        source: https://example.com/x?token=secret\n");
    const e = await userError(translateBase(await spec('[ignition]\nbase = "remote.bu"\n')));
    expect(e.message).toContain("$.storage.files.0.contents.source (https://example.com/x)");
    expect(e.message).not.toContain("secret");
    expect(remoteSources({ a: [{ source: "data:,x" }, { source: "tftp://h/f" }] })).toEqual(["$.a.1.source (tftp://h/f)"]);
  });

  it("a broken base config is named with its YAML path and line; a local file without files_dir is an error", async () => {
    await writeFile(join(dir, "bad.bu"), "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - mode: 0644\n");
    const e = await userError(translateBase(await spec('[ignition]\nbase = "bad.bu"\n')));
    expect(e.message).toMatch(/bad\.bu: .*error at \$\.storage\.files\.0(\.path)?, line 5/);
    const noDir = await userError(translateBase(await spec('[ignition]\nbase = "base.bu"\n')));
    expect(noDir.message).toMatch(/local/i);
  });
});
