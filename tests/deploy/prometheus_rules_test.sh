#!/usr/bin/env bash
# usage: prometheus_rules_test.sh SOURCE_DIR
# deploy/prometheus with Debian's promtool (Prometheus 2.42): the alert rules are valid, every
# alert has severity, summary and description, their unit tests pass (each alert fires and stays
# silent), and a prometheus.yml made of scrape.yml's jobs and the rules passes check config.
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 SOURCE_DIR" >&2; exit 2; }
dir="$(cd "$1" && pwd)/deploy/prometheus"
tmp="$(mktemp -d -t shmetrics-promtool.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "prometheus_rules_test: FAIL: $*" >&2; exit 1; }
step() { echo "prometheus_rules_test: $*" >&2; }

step "promtool check rules alerts.yml"
timeout 30 promtool check rules "$dir/alerts.yml" >&2 || fail "promtool check rules alerts.yml"

step "every alert has severity, summary and description; each one is unit-tested"
/usr/bin/python3 - "$dir/alerts.yml" "$dir/alerts_test.yml" <<'PY' || fail "alerts.yml or alerts_test.yml"
import sys, yaml
rules = [r for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"]]
tests = yaml.safe_load(open(sys.argv[2]))["tests"]
bad = []
for r in rules:
    name = r.get("alert")
    if not name:
        bad.append(f"a recording rule in alerts.yml: {r}")
        continue
    if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
        bad.append(f"{name}: severity is not critical, warning or info")
    for a in ("summary", "description"):
        if not r.get("annotations", {}).get(a):
            bad.append(f"{name}: no {a}")
    cases = [c for t in tests for c in t["alert_rule_test"] if c["alertname"] == name]
    if not any(c.get("exp_alerts") for c in cases):
        bad.append(f"{name}: no test where it fires")
    if not any(not c.get("exp_alerts") for c in cases):
        bad.append(f"{name}: no test where it stays silent")
for b in bad:
    print("prometheus_rules_test:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY

step "promtool test rules alerts_test.yml"
(cd "$dir" && timeout 60 promtool test rules alerts_test.yml) >&2 || fail "promtool test rules"

# A broken expectation must fail: the unit tests are really compared.
sed 's/severity: critical/severity: info/' "$dir/alerts_test.yml" >"$tmp/alerts_test.yml"
cp "$dir/alerts.yml" "$tmp/"
if (cd "$tmp" && timeout 60 promtool test rules alerts_test.yml) >"$tmp/broken.log" 2>&1; then
  fail "promtool test rules passed a test with a wrong expected label"
fi

step "promtool check config on a prometheus.yml with scrape.yml's jobs and the rules"
{
  printf 'global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\nrule_files:\n  - %s\n' \
    "$dir/alerts.yml"
  cat "$dir/scrape.yml"
} >"$tmp/prometheus.yml"
timeout 30 promtool check config "$tmp/prometheus.yml" >&2 || fail "promtool check config"
grep -q 'job_name: shmetrics-gateway$' "$dir/scrape.yml" || fail "scrape.yml has no job shmetrics-gateway"
echo "prometheus_rules_test: PASS"
