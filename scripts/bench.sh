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
echo "== kaze echo against libwebsockets and Node ws: plaintext, permessage-deflate, TLS (server CPU, pinned)"
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/bench/compare.sh" "$build" "${ROUNDS:-3}" >"$one"
grep -v '^bench: ' "$one" || true
grep '^bench: ' "$one" >>"$lines" || true
echo
echo "== summary"
cat "$lines"
