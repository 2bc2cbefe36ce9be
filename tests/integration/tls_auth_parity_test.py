#!/usr/bin/python3
"""--web.config.file: the real shmetrics-gateway and Debian's Prometheus 2.42 (exporter-toolkit
0.8, the reference on these machines) get the same config and the same curl requests, and must
answer the same: status codes and auth challenges for basic auth and headers, also after the file
is changed under them; then, over TLS, the same handshake outcomes for every client_auth_type and
TLS version with certificates made here by openssl, and finally that Prometheus itself scrapes the
gateway over TLS with a client certificate and basic auth and reports it up.
Usage: tls_auth_parity_test.py GATEWAY_BIN"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# alice:alice123 at cost 10, bob:bob at cost 4, made with libcrypt's crypt_gensalt_rn.
ALICE = "$2y$10$bJvZ/eNOiEx0rY5S3GRnAuaCbMZGvoaE0MIsACl9Y6f9Jv4hihAjG"
BOB = "$2y$04$s01z20ckOz0Gt7YkhmQms.Uj7oK00xlhSTU.sN9F5MhI9e53L0YBi"
CONFIG = f"""http_server_config:
  headers:
    X-Frame-Options: deny
basic_auth_users:
  alice: {ALICE}
  bob: {BOB}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, name, deadline=30):
    end = time.time() + deadline
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{name} did not listen on {port} within {deadline}s")


def curl(port, path, user=None):
    cmd = ["curl", "-s", "-o", "/dev/null", "-D", "-", "--max-time", "10",
           f"http://127.0.0.1:{port}{path}"]
    if user is not None:
        cmd[1:1] = ["-u", user]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
    lines = out.splitlines()
    status = int(lines[0].split()[1]) if lines else 0
    headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    return status, headers.get("www-authenticate"), headers.get("x-frame-options")


REQUESTS = [
    ("/metrics", None), ("/metrics", "alice:alice123"), ("/metrics", "alice:wrong"),
    ("/metrics", "mallory:alice123"), ("/metrics", "bob:bob"), ("/metrics", "alice:"),
    ("/metrics", ":"), ("/nope", None), ("/nope", "alice:alice123"),
]


