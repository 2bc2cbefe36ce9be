#!/usr/bin/env bash
# usage: deb_package_test.sh BUILD_DIR SOURCE_DIR
# The Debian package of cmake/Packaging.cmake, made from BUILD_DIR with cpack into a temporary
# directory:
#  - contents (always): the file is shmetrics_<version>_<arch>.deb; `dpkg-deb -I` has the name,
#    version, architecture, maintainer, section, a Depends computed by dpkg-shlibdeps (libc6),
#    conffiles (/etc/default/shmetrics-gateway) and the postinst, prerm and postrm; `dpkg-deb -c`
#    has every file the package should hold and nothing from tests/, bench/, the Python or Node
#    bindings, the static libraries or the CMake config; the unit, sysusers.d entry, default file
#    and README are the source's; no ELF file has an RPATH or RUNPATH (readelf -d);
#  - install (only as root, and unless SHMETRICS_DEB_INSTALL_TEST=0; CI runs as root on a
#    throwaway machine): refuses if shmetrics is already installed or any of its files exists;
#    `apt-get install ./x.deb` (dpkg -i without apt-get), `dpkg -s`, the service neither enabled
#    nor started, the installed gateway on a unique region and a free loopback port answers
#    /metrics with shmetrics_gateway_build_info, the installed shmetrics-inspect reads that
#    region, `shmetrics-gateway --reset` removes it, then `apt-get remove` and `dpkg --purge`
#    leave none of the package's files behind. The users and the group that the postinst's
#    systemd-sysusers created stay, as Debian's system users do.
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2; exit 2; }
build_dir="$(cd "$1" && pwd)"
source_dir="$(cd "$2" && pwd)"

tmp="$(mktemp -d -t shmetrics-deb.XXXXXX)"
region="shmetrics-deb-test-$$"
gateway_pid=""
installed_by_us=0
fail() { echo "deb_package_test: FAIL: $*" >&2; exit 1; }
step() { echo "deb_package_test: $*" >&2; }
cleanup() {
  local status=$?
  if [[ -n "$gateway_pid" ]]; then
    kill -TERM "$gateway_pid" 2>/dev/null || true
    wait "$gateway_pid" 2>/dev/null || true
  fi
  if [[ -e "/dev/shm/${region}" ]]; then
    if [[ -x /usr/bin/shmetrics-gateway ]] && (( installed_by_us )); then
      timeout 10 /usr/bin/shmetrics-gateway --region "$region" --reset >/dev/null 2>&1 || true
    fi
    rm -f "/dev/shm/${region}"
  fi
  if (( installed_by_us )); then
    step "cleanup: purging the package this test installed"
    timeout 120 env DEBIAN_FRONTEND=noninteractive dpkg --purge shmetrics >&2 || true
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ -f "${build_dir}/CPackConfig.cmake" ]] || fail "no CPackConfig.cmake in ${build_dir}"
version="$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "${build_dir}/CPackConfig.cmake")"
arch="$(dpkg --print-architecture)"
[[ -n "$version" ]] || fail "no CPACK_PACKAGE_VERSION in ${build_dir}/CPackConfig.cmake"

step "cpack -G DEB (into ${tmp}/out)"
(cd "$tmp" && timeout 300 cpack -G DEB --config "${build_dir}/CPackConfig.cmake" -B "$tmp/out") \
  >"$tmp/cpack.log" 2>&1 || { cat "$tmp/cpack.log" >&2; fail "cpack failed"; }
deb="$tmp/out/shmetrics_${version}_${arch}.deb"
[[ -f "$deb" ]] || { ls -l "$tmp/out" >&2; fail "no $(basename "$deb") made"; }

