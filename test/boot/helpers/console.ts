/** Console transcripts for the judge's pure tests. */

/** Lines as QEMU's adapter hands them over, 10 ms apart. */
export const L = (...t: string[]) => t.map((text, i) => ({ ms: 1000 + i * 10, text }));

/** QEMU exited cleanly after 5 s. */
export const okRun = { exitCode: 0, timedOut: false, durationMs: 5000 };

/** A passing busybox boot (direct kernel): kernel, initramfs, the guest checks, power-off. */
export const BUSYBOX_BOOT = [
  "[    0.000000] Linux version 6.1.0-56-cloud-amd64",
  "acl-init: started (image microarch x86-64-v3, kernel 6.1.0-56-cloud-amd64)",
  "acl-init: switching root to /usr/sbin/init",
  "ACL-CHECK userspace ok 6.1.0-56-cloud-amd64 pid1=init",
  "acl-test login: ACL-CHECK usr-verity ok /dev/mapper/usr erofs ro dm=usr uuid=CRYPT-VERITY-x-usr",
  "ACL-CHECK no-pkg-manager ok none of: dpkg apt apt-get rpm dnf yum apk",
  "ACL-INFO hwcaps-line x86-64-v3 (supported, searched)",
  "ACL-CHECK hwcaps ok supported: x86-64-v3 x86-64-v2",
  "ACL-CHECK init ok busybox pid1=init",
  "ACL-CHECK done 0",
  "[   12.0] reboot: Power down",
] as const;
