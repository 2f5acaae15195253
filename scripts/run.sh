#!/usr/bin/env bash
# Builds threadline if needed and runs it. Arguments go to the agent unchanged; with none it
# prints each trace as a tree on stdout (--output=console). Needs root for BPF: started by
# another user, it re-runs itself with sudo when there is one (keeping OTEL_* and THREADLINE_*).
#
#   scripts/run.sh [threadline flags...]      e.g. scripts/run.sh --exe '*curl*'
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/common.sh"
reexec_as_root_if_possible "$repo/scripts/run.sh" "$@"

if [[ "$(id -u)" != 0 ]]; then
  echo "run.sh: error: threadline loads BPF programs and needs root; run it as root." >&2
  exit 1
fi

"$repo/scripts/build.sh" >&2

exec "${THREADLINE_BUILD_DIR:-$repo/build}/threadline" "$@"
