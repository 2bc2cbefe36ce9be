#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/ (checked in; run again after changing an input
format). Usage: tests/fuzz/make_seeds.py [corpus dir, default: next to this script]

Region reader inputs are the operation records of region_fixture.h: [tag][sel][off lo][off hi]
[data], tag = (len(data) - 1) << 4 | op. Offsets are relative to a section of the fixture's region,
so the seeds stay meaningful when the layout moves. The seeds only reach into each part of the
region (slot states, family and series records, strings, directories, pages, header words); the
fuzzer does the damage. Seeds must not crash a correct reader: scripts/fuzz --ci runs them first.
The corpus also holds regression-* files (fixed findings, see README.md); this script leaves them.
"""
import os
import struct
import sys

FAMILY_BYTES, SERIES_BYTES = 96, 24
# Family indices follow the fixture's registration order (region_fixture.cc Register): 0 requests,
# 1 sent, 2 bare, 3 capped, 4..13 gauges, 14 special, 15 latency, 16 delta, 17 native, 18 mixed,
# 19 payload.
# FamilyRecord field offsets (shm/include/shmetrics/shm/layout.h)
F_BUCKETS, F_CELLS, F_DROP, F_TYPE, F_MODE, F_LABELS, F_FLAGS = 32, 36, 44, 56, 57, 58, 59
F_SCHEMA, F_WINDOW, F_ZERO = 64, 68, 72
S_FAMILY, S_CELL_BASE, S_VALUES = 0, 4, 8


def rec(op, sel, off, data):
    assert 1 <= len(data) <= 16 and 0 <= op < 16
    return bytes([(len(data) - 1) << 4 | op, sel & 255, off & 255, (off >> 8) & 255]) + data


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def i32(v):
    return struct.pack("<i", v)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def f64(v):
    return struct.pack("<d", v)


def region_seeds():
    s = {"empty": b""}
    for state, name in ((1, "active"), (2, "released"), (3, "folding"), (4, "invalid")):
        s["slots-" + name] = b"".join(rec(9, slot, 0, bytes([state])) for slot in range(10))
    s["slot-fold-epoch"] = rec(5, 0, 16, u64(7)) + rec(9, 3, 0, bytes([3]))
    s["slot-primary"] = b"".join(rec(5, 0, slot * 64 + 4, u32(slot ^ 1)) for slot in range(8))
    fam = []
    for f in range(0, 20, 3):
        base = f * FAMILY_BYTES
        fam.append(rec(1, 0, base + F_TYPE, bytes([(f % 4) + 1])))
        fam.append(rec(1, 0, base + F_MODE, bytes([(f % 10) + 1])))
    s["family-type-and-mode"] = b"".join(fam)
    s["family-native-schema"] = b"".join(
        rec(1, 0, f * FAMILY_BYTES + F_SCHEMA, i32(v)) for f, v in ((17, -4), (18, 8), (17, 2)))
    s["family-native-window"] = b"".join(
        rec(1, 0, f * FAMILY_BYTES + F_WINDOW, u32(v)) for f, v in ((17, 1), (18, 240), (17, 3)))
    s["family-zero-threshold"] = rec(1, 0, 17 * FAMILY_BYTES + F_ZERO, f64(0.5))
    s["family-buckets"] = rec(1, 0, 15 * FAMILY_BYTES + F_BUCKETS, u32(2))
    s["family-flags"] = b"".join(rec(1, 0, f * FAMILY_BYTES + F_FLAGS, bytes([f % 4])) for f in range(20))
    s["family-drop-cell"] = rec(1, 0, 2 * FAMILY_BYTES + F_DROP, u32(9))
    s["family-labels"] = rec(1, 0, 0 * FAMILY_BYTES + F_LABELS, bytes([1]))
    s["series-cell-base"] = b"".join(rec(2, 0, i * SERIES_BYTES + S_CELL_BASE, u32(8 + 3 * i)) for i in range(0, 40, 7))
    s["series-family"] = b"".join(rec(2, 0, i * SERIES_BYTES + S_FAMILY, u32(i % 7)) for i in range(0, 40, 5))
    s["string-help"] = rec(11, 0, 0 | 1 << 8, "New help ü✓".encode())
    s["string-name"] = rec(11, 0, 3 | 0 << 8, b"fz_renamed")
    s["string-unit"] = rec(11, 0, 1 | 2 << 8, b"bytes")
    s["string-label-name"] = rec(11, 0, 0 | 3 << 8, b"verb")
    s["string-label-value"] = rec(11, 1, 2 | 1 << 8, "✓ valid".encode())
    s["copy-family"] = rec(10, 0, 5 | 6 << 8, b"\0")
    s["copy-series"] = rec(10, 1, 4 | 9 << 8, b"\0")
    s["copy-slot"] = rec(10, 2, 0 | 3 << 8, b"\0")
    s["header-counts"] = rec(12, 0, 0, u32(7)) + rec(12, 1, 0, u32(12))
    s["header-fold-commit"] = rec(12, 5, 0, u64(3))
    s["header-pages-used"] = rec(12, 4, 0, u32(0xFFFFFFF0))
    s["header-strings-used"] = rec(12, 3, 0, u32(9000))
    s["header-capacity"] = rec(0, 0, 40, u32(64))  # max_families: refused at attach
    s["directory"] = b"".join(rec(6, 0, e * 4, u32(e * 3 + 1)) for e in range(0, 80, 9))
    pages = []
    for page in range(12):
        for cell in (0, 8, 9, 10, 11, 12, 40, 100, 200):
            pages.append(rec(7, page, cell * 8 + 1, bytes([page * 17 + cell & 255])))
    s["pages"] = b"".join(pages)
    s["pages-schema-cells"] = b"".join(rec(7, p, c * 8, u64(16 + (p % 13) - 4)) for p in range(12) for c in (1, 201, 301))
    s["anywhere"] = b"".join(rec(8, i, i * 997, bytes([i])) for i in range(8))
    return s


def negotiation_seeds():
    prometheus = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                  "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    native = ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
              "encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,"
              "application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,"
              "*/*;q=0.1")
    s = {
        "raw-prometheus": b"\0" + f"{prometheus}\ngzip\nformat=text".encode(),
        "raw-prometheus-native": b"\0" + f"{native}\ngzip, identity;q=0.5\n".encode(),
        "raw-browser": b"\0text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\n"
                       b"gzip, deflate, br\na=1&format=openmetrics",
        "raw-quoted": b'\0text/plain;version="0.0.4";q=0.9,application/openmetrics-text;'
                      b'escaping="allow-utf-8"\n*;q=0, identity\nformat="x&y"',
        "raw-garbage": b"\0,,;;==//\n;q=\n&&=",
    }
    for mode, name in ((1, "accept"), (2, "encoding"), (3, "query")):
        for k in range(3):
            s[f"{name}-{k}"] = bytes([mode]) + bytes((k * 37 + i * 11) & 255 for i in range(48))
    return s


def http_seeds():
    def req(lines, body=b""):
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    # Byte 0 is the flags of http_server_fuzz_test.cc: 0 = one write, then half-close.
    seeds = {
        "get-metrics": req(["GET /metrics HTTP/1.1", "Host: x",
                            "Accept: application/openmetrics-text;version=1.0.0,*/*;q=0.1",
                            "Accept-Encoding: gzip", "X-Prometheus-Scrape-Timeout-Seconds: 10"]),
        "get-protobuf-query": req(["GET /metrics?format=protobuf HTTP/1.1", "Host: x"]),
        "head-health": req(["HEAD /healthz HTTP/1.1", "Host: x", "Connection: close"]),
        "pipelined": req(["GET /healthz HTTP/1.1", "Host: x"]) + req(["GET /metrics HTTP/1.1", "Host: x"]),
        "post-body": req(["POST /metrics HTTP/1.1", "Host: x", "Content-Length: 5"], b"hello"),
        "chunked": req(["GET /metrics HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n"),
        "http10": req(["GET /metrics HTTP/1.0"]),
        "not-found": req(["GET /nope HTTP/1.1", "Host: x"]),
        "garbage": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
    }
    out = {name: b"\0" + data for name, data in seeds.items()}
    out["split-writes"] = b"\x18" + seeds["get-metrics"]  # 4 writes
    out["keep-open-partial"] = b"\x07" + b"GET /metrics HTTP/1.1\r\nHost: x\r\n"  # the server's deadline ends it
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    for target, seeds in (("region_reader", region_seeds()), ("negotiation", negotiation_seeds()),
                          ("http_server", http_seeds())):
        d = os.path.join(root, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print(f"{d}: {len(seeds)} seeds, {sum(len(v) for v in seeds.values())} bytes")


if __name__ == "__main__":
    main()
