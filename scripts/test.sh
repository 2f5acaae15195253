#!/usr/bin/env bash
# Builds threadline if needed and runs the whole test suite (labels unit, kernel, e2e, deploy,
# bench) with ctest. Extra arguments go to ctest (e.g. -L unit, -R e2e.test_cli). Exits with
# ctest's code. The last line printed is ctest's summary ("N% tests passed, F tests failed out of T").
#
# Kernel, e2e and bench tests need root: started by another user, the script re-runs itself
# with sudo when there is one. In CI mode (CI=true, 1, yes or on; .ci/run sets it) a test that
# cannot load BPF or lacks a tool fails; otherwise it skips with a reason.
#
#   scripts/test.sh [ctest args...]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/common.sh"
reexec_as_root_if_possible "$repo/scripts/test.sh" "$@"
build_dir="${THREADLINE_BUILD_DIR:-$repo/build}"

# The tests read CI to decide between failing and skipping; ctest passes the environment on.
if [[ -n "${CI:-}" ]]; then
  export CI
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "test.sh: warning: not root and no sudo; kernel and e2e tests will $(ci_mode && echo fail || echo skip)." >&2
fi

# Build packages plus the third-party peers the e2e tests run (node/npm for the OTel JS SDK), and
# what the benchmarks' smoke tests (`ctest -L bench`) and test_cpu_budget drive (wrk, hey).
# Not root: the e2e tests skip anyway, so missing peers are no reason to stop here.
"$repo/scripts/deps.sh" --with-test-peers --with-bench || [[ "$(id -u)" != 0 ]]
"$repo/scripts/build.sh"

log="$build_dir/ctest.log"
set +e
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error \
  --parallel "$(nproc)" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

# ctest prints its summary line, then label times and the list of failed tests; repeat the
# summary so it is the last line and the count of tests run is visible at the end.
summary="$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)"
echo
if [[ -n "$summary" ]]; then
  echo "$summary"
else
  echo "test.sh: ctest printed no summary (exit code $rc); see $log"
fi
exit "$rc"
