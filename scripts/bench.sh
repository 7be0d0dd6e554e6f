#!/usr/bin/env bash
# Runs every benchmark binary of a build and ends with the machine-readable
# lines `bench: NAME VALUE UNIT`, gathered from all of them.
set -euo pipefail
build=${1:-build}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for b in "$build"/bench/bench_*; do
  [ -x "$b" ] || continue
  echo "== $(basename "$b")"
  "$b" | tee -a "$out"
done
echo
echo "== summary"
grep '^bench: ' "$out" || true
