#!/bin/sh
# ctest (label bench): shmetrics-loadgen runs briefly, prints one line per worker and a total,
# and rejects bad usage with exit status 2. No timing is checked.
set -eu
bin=$1
region="shmetrics-test-loadgen-$$"
trap 'rm -f "/dev/shm/$region"' EXIT INT TERM

"$bin" --help | grep -q -- '--workers P'

status=0
"$bin" --region "$region" --workers 0 --threads 1 --seconds 1 --series 1 2>/dev/null || status=$?
[ "$status" -eq 2 ] || { echo "--workers 0: exit status $status, expected 2"; exit 1; }
status=0
"$bin" --region "$region" --workers 1 --threads 1 --series 1 2>/dev/null || status=$?
[ "$status" -eq 2 ] || { echo "missing --seconds: exit status $status, expected 2"; exit 1; }

out=$("$bin" --region "$region" --workers 2 --threads 2 --seconds 0.3 --series 50)
echo "$out"
[ "$(echo "$out" | grep -c '^worker=[01] pid=[0-9]* threads=2 ')" -eq 2 ] || { echo "expected two worker lines"; exit 1; }
echo "$out" | grep -q '^total workers=2 threads=2 .* requests_total=[1-9][0-9]* latency_count=[1-9]' ||
  { echo "expected a total line with non-zero totals"; exit 1; }
