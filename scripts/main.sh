#!/usr/bin/env bash
# Set up, build the default image (images/minimal.toml) and boot-test it under QEMU:
# direct kernel boot and UEFI from the disk alone on an x86-64-v3 CPU, refusal on a v2 CPU,
# and refusal of a tampered /usr. Exits non-zero if any boot case fails.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
./bin/acl build images/minimal.toml
./bin/acl boot-test out/minimal
