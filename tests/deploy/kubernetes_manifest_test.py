"""Structure of deploy/kubernetes/*.yaml: every document parses, and the sidecar recipe holds
together (what a cluster would only reveal at run time, with no cluster or kubeconform here).

usage: kubernetes_manifest_test.py SOURCE_DIR
"""
import pathlib
import sys

import yaml

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def load_all(directory):
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc is not None:
                    docs.append((path.name, doc))
        except yaml.YAMLError as e:
            failures.append(f"{path}: not valid YAML: {e}")
    return docs


def by_kind(docs, kind):
    found = [(name, d) for name, d in docs if d.get("kind") == kind]
    check(len(found) == 1, f"expected one {kind}, found {len(found)}")
    return found[0] if found else (None, {})


def container_port(container, name):
    for p in container.get("ports", []):
        if p.get("name") == name:
            return p
    return None


def main():
    directory = pathlib.Path(sys.argv[1]) / "deploy" / "kubernetes"
    docs = load_all(directory)
    for name, d in docs:
        check(isinstance(d, dict) and {"apiVersion", "kind", "metadata"} <= d.keys(),
              f"{name}: a document without apiVersion, kind and metadata")

    name, deploy = by_kind(docs, "Deployment")
    check(deploy.get("apiVersion") == "apps/v1", f"{name}: Deployment is not apps/v1")
    template = deploy.get("spec", {}).get("template", {})
    selector = deploy.get("spec", {}).get("selector", {}).get("matchLabels", {})
    pod_labels = template.get("metadata", {}).get("labels", {})
    check(selector and selector.items() <= pod_labels.items(),
          f"{name}: the selector {selector} does not match the pod labels {pod_labels}")
    pod = template.get("spec", {})

    sidecars = [c for c in pod.get("initContainers", []) if c.get("name") == "shmetrics-gateway"]
    if not check(len(sidecars) == 1, f"{name}: no initContainer named shmetrics-gateway"):
        return
    gateway = sidecars[0]
    check(gateway.get("restartPolicy") == "Always",
          f"{name}: the gateway is not a native sidecar (restartPolicy: Always)")
    apps = pod.get("containers", [])
    check(len(apps) >= 1, f"{name}: no application container")

    # One Memory emptyDir with a sizeLimit, mounted at /dev/shm in every container.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    shm_volumes = set()
    for c in [gateway] + apps:
        mounts = [m for m in c.get("volumeMounts", []) if m.get("mountPath") == "/dev/shm"]
        if check(len(mounts) == 1, f"{name}: container {c.get('name')} has no /dev/shm mount"):
            check(not mounts[0].get("readOnly", False),
                  f"{name}: {c.get('name')} mounts /dev/shm read-only")
            shm_volumes.add(mounts[0]["name"])
    check(len(shm_volumes) == 1, f"{name}: the containers mount different volumes at /dev/shm")
    for v in shm_volumes:
        empty_dir = volumes.get(v, {}).get("emptyDir")
        if check(empty_dir is not None, f"{name}: volume {v} is not an emptyDir"):
            check(empty_dir.get("medium") == "Memory", f"{name}: volume {v} is not medium Memory")
            check(bool(empty_dir.get("sizeLimit")), f"{name}: volume {v} has no sizeLimit")

    # Different users, one group: the pod's fsGroup, which the region is shared through.
    security = pod.get("securityContext", {})
    check(isinstance(security.get("fsGroup"), int), f"{name}: no pod securityContext.fsGroup")
    uids = [c.get("securityContext", {}).get("runAsUser") for c in [gateway] + apps]
    check(all(isinstance(u, int) and u != 0 for u in uids) and len(set(uids)) == len(uids),
          f"{name}: containers must run as different non-root users, got {uids}")

    # The port named metrics, and probes on it at the health endpoints.
    metrics = container_port(gateway, "metrics")
    if check(metrics is not None, f"{name}: the gateway has no port named metrics"):
        port = metrics.get("containerPort")
        check(any(a in (f"--web.listen-address=:{port}", f"--listen=0.0.0.0:{port}")
                  for a in gateway.get("args", [])),
              f"{name}: the gateway does not listen on its metrics port {port} on all addresses")
        for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready"),
                            ("startupProbe", "/-/healthy")):
            get = gateway.get(probe, {}).get("httpGet", {})
            check(get.get("path") == path, f"{name}: {probe} is not on {path}: {get}")
            check(get.get("port") in ("metrics", port),
                  f"{name}: {probe} is not on the metrics port: {get.get('port')}")
        annotations = template.get("metadata", {}).get("annotations", {})
        check(annotations.get("prometheus.io/scrape") == "true",
              f"{name}: no prometheus.io/scrape: \"true\" annotation")
        check(annotations.get("prometheus.io/port") == str(port),
              f"{name}: prometheus.io/port is not {port}")
        check(annotations.get("prometheus.io/path") == "/metrics",
              f"{name}: prometheus.io/path is not /metrics")
        check(all(isinstance(v, str) for v in annotations.values()),
              f"{name}: annotation values must be strings")
    check(any(a.startswith("--region=") for a in gateway.get("args", [])),
          f"{name}: the gateway has no --region")

    name, monitor = by_kind(docs, "PodMonitor")
    check(monitor.get("apiVersion") == "monitoring.coreos.com/v1",
          f"{name}: PodMonitor is not monitoring.coreos.com/v1")
    spec = monitor.get("spec", {})
    wanted = spec.get("selector", {}).get("matchLabels", {})
    check(wanted and wanted.items() <= pod_labels.items(),
          f"{name}: the selector {wanted} does not select the pods {pod_labels}")
    endpoints = spec.get("podMetricsEndpoints", [])
    check(len(endpoints) == 1, f"{name}: expected one podMetricsEndpoint")
    for e in endpoints:
        check(e.get("port") == "metrics", f"{name}: endpoint port is {e.get('port')}, not metrics")
        check(e.get("path", "/metrics") == "/metrics", f"{name}: endpoint path is {e.get('path')}")
        jobs = [r.get("replacement") for r in e.get("relabelings", [])
                if r.get("targetLabel") == "job"]
        check(jobs == ["shmetrics-gateway"],
              f"{name}: job is not relabelled to shmetrics-gateway (alerts.yml selects on it)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main()
    for f in failures:
        print(f"kubernetes_manifest_test: FAIL: {f}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print("kubernetes_manifest_test: PASS")
