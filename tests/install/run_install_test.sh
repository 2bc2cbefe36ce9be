#!/usr/bin/env bash
# usage: run_install_test.sh BUILD_DIR SOURCE_DIR [PYTHON]
# Installs BUILD_DIR into a temporary prefix, builds tests/install/consumer against that prefix only,
# runs it on a fresh region; builds tests/install/c_consumer (C99, -Werror) twice, with pkg-config
# and with CMake's shmetrics::c, and runs both on the same region; with PYTHON (the build has the
# Python package), imports the installed shmetrics package with that interpreter and counts on the
# same region, and so does a prometheus_client program under the installed shmetrics-run; then
# starts the installed gateway on that region and checks that /metrics shows what the consumers
# counted. Cleans up the region, the gateway and the prefix.
set -euo pipefail

if [[ $# -ne 2 && $# -ne 3 ]]; then
  echo "usage: $0 BUILD_DIR SOURCE_DIR [PYTHON]" >&2
  exit 2
fi
build_dir="$(cd "$1" && pwd)"
source_dir="$(cd "$2" && pwd)"
python="${3:-}"
consumer_src="${source_dir}/tests/install/consumer"
region="shmetrics-install-test-$$"

tmp="$(mktemp -d -t shmetrics-install.XXXXXX)"
gateway_pid=""
cleanup() {
  if [[ -n "$gateway_pid" ]]; then
    kill -TERM "$gateway_pid" 2>/dev/null || true
    wait "$gateway_pid" 2>/dev/null || true
  fi
  rm -f "/dev/shm/${region}"
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "install_consumer_test: FAIL: $*" >&2
  exit 1
}
step() { echo "install_consumer_test: $*" >&2; }

prefix="$tmp/prefix"
step "cmake --install ${build_dir} --prefix ${prefix}"
cmake --install "$build_dir" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; fail "cmake --install failed"; }

config="$(find "$prefix" -name shmetricsConfig.cmake -print -quit)"
[[ -n "$config" ]] || fail "no shmetricsConfig.cmake under ${prefix}"
step "package config: ${config#"$prefix"/}"

gateway="$prefix/bin/shmetrics-gateway"
[[ -x "$gateway" ]] || fail "gateway not installed as ${gateway#"$prefix"/}"
"$gateway" --help >"$tmp/gateway-help.txt" 2>&1 ||
  { cat "$tmp/gateway-help.txt" >&2; fail "installed gateway --help exited non-zero"; }
grep -q -- "--region" "$tmp/gateway-help.txt" || fail "installed gateway --help does not mention --region"

# Only the prefix: the consumer must not find the build tree (no package registry, no source).
step "configuring and building the consumer against ${prefix}"
cmake -S "$consumer_src" -B "$tmp/consumer-build" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
      >"$tmp/consumer-configure.log" 2>&1 ||
  { cat "$tmp/consumer-configure.log" >&2; fail "consumer configure failed"; }
cmake --build "$tmp/consumer-build" -j2 >"$tmp/consumer-build.log" 2>&1 ||
  { cat "$tmp/consumer-build.log" >&2; fail "consumer build failed"; }

step "running the consumer on region ${region}"
out="$("$tmp/consumer-build/app" "$region" 2>&1)" || { echo "$out" >&2; fail "consumer exited non-zero"; }
[[ "$out" == "OK" ]] || { echo "$out" >&2; fail "consumer printed something other than OK"; }
[[ -e "/dev/shm/${region}" ]] || fail "consumer did not create /dev/shm/${region}"

# The C ABI: the header and libshmetrics.so.1 beside the static libraries, found by pkg-config
# (through PKG_CONFIG_PATH at the prefix only) and by the package config.
c_consumer_src="${source_dir}/tests/install/c_consumer"
libdir="$(dirname "$(find "$prefix" -name libshmetrics.so.1 -print -quit)")"
[[ -e "$libdir/libshmetrics.so.1" ]] || fail "libshmetrics.so.1 not installed"
[[ -e "$prefix/include/shmetrics/shmetrics_c.h" ]] || fail "shmetrics/shmetrics_c.h not installed"
pc_dir="$(dirname "$(find "$prefix" -name shmetrics.pc -print -quit)")"
[[ -e "$pc_dir/shmetrics.pc" ]] || fail "shmetrics.pc not installed"
step "building the C consumer with pkg-config (${pc_dir#"$prefix"/})"
pc_flags="$(PKG_CONFIG_PATH="$pc_dir" PKG_CONFIG_LIBDIR="$pc_dir" pkg-config --cflags --libs shmetrics)" ||
  fail "pkg-config --cflags --libs shmetrics failed"
# shellcheck disable=SC2086  # pkg-config's output is a list of flags
gcc -std=c99 -Wall -Wextra -Werror -pedantic -o "$tmp/c_app_pkgconfig" "$c_consumer_src/main.c" \
    $pc_flags >"$tmp/c-pkgconfig-build.log" 2>&1 ||
  { cat "$tmp/c-pkgconfig-build.log" >&2; fail "C consumer build with pkg-config failed (${pc_flags})"; }
step "building the C consumer with find_package(shmetrics) and shmetrics::c"
cmake -S "$c_consumer_src" -B "$tmp/c-consumer-build" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
      >"$tmp/c-consumer-configure.log" 2>&1 ||
  { cat "$tmp/c-consumer-configure.log" >&2; fail "C consumer configure failed"; }
cmake --build "$tmp/c-consumer-build" -j2 >"$tmp/c-consumer-build.log" 2>&1 ||
  { cat "$tmp/c-consumer-build.log" >&2; fail "C consumer build with CMake failed"; }
for app in "$tmp/c_app_pkgconfig" "$tmp/c-consumer-build/c_app"; do
  step "running ${app#"$tmp"/} on region ${region}"
  out="$(LD_LIBRARY_PATH="$libdir" "$app" "$region" 2>&1)" ||
    { echo "$out" >&2; fail "${app#"$tmp"/} exited non-zero"; }
  [[ "$out" == "OK" ]] || { echo "$out" >&2; fail "${app#"$tmp"/} printed something other than OK"; }
done
# The pkg-config build resolves the installed library, not one from the build tree.
LD_LIBRARY_PATH="$libdir" ldd "$tmp/c_app_pkgconfig" | grep -q "=> ${libdir}/libshmetrics.so.1" ||
  fail "the pkg-config consumer does not load ${libdir}/libshmetrics.so.1"

# The Python package from the prefix alone: the interpreter's own path plus the installed
# package directory, run outside the source and build trees; _native must load the installed
# libshmetrics.so.1, and the installed launcher must run.
if [[ -n "$python" ]]; then
  py_init="$(find "$prefix" -path '*/shmetrics/__init__.py' -print -quit)"
  [[ -n "$py_init" ]] || fail "no shmetrics/__init__.py under ${prefix}"
  py_dir="$(dirname "$(dirname "$py_init")")"
  step "running ${python} with the package in ${py_dir#"$prefix"/} on region ${region}"
  out="$(cd "$tmp" && env -u SHMETRICS_REGION PYTHONPATH="$py_dir" PYTHONDONTWRITEBYTECODE=1 \
         "$python" -c '
import sys
import shmetrics
region, prefix = sys.argv[1:]
shmetrics.attach(region)
shmetrics.Counter("py_requests_total", "Requests.", ["method"]).labels("GET").inc(4)
library = {line.split()[-1] for line in open("/proc/self/maps") if "libshmetrics.so" in line}
print(shmetrics.__file__.startswith(prefix + "/"), *library)
' "$region" "$prefix" 2>&1)" || { echo "$out" >&2; fail "the installed Python package failed"; }
  [[ "$out" == "True ${libdir}/libshmetrics.so.1"* ]] ||
    fail "expected the package and libshmetrics.so.1 from ${prefix}, got: ${out}"
  [[ -x "$prefix/bin/shmetrics-run" ]] || fail "shmetrics-run not installed in bin/"
  out="$(cd "$tmp" && env -u PYTHONPATH "$prefix/bin/shmetrics-run" --help 2>&1)" ||
    { echo "$out" >&2; fail "the installed shmetrics-run --help exited non-zero"; }
  grep -q -- "--region NAME" <<<"$out" || fail "the installed shmetrics-run --help: ${out}"
  step "running an unmodified prometheus_client program under the installed shmetrics-run"
  out="$(cd "$tmp" && env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 "$prefix/bin/shmetrics-run" \
         --region "$region" "$python" -c '
import prometheus_client
prometheus_client.Counter("py_launched", "Launched.").inc(2)
' 2>&1)" || { echo "$out" >&2; fail "the installed shmetrics-run failed"; }
  [[ -z "$out" ]] || fail "the installed shmetrics-run printed: ${out}"
fi

# The installed gateway serves what the (now exited) consumers counted.
step "scraping the installed gateway"
count_line() {  # the consumer's series in a scrape, or nothing
  grep -E '^http_requests_total\{' <<<"$1" | grep 'method="GET"' | grep 'code="200"' || true
}
up=0
scraped=""
for attempt in 1 2 3; do
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$gateway" --region "$region" --listen "127.0.0.1:${port}" 2>"$tmp/gateway.log" &
  gateway_pid=$!
  for _ in $(seq 1 100); do
    kill -0 "$gateway_pid" 2>/dev/null || break  # exited (port taken meanwhile?): another port
    if curl --silent --noproxy '*' --max-time 2 -o /dev/null "http://127.0.0.1:${port}/healthz"; then
      up=1
      break 2
    fi
    sleep 0.1
  done
  kill -TERM "$gateway_pid" 2>/dev/null || true
  wait "$gateway_pid" 2>/dev/null || true
  gateway_pid=""
  step "gateway attempt ${attempt} on port ${port} did not come up"
done
(( up )) || { cat "$tmp/gateway.log" >&2; fail "the installed gateway never answered /healthz"; }
# The consumer's slot is dead by now; give the gateway a few seconds to notice if it must.
for _ in $(seq 1 50); do
  scraped="$(curl --silent --show-error --fail --noproxy '*' --max-time 5 \
             "http://127.0.0.1:${port}/metrics")" || fail "GET /metrics failed"
  line="$(count_line "$scraped")"
  if [[ -n "$line" ]] && awk '{ exit !($NF == 3) }' <<<"$line"; then break; fi
  sleep 0.1
done
line="$(count_line "$scraped")"
[[ -n "$line" ]] ||
  { echo "$scraped" >&2; fail "no http_requests_total{method=\"GET\",code=\"200\"} in /metrics"; }
awk '{ exit !($NF == 3) }' <<<"$line" || fail "expected the consumer's count of 3, got: $line"
# Each C consumer counted 3 (inc, add 1, add 1 with an exemplar).
c_line="$(grep -E '^c_requests_total\{' <<<"$scraped" | grep 'method="GET"' | grep 'code="200"' || true)"
awk '{ exit !($NF == 6) }' <<<"$c_line" ||
  { echo "$scraped" >&2; fail "expected the C consumers' count of 6, got: ${c_line}"; }
if [[ -n "$python" ]]; then
  py_line="$(grep -E '^py_requests_total\{' <<<"$scraped" | grep 'method="GET"' || true)"
  awk '{ exit !($NF == 4) }' <<<"$py_line" ||
    { echo "$scraped" >&2; fail "expected the Python consumer's count of 4, got: ${py_line}"; }
  py_line="$(grep -E '^py_launched_total ' <<<"$scraped" || true)"
  awk '{ exit !($NF == 2) }' <<<"$py_line" ||
    { echo "$scraped" >&2; fail "expected the launched program's count of 2, got: ${py_line}"; }
fi
kill -TERM "$gateway_pid"
gateway_status=0
wait "$gateway_pid" || gateway_status=$?
gateway_pid=""
(( gateway_status == 0 )) || fail "the installed gateway exited with ${gateway_status} on SIGTERM"

step "PASS"
