#!/usr/bin/env bash
# A long fuzz run: every property in test/fuzz with TIMES (default 50) times the runs CI gives it,
# from a fresh seed. The seed is printed first; ACL_FUZZ_SEED=SEED replays a run exactly, and a
# failing property prints its counterexample and the seed and path that reproduce it.
#   ./scripts/fuzz.sh [TIMES] [FILE...]     (FILE: decoders, inspect, archives, inputs, update; default all)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
times="${1:-50}"
[ $# -gt 0 ] && shift
seed="${ACL_FUZZ_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "fuzz: ${times}x the CI runs, seed ${seed} (replay: ACL_FUZZ_SEED=${seed} $0 ${times})" >&2
mkdir -p .cache
files=()
for f in "$@"; do files+=("test/fuzz/${f%.test.ts}.test.ts"); done
[ ${#files[@]} -gt 0 ] || files=(test/fuzz)
ACL_FUZZ_RUNS="$times" ACL_FUZZ_SEED="$seed" npx vitest run --testTimeout=0 --hookTimeout=0 "${files[@]}"
