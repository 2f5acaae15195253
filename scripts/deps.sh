#!/usr/bin/env bash
# Installs the Debian packages threadline needs, and only the missing ones.
#
#   scripts/deps.sh                    build + run/test packages
#   scripts/deps.sh --with-test-peers  also the third-party peers the e2e tests run against
#   scripts/deps.sh --with-bench       also the servers and load generators bench/ drives
#
# Idempotent: every package is checked with dpkg-query first; `apt-get update` and
# `apt-get install` run only when something is missing. Needs root only in that case.
set -euo pipefail

# ---- The one list. Later issues add packages here, to the group that needs them. ----------
# Compilers, BPF toolchain and the libraries the agent links.
DEPS_BUILD=(
  cmake ninja-build g++ clang llvm pkg-config
  libbpf-dev bpftool libelf-dev zlib1g-dev
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  libspdlog-dev libcli11-dev
  libcurl4-openssl-dev libmicrohttpd-dev
  libssl-dev libcapstone-dev
  libyaml-cpp-dev
  nlohmann-json3-dev
  googletest libgtest-dev libgmock-dev
)
# What scripts/run.sh and the test suite call at run time.
DEPS_RUN=(
  iproute2 curl python3 procps
)
# Third-party servers/clients the e2e tests trace.
# nodejs (with npm): tests/e2e/test_otlp_export.py installs @elastic/mockotlpserver with it.
# nginx, openssl: tests/e2e/test_tls.py (HTTPS with a self-signed certificate made by openssl).
# yamllint: tests/deploy/test_manifests.py lints the Kubernetes manifests in deploy/. The same
# test needs kubectl (kustomize built in), which is not in this list: Debian 12's
# kubernetes-client is 1.20, whose built-in kustomize is too old for deploy/: install a recent
# kubectl (tested with 1.32) by other means.
# golang-go: Go https peers (tests/e2e/test_go_tls.py), the Go service of the injection chain
# (tests/e2e/test_inject.py, with iproute2's `ip netns`) and the symbolizer's Go test binaries,
# built at test time.
# mmdebstrap, libcap2-bin (capsh): tests/deploy/test_image_runtime.py builds the image's Debian 12
# root filesystem without a container engine and runs the agent there with the DaemonSet's
# capabilities.
# chromium: tests/e2e/test_web_view.py opens the web view in it (driven by npm playwright-core,
# which downloads no browser of its own).
# postgresql (server, psql, pgbench), python3-psycopg2, mariadb-server, mariadb-client,
# redis-server, redis-tools (redis-cli), python3-redis, python3-pymysql: tests/e2e/test_db_spans.py
# starts its own PostgreSQL 15, MariaDB 10.11 and Redis 7 in temp dirs and drives them with psql,
# pgbench, psycopg2, Node pg (npm), the mariadb CLI, Node mysql2 (npm), redis-cli, redis-py and
# (in its web service) PyMySQL.
# nghttp2-client (h2load): 100 concurrent HTTP/2 streams on one connection
# (tests/e2e/test_http2.py).
# prometheus (server and promtool, 2.42): tests/e2e/test_exemplars.py scrapes the agent with a real
# Prometheus (its OpenMetrics parser, exemplar storage); tests/deploy/test_prometheus_rules.py runs
# `promtool check rules` and `promtool test rules` on deploy/prometheus/.
# golang-golang-x-net-dev: Go's h2c server (golang.org/x/net/http2/h2c: h2c by Upgrade and by
# prior knowledge) in tests/e2e/test_http2.py, built in GOPATH mode from Debian's sources.
# nftables (nft): tests/e2e/test_tcp_option.py DNATs a Service-like address as kube-proxy does.
# python3-aiohttp: the asyncio front (aiohttp server and client) of tests/e2e/test_parenting.py.
DEPS_TEST_PEERS=(
  nodejs nginx openssl golang-go yamllint mmdebstrap libcap2-bin chromium prometheus
  postgresql python3-psycopg2 mariadb-server mariadb-client redis-server redis-tools python3-redis python3-pymysql
  nghttp2-client golang-golang-x-net-dev nftables python3-aiohttp
)
# What bench/overhead.py drives: nginx (HTTP and HTTPS with a self-signed cert made by openssl),
# wrk (max throughput), hey (fixed-rate latency), perf (profiles of bench/pipeline_bench).
DEPS_BENCH=(
  nginx wrk hey openssl linux-perf
)
# ---------------------------------------------------------------------------------------------

with_test_peers=0
with_bench=0
for arg in "$@"; do
  case "$arg" in
    --with-test-peers) with_test_peers=1 ;;
    --with-bench) with_bench=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "deps.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

wanted=("${DEPS_BUILD[@]}" "${DEPS_RUN[@]}")
if (( with_test_peers )) && (( ${#DEPS_TEST_PEERS[@]} )); then
  wanted+=("${DEPS_TEST_PEERS[@]}")
fi
if (( with_bench )); then
  wanted+=("${DEPS_BENCH[@]}")
fi

missing=()
for pkg in "${wanted[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if (( ${#missing[@]} == 0 )); then
  exit 0
fi

echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
if [[ "$(id -u)" != 0 ]]; then
  echo "deps.sh: error: installing them needs root. Run as root (sudo $0 $*) or install them:" >&2
  echo "  sudo apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "deps.sh: installed: ${missing[*]}" >&2
