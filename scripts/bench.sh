#!/usr/bin/env bash
# Runs every benchmark binary of a build, shows their tables, and ends with
# the machine-readable lines `bench: NAME VALUE UNIT` gathered from all of
# them, so that results can be compared across commits.
set -euo pipefail
build=${1:-build}
lines=$(mktemp)
one=$(mktemp)
trap 'rm -f "$lines" "$one"' EXIT
for b in "$build"/bench/bench_*; do
  [ -x "$b" ] || continue
  echo "== $(basename "$b")"
  "$b" >"$one"
  grep -v '^bench: ' "$one" || true
  grep '^bench: ' "$one" >>"$lines" || true
  echo
done
echo "== summary"
cat "$lines"
