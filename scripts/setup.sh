#!/usr/bin/env bash
# Idempotent setup on Debian 12 (as root): system tools, a supported Node.js, npm dependencies, build.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  mmdebstrap erofs-utils squashfs-tools cryptsetup-bin gdisk fdisk dosfstools mtools e2fsprogs
  qemu-system-x86 qemu-utils ovmf docker.io busybox-static systemd-boot-efi binutils kmod cpio
  zstd xz-utils openssl shellcheck ignition dpkg-dev gcc libc6-dev attr skopeo libcap2-bin util-linux systemd
  systemd-boot cgpt sbsigntool efitools faketime swtpm swtpm-tools dnf rpm createrepo-c gnupg
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# Node.js: acl targets a supported LTS (>= 22). Debian 12's machines here carry Node 20, so take
# Node 24 LTS from the npm registry's `node` package into .tools/node when the system one is older.
NODE_BIN=.tools/node/node_modules/.bin
sys_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$sys_major" -lt 22 ] && [ ! -x "$NODE_BIN/node" ]; then
  echo "setup: installing Node.js 24 LTS into .tools/node (system node is v$sys_major)" >&2
  mkdir -p .tools/node
  npm install --no-save --no-package-lock --no-audit --no-fund --prefix .tools/node node@24 >&2
fi
if [ -x "$NODE_BIN/node" ]; then export PATH="$PWD/$NODE_BIN:$PATH"; fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >&2
fi
npm run -s build >&2
echo "setup: ok (node $(node --version))" >&2
