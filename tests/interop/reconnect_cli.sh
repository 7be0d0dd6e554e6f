#!/usr/bin/env bash
# `kaze client --reconnect` against a server that goes away and comes back on
# the same port: once after a clean stop (SIGTERM: the server closes with
# 1001), once after a crash (SIGKILL: no close frame) with the port closed
# for 2.5 s, so that at least one reconnection attempt is refused. Lines are
# fed through a FIFO on stdin, one after each restart; each must come back.
# At the end of input the client must close with 1000 and exit 0 with every
# echo on stdout.
#
#   reconnect_cli.sh KAZE_BINARY
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: $0 KAZE_BINARY" >&2; exit 2; }
kaze=$1
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$kaze" ] || { echo "reconnect_cli: $kaze is not an executable" >&2; exit 2; }
unset http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY ALL_PROXY all_proxy

work=$(mktemp -d)
server=""
client=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  exec 3>&- 2>/dev/null
  local p
  for p in $server $client; do kill -TERM "$p" 2>/dev/null; done
  for p in $server $client; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pdeath=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
  pdeath=(setpriv --pdeathsig KILL)
fi

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
generation=0

# 3>&-: a server must not hold the client's FIFO open, or the client never
# sees the end of its input.
start_server() {
  generation=$((generation + 1))
  "${pdeath[@]}" /usr/bin/python3 "$here/py_special_server.py" "$port" \
    >"$work/server$generation.out" 2>"$work/server$generation.err" 3>&- &
  server=$!
  for _ in $(seq 100); do
    [ -s "$work/server$generation.out" ] && return 0
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  # The port may still be held for a moment by the previous server.
  return 1
}

stop_server() { # SIGNAL
  kill "-$1" "$server" 2>/dev/null
  wait "$server" 2>/dev/null
  server=""
}

fail() {
  echo "FAIL reconnect: $1"
  echo "  client exit status: ${client_rc:-still running}"
  echo "  client stdout:"
  sed 's/^/    | /' "$work/out"
  echo "  client stderr:"
  head -n 30 "$work/err" | sed 's/^/    | /'
  local g
  for g in $(seq "$generation"); do
    echo "  server $g stdout:"
    sed 's/^/    | /' "$work/server$g.out"
  done
  exit 1
}

# wait_for SECONDS COMMAND...: poll until COMMAND succeeds
wait_for() {
  local n=$(($1 * 10))
  shift
  for _ in $(seq "$n"); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}
server_open() { grep -q '^open /$' "$work/server$generation.out"; }
client_gone() { ! kill -0 "$client" 2>/dev/null; }
got_lines() { [ "$(wc -l <"$work/out")" -ge "$1" ]; }

start_server || fail "the server did not start"
mkfifo "$work/in"
: >"$work/out"
timeout --kill-after=5 60 "$kaze" client --reconnect "ws://127.0.0.1:$port/" \
  <"$work/in" >"$work/out" 2>"$work/err" &
client=$!
exec 3>"$work/in"
t0=$(date +%s%N)

wait_for 10 server_open || fail "the client did not connect"
echo one >&3
wait_for 5 got_lines 1 || fail "'one' did not come back"

# A clean stop: the server closes with 1001; back on the same port at once.
stop_server TERM
wait_for 10 start_server || fail "the server could not be restarted on port $port"
wait_for 15 server_open || fail "no reconnection after the server closed with 1001 and came back"
echo two >&3
wait_for 5 got_lines 2 || fail "'two' did not come back after the reconnection"

# A crash: no close frame, and nobody listening for 2.5 s.
stop_server KILL
sleep 2.5
wait_for 10 start_server || fail "the server could not be restarted on port $port"
wait_for 15 server_open || fail "no reconnection after the server was killed and came back"
echo three >&3
wait_for 5 got_lines 3 || fail "'three' did not come back after the second reconnection"

# End of input: every message sent has come back, so close with 1000, exit 0.
exec 3>&-
wait_for 10 client_gone || fail "the client did not exit after the end of its input"
client_rc=0
wait "$client" || client_rc=$?
client=""
[ "$client_rc" -eq 0 ] || fail "exit status $client_rc, want 0"
[ "$(cat "$work/out")" = $'one\ntwo\nthree' ] || fail "stdout should be one, two, three"
grep -qx 'close / 1000' "$work/server$generation.out" || fail "the client did not close with 1000"
echo "reconnect_cli: passed in $((($(date +%s%N) - t0) / 1000000)) ms"
