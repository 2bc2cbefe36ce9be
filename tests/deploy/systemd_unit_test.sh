#!/usr/bin/env bash
# usage: systemd_unit_test.sh SOURCE_DIR GATEWAY_BIN
# Checks deploy/systemd/shmetrics-gateway.service offline, as far as systemd 252 can without
# running as PID 1 (this test does not start the unit: there is no systemd PID 1 here):
#  - `systemd-analyze verify` prints nothing, on a copy whose ExecStart is the built gateway (the
#    installed path need not exist); a copy with an unknown key makes it complain (it checks);
#  - `systemd-analyze security --offline=true` rates it at most 2.0 (measured 1.4; Debian's
#    prometheus.service, which this unit's hardening follows, is rated 4.0);
#  - the settings that sharing the region depends on are there: RemoveIPC=no, no DynamicUser= or
#    PrivateUsers=, UMask=0007, SupplementaryGroups=shmetrics, --group shmetrics --mode 0660;
#  - the ExecStart command line, with the default file's settings, is one the gateway accepts
#    (it is run, on a temporary region, and answers /healthz);
#  - sysusers.d's entry creates what the unit needs (systemd-sysusers --dry-run, nothing written).
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 SOURCE_DIR GATEWAY_BIN" >&2; exit 2; }
source_dir="$(cd "$1" && pwd)"
gateway="$2"
unit_src="${source_dir}/deploy/systemd/shmetrics-gateway.service"
default_src="${source_dir}/deploy/systemd/shmetrics-gateway.default"
sysusers_src="${source_dir}/deploy/systemd/shmetrics.sysusers"
max_exposure="2.0"

tmp="$(mktemp -d -t shmetrics-systemd.XXXXXX)"
region="shmetrics-systemd-test-$$"
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
fail() { echo "systemd_unit_test: FAIL: $*" >&2; exit 1; }
step() { echo "systemd_unit_test: $*" >&2; }

[[ -x "$gateway" ]] || fail "no gateway binary at ${gateway}"
grep -q '^ExecStart=/usr/bin/shmetrics-gateway ' "$unit_src" ||
  fail "${unit_src}: ExecStart is not /usr/bin/shmetrics-gateway (the package's path)"

# systemd-analyze wants the file named after the unit.
unit="$tmp/shmetrics-gateway.service"
sed "s#^ExecStart=/usr/bin/shmetrics-gateway #ExecStart=${gateway} #" "$unit_src" >"$unit"

step "systemd-analyze verify"
timeout 30 systemd-analyze verify "$unit" >"$tmp/verify.log" 2>&1 ||
  { cat "$tmp/verify.log" >&2; fail "systemd-analyze verify exited non-zero"; }
[[ ! -s "$tmp/verify.log" ]] || { cat "$tmp/verify.log" >&2; fail "systemd-analyze verify complained"; }
mkdir "$tmp/bad"
{ cat "$unit"; printf 'NoSuchSetting=yes\n'; } >"$tmp/bad/shmetrics-gateway.service"
timeout 30 systemd-analyze verify "$tmp/bad/shmetrics-gateway.service" >"$tmp/verify-bad.log" 2>&1 || true
grep -q "NoSuchSetting" "$tmp/verify-bad.log" ||
  fail "systemd-analyze verify did not notice an unknown key (the check above proves nothing)"

step "systemd-analyze security --offline=true"
timeout 30 systemd-analyze security --offline=true --no-pager "$unit" >"$tmp/security.log" 2>&1 ||
  { cat "$tmp/security.log" >&2; fail "systemd-analyze security exited non-zero"; }
score="$(sed -n 's/.*Overall exposure level for shmetrics-gateway.service: \([0-9.]*\).*/\1/p' "$tmp/security.log")"
[[ -n "$score" ]] || { cat "$tmp/security.log" >&2; fail "no exposure level in the output"; }
step "exposure level ${score} (at most ${max_exposure})"
awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s + 0 <= m + 0) }' ||
  { grep '✗' "$tmp/security.log" >&2; fail "exposure level ${score} is above ${max_exposure}"; }

step "settings the shared region depends on"
setting() { sed -n "s/^$1=//p" "$unit_src"; }
[[ "$(setting RemoveIPC)" == "no" ]] || fail "RemoveIPC= must be no (RemoveIPC=yes unlinks the region)"
[[ "$(setting UMask)" == "0007" ]] || fail "UMask= must be 0007"
[[ "$(setting SupplementaryGroups)" == "shmetrics" ]] || fail "SupplementaryGroups= must be shmetrics"
[[ -n "$(setting User)" && -n "$(setting Group)" && "$(setting Group)" != "shmetrics" ]] ||
  fail "User= and Group= must be set, Group= not the shared group"
for forbidden in DynamicUser PrivateUsers; do
  grep -q "^${forbidden}=" "$unit_src" && fail "${forbidden}= must not be set"
done
grep -q -- '--group shmetrics --mode 0660' "$unit_src" || fail "ExecStart lacks --group shmetrics --mode 0660"

# The command line as systemd builds it: ${VAR} one word, $VAR split on whitespace. The group is
# one this user is in (the shared group need not exist here), the port a free loopback one.
step "the unit's command line, with the default file, runs the gateway"
# shellcheck disable=SC1090  # the default file is NAME=value lines, valid shell too
source "$default_src"
[[ -n "${SHMETRICS_REGION:-}" ]] || fail "${default_src} sets no SHMETRICS_REGION"
port="$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
read -r -a words <<<"$(sed -n 's/^ExecStart=//p' "$unit_src")"
argv=()
for w in "${words[@]:1}"; do
  case "$w" in
    '${SHMETRICS_REGION}') argv+=("$region") ;;
    '$ARGS') read -r -a extra <<<"${ARGS:-}"; argv+=("${extra[@]}") ;;
    shmetrics) argv+=("$(id -gn)") ;;
    *) argv+=("$w") ;;
  esac
done
argv+=(--listen "127.0.0.1:${port}")
(umask 0007 && exec "$gateway" "${argv[@]}") >"$tmp/gateway.log" 2>&1 &
gateway_pid=$!
for _ in $(seq 100); do
  curl -fsS -m 2 "http://127.0.0.1:${port}/healthz" >/dev/null 2>&1 && break
  kill -0 "$gateway_pid" 2>/dev/null || { cat "$tmp/gateway.log" >&2; fail "gateway exited: ${argv[*]}"; }
  sleep 0.1
done
curl -fsS -m 2 "http://127.0.0.1:${port}/healthz" >/dev/null ||
  { cat "$tmp/gateway.log" >&2; fail "gateway did not answer /healthz"; }
mode="$(stat -c %a "/dev/shm/${region}")"
[[ "$mode" == "660" ]] || fail "the region is mode ${mode}, not 660"

step "sysusers.d entry (systemd-sysusers --dry-run)"
timeout 30 systemd-sysusers --dry-run "$sysusers_src" >"$tmp/sysusers.log" 2>&1 ||
  { cat "$tmp/sysusers.log" >&2; fail "systemd-sysusers rejected ${sysusers_src}"; }
if grep -qi "ignoring\|failed" "$tmp/sysusers.log"; then
  cat "$tmp/sysusers.log" >&2; fail "systemd-sysusers complained"
fi
for u in "$(setting User)" "$(setting Group)" shmetrics; do
  getent passwd "$u" >/dev/null || getent group "$u" >/dev/null ||
    grep -q "'${u}'" "$tmp/sysusers.log" || fail "the sysusers.d entry does not create ${u}"
done
echo "systemd_unit_test: PASS (exposure ${score})"
