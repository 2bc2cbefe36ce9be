"""What the Python tests share: a uniquely named region, the real shmetrics-gateway serving it on
a free loopback port, and scrapes parsed by prometheus_client's own parsers. Every wait is bounded.

The ctest entry sets SHMETRICS_GATEWAY (the binary) and PYTHONPATH (the package in the build tree).
"""

import os
import socket
import subprocess
import tempfile
import time
import urllib.request

from prometheus_client.openmetrics.parser import \
    text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

GATEWAY_BIN = os.environ.get('SHMETRICS_GATEWAY', 'shmetrics-gateway')
_counter = 0


def unique_region(tag):
    global _counter
    _counter += 1
    return f'shmetrics-pytest-{tag}-{os.getpid()}-{_counter}'


def remove_region(name):
    try:
        os.unlink('/dev/shm/' + name)
    except FileNotFoundError:
        pass


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _get(url, headers=None, timeout=2.0):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read().decode('utf-8')


class Gateway:
    """shmetrics-gateway --region NAME --listen 127.0.0.1:PORT, healthy within 10 s, or an error
    with its log."""

    def __init__(self, region):
        self.region = region
        self._log = tempfile.TemporaryFile()
        for _ in range(5):  # only a port taken between the probe and bind is worth a retry
            self.port = _free_port()
            self._process = subprocess.Popen(
                [GATEWAY_BIN, '--region', region, '--listen', f'127.0.0.1:{self.port}'],
                stdout=self._log, stderr=subprocess.STDOUT)
            if self._wait_healthy(10.0):
                return
            log = self.log()
            self.stop()
            if 'in use' not in log:
                break
        raise RuntimeError('shmetrics-gateway did not become healthy: ' + self.log())

    def _wait_healthy(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                if _get(f'http://127.0.0.1:{self.port}/healthz', timeout=1.0)[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.01)
        return False

    def log(self):
        self._log.seek(0)
        return self._log.read().decode('utf-8', 'replace')

    def stop(self):
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=10)

    def close(self):
        self.stop()
        self._log.close()

    def scrape_text(self):
        status, body = _get(f'http://127.0.0.1:{self.port}/metrics')
        assert status == 200, status
        return body

    def families(self):
        """The text exposition (0.0.4) through prometheus_client.parser: {family name: family}."""
        return {f.name: f for f in parse_text(self.scrape_text())}

    def openmetrics_families(self):
        status, body = _get(f'http://127.0.0.1:{self.port}/metrics',
                            {'Accept': 'application/openmetrics-text; version=1.0.0'})
        assert status == 200, status
        return {f.name: f for f in parse_openmetrics(body)}

    def samples(self):
        """{(sample name, frozenset of labels): value} of the text exposition."""
        return {(s.name, frozenset(s.labels.items())): s.value
                for f in self.families().values() for s in f.samples}

    def value(self, name, **labels):
        """The value of one sample, or None if the gateway serves no such sample."""
        return self.samples().get((name, frozenset(labels.items())))

    def wait_for(self, predicate, seconds=10.0):
        """Scrapes until predicate(samples) holds; returns the last samples. Bounded."""
        deadline = time.monotonic() + seconds
        while True:
            samples = self.samples()
            if predicate(samples) or time.monotonic() > deadline:
                return samples
            time.sleep(0.05)
