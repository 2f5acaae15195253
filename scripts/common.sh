# Shared by the scripts (source it): CI mode and running as root.

# CI mode: under CI, tests that cannot run what they are about fail instead of skipping. The
# same reading of CI as tests/support/ci_mode.h and ci_mode.py: true, 1, yes or on, any case.
ci_mode() {
  case "${CI:-}" in
    [Tt][Rr][Uu][Ee] | 1 | [Yy][Ee][Ss] | [Oo][Nn]) return 0 ;;
    *) return 1 ;;
  esac
}

# Not root and sudo exists: runs the given command (the calling script, "$0" "$@") through sudo
# and does not return. Keeps the variables the scripts, the build and the agent read (CI,
# THREADLINE_*, OTEL_*, CMAKE_*, CCACHE_*), which sudo would otherwise reset. Root, or no sudo:
# returns, and the caller goes on as it is.
reexec_as_root_if_possible() {
  [[ "$(id -u)" == 0 ]] && return 0
  command -v sudo >/dev/null 2>&1 || return 0
  local keep=() name
  while IFS= read -r name; do
    case "$name" in
      CI | THREADLINE_* | OTEL_* | CMAKE_* | CCACHE_*) keep+=("$name=${!name}") ;;
    esac
  done < <(compgen -e)
  exec sudo env "${keep[@]}" "$@"
}
