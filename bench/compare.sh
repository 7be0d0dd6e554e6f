#!/usr/bin/env bash
# kaze echo against libwebsockets and Node ws, same load, servers run in
# turn (kaze, lws, node, kaze, lws, node, ...) so that drift on a shared
# machine hits all of them alike. The server is pinned to CPU 0 and the load
# generator (kaze bench) to CPU 1; each figure is the server's own CPU time
# (user+sys, from /proc) or RSS, and the median over the rounds is reported
# with kaze's ratio to each peer.
#
#   bench/compare.sh BUILD_DIR [ROUNDS]
#
# Ends with `bench: NAME VALUE UNIT` lines.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
rounds=${2:-${ROUNDS:-3}}
here=$(cd "$(dirname "$0")" && pwd)
kaze=$build/apps/kaze
work=$(mktemp -d)
server_pid=""

cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

pin_server="taskset -c 0"
pin_client="taskset -c 1"
if [ "$(nproc)" -lt 2 ]; then pin_server=""; pin_client=""; fi

# The peers: a libwebsockets echo server of our own, and Node's ws.
peers=(kaze)
if pkg-config --exists libwebsockets 2>/dev/null; then
  cc -O2 -o "$work/lws_echo" "$here/peers/lws_echo.c" $(pkg-config --cflags --libs libwebsockets)
  peers+=(lws)
else
  echo "compare: libwebsockets-dev missing, skipping lws" >&2
fi
if command -v node >/dev/null && command -v npm >/dev/null; then
  [ -d "$here/peers/node_modules/ws" ] || (cd "$here/peers" && npm ci --no-audit --no-fund >/dev/null 2>&1)
  peers+=(node)
else
  echo "compare: node missing, skipping ws" >&2
fi

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_server() { # name -> sets server_pid, port
  local name=$1
  port=$(free_port)
  case $name in
    kaze) $pin_server "$kaze" echo --host 127.0.0.1 --port "$port" --threads 1 --quiet >"$work/out" 2>"$work/err" & ;;
    lws) $pin_server "$work/lws_echo" "$port" >"$work/out" 2>"$work/err" & ;;
    node) $pin_server node "$here/peers/ws_echo.mjs" "$port" >"$work/out" 2>"$work/err" & ;;
  esac
  server_pid=$!
  for _ in $(seq 100); do
    [ -s "$work/out" ] && return 0
    sleep 0.1
  done
  echo "compare: $name did not start" >&2
  cat "$work/err" >&2
  exit 1
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# value NAME FILE: the number on the `bench: NAME` line
value() { awk -v n="$1" '$1 == "bench:" && $2 == n { print $3 }' "$2"; }

record() { echo "$2" >>"$work/$1.$3"; } # peer value metric

for r in $(seq "$rounds"); do
  for p in "${peers[@]}"; do
    start_server "$p"
    url=ws://127.0.0.1:$port/
    $pin_client "$kaze" bench echo "$url" -c 100 -s 32 -d 8 -D 4 --server-pid "$server_pid" >"$work/small" 2>&1 || true
    record "$p" "$(value server_cpu_s_per_M_msgs "$work/small")" small_cpu
    record "$p" "$(value echo_msgs_per_s "$work/small")" small_rate
    $pin_client "$kaze" bench echo "$url" -c 100 -s 64K -d 8 -D 4 --server-pid "$server_pid" >"$work/large" 2>&1 || true
    record "$p" "$(value server_cpu_s_per_M_msgs "$work/large")" large_cpu
    stop_server
    # A fresh server for the connection figures, so earlier traffic does not colour its RSS.
    start_server "$p"
    $pin_client "$kaze" bench connect "ws://127.0.0.1:$port/" -c 10000 --hold 1 --server-pid "$server_pid" >"$work/conn" 2>&1 || true
    record "$p" "$(value server_cpu_us_per_handshake "$work/conn")" hs_cpu
    record "$p" "$(value server_rss_bytes_per_conn "$work/conn")" idle_mem
    stop_server
    echo "round $r $p: small $(tail -1 "$work/$p.small_cpu") s/M, large $(tail -1 "$work/$p.large_cpu") s/M," \
         "handshake $(tail -1 "$work/$p.hs_cpu") us, idle $(tail -1 "$work/$p.idle_mem") B"
  done
done

median() { grep -E '^[0-9.]+$' "$1" 2>/dev/null | sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'; }

echo
printf '%-34s' "median over $rounds rounds"
for p in "${peers[@]}"; do printf '%14s' "$p"; done
echo
metrics=(small_cpu large_cpu hs_cpu idle_mem small_rate)
label_small_cpu="CPU s / 1M echoes, 32 B"
label_large_cpu="CPU s / 1M echoes, 64 KiB"
label_hs_cpu="CPU us / handshake"
label_idle_mem="RSS bytes / idle connection"
label_small_rate="echoes/s, 32 B (load-bound)"
for m in "${metrics[@]}"; do
  l=label_$m
  printf '%-34s' "${!l}"
  for p in "${peers[@]}"; do printf '%14s' "$(median "$work/$p.$m")"; done
  echo
done
echo
unit_small_cpu="s/M_msgs"; unit_large_cpu="s/M_msgs"; unit_hs_cpu="us"; unit_idle_mem="bytes"; unit_small_rate="msgs/s"
for m in "${metrics[@]}"; do
  u=unit_$m
  for p in "${peers[@]}"; do
    v=$(median "$work/$p.$m")
    [ -n "$v" ] && echo "bench: ${p}_${m} $v ${!u}"
  done
  k=$(median "$work/kaze.$m")
  for p in "${peers[@]}"; do
    [ "$p" = kaze ] && continue
    v=$(median "$work/$p.$m")
    if [ -n "$k" ] && [ -n "$v" ]; then
      echo "bench: kaze_vs_${p}_${m} $(awk -v a="$k" -v b="$v" 'BEGIN { printf "%.3f", a / b }') ratio"
    fi
  done
done
