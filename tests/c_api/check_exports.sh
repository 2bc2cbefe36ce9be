#!/usr/bin/env bash
# usage: check_exports.sh LIBRARY
# The shared library exports the C ABI and nothing else: every defined global or weak dynamic
# symbol starts with shmetrics_ and carries the version node SHMETRICS_1.0; its SONAME is
# libshmetrics.so.1.
set -euo pipefail
lib="$1"
fail() {
  echo "exported_symbols_test: FAIL: $*" >&2
  exit 1
}

soname="$(readelf --dynamic --wide "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
[[ "$soname" == "libshmetrics.so.1" ]] || fail "SONAME is '${soname}', not libshmetrics.so.1"

# readelf --dyn-syms columns: Num Value Size Type Bind Vis Ndx Name. Defined: Ndx is not UND.
# The version node itself appears as an ABS symbol SHMETRICS_1.0.
defined="$(readelf --dyn-syms --wide "$lib" |
           awk '$5 == "GLOBAL" || $5 == "WEAK" { if ($7 != "UND") print $8 }')"
[[ -n "$defined" ]] || fail "no defined dynamic symbols at all"
stray="$(grep -v -e '^shmetrics_.*@@SHMETRICS_1\.0$' -e '^SHMETRICS_1\.0$' <<<"$defined" || true)"
[[ -z "$stray" ]] || fail "exported beyond shmetrics_* in SHMETRICS_1.0:"$'\n'"${stray}"
for f in shmetrics_abi_version shmetrics_last_error shmetrics_attach shmetrics_register \
         shmetrics_counter_inc shmetrics_histogram_observe; do
  grep -qx "${f}@@SHMETRICS_1.0" <<<"$defined" || fail "${f} is not exported"
done
echo "exported_symbols_test: $(wc -l <<<"$defined") symbols, all shmetrics_*; SONAME ${soname}"