def answers(port):
    return [(path, user) + curl(port, path, user) for path, user in REQUESTS]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certificates(d):
    """A CA; a server certificate for localhost and 127.0.0.1 and a client one, both from it; and
    a self-signed client certificate that no CA vouches for."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=shmetrics test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                      ("client", "subjectAltName=DNS:prometheus.test")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
                cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
                cwd=d)
    openssl("req", "-x509", *ec, "-keyout", "rogue.key", "-out", "rogue.crt", "-days", "2",
            "-subj", "/CN=rogue", cwd=d)


def tls_outcome(port, d, client=None, tls=None, scheme="https"):
    """'fail' when the handshake (or the connection) fails, else the HTTP status."""
    cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
           "--cacert", os.path.join(d, "ca.crt"), "-u", "alice:alice123",
           f"{scheme}://localhost:{port}/metrics"]
    if client:
        cmd += ["--cert", os.path.join(d, f"{client}.crt"), "--key", os.path.join(d, f"{client}.key")]
    if tls == "1.1":
        cmd += ["--tlsv1.1", "--tls-max", "1.1"]
    elif tls == "1.2":
        cmd += ["--tlsv1.2", "--tls-max", "1.2"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    return r.stdout if r.returncode == 0 else "fail"


def tls_config(client_auth, extra=""):
    ca = "  client_ca_file: ca.crt\n" if client_auth != "NoClientCert" else ""
    return (f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            f"  client_auth_type: {client_auth}\n{ca}{extra}basic_auth_users:\n  alice: {ALICE}\n")


TLS_REQUESTS = [(None, None), ("client", None), ("rogue", None), ("client", "1.2"),
                ("client", "1.1")]
TLS_CASES = [
    ("NoClientCert", ""), ("RequestClientCert", ""), ("RequireAnyClientCert", ""),
    ("VerifyClientCertIfGiven", ""), ("RequireAndVerifyClientCert", ""),
    ("RequireAndVerifyClientCert", "  min_version: TLS13\n"),
    ("NoClientCert", "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"),
]


def tls_parity(gateway_bin, tmp, procs, failures):
    d = os.path.join(tmp, "tls")
    os.mkdir(d)
    make_certificates(d)
    config = os.path.join(d, "web.yml")
    with open(config, "w") as f:
        f.write(tls_config(*TLS_CASES[0]))
    gport, pport = free_port(), free_port()
    region = f"tls_auth_parity_tls_{os.getpid()}"
    glog = open(os.path.join(d, "gateway.log"), "w")
    procs.append(subprocess.Popen(
        [gateway_bin, "--region", region, "--web.listen-address", f"127.0.0.1:{gport}",
         "--web.config.file", config, "--reap-interval", "1"], stdout=glog, stderr=glog))
    # Prometheus scrapes the gateway as a TLS client with a client certificate and basic auth.
    with open(os.path.join(d, "prometheus.yml"), "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: shmetrics
    scheme: https
    basic_auth: {{username: alice, password: alice123}}
    tls_config:
      ca_file: {d}/ca.crt
      cert_file: {d}/client.crt
      key_file: {d}/client.key
      server_name: localhost
    static_configs: [{{targets: ["127.0.0.1:{gport}"]}}]
""")
    plog = open(os.path.join(d, "prometheus.log"), "w")
    procs.append(subprocess.Popen(
        ["prometheus", f"--config.file={d}/prometheus.yml", f"--web.config.file={config}",
         f"--web.listen-address=127.0.0.1:{pport}", f"--storage.tsdb.path={d}/tsdb"],
        stdout=plog, stderr=plog))
    wait_listening(gport, procs[-2], "gateway")
    wait_listening(pport, procs[-1], "prometheus")

    plain = (tls_outcome(gport, d, scheme="http"), tls_outcome(pport, d, scheme="http"))
    print(f"plain HTTP to the TLS port: gateway {plain[0]}, prometheus {plain[1]}")
    if plain != ("400", "400"):
        failures.append(f"plain HTTP to the TLS port: {plain}")
    seen = []
    for client_auth, extra in TLS_CASES:
        time.sleep(0.05)  # a new mtime even on coarse clocks
        with open(config, "w") as f:
            f.write(tls_config(client_auth, extra))
        seen.append([])
        for client, version in TLS_REQUESTS:
            ours, theirs = tls_outcome(gport, d, client, version), tls_outcome(pport, d, client, version)
            seen[-1].append(ours)
            print(f"{client_auth} {extra.strip()!r}: cert={client} tls={version}: gateway {ours}, "
                  f"prometheus {theirs}")
            if ours != theirs:
                failures.append(f"{client_auth} {extra.strip()!r} cert={client} tls={version}: "
                                f"gateway {ours}, prometheus {theirs}")
    # The cases must tell requests apart, or agreeing on them proves little.
    expected = {0: ["200", "200", "200", "200", "fail"], 2: ["fail", "200", "200", "200", "fail"],
                3: ["200", "200", "fail", "200", "fail"], 4: ["fail", "200", "fail", "200", "fail"],
                5: ["fail", "200", "fail", "fail", "fail"]}
    for i, want in expected.items():
        if seen[i] != want:
            failures.append(f"{TLS_CASES[i]}: gateway answered {seen[i]}, expected {want}")

    with open(config, "w") as f:
        f.write(tls_config("RequireAndVerifyClientCert"))
    query = f"https://localhost:{pport}/api/v1/query"
    up = None
    end = time.time() + 30
    while time.time() < end:
        out = subprocess.run(
            ["curl", "-s", "--max-time", "5", "--cacert", f"{d}/ca.crt", "--cert", f"{d}/client.crt",
             "--key", f"{d}/client.key", "-u", "alice:alice123", "--data-urlencode",
             'query=up{job="shmetrics"} * on() group_left() count(shmetrics_gateway_build_info)', query],
            capture_output=True, text=True, timeout=20).stdout
        try:
            result = json.loads(out)["data"]["result"]
            up = result[0]["value"][1] if result else None
        except (ValueError, KeyError, IndexError):
            up = None
        if up == "1":
            break
        time.sleep(0.5)
    print(f"Prometheus scraping the gateway over TLS with a client certificate and basic auth: up={up}")
    if up != "1":
        failures.append(f"Prometheus does not report the TLS gateway up (last answer {up})")
    errors = subprocess.run(["curl", "-s", "--cacert", f"{d}/ca.crt", "--cert", f"{d}/client.crt",
                             "--key", f"{d}/client.key", "-u", "alice:alice123",
                             f"https://localhost:{gport}/metrics"],
                            capture_output=True, text=True, timeout=20).stdout
    counted = [l for l in errors.splitlines() if l.startswith('shmetrics_http_errors_total{reason="tls_handshake"}')]
    print("gateway self-metric:", counted)
    if not counted or float(counted[0].split()[-1]) < 5:
        failures.append(f"failed handshakes not counted in /metrics: {counted}")
    subprocess.run([gateway_bin, "--region", region, "--reset"], capture_output=True, timeout=30)


