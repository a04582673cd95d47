/**
 * What runs elsewhere is real files under data/, checked by the tools that
 * read them: shellcheck on the initramfs /init and the guest boot check (the
 * files themselves and every variant acl renders), on the shell commands in
 * the busybox inittab, and systemd-analyze verify on the boot-check unit. The
 * boot check's logic is also run with a stand-in systemctl.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, symlinkSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { MICROARCHES } from "../../src/formats/microarch.js";
import { INIT_TEMPLATE, renderInitScript, type CorruptionPolicy, type InitKind } from "../../src/stages/initramfs/init-script.js";
import { BOOT_CHECK_PATH, BOOT_CHECK_REQUEST, bootCheckScript, bootCheckUnit, GUEST_DATA } from "../../src/stages/rootfs/guest-checks.js";
import { AB_DATA, AB_SCRIPT, AB_UNITS, PCRPHASE_DROPIN, PCRPHASE_UNITS } from "../../src/stages/rootfs/ab-node.js";
import { compareVersions } from "../../src/formats/boot-entries.js";
import { dataPath, dataText } from "../../src/util/data.js";
import { placeholders, renderTemplate, TemplateError } from "../../src/util/template.js";
import { tempDirs } from "../boot/helpers/temps.js";

const mkdtempSync = tempDirs();
const PATH = `${process.env.PATH}:/usr/sbin:/sbin`;

/** shellcheck as POSIX sh: the findings (empty when clean). */
function shellcheck(files: string[]): string {
  const r = spawnSync("shellcheck", ["-s", "sh", "-f", "gcc", ...files], { encoding: "utf8" });
  if (r.error) throw new Error(`shellcheck is not installed (apt-get install shellcheck): ${r.error.message}`);
  return r.stdout + r.stderr;
}

describe("the template step", () => {
  it("fills every placeholder with a checked value, and nothing else", () => {
    expect(renderTemplate("a='@X@' b=@Y_2@\n", { X: "x y", Y_2: "/usr/lib" })).toBe("a='x y' b=/usr/lib\n");
    expect(placeholders("@A@ @B@ @A@ $@ @lower@")).toEqual(["A", "B"]);
    expect(() => renderTemplate("@X@", {})).toThrow(/no value for @X@/);
    expect(() => renderTemplate("@X@", { X: "it's" })).toThrow(TemplateError);
    expect(() => renderTemplate("@X@", { X: "$(reboot)" })).toThrow(/unsafe value/);
    expect(() => renderTemplate("@X@", { X: "a", Y: "b" })).toThrow(/values without a placeholder: Y/);
  });
});

describe("initramfs /init (data/initramfs/init.sh)", () => {
  it("the template itself passes shellcheck", () => {
    expect(shellcheck([dataPath(INIT_TEMPLATE)])).toBe("");
    expect(placeholders(dataText(INIT_TEMPLATE))).toEqual([
      "AHCI_MODULES", "CORRUPTION", "FIRST_BOOT_FLAG", "HYPERV_MODULES", "IGNITION", "IGNITION_ENGINE", "IGNITION_MODULES", "IGNITION_PLATFORMS", "MICROARCH", "MODULES", "NEXT_INIT", "RELEASE", "REQUIRED", "SQUASHFS_MODULES", "VIRTIO_SCSI_MODULES",
    ]);
  });

  it("every rendered variant passes shellcheck and sh -n", () => {
    const d = mkdtempSync(join(tmpdir(), "acl-init-"));
    const files: string[] = [];
    for (const microarch of MICROARCHES)
      for (const corruption of ["panic", "restart"] as CorruptionPolicy[])
        for (const init of ["systemd", "busybox"] as InitKind[])
          for (const hw of [false, true]) {
            const text = renderInitScript({
              release: "6.1.0-57-cloud-amd64",
              microarch,
              corruption,
              init,
              modules: ["kernel/drivers/block/virtio_blk.ko", "kernel/drivers/md/dm-verity.ko"],
              // the hardware variant also runs Ignition at first boot
              ...(hw
                ? {
                    hardwareModules: { hyperv: ["kernel/drivers/scsi/hv_storvsc.ko"], virtioScsi: ["kernel/drivers/scsi/virtio_scsi.ko"], ahci: [] },
                    squashfsModules: ["kernel/fs/squashfs/squashfs.ko"],
                    ignition: { platforms: ["qemu", "file"], modules: ["kernel/fs/fat/fat.ko", "kernel/fs/fat/vfat.ko", "kernel/drivers/firmware/qemu_fw_cfg.ko"] },
                  }
                : {}),
            });
            expect(text).toContain(hw ? "IGNITION='1'" : "IGNITION='0'");
            expect(text).not.toMatch(/@[A-Z_]+@/);
            const f = join(d, `init-${microarch}-${corruption}-${init}-${hw ? "hw" : "plain"}`);
            writeFileSync(f, text);
            expect(execFileSync("sh", ["-n", f], { encoding: "utf8" })).toBe("");
            files.push(f);
          }
    expect(files).toHaveLength(32);
    expect(shellcheck(files)).toBe("");
  });
});

