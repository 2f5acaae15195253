#!/usr/bin/env bash
# Builds threadline into build/ (the agent ends at build/threadline), installing missing
# Debian packages first. Configures only when build/ is not configured yet; after that ninja
# re-runs cmake by itself when a CMakeLists.txt changes.
#
#   scripts/build.sh [ninja target...]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${THREADLINE_BUILD_DIR:-$repo/build}"

"$repo/scripts/deps.sh"

if [[ ! -f "$build_dir/build.ninja" || ! -f "$build_dir/CMakeCache.txt" ]]; then
  cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi

ninja -C "$build_dir" -j "$(nproc)" "$@"
