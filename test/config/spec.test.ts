import { mkdtemp, mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadSpec, nearest, validKeysAt } from "../../src/config/spec.js";
import { parseSize } from "../../src/config/spec-schema.js";
import { keyLiterals } from "../../src/config/toml-literals.js";
import { UserError } from "../../src/errors.js";

let dir: string;
const base = `name = "t"\nversion = "1.0"\n[[sources]]\ntype = "dir"\npath = "overlay"\n`;

async function specFile(text: string | Buffer, name = "spec.toml"): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, text);
  return p;
}

async function failure(text: string | Buffer): Promise<UserError> {
  const p = await specFile(text);
  try {
    await loadSpec(p);
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return e as UserError;
  }
  throw new Error("expected the spec to be rejected");
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "acl-spec-"));
  await mkdir(join(dir, "overlay"));
  await writeFile(join(dir, "motd"), "hello\n");
});

describe("image spec loading", () => {
  it("loads the shipped images with defaults filled in", async () => {
    const min = await loadSpec("images/minimal.toml");
    expect(min.name).toBe("minimal");
    expect(min.microarch).toBe("x86-64-v3");
    expect(min.init).toBe("busybox");
    expect(min.sources[0]).toMatchObject({ type: "debian", variant: "extract" });
    expect(min.partitions.usr).toBe(512 * 1024 * 1024);
    expect(min.specDigest).toMatch(/^[0-9a-f]{64}$/);
    expect(Object.isFrozen(min.sources)).toBe(true);
    const ch = await loadSpec("images/container-host.toml");
    expect(ch.microarch).toBe("x86-64-v3");
    expect(ch.aks?.os_sku).toBe("AzureContainerLinux");
    const pk = (ch.sources[0] as { packages: string[] }).packages;
    for (const p of ["systemd", "udev", "dbus", "containerd", "runc", "iptables", "openssh-server"]) expect(pk).toContain(p);
    // the Fedora example: checked without a mirror (the build reads the repositories)
    const fedora = await loadSpec("images/fedora-container-host.toml");
    expect(fedora.sources[0]).toMatchObject({ type: "rpm", releasever: "41", install_weak_deps: false, repos: [{ name: "fedora", gpgcheck: true }, { name: "updates", gpgcheck: true }] });
    expect(fedora.kernel.from).toBe("image");
  });

  it("reports TOML syntax errors with line and column", async () => {
    const e = await failure(`name = "t"\nversion = \n`);
    expect(e.message).toMatch(/spec\.toml:2:11: TOML syntax error/);
    expect(e.hint).toMatch(/line 2, column 11/);
  });

  it("takes an lz4hc level for an erofs /usr, and refuses one anywhere else naming the key", async () => {
    const ok = await loadSpec(await specFile(base + `[usr]\ncompression = "lz4hc"\ncompression_level = 4\n`));
    expect(ok.usr).toMatchObject({ filesystem: "erofs", compression: "lz4hc", compression_level: 4 });
    const e = await failure(base + `[usr]\nfilesystem = "squashfs"\ncompression_level = 4\n`);
    expect(e.message).toContain("usr.compression_level");
    expect(e.message).toContain("only an erofs /usr compressed with lz4hc has levels (this one is squashfs with lz4hc)");
    expect(e.hint).toContain('set compression = "lz4hc" with filesystem = "erofs"');
    expect((await failure(base + `[usr]\ncompression_level = 13\n`)).message).toContain("usr.compression_level");
  });

  it("names an unknown key with its path and the nearest valid key", async () => {
    const e = await failure(base + `[usr]\nfilesytem = "erofs"\n`);
    expect(e.message).toContain("unknown key 'usr.filesytem'");
    expect(e.message).toContain("did you mean 'usr.filesystem'");
    const e2 = await failure(base.replace('path = "overlay"', 'path = "overlay"\npaht = "x"'));
    expect(e2.message).toContain("unknown key 'sources[0].paht'");
    expect(e2.message).toContain("'sources[0].path'");
    const e3 = await failure(`zzzzzz = 1\n` + base);
    expect(e3.message).toContain("unknown key 'zzzzzz'");
    expect(e3.hint).toMatch(/valid keys here: .*name/);
  });

  it("reports wrong types and missing keys", async () => {
    const e = await failure(base.replace('version = "1.0"', "version = 3"));
    expect(e.message).toContain("'version' must be a string, got number 3");
    const e2 = await failure(base.replace('name = "t"\n', ""));
    expect(e2.message).toContain("missing required key 'name'");
    const e4 = await failure(`microarch = "x86-64-v5"\n` + base);
    expect(e4.message).toContain("'microarch' must be one of \"x86-64\", \"x86-64-v2\", \"x86-64-v3\", \"x86-64-v4\"");
    const e5 = await failure(base.replace('type = "dir"', 'type = "apk"'));
    expect(e5.message).toContain("'sources[0].type' must be one of debian, rpm, docker, oci-archive, docker-archive, dir, got the string \"apk\"");
    const e6 = await failure(base + `[partitions]\nusr = "lots"\n`);
    expect(e6.message).toContain("partitions.usr");
  });

  it("rejects missing referenced files and folders", async () => {
    const e = await failure(base.replace('path = "overlay"', 'path = "nope"'));
    expect(e.message).toContain("'sources[0].path' refers to nope, which is not a folder");
    const e2 = await failure(base + `[[files]]\npath = "/etc/x"\nsource = "missing.txt"\n`);
    expect(e2.message).toContain("'files[0].source' refers to missing.txt, which is not a file");
    const e3 = await failure(base.replace('type = "dir"\npath = "overlay"', 'type = "oci-archive"\npath = "image.tar"'));
    expect(e3.message).toContain("'sources[0].path' refers to image.tar, which is not a file");
  });

  it("rejects file destinations that escape the root or are relative", async () => {
    const e = await failure(base + `[[files]]\npath = "/etc/../../host"\ncontent = "x"\n`);
    expect(e.message).toContain("files[0].path");
    expect(e.message).toContain("escape");
    const e2 = await failure(base + `[[files]]\npath = "etc/motd"\ncontent = "x"\n`);
    expect(e2.message).toContain("must be an absolute path");
    const e3 = await failure(base + `[[files]]\npath = "/etc/motd"\n`);
    expect(e3.message).toContain("give exactly one of `content` or `source`");
  });

  it("rejects empty and binary spec files", async () => {
    const e = await failure("");
    expect(e.message).toMatch(/is empty/);
    const e2 = await failure("  \n\n");
    expect(e2.message).toMatch(/is empty/);
    const bin = Buffer.alloc(4096);
    bin.write("QFI\xfb", 0, "latin1");
    const e3 = await failure(bin);
    expect(e3.message).toMatch(/not a text file/);
    expect(e3.hint).toMatch(/not a disk image/);
  });

  it("rejects a spec path that does not exist", async () => {
    await expect(loadSpec(join(dir, "absent.toml"))).rejects.toThrow(/cannot read image spec .*absent\.toml: it does not exist \(ENOENT\)/);
  });

  it("takes sizes only with a binary unit, in whole MiB, above each partition's minimum", async () => {
    const ok = await loadSpec(await specFile(base + `[partitions]\nesp = "64MiB"\nusr = "1.5GiB"\noem = "8MiB"\nroot = "1048576KiB"\n`));
    expect(ok.partitions).toMatchObject({ esp: 64 << 20, usr: 1536 << 20, oem: 8 << 20, root: 1024 << 20 });
    const cases: [string, RegExp, RegExp][] = [
      [`esp = 64`, /'partitions\.esp' is 64, a number without a unit/, /write esp = "64MiB"/],
      [`esp = "1B"`, /'partitions\.esp' is "1B" \(1 byte\), not a whole number of MiB/, /aligned to 1 MiB/],
      [`usr = "1.5MiB"`, /not a whole number of MiB/, /"1MiB" or "2MiB"/],
      [`oem = "0MiB"`, /'partitions\.oem' is 0 MiB; the OEM partition .* needs at least 8 MiB/, /oem = "8MiB" or more/],
      [`esp = "32MiB"`, /'partitions\.esp' is 32 MiB; the EFI system partition .* needs at least 64 MiB/, /esp = "64MiB"/],
      [`root = "1.5"`, /'partitions\.root' is "1\.5", which is not a size/, /add a unit, such as root = "1\.5GiB"/],
      [`usr = "2G"`, /'partitions\.usr' is "2G", which is not a size/, /write "2GiB"/],
    ];
    for (const [line, message, hint] of cases) {
      const e = await failure(base + `[partitions]\n${line}\n`);
      expect(e.message, line).toMatch(message);
      expect(e.hint, line).toMatch(hint);
      expect(e.key, line).toMatch(/^partitions\./);
    }
  });

  it("takes modes as octal strings or TOML octal, and refuses a decimal integer with what it probably meant", async () => {
    const ok = await loadSpec(await specFile(base + `[[files]]\npath = "/a"\ncontent = "x"\nmode = "0640"\n[[files]]\npath = "/b"\ncontent = "mode = 644"\nmode = 0o755\n`));
    expect(ok.files.map((f) => f.mode)).toEqual([0o640, 0o755]);
    const e = await failure(base + `[[files]]\npath = "/a"\ncontent = "x"\nmode = "0640"\n[[files]]\npath = "/b"\ncontent = "x"\nmode = 644\n`);
    expect(e.message).toMatch(/spec\.toml:13:8: 'files\[1\]\.mode' = 644 is a decimal integer, which would be mode 0o1204; did you mean 0o644\?/);
    expect(e.key).toBe("files[1].mode");
    expect(e.hint).toBe('write modes as a string ("0644") or as TOML octal (0o644)');
    const e2 = await failure(base + `[[files]]\npath = "/a"\ncontent = "x"\nmode = 493\n`);
    expect(e2.message).toMatch(/'files\[0\]\.mode' = 493 is a decimal integer, which would be mode 0o755; did you mean 0o755 \(493 is 0o755\)\?/);
  });

  it("checks cross references (groups, duplicate destinations)", async () => {
    const e = await failure(base + `[[users]]\nname = "core"\nuid = 500\ngroups = ["wheelz"]\n`);
    expect(e.message).toContain("names group 'wheelz'");
    const e2 = await failure(base + `[[files]]\npath = "/etc/a"\ncontent = "1"\n[[files]]\npath = "/etc//a"\ncontent = "2"\n`);
    expect(e2.message).toContain("also written by files[0]");
  });
});

