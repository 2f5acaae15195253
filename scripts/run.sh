#!/usr/bin/env bash
# Builds threadline if needed and runs it. Arguments go to the agent unchanged; with none it
# prints each trace as a tree on stdout (--output=console). Needs root for BPF.
#
#   sudo scripts/run.sh [threadline flags...]      e.g. scripts/run.sh --exe '*curl*'
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo --preserve-env=CI "$repo/scripts/run.sh" "$@"
  fi
  echo "run.sh: error: threadline loads BPF programs and needs root; run it as root." >&2
  exit 1
fi

"$repo/scripts/build.sh" >&2

exec "${THREADLINE_BUILD_DIR:-$repo/build}/threadline" "$@"