step "dpkg-deb -I"
timeout 30 dpkg-deb -I "$deb" >"$tmp/info.txt" || fail "dpkg-deb -I failed"
field() { timeout 30 dpkg-deb -f "$deb" "$1"; }
[[ "$(field Package)" == "shmetrics" ]] || fail "Package is '$(field Package)'"
[[ "$(field Version)" == "$version" ]] || fail "Version is '$(field Version)', not ${version}"
[[ "$(field Architecture)" == "$arch" ]] || fail "Architecture is '$(field Architecture)'"
[[ -n "$(field Maintainer)" ]] || fail "no Maintainer"
[[ -n "$(field Section)" ]] || fail "no Section"
[[ -n "$(field Description)" ]] || fail "no Description"
field Depends | grep -q 'libc6 (>= ' || fail "Depends has no versioned libc6 (dpkg-shlibdeps did not run?): $(field Depends)"
for control in conffiles postinst prerm postrm; do
  grep -Eq "^ +[0-9]+ bytes, +[0-9]+ lines +\*? +${control}( |$)" "$tmp/info.txt" ||
    { cat "$tmp/info.txt" >&2; fail "no ${control} in the control archive"; }
done
mkdir "$tmp/control"
timeout 30 dpkg-deb -e "$deb" "$tmp/control"
[[ "$(cat "$tmp/control/conffiles")" == "/etc/default/shmetrics-gateway" ]] ||
  fail "conffiles is not /etc/default/shmetrics-gateway: $(cat "$tmp/control/conffiles")"
for script in postinst prerm postrm; do
  [[ -x "$tmp/control/$script" ]] || fail "${script} is not executable"
  sh -n "$tmp/control/$script" || fail "${script} is not valid sh"
done
grep -q 'systemd-sysusers shmetrics.conf' "$tmp/control/postinst" || fail "postinst runs no systemd-sysusers"
if grep -v '^ *#' "$tmp/control/postinst" | grep -Eq 'systemctl +(enable|start)|deb-systemd-invoke'; then
  fail "postinst enables or starts the service (the operator sets SHMETRICS_REGION first)"
fi

step "dpkg-deb -c"
timeout 30 dpkg-deb -c "$deb" >"$tmp/contents.txt" || fail "dpkg-deb -c failed"
# Paths without the leading '.', symlinks as 'path -> target'.
awk '{ p = $6; sub(/^\./, "", p); if ($7 == "->") p = p " -> " $8; print p }' "$tmp/contents.txt" \
  >"$tmp/paths.txt"
expected=(
  /usr/bin/shmetrics-gateway
  /usr/bin/shmetrics-inspect
  "/usr/lib/libshmetrics.so.1 -> libshmetrics.so.1.0.0"
  "/usr/lib/libshmetrics.so -> libshmetrics.so.1"
  /usr/lib/libshmetrics.so.1.0.0
  /usr/include/shmetrics/shmetrics_c.h
  /usr/lib/pkgconfig/shmetrics.pc
  /usr/lib/systemd/system/shmetrics-gateway.service
  /usr/lib/sysusers.d/shmetrics.conf
  /etc/default/shmetrics-gateway
  /usr/share/doc/shmetrics/README.md
  /usr/share/doc/shmetrics/copyright
  /usr/share/shmetrics/prometheus/scrape.yml
  /usr/share/shmetrics/prometheus/alerts.yml
  /usr/share/shmetrics/prometheus/alerts_test.yml
  /usr/share/shmetrics/grafana/shmetrics-dashboard.json
)
for p in "${expected[@]}"; do
  grep -qxF -- "$p" "$tmp/paths.txt" || { cat "$tmp/paths.txt" >&2; fail "the package lacks ${p}"; }
done
# Every file (not directory) is one of the expected, so nothing else slipped in.
grep -v '/$' "$tmp/paths.txt" >"$tmp/files.txt"
printf '%s\n' "${expected[@]}" | sort >"$tmp/expected.txt"
sort "$tmp/files.txt" | comm -23 - "$tmp/expected.txt" >"$tmp/extra.txt"
[[ ! -s "$tmp/extra.txt" ]] || { cat "$tmp/extra.txt" >&2; fail "the package holds files beyond the list above"; }
if grep -Ei 'test|bench|loadgen|python|site-packages|dist-packages|node|shmetrics-run|\.a$|/cmake/' \
     "$tmp/files.txt" | grep -v '^/usr/share/shmetrics/prometheus/alerts_test.yml$' >"$tmp/bad.txt"; then
  cat "$tmp/bad.txt" >&2; fail "the package holds files from tests, bench, the bindings or the C++ kit"
fi