describe("helpers", () => {
  it("parses sizes with binary units only", () => {
    expect(parseSize("512MiB")).toBe(512 * 1024 * 1024);
    expect(parseSize("2GiB")).toBe(2 * 1024 ** 3);
    expect(parseSize("1.5GiB")).toBe(1.5 * 1024 ** 3);
    expect(parseSize("4096B")).toBe(4096);
    for (const bad of ["1.5G", "64M", "64MB", "64", "1.5", "lots", "MiB"]) expect(parseSize(bad), bad).toBeUndefined();
  });
  it("finds how each key's value was written, skipping strings and comments", () => {
    const text = [
      '[[files]]',
      'content = """',
      'mode = 1',
      '"""',
      "note = 'mode = 2' # mode = 3",
      'mode = 0o644',
      '[[files]]',
      'mode="0755"',
      'files = [{ path = "/x", mode = 644 }, { mode = 0o600 }]',
      'submode = 5',
      '"mode" = 420',
    ].join("\n");
    expect(keyLiterals(text, "mode")).toEqual([
      { line: 6, col: 8, literal: "0o644" },
      { line: 8, col: 6, literal: '"0755"' },
      { line: 9, col: 32, literal: "644" },
      { line: 9, col: 48, literal: "0o600" },
      { line: 11, col: 10, literal: "420" },
    ]);
  });
  it("finds the nearest key", () => {
    expect(nearest("verison", ["name", "version", "arch"])).toBe("version");
    expect(nearest("qqqqqqq", ["name", "version"])).toBeUndefined();
  });
  it("lists valid keys through arrays and unions", () => {
    expect(validKeysAt(["sources", 0], { sources: [{ type: "debian" }] })).toContain("packages");
    expect(validKeysAt(["sources", 0], { sources: [{ type: "dir" }] })).toEqual(["type", "path"]);
    expect(validKeysAt(["usr"], {})).toEqual(["filesystem", "compression", "compression_level", "verity_corruption"]);
  });
});

describe("docs/spec.md", () => {
  it("is generated from the schema and up to date (regenerate: acl spec docs --write docs/spec.md)", async () => {
    const { renderSpecDocs } = await import("../../src/services/spec-docs.js");
    const { readFile } = await import("node:fs/promises");
    const text = renderSpecDocs();
    expect(await readFile("docs/spec.md", "utf8")).toBe(text);
    for (const key of ["`microarch`", "`usr.verity_corruption`", "`partitions.usr`", "`policy.allow_setuid`", "`aks.os_sku`", '`type = "oci-archive"`']) {
      expect(text).toContain(key);
    }
  });
});
