#!/usr/bin/env bash
# kaze echo against libwebsockets and Node ws, same load, servers run in
# turn (kaze, lws, node, kaze, lws, node, ...) so that drift on a shared
# machine hits all of them alike. The server is pinned to CPU 0 and the load
# generator (kaze bench) to CPU 1; each figure is the server's own CPU time
# (user+sys, from /proc) or RSS, and the median over the rounds is reported
# with kaze's ratio to each peer.
#
# Then the same with permessage-deflate, for kaze with a compressor per
# connection (kaze echo's default, "kaze"), kaze with one compressor per
# thread (--deflate-mode shared, "kaze_shared") and Node ws (ws_echo.mjs
# deflate: every message compressed). kaze bench --deflate sends 1 KiB of
# JSON-like text per message (records with the same keys and changing
# values; see apps/bench.h), compressed with zlib level 6, and inflates the
# echoes. Two figures: the server's CPU per million such echoes (100
# connections, depth 8), and its RSS per idle connection that has exchanged
# one compressed message (so that the lazily made zlib state exists), over
# 2,000 connections. Each server keeps its own compression settings: kaze
# compresses at level 1, ws at zlib's default 6; the table shows what each
# made of the echoes.
#
# Then the same servers over TLS (wss://): kaze echo --tls-cert/--tls-key,
# lws_echo and ws_echo.mjs given the same certificate, an EC P-256 key
# signed by a CA of our own, both made here with the openssl command into
# the temporary directory (never kept). kaze bench connects to
# wss://localhost (SNI sent) and verifies the certificate against that CA.
# Figures: the server's CPU per million 32-byte and 64 KiB echoes, per
# handshake (TCP + a full TLS handshake + the upgrade; the load generator
# keeps no sessions) and handshakes/s, and its RSS per idle TLS connection
# over 5,000 connections; each is also given as a ratio to the same
# server's plaintext figure (PEER_tls_vs_plain_METRIC).
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

# TLS: a CA and a server certificate for localhost and 127.0.0.1, EC P-256.
tls=$work/tls
tpeers=()
make_certs() {
  mkdir -p "$tls"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 2 -subj /CN=kaze-bench-ca &&
  openssl req "${ec[@]}" -keyout "$tls/server.key" -out "$tls/server.csr" -subj /CN=localhost &&
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/ext" &&
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/ext" -out "$tls/server.pem"
}
if command -v openssl >/dev/null && make_certs >/dev/null 2>&1; then
  tpeers=("${peers[@]}")
else
  echo "compare: openssl cannot make certificates, skipping TLS" >&2
fi

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_server() { # name [deflate|tls] -> sets server_pid, port
  local name=$1 zip=${2:-}
  port=$(free_port)
  case $name${zip:+-$zip} in
    kaze) $pin_server "$kaze" echo --host 127.0.0.1 --port "$port" --threads 1 --quiet >"$work/out" 2>"$work/err" & ;;
    lws) $pin_server "$work/lws_echo" "$port" >"$work/out" 2>"$work/err" & ;;
    node) $pin_server node "$here/peers/ws_echo.mjs" "$port" >"$work/out" 2>"$work/err" & ;;
    kaze-deflate) $pin_server "$kaze" echo --host 127.0.0.1 --port "$port" --threads 1 --quiet \
      --deflate-mode dedicated >"$work/out" 2>"$work/err" & ;;
    kaze_shared-deflate) $pin_server "$kaze" echo --host 127.0.0.1 --port "$port" --threads 1 --quiet \
      --deflate-mode shared >"$work/out" 2>"$work/err" & ;;
    node-deflate) $pin_server node "$here/peers/ws_echo.mjs" "$port" deflate >"$work/out" 2>"$work/err" & ;;
    kaze-tls) $pin_server "$kaze" echo --host 127.0.0.1 --port "$port" --threads 1 --quiet \
      --tls-cert "$tls/server.pem" --tls-key "$tls/server.key" >"$work/out" 2>"$work/err" & ;;
    lws-tls) $pin_server "$work/lws_echo" "$port" "$tls/server.pem" "$tls/server.key" >"$work/out" 2>"$work/err" & ;;
    node-tls) $pin_server node "$here/peers/ws_echo.mjs" "$port" plain "$tls/server.pem" "$tls/server.key" \
      >"$work/out" 2>"$work/err" & ;;
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

