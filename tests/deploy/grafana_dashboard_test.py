"""Structure of deploy/grafana/shmetrics-dashboard.json (Grafana is not in Debian 12, so it is not
loaded): the classic JSON model's keys, unique panel ids, a `datasource` variable that every
panel, target and query variable uses, and every PromQL expression valid: the expressions, with
Grafana's variables replaced, go into a rules file that `promtool check rules` must accept. The
metrics the panels use must be ones the gateway or the demo app exports.

usage: grafana_dashboard_test.py SOURCE_DIR
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

DATASOURCE = {"type": "prometheus", "uid": "$datasource"}
# Grafana's variables as promtool sees them: a regex matcher's value, a range.
SUBSTITUTIONS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
                 '=~"$job"': '=~".+"', '=~"$instance"': '=~".+"'}
# What the panels may use: the gateway's self-metrics (gateway/src/self_metrics.cc,
# metrics_endpoint.cc, gateway.cc), `up`, and the demo app's (examples/demo_app.cc).
METRIC_SOURCES = ["gateway/src/self_metrics.cc", "gateway/src/metrics_endpoint.cc",
                  "gateway/src/gateway.cc", "examples/demo_app.cc"]

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def main(source_dir):
    path = source_dir / "deploy" / "grafana" / "shmetrics-dashboard.json"
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        sys.exit(f"grafana_dashboard_test: FAIL: {path}: not JSON: {e}")
    for key in ("uid", "title", "tags", "time", "refresh", "panels", "templating", "annotations",
                "schemaVersion", "version"):
        check(key in dash, f"no top-level key {key}")
    check(isinstance(dash.get("schemaVersion"), int), "schemaVersion is not a number")

    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
          "no variable datasource of type datasource for prometheus")
    for name, v in variables.items():
        if v.get("type") == "query":
            check(v.get("datasource") == DATASOURCE, f"variable {name} does not use $datasource")

    known = set()
    for f in METRIC_SOURCES:
        known |= set(re.findall(r'"((?:shmetrics|http|worker)_[a-z_]+)"',
                                (source_dir / f).read_text()))
    known.add("up")

    ids, exprs = [], []
    for p in all_panels(dash.get("panels", [])):
        ids.append(p.get("id"))
        check(isinstance(p.get("gridPos"), dict), f"panel {p.get('id')} has no gridPos")
        if p.get("type") == "row":
            continue
        title = p.get("title", p.get("id"))
        check(p.get("datasource") == DATASOURCE, f"panel {title}: datasource is not $datasource")
        targets = p.get("targets", [])
        check(targets, f"panel {title} has no targets")
        refs = [t.get("refId") for t in targets]
        check(len(set(refs)) == len(refs), f"panel {title}: duplicate refIds {refs}")
        for t in targets:
            check(t.get("datasource") == DATASOURCE,
                  f"panel {title}, target {t.get('refId')}: datasource is not $datasource")
            if check(bool(t.get("expr")), f"panel {title}, target {t.get('refId')}: no expr"):
                exprs.append((title, t["expr"]))
    check(all(isinstance(i, int) for i in ids), f"panel ids must be numbers: {ids}")
    check(len(set(ids)) == len(ids), f"panel ids are not unique: {ids}")

    # Metric names a panel uses: identifiers followed by { or [ or a space/paren, minus PromQL's
    # own words.
    promql_words = {"sum", "by", "rate", "histogram_quantile", "ignoring", "le", "on", "without",
                    "increase", "max", "min", "avg", "count"}
    for title, e in exprs:
        for name in re.findall(r"\b([a-z_][a-z0-9_]*)\s*\{", e):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in promql_words:
                check(name in known or base in known,
                      f"panel {title}: metric {name} is not exported by the gateway or the demo")

    rules = {"groups": [{"name": "dashboard", "rules": []}]}
    for i, (title, e) in enumerate(exprs):
        for var, value in SUBSTITUTIONS.items():
            e = e.replace(var, value)
        check("$" not in e, f"panel {title}: a variable left in {e}")
        rules["groups"][0]["rules"].append({"record": f"dashboard:expr_{i}", "expr": e})
    with tempfile.TemporaryDirectory(prefix="shmetrics-grafana.") as tmp:
        rules_file = pathlib.Path(tmp) / "dashboard_rules.yml"
        rules_file.write_text(yaml.safe_dump(rules))
        result = subprocess.run(["promtool", "check", "rules", str(rules_file)],
                                capture_output=True, text=True, timeout=30)
        check(result.returncode == 0,
              f"promtool check rules on the dashboard's {len(exprs)} expressions:\n"
              f"{result.stdout}{result.stderr}")
        # The same check must fail on a broken expression, or it proves nothing.
        rules["groups"][0]["rules"].append({"record": "dashboard:broken", "expr": "sum(rate(x[5m])"})
        rules_file.write_text(yaml.safe_dump(rules))
        broken = subprocess.run(["promtool", "check", "rules", str(rules_file)],
                                capture_output=True, text=True, timeout=30)
        check(broken.returncode != 0, "promtool check rules accepted a broken expression")
    print(f"grafana_dashboard_test: {len(ids)} panels, {len(exprs)} expressions", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(pathlib.Path(sys.argv[1]))
    for f in failures:
        print(f"grafana_dashboard_test: FAIL: {f}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print("grafana_dashboard_test: PASS")
