#!/usr/bin/env bash
# Set up, build the default image (images/minimal.toml) and boot-test it under QEMU.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
./bin/acl build images/minimal.toml
if ./bin/acl boot-test --help >/dev/null 2>&1; then
  ./bin/acl boot-test out/minimal
fi
