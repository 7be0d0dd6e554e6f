#!/usr/bin/env bash
# libkaze's client role against servers no one here wrote: Python websockets
# and Node ws echo servers, with permessage-deflate on and off. The client is
# `kaze bench`, which checks every echo's type, length and content and exits
# non-zero on any error or failed negotiation.
#
#   client_direction.sh KAZE_BINARY python|node
set -uo pipefail
kaze=$1
peer=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
case $peer in
  python) /usr/bin/python3 "$here/py_server.py" "$port" >"$work/out" 2>"$work/err" & ;;
  node)
    [ -d "$here/node_modules/ws" ] || (cd "$here" && npm ci --no-audit --no-fund >/dev/null 2>&1)
    node "$here/node_server.mjs" "$port" >"$work/out" 2>"$work/err" & ;;
  *) echo "usage: $0 KAZE_BINARY python|node" >&2; exit 2 ;;
esac
server=$!
for _ in $(seq 300); do [ -s "$work/out" ] && break; sleep 0.1; done
if [ ! -s "$work/out" ]; then echo "client_direction: $peer server did not start" >&2; cat "$work/err" >&2; exit 1; fi
url=ws://127.0.0.1:$port/

passed=0
failed=0
run() { # name, then kaze bench arguments
  local name=$1
  shift
  if timeout 120 "$kaze" bench echo "$url" "$@" >"$work/log" 2>&1 && grep -q '^bench: echo_errors 0 ' "$work/log"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL $peer: $name"
    cat "$work/log"
  fi
}

run "binary, plain" -c 4 -d 4 -n 2000 -s 100 --binary
run "text, plain" -c 4 -d 4 -n 2000 -s 1K --text
run "large binary, plain" -c 1 -d 1 -n 20 -s 1M --binary
run "text, deflate" -c 4 -d 4 -n 2000 -s 1K --text --deflate
run "binary, deflate" -c 4 -d 4 -n 2000 -s 4K --binary --deflate
run "large text, deflate" -c 1 -d 2 -n 20 -s 1M --text --deflate
run "small text, deflate" -c 2 -d 8 -n 2000 -s 20 --text --deflate
run "no context takeover offered" -c 2 -d 4 -n 1000 -s 2K --text \
    --deflate-offer "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
run "small windows offered" -c 2 -d 4 -n 1000 -s 2K --text \
    --deflate-offer "permessage-deflate; client_max_window_bits=10; server_max_window_bits=10"

if ! kill -0 "$server" 2>/dev/null; then
  echo "client_direction: the $peer server died"; cat "$work/err"; failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