describe("guest boot check (data/guest/)", () => {
  it("boot-check.sh passes shellcheck, and asks for the request string acl's boot test sends", () => {
    expect(shellcheck([dataPath(GUEST_DATA.script)])).toBe("");
    const s = bootCheckScript();
    expect(s).toContain(`grep -q "${BOOT_CHECK_REQUEST.replace(/\./g, "\\\\.")}$"`);
  });

  it("the shell commands in the busybox inittab pass shellcheck", () => {
    const d = mkdtempSync(join(tmpdir(), "acl-inittab-"));
    const bodies = [...dataText(GUEST_DATA.inittab).matchAll(/\/bin\/sh -c '([^']*)'/g)].map((m) => m[1]!);
    expect(bodies.length).toBe(2);
    const files = bodies.map((b, i) => {
      const f = join(d, `cmd${i}.sh`);
      writeFileSync(f, `#!/bin/sh\n${b}\n`);
      return f;
    });
    expect(shellcheck(files)).toBe("");
    expect(dataText(GUEST_DATA.inittab)).toContain(`::once:/${BOOT_CHECK_PATH} busybox\n`);
  });

  it("the unit, rendered with and without units, passes systemd-analyze verify", () => {
    for (const units of [[], ["containerd.service", "ssh.service", "getty@tty1.service"]]) {
      const root = mkdtempSync(join(tmpdir(), "acl-unit-"));
      mkdirSync(join(root, "usr/lib/acl"), { recursive: true });
      mkdirSync(join(root, "usr/lib/systemd/system"), { recursive: true });
      writeFileSync(join(root, BOOT_CHECK_PATH), bootCheckScript());
      chmodSync(join(root, BOOT_CHECK_PATH), 0o755);
      const unit = join(root, "usr/lib/systemd/system/acl-boot-check.service");
      writeFileSync(unit, bootCheckUnit(units));
      expect(readFileSync(unit, "utf8")).toContain(`ExecStart=/${BOOT_CHECK_PATH} systemd${units.map((u) => ` ${u}`).join("")}\n`);
      const r = spawnSync("systemd-analyze", ["verify", `--root=${root}`, unit], { encoding: "utf8", env: { ...process.env, PATH } });
      if (r.error) throw new Error(`systemd-analyze is missing (apt-get install systemd): ${r.error.message}`);
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
    }
  });

  it("acl-ab.sh (the node's A/B step) passes shellcheck, and inittab runs it before the boot check", () => {
    expect(shellcheck([dataPath(AB_DATA)])).toBe("");
    const tab = dataText(GUEST_DATA.inittab);
    expect(tab.indexOf(`::wait:/${AB_SCRIPT} boot\n`)).toBeGreaterThan(-1);
    expect(tab.indexOf(`::wait:/${AB_SCRIPT} boot`)).toBeLessThan(tab.indexOf(`::once:/${BOOT_CHECK_PATH}`));
  });

  it("acl-ab's version order (awk) agrees with compareVersions, under busybox awk and mawk", () => {
    const bb = mkdtempSync(join(tmpdir(), "acl-bb-"));
    for (const a of ["awk", "sh", "sed", "grep", "head", "tr", "od", "cut", "cat"]) symlinkSync("/bin/busybox", join(bb, a));
    const pairs = [["1.0.0", "1.1.0"], ["1.9", "1.10"], ["1.0", "1.0.0"], ["1.0~rc1", "1.0"], ["1.0-1", "1.0.1"], ["1.0^p1", "1.0"], ["1.0a", "1.0b"], ["001", "1"], ["2024.1", "2023.12"], ["1.2.3", "1.2.3"], ["abc", "abcde"], ["1_2", "1.2"], ["10", "9a"], ["1.0+build1", "1.0+build2"]];
    for (const path of [bb, "/usr/bin:/bin"]) {
      for (const [a, b] of pairs) {
        const r = spawnSync("sh", [dataPath(AB_DATA), "vercmp", a!, b!], { encoding: "utf8", env: { PATH: path } });
        expect(Number(r.stdout.trim()), `${a} vs ${b} with PATH=${path}: ${r.stderr}`).toBe(compareVersions(a, b));
      }
    }
  });

  it("the A/B units pass systemd-analyze verify", () => {
    const root = mkdtempSync(join(tmpdir(), "acl-ab-units-"));
    mkdirSync(join(root, "usr/lib/acl"), { recursive: true });
    // the targets and units they name come from the host's systemd 252, the version Debian 12 images carry
    mkdirSync(join(root, "usr/lib/systemd"), { recursive: true });
    expect(spawnSync("cp", ["-a", "/lib/systemd/system", "/lib/systemd/systemd-bless-boot", "/lib/systemd/systemd-pcrphase", join(root, "usr/lib/systemd/")]).status).toBe(0);
    // merged /usr, as acl's images have it
    symlinkSync("usr/lib", join(root, "lib"));
    writeFileSync(join(root, AB_SCRIPT), dataText(AB_DATA));
    chmodSync(join(root, AB_SCRIPT), 0o755);
    const units: string[] = [];
    for (const [data, rel] of Object.entries(AB_UNITS)) {
      const p = join(root, "usr/lib/systemd/system", rel);
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, dataText(data));
      if (!rel.includes(".d/")) units.push(p);
    }
    // the drop-in is read with Debian's systemd-bless-boot.service (host package systemd-boot)
    units.push(join(root, "usr/lib/systemd/system/systemd-bless-boot.service"));
    // the pcrphase drop-in, with Debian's pcrphase units
    for (const unit of PCRPHASE_UNITS) {
      const p = join(root, "usr/lib/systemd/system", `${unit}.d`, "acl-tpm2-libs.conf");
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, dataText(PCRPHASE_DROPIN));
      units.push(join(root, "usr/lib/systemd/system", unit));
    }
    const r = spawnSync("systemd-analyze", ["verify", `--root=${root}`, ...units], { encoding: "utf8", env: { ...process.env, PATH } });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("checks exactly the units it is given, with a stand-in systemctl", () => {
    const d = mkdtempSync(join(tmpdir(), "acl-check-run-"));
    const bin = join(d, "bin");
    mkdirSync(bin);
    // systemctl as the script uses it: is-system-running, --failed, show -p ... UNIT, poweroff
    writeFileSync(
      join(bin, "systemctl"),
      `#!/bin/sh
case "$1" in
  is-system-running) echo running ;;
  --failed) ;;
  show) u=""; for a in "$@"; do u="$a"; done
    case "$u" in
      up.service) printf 'ActiveState=active\\nResult=success\\nInactiveEnterTimestampMonotonic=0\\n' ;;
      once.service) printf 'ActiveState=inactive\\nResult=success\\nInactiveEnterTimestampMonotonic=123\\n' ;;
      never.service) printf 'ActiveState=inactive\\nResult=success\\nInactiveEnterTimestampMonotonic=0\\n' ;;
      *) printf 'ActiveState=failed\\nResult=exit-code\\nInactiveEnterTimestampMonotonic=9\\n' ;;
    esac ;;
esac
`,
    );
    chmodSync(join(bin, "systemctl"), 0o755);
    // the script only acts when asked on the kernel command line; give it one through a private /proc/cmdline stand-in
    const script = bootCheckScript()
      .replace("< /proc/cmdline", `< ${join(d, "cmdline")}`)
      .replace(/^PATH=.*$/m, `PATH=${bin}:/usr/bin:/bin`)
      .replace("if [ -w /dev/console ]; then exec >/dev/console 2>&1; fi", "");
    writeFileSync(join(d, "cmdline"), `console=ttyS0 ${BOOT_CHECK_REQUEST}\n`);
    writeFileSync(join(d, "boot-check"), script);
    const run = (...units: string[]) => {
      const r = spawnSync("sh", [join(d, "boot-check"), "systemd", ...units], { encoding: "utf8" });
      return r.stdout.split("\n").find((l) => l.startsWith("ACL-CHECK enabled-units")) ?? `(none) ${r.stdout}${r.stderr}`;
    };
    expect(run()).toBe("ACL-CHECK enabled-units ok none");
    expect(run("up.service", "once.service")).toBe("ACL-CHECK enabled-units ok up.service once.service");
    expect(run("up.service", "never.service", "bad.service")).toBe(
      "ACL-CHECK enabled-units fail not active: never.service=inactive/success bad.service=failed/exit-code",
    );
  });
});