# The compressed rounds: kaze both ways, and ws.
zpeers=(kaze kaze_shared)
case " ${peers[*]} " in *" node "*) zpeers+=(node) ;; esac

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
    record "$p" "$(value connect_handshakes_per_s "$work/conn")" hs_rate
    record "$p" "$(value server_rss_bytes_per_conn "$work/conn")" idle_mem
    stop_server
    echo "round $r $p: small $(tail -1 "$work/$p.small_cpu") s/M, large $(tail -1 "$work/$p.large_cpu") s/M," \
         "handshake $(tail -1 "$work/$p.hs_cpu") us, idle $(tail -1 "$work/$p.idle_mem") B"
  done
  for p in "${zpeers[@]}"; do
    start_server "$p" deflate
    url=ws://127.0.0.1:$port/
    $pin_client "$kaze" bench echo "$url" --deflate --text -c 100 -s 1K -d 8 -D 4 --server-pid "$server_pid" >"$work/zecho" 2>&1 || true
    record "$p" "$(value server_cpu_s_per_M_msgs "$work/zecho")" deflate_cpu
    record "$p" "$(value echo_msgs_per_s "$work/zecho")" deflate_rate
    record "$p" "$(value deflate_echo_ratio "$work/zecho")" deflate_ratio
    stop_server
    start_server "$p" deflate
    $pin_client "$kaze" bench connect "ws://127.0.0.1:$port/" --deflate --text -s 1K -c 2000 --hold 1 --server-pid "$server_pid" >"$work/zconn" 2>&1 || true
    record "$p" "$(value server_rss_bytes_per_conn "$work/zconn")" deflate_idle_mem
    stop_server
    echo "round $r $p deflate: $(tail -1 "$work/$p.deflate_cpu") s/M, idle $(tail -1 "$work/$p.deflate_idle_mem") B," \
         "echoes at $(tail -1 "$work/$p.deflate_ratio") of their size"
  done
  for p in "${tpeers[@]}"; do
    start_server "$p" tls
    url=wss://localhost:$port/
    $pin_client "$kaze" bench echo "$url" --ca "$tls/ca.pem" -c 100 -s 32 -d 8 -D 4 --server-pid "$server_pid" >"$work/tsmall" 2>&1 || true
    record "$p" "$(value server_cpu_s_per_M_msgs "$work/tsmall")" tls_small_cpu
    record "$p" "$(value echo_msgs_per_s "$work/tsmall")" tls_small_rate
    $pin_client "$kaze" bench echo "$url" --ca "$tls/ca.pem" -c 100 -s 64K -d 8 -D 4 --server-pid "$server_pid" >"$work/tlarge" 2>&1 || true
    record "$p" "$(value server_cpu_s_per_M_msgs "$work/tlarge")" tls_large_cpu
    stop_server
    start_server "$p" tls
    $pin_client "$kaze" bench connect "wss://localhost:$port/" --ca "$tls/ca.pem" -c 5000 --hold 1 --server-pid "$server_pid" >"$work/tconn" 2>&1 || true
    record "$p" "$(value server_cpu_us_per_handshake "$work/tconn")" tls_hs_cpu
    record "$p" "$(value connect_handshakes_per_s "$work/tconn")" tls_hs_rate
    record "$p" "$(value server_rss_bytes_per_conn "$work/tconn")" tls_idle_mem
    stop_server
    echo "round $r $p tls: small $(tail -1 "$work/$p.tls_small_cpu") s/M, large $(tail -1 "$work/$p.tls_large_cpu") s/M," \
         "handshake $(tail -1 "$work/$p.tls_hs_cpu") us ($(tail -1 "$work/$p.tls_hs_rate")/s), idle $(tail -1 "$work/$p.tls_idle_mem") B"
    grep -h 'kaze bench:' "$work/tsmall" "$work/tlarge" "$work/tconn" >&2 || true
  done
done