def main():
    gateway_bin = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="tls_auth_parity.")
    procs = []
    failures = []
    try:
        config = os.path.join(tmp, "web.yml")
        with open(config, "w") as f:
            f.write(CONFIG)
        gport, pport = free_port(), free_port()
        region = f"tls_auth_parity_{os.getpid()}"
        glog = open(os.path.join(tmp, "gateway.log"), "w")
        procs.append(subprocess.Popen(
            [gateway_bin, "--region", region, "--listen", f"127.0.0.1:{gport}",
             "--web.config.file", config], stdout=glog, stderr=glog))
        plog = open(os.path.join(tmp, "prometheus.log"), "w")
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write("global: {}\n")
        procs.append(subprocess.Popen(
            ["prometheus", f"--config.file={tmp}/prometheus.yml", f"--web.config.file={config}",
             f"--web.listen-address=127.0.0.1:{pport}", f"--storage.tsdb.path={tmp}/tsdb"],
            stdout=plog, stderr=plog))
        wait_listening(gport, procs[0], "gateway")
        wait_listening(pport, procs[1], "prometheus")

        def compare(stage):
            ours, theirs = answers(gport), answers(pport)
            for o, t in zip(ours, theirs):
                path, user, ostatus, ochallenge, oframe = o
                tstatus, tchallenge = t[2], t[3]
                # /nope: Prometheus redirects or 404s unknown paths; only auth must agree.
                same = (ostatus == tstatus or (path == "/nope" and ostatus == 404 and tstatus != 401)) \
                    and ochallenge == tchallenge
                print(f"{stage}: {path} user={user!r}: gateway {ostatus} {ochallenge} "
                      f"frame={oframe}, prometheus {tstatus} {tchallenge} frame={t[4]}")
                if not same:
                    failures.append(f"{stage}: {path} {user!r}: gateway {o[2:]}, prometheus {t[2:]}")
                if stage == "initial" and ostatus != 500 and oframe != "deny":
                    failures.append(f"{stage}: {path} {user!r}: no X-Frame-Options from the gateway")
            return ours

        ours = compare("initial")
        if [a[2] for a in ours[:5]] != [401, 200, 401, 401, 200]:
            failures.append(f"unexpected statuses {[a[2] for a in ours]}")
        if ours[0][3] != "Basic":
            failures.append("401 without WWW-Authenticate: Basic")

        # Re-read: a new user works at once; a broken file answers 500; a fixed file recovers.
        time.sleep(0.05)
        with open(config, "w") as f:
            f.write(CONFIG.replace("bob:", "carol:"))
        if curl(gport, "/metrics", "carol:bob")[0] != 200 or curl(gport, "/metrics", "bob:bob")[0] != 401:
            failures.append("changed users not re-read per request")
        compare("users changed")
        with open(config, "w") as f:
            f.write("basic_auth_users: [\n")
        compare("file broken")
        # A measured difference, kept on purpose: toolkit 0.8 checks hashes only at startup, so a
        # clear-text "hash" written later just fails every login (401); the gateway treats the
        # file as invalid (500, a warning and web_config_errors), which tells the operator.
        with open(config, "w") as f:
            f.write("basic_auth_users:\n  alice: clear-text\n")
        g, p = curl(gport, "/metrics", "alice:clear-text"), curl(pport, "/metrics", "alice:clear-text")
        print(f"hash not bcrypt: gateway {g[0]}, prometheus {p[0]}")
        if (g[0], p[0]) != (500, 401):
            failures.append(f"hash not bcrypt: expected gateway 500 / prometheus 401, got {g[0]} / {p[0]}")
        with open(config, "w") as f:
            f.write(CONFIG)
        compare("file restored")

        # bcrypt exhaustion: 48 concurrent checks of distinct wrong passwords (cost 10, ~60 ms
        # each) against 1 worker and 16 queue slots. The excess is refused at once (429 with
        # Retry-After), and a scrape with already verified credentials is served from the cache
        # on a free io thread while the flood runs.
        curl(gport, "/metrics", "alice:alice123")  # cached now
        flood = [subprocess.Popen(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "-u",
             f"alice:wrong{i}", f"http://127.0.0.1:{gport}/metrics"],
            stdout=subprocess.PIPE, text=True) for i in range(48)]
        time.sleep(0.2)
        t0 = time.time()
        scrape = curl(gport, "/metrics", "alice:alice123")[0]
        scrape_seconds = time.time() - t0
        codes = [f.communicate(timeout=30)[0] for f in flood]
        print(f"flood: {codes.count('401')} x 401, {codes.count('429')} x 429; cached scrape "
              f"{scrape} in {scrape_seconds:.3f}s")
        if scrape != 200 or scrape_seconds > 2:
            failures.append(f"cached scrape during the flood: {scrape} in {scrape_seconds:.3f}s")
        if codes.count("429") < 48 - 17 - 2 or codes.count("401") + codes.count("429") != 48:
            failures.append(f"flood answers not bounded as expected: {codes}")

        tls_parity(gateway_bin, tmp, procs, failures)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        subprocess.run([gateway_bin, "--region", f"tls_auth_parity_{os.getpid()}", "--reset"],
                       capture_output=True, timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
