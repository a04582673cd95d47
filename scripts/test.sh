#!/usr/bin/env bash
# Set up, then run the whole test suite (unit, integration with real tools, boot under QEMU).
# Ends with one line: "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
mkdir -p .cache
rm -f .cache/vitest-results.json
set +e
npx vitest run "$@"
rc=$?
set -e
node scripts/summary.mjs .cache/vitest-results.json
exit $rc