step "dpkg-deb -x: files as in the source, no RPATH/RUNPATH"
mkdir "$tmp/root"
timeout 60 dpkg-deb -x "$deb" "$tmp/root"
cmp "$tmp/root/usr/lib/systemd/system/shmetrics-gateway.service" \
    "${source_dir}/deploy/systemd/shmetrics-gateway.service" || fail "the unit differs from the source's"
cmp "$tmp/root/usr/lib/sysusers.d/shmetrics.conf" "${source_dir}/deploy/systemd/shmetrics.sysusers" ||
  fail "the sysusers.d entry differs from the source's"
cmp "$tmp/root/etc/default/shmetrics-gateway" "${source_dir}/deploy/systemd/shmetrics-gateway.default" ||
  fail "the default file differs from the source's"
cmp "$tmp/root/usr/share/doc/shmetrics/README.md" "${source_dir}/README.md" || fail "README.md differs"
grep -q '^Documentation=file:///usr/share/doc/shmetrics/README.md$' \
  "$tmp/root/usr/lib/systemd/system/shmetrics-gateway.service" || fail "the unit's Documentation= moved"
for elf in usr/bin/shmetrics-gateway usr/bin/shmetrics-inspect usr/lib/libshmetrics.so.1.0.0; do
  readelf -d "$tmp/root/$elf" >"$tmp/dynamic.txt" 2>&1 || fail "readelf -d ${elf} failed"
  if grep -Eq '\((RPATH|RUNPATH)\)' "$tmp/dynamic.txt"; then
    grep -E '\((RPATH|RUNPATH)\)' "$tmp/dynamic.txt" >&2; fail "/${elf} has an RPATH or RUNPATH"
  fi
done
readelf -d "$tmp/root/usr/lib/libshmetrics.so.1.0.0" | grep -q 'Library soname: \[libshmetrics.so.1\]' ||
  fail "libshmetrics.so.1.0.0 has no SONAME libshmetrics.so.1"
step "contents: PASS"

# --- The install half. ---
if [[ "$(id -u)" -ne 0 ]]; then
  step "install half SKIPPED: not root (installing into /usr needs root; CI runs it as root)"
  echo "deb_package_test: PASS (contents only)"
  exit 0
fi
if [[ "${SHMETRICS_DEB_INSTALL_TEST:-1}" == "0" ]]; then
  step "install half SKIPPED: SHMETRICS_DEB_INSTALL_TEST=0"
  echo "deb_package_test: PASS (contents only)"
  exit 0
fi

step "install: nothing of shmetrics on this machine yet"
status="$(dpkg-query -W -f='${db:Status-Status}' shmetrics 2>/dev/null || true)"
if [[ -n "$status" && "$status" != "not-installed" ]]; then
  fail "a shmetrics package is already on this machine (dpkg status '${status}'): this test does not" \
       "overwrite it; remove it, or run with SHMETRICS_DEB_INSTALL_TEST=0"
fi
while read -r p; do
  p="${p%% -> *}"
  [[ ! -e "$p" && ! -L "$p" ]] ||
    fail "${p} exists already (not from a shmetrics package): this test does not overwrite it"
done <"$tmp/files.txt"

step "apt-get install ${deb}"
installed_by_us=1  # from here on the trap purges, whatever happens
if command -v apt-get >/dev/null 2>&1; then
  timeout 300 env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$deb" \
    >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "apt-get install failed"; }
else
  timeout 300 env DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "dpkg -i failed"; }
fi
timeout 30 dpkg -s shmetrics >"$tmp/status.txt" || fail "dpkg -s shmetrics failed after the install"
grep -qx 'Status: install ok installed' "$tmp/status.txt" || { cat "$tmp/status.txt" >&2; fail "not installed"; }
grep -qx "Version: ${version}" "$tmp/status.txt" || fail "dpkg -s shows another version"
timeout 30 dpkg -L shmetrics >"$tmp/installed.txt"
for p in "${expected[@]}"; do
  p="${p%% -> *}"
  [[ -e "$p" ]] || fail "${p} is not on the machine after the install"
done
[[ ! -e /etc/systemd/system/multi-user.target.wants/shmetrics-gateway.service ]] ||
  fail "the install enabled shmetrics-gateway.service"
