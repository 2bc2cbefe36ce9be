#!/usr/bin/env bash
# usage: run_consumer.sh CONSUMER: runs the C consumer on a fresh region, which it removes after.
set -euo pipefail
region="shmetrics-c-consumer-$$"
trap 'rm -f "/dev/shm/${region}"' EXIT
out="$("$1" "$region")"
[[ "$out" == "OK" ]] || { echo "c_api_consumer printed: ${out}" >&2; exit 1; }
