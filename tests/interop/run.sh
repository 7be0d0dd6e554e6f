#!/usr/bin/env bash
# Interop tests: one real client library against a fresh `kaze echo`.
#
# usage: run.sh KAZE_BINARY python|node
#
# Starts `kaze echo` on a free loopback port (the port is the first line it
# prints), runs the client script against it, then stops the server with
# SIGTERM and checks that it shut down cleanly. The server is stopped on every
# path out of this script; it also gets SIGKILL if this script is killed
# outright (setpriv --pdeathsig), e.g. by a ctest timeout.
set -euo pipefail

usage() {
  echo "usage: $0 KAZE_BINARY python|node" >&2
  exit 2
}
[ $# -eq 2 ] || usage
kaze=$1
client=$2
here=$(cd "$(dirname "$0")" && pwd)
max_message=$((16 << 20))
[ -x "$kaze" ] || { echo "interop: $kaze is not an executable" >&2; exit 2; }

case "$client" in
  python)
    cmd=(/usr/bin/python3 "$here/py_client.py")
    /usr/bin/python3 -c 'import websockets' 2>/dev/null || {
      echo "interop: Debian's python3-websockets is missing (scripts/deps.sh installs it)" >&2
      exit 1
    }
    ;;
  node)
    cmd=(node "$here/node_client.mjs")
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
      echo "interop: node and npm are missing (scripts/deps.sh installs them)" >&2
      exit 1
    fi
    if [ ! -d "$here/node_modules/ws" ]; then
      echo "interop: npm ci in $here" >&2
      (cd "$here" && npm ci --no-audit --no-fund >&2)
    fi
    ;;
  *) usage ;;
esac

tmp=$(mktemp -d)
server_pid=""
stop_server() {
  # SIGTERM starts kaze's graceful shutdown; SIGKILL if it has not ended in 15 s.
  [ -n "$server_pid" ] || return 0
  local pid=$server_pid rc=0
  server_pid=""
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "interop: kaze echo did not exit within 15 s of SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 1
  fi
  wait "$pid" || rc=$?
  return "$rc"
}
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  stop_server || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pdeath=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
  pdeath=(setpriv --pdeathsig KILL)
fi
"${pdeath[@]}" "$kaze" echo --host 127.0.0.1 --port 0 --threads 1 --quiet \
  --subprotocol chat --max-message "$max_message" >"$tmp/stdout" 2>"$tmp/stderr" &
server_pid=$!

show_server_stderr() {
  if [ -s "$tmp/stderr" ]; then
    echo "--- kaze echo stderr ---" >&2
    cat "$tmp/stderr" >&2
  fi
}

# The port is the first line of stdout; wait up to 30 s for it.
port=""
for _ in $(seq 300); do
  if IFS= read -r line <"$tmp/stdout" && [[ "$line" =~ ^[0-9]+$ ]]; then
    port=$line
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "interop: kaze echo printed no port" >&2
  show_server_stderr
  exit 1
fi

echo "interop: $client client against kaze echo on 127.0.0.1:$port" >&2
rc=0
timeout --kill-after=10 240 "${cmd[@]}" "ws://127.0.0.1:$port/" "$max_message" || rc=$?
[ "$rc" -eq 124 ] && echo "interop: the $client client did not finish within 240 s" >&2

if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "interop: kaze echo died during the test" >&2
  wait "$server_pid" 2>/dev/null || echo "interop: its exit status: $?" >&2
  server_pid=""
  show_server_stderr
  exit 1
fi
srv_rc=0
stop_server || srv_rc=$?
if [ "$srv_rc" -ne 0 ]; then
  echo "interop: kaze echo exited with status $srv_rc after SIGTERM" >&2
  show_server_stderr
  exit 1
fi
[ "$rc" -ne 0 ] && show_server_stderr
exit "$rc"