median() { grep -E '^[0-9.]+$' "$1" 2>/dev/null | sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'; }

# table TITLE PEERS METRICS: one row per metric, one column per peer.
table() {
  local -n cols=$2 rows=$3
  local m l p
  echo
  printf '%-36s' "$1"
  for p in "${cols[@]}"; do printf '%14s' "$p"; done
  echo
  for m in "${rows[@]}"; do
    l=label_$m
    printf '%-36s' "${!l}"
    for p in "${cols[@]}"; do printf '%14s' "$(median "$work/$p.$m")"; done
    echo
  done
}

# lines PEERS METRICS BASES: `bench:` lines for each value, and each base's ratio to the others.
lines() {
  local -n cols=$1 rows=$2 bases=$3
  local m u p v b k
  for m in "${rows[@]}"; do
    u=unit_$m
    for p in "${cols[@]}"; do
      v=$(median "$work/$p.$m")
      [ -n "$v" ] && echo "bench: ${p}_${m} $v ${!u}"
    done
    for b in "${bases[@]}"; do
      k=$(median "$work/$b.$m")
      for p in "${cols[@]}"; do
        case " ${bases[*]} " in *" $p "*) continue ;; esac
        v=$(median "$work/$p.$m")
        if [ -n "$k" ] && [ -n "$v" ]; then
          echo "bench: ${b}_vs_${p}_${m} $(awk -v a="$k" -v b="$v" 'BEGIN { printf "%.3f", a / b }') ratio"
        fi
      done
    done
  done
}

metrics=(small_cpu large_cpu hs_cpu idle_mem small_rate hs_rate)
label_small_cpu="CPU s / 1M echoes, 32 B"
label_large_cpu="CPU s / 1M echoes, 64 KiB"
label_hs_cpu="CPU us / handshake"
label_idle_mem="RSS bytes / idle connection"
label_small_rate="echoes/s, 32 B (load-bound)"
label_hs_rate="handshakes/s (load-bound)"
unit_small_cpu="s/M_msgs"; unit_large_cpu="s/M_msgs"; unit_hs_cpu="us"; unit_idle_mem="bytes"; unit_small_rate="msgs/s"
unit_hs_rate="hs/s"

tmetrics=(tls_small_cpu tls_large_cpu tls_hs_cpu tls_idle_mem tls_small_rate tls_hs_rate)
for m in "${metrics[@]}"; do
  l=label_$m; u=unit_$m
  printf -v "label_tls_$m" '%s' "${!l}"
  printf -v "unit_tls_$m" '%s' "${!u}"
done

# tls_ratios PEERS: each TLS median over the same server's plaintext one.
tls_ratios() {
  local -n cols=$1
  local m p t v l
  echo
  printf '%-36s' "TLS / plaintext, medians"
  for p in "${cols[@]}"; do printf '%14s' "$p"; done
  echo
  for m in "${metrics[@]}"; do
    l=label_$m
    printf '%-36s' "${!l}"
    for p in "${cols[@]}"; do
      t=$(median "$work/$p.tls_$m"); v=$(median "$work/$p.$m")
      if [ -n "$t" ] && [ -n "$v" ]; then
        printf '%14s' "$(awk -v a="$t" -v b="$v" 'BEGIN { printf "%.2fx", a / b }')"
        echo "bench: ${p}_tls_vs_plain_$m $(awk -v a="$t" -v b="$v" 'BEGIN { printf "%.3f", a / b }') ratio" >>"$work/tls_lines"
      else
        printf '%14s' "-"
      fi
    done
    echo
  done
}

zmetrics=(deflate_cpu deflate_idle_mem deflate_rate deflate_ratio)
label_deflate_cpu="CPU s / 1M echoes, 1 KiB deflate"
label_deflate_idle_mem="RSS bytes / idle deflate conn."
label_deflate_rate="echoes/s, deflate (load-bound)"
label_deflate_ratio="echo wire bytes / payload byte"
unit_deflate_cpu="s/M_msgs"; unit_deflate_idle_mem="bytes"; unit_deflate_rate="msgs/s"; unit_deflate_ratio="ratio"

table "median over $rounds rounds" peers metrics
table "permessage-deflate, median" zpeers zmetrics
: >"$work/tls_lines"
if [ ${#tpeers[@]} -gt 0 ]; then
  table "TLS (wss://), median" tpeers tmetrics
  tls_ratios tpeers
fi
echo
base=(kaze)
zbase=(kaze kaze_shared)
lines peers metrics base
lines zpeers zmetrics zbase
if [ ${#tpeers[@]} -gt 0 ]; then
  lines tpeers tmetrics base
  cat "$work/tls_lines"
fi
