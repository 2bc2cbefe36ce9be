#!/bin/sh
# ctest (label bench): the helper modes of shmetrics_bench that the Python comparison calls run
# and print their JSON; a bad helper is a usage error (exit status 2). No timing is checked.
set -eu
bin=$1
"$bin" --helper=write --iterations 100000 --rounds 1 | grep -q '"ns_per_inc"'
"$bin" --helper=scrape --series 1000 --workers 2 --dead 3 --scrapes 2 | grep -q '"median_seconds"'
"$bin" --helper=memory --series 1000 --workers 2 --fraction 0.1 | grep -q '"writer_bytes_per_series_writer"'
status=0
"$bin" --helper=nope 2>/dev/null || status=$?
[ "$status" -eq 2 ] || { echo "--helper=nope: exit status $status, expected 2"; exit 1; }