if command -v systemd-sysusers >/dev/null 2>&1; then
  getent passwd shmetrics-gateway >/dev/null || fail "postinst did not create the user shmetrics-gateway"
  getent group shmetrics >/dev/null || fail "postinst did not create the group shmetrics"
fi
if [[ -d /run/systemd/system ]] && systemctl is-active --quiet shmetrics-gateway.service; then
  fail "the install started shmetrics-gateway.service"
fi
timeout 10 /usr/bin/shmetrics-gateway --version >/dev/null || fail "the installed gateway's --version failed"

step "the installed gateway on region ${region}"
port="$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
timeout 120 /usr/bin/shmetrics-gateway --region "$region" --listen "127.0.0.1:${port}" \
  >"$tmp/gateway.log" 2>&1 &
gateway_pid=$!
for _ in $(seq 100); do
  curl -fsS -m 2 "http://127.0.0.1:${port}/healthz" >/dev/null 2>&1 && break
  kill -0 "$gateway_pid" 2>/dev/null || { cat "$tmp/gateway.log" >&2; fail "the installed gateway exited"; }
  sleep 0.1
done
curl -fsS -m 5 "http://127.0.0.1:${port}/metrics" >"$tmp/metrics.txt" ||
  { cat "$tmp/gateway.log" >&2; fail "no /metrics from the installed gateway"; }
grep -q '^shmetrics_gateway_build_info{' "$tmp/metrics.txt" ||
  { head -20 "$tmp/metrics.txt" >&2; fail "no shmetrics_gateway_build_info in /metrics"; }
grep -q "version=\"${version}\"" <(grep '^shmetrics_gateway_build_info{' "$tmp/metrics.txt") ||
  fail "shmetrics_gateway_build_info is not version ${version}"

step "the installed shmetrics-inspect on region ${region}"
timeout 10 /usr/bin/shmetrics-inspect --region "$region" >"$tmp/inspect.txt" 2>&1 ||
  { cat "$tmp/inspect.txt" >&2; fail "shmetrics-inspect failed on the gateway's region"; }
grep -q "$region" "$tmp/inspect.txt" || { cat "$tmp/inspect.txt" >&2; fail "shmetrics-inspect does not name the region"; }

step "stopping the gateway, removing the region"
kill -TERM "$gateway_pid"
gateway_status=0
timeout 20 tail --pid="$gateway_pid" -f /dev/null || fail "the gateway did not stop within 20 s of SIGTERM"
wait "$gateway_pid" || gateway_status=$?
gateway_pid=""
(( gateway_status == 0 )) || { cat "$tmp/gateway.log" >&2; fail "the gateway exited ${gateway_status} on SIGTERM"; }
timeout 10 /usr/bin/shmetrics-gateway --region "$region" --reset >"$tmp/reset.log" 2>&1 ||
  { cat "$tmp/reset.log" >&2; fail "shmetrics-gateway --reset failed"; }
[[ ! -e "/dev/shm/${region}" ]] || fail "/dev/shm/${region} is still there after --reset"

step "apt-get remove, dpkg --purge"
if command -v apt-get >/dev/null 2>&1; then
  timeout 300 env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q shmetrics >"$tmp/remove.log" 2>&1 ||
    { cat "$tmp/remove.log" >&2; fail "apt-get remove failed"; }
fi
# After remove only the conffile is left; purge takes it.
timeout 120 env DEBIAN_FRONTEND=noninteractive dpkg --purge shmetrics >"$tmp/purge.log" 2>&1 ||
  { cat "$tmp/purge.log" >&2; fail "dpkg --purge failed"; }
installed_by_us=0
status="$(dpkg-query -W -f='${db:Status-Status}' shmetrics 2>/dev/null || true)"
[[ -z "$status" || "$status" == "not-installed" ]] || fail "dpkg still knows shmetrics as '${status}'"
while read -r p; do
  [[ -d "$p" && ! -L "$p" ]] && continue  # directories, shared with other packages
  [[ ! -e "$p" && ! -L "$p" ]] || fail "${p} is still there after the purge"
done <"$tmp/installed.txt"
echo "deb_package_test: PASS (contents, install, run, remove and purge)"
