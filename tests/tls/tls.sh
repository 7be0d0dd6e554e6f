#!/usr/bin/env bash
# TLS (wss://) tests of both of Kaze's roles against peers no one here wrote:
# Python's websockets and ssl, Node's ws, the openssl CLI.
#
#   tls.sh KAZE_BINARY
#
# Certificates are made for each run by make_certs.sh (a test CA, the server's
# certificate for localhost/127.0.0.1/::1, a second one for SNI, an expired one,
# one for the wrong name, a self-signed one). Every server is started on a port
# the system picks (`kaze echo --port 0` and the peers print theirs) and stopped
# on every way out of this script; each also gets SIGKILL if this script is
# killed outright (setpriv --pdeathsig), e.g. by a ctest timeout.
#
# Prints a line per check ("ok   ..." or "FAIL ..." with what was seen), then
# "N passed, N failed"; the exit status is non-zero when any check failed.
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: $0 KAZE_BINARY" >&2; exit 2; }
kaze=$1
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$kaze" ] || { echo "tls: $kaze is not an executable" >&2; exit 2; }
py=/usr/bin/python3

# Nothing from the environment may decide what is trusted or where a
# connection goes.
unset SSL_CERT_FILE SSL_CERT_DIR NODE_EXTRA_CA_CERTS NODE_TLS_REJECT_UNAUTHORIZED
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

missing=""
command -v openssl >/dev/null || missing+=" openssl"
$py -c 'import websockets' 2>/dev/null || missing+=" python3-websockets"
command -v node >/dev/null && command -v npm >/dev/null || missing+=" nodejs/npm"
if [ -n "$missing" ]; then
  echo "tls: missing:$missing (scripts/deps.sh installs them)" >&2
  exit 1
fi
if [ ! -d "$here/node_modules/ws" ]; then
  echo "tls: npm ci in $here" >&2
  (cd "$here" && npm ci --no-audit --no-fund >&2) || { echo "tls: npm ci failed" >&2; exit 1; }
fi

tmp=$(mktemp -d)
declare -A PID PORT # server name -> pid, port
bg_pids=()          # other background processes (clients)

stop() { # NAME: SIGTERM, SIGKILL after 15 s; returns the server's exit status
  local name=$1 pid=${PID[$1]:-} rc=0
  [ -n "$pid" ] || return 0
  unset "PID[$name]"
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "tls: $name did not exit within 15 s of SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 1
  fi
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local p name
  for p in "${bg_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for name in "${!PID[@]}"; do stop "$name" || true; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pdeath=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
  pdeath=(setpriv --pdeathsig KILL)
fi

start() { # NAME COMMAND...: starts a server that prints its port as its first line
  local name=$1 line=""
  shift
  : >"$tmp/$name.out"
  "${pdeath[@]}" "$@" </dev/null >"$tmp/$name.out" 2>"$tmp/$name.err" &
  PID[$name]=$!
  for _ in $(seq 300); do
    if IFS= read -r line <"$tmp/$name.out" && [[ "$line" =~ ^[0-9]+$ ]]; then
      PORT[$name]=$line
      return 0
    fi
    kill -0 "${PID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "tls: $name printed no port; its stderr:" >&2
  cat "$tmp/$name.err" >&2
  return 1
}

start_kaze() { # NAME CERT [kaze echo options...]: kaze echo with certs/CERT.pem and .key
  local name=$1 cert=$2
  shift 2
  start "$name" "$kaze" echo --host 127.0.0.1 --port 0 --threads 1 --quiet \
    --tls-cert "$certs/$cert.pem" --tls-key "$certs/$cert.key" "$@"
}

passed=0
failed=0
ok() {
  passed=$((passed + 1))
  echo "ok   $1"
}
bad() { # NAME, then what was seen (printed indented)
  failed=$((failed + 1))
  echo "FAIL $1"
  shift
  [ $# -gt 0 ] && printf '%s\n' "$@" | sed 's/^/       /'
  return 0
}

# Runs `kaze client ARGS...` with INPUT on stdin: sets rc, out, err.
client() { # INPUT ARGS...
  local input=$1
  shift
  printf '%s' "$input" | timeout -k 5 "${client_timeout:-20}" "$kaze" client "$@" >"$tmp/client.out" 2>"$tmp/client.err"
  rc=$?
  out=$(cat "$tmp/client.out")
  err=$(cat "$tmp/client.err")
}

# kaze client must echo INPUT back and exit 0.
expect_echo() { # NAME INPUT ARGS...
  local name=$1 input=$2
  shift 2
  client "$input" "$@"
  if [ "$rc" -eq 0 ] && [ "$out" = "${input%$'\n'}" ]; then
    ok "$name"
  else
    bad "$name" "kaze client $*: exit $rc (want 0)" "stdout: $(head -c 100 <<<"$out")" "stderr: $err"
  fi
}

# kaze client must exit 1 with stderr matching REGEX (extended, case-insensitive).
expect_refused() { # NAME REGEX ARGS...
  local name=$1 re=$2
  shift 2
  client $'a\n' "$@"
  if [ "$rc" -eq 1 ] && grep -Eqi -- "$re" <<<"$err" && [ -z "$out" ]; then
    ok "$name"
    echo "       ($err)"
  else
    bad "$name" "kaze client $*: exit $rc (want 1, stderr matching /$re/)" "stdout: $out" "stderr: $err"
  fi
}

# The openssl CLI as a TLS client: sets rc and sout (its stdout and stderr).
sclient() { # PORT ARGS...
  local port=$1
  shift
  sout=$(timeout -k 5 20 openssl s_client -connect "127.0.0.1:$port" "$@" </dev/null 2>&1)
  rc=$?
}

# Waits up to 10 s until FILE has a line matching REGEX.
wait_for_line() { # FILE REGEX
  for _ in $(seq 100); do
    grep -Eq -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

echo "tls: $kaze" >&2
t0=$SECONDS
section() { echo "tls: [$((SECONDS - t0)) s] $1" >&2; }
certs=$tmp/certs
if ! "$here/make_certs.sh" "$certs" >"$tmp/make_certs.out" 2>&1; then
  cat "$tmp/make_certs.out" >&2
  echo "tls: make_certs.sh failed" >&2
  exit 1
fi
ca=$certs/ca.pem
abc=$'a\nb\n'

# ---- 1. Python websockets and Node ws clients against kaze echo -------------
section "Python websockets and Node ws clients against kaze echo"
start_kaze main server --subprotocol chat --max-message 16M || exit 1
main=${PORT[main]}

suite() { # NAME COMMAND...: a client suite that ends with "N passed, N failed"
  local name=$1 last p f
  shift
  timeout -k 5 120 "$@" >"$tmp/suite.out" 2>&1
  local src=$?
  last=$(tail -n 1 "$tmp/suite.out")
  if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    p=${BASH_REMATCH[1]}
    f=${BASH_REMATCH[2]}
    passed=$((passed + p))
    failed=$((failed + f))
    sed '$d' "$tmp/suite.out"
    [ "$src" -eq 0 ] || [ "$f" -ne 0 ] || bad "$name exited $src after all passed"
  else
    bad "$name did not finish (exit $src)" "$(tail -n 20 "$tmp/suite.out")"
  fi
}
suite "python client" "$py" "$here/py_tls_client.py" echo "wss://127.0.0.1:$main/" "$ca"
suite "node client" node "$here/node_tls_client.mjs" "wss://localhost:$main/" "$ca"

# ---- 2. kaze client against kaze echo, Python websockets, Node ws -----------
section "kaze client against kaze echo, Python websockets, Node ws"
big=$(head -c 1048576 /dev/zero | tr '\0' 'k')
expect_echo "kaze client -> kaze echo over wss://localhost" "$abc" --ca "$ca" "wss://localhost:$main/"
expect_echo "kaze client -> kaze echo over wss://127.0.0.1 (IP SAN), --compress --binary" "$abc" \
  --ca "$ca" --compress --binary "wss://127.0.0.1:$main/"
expect_echo "kaze client -> kaze echo: a 1 MiB line, --compress" "$big"$'\nend\n' \
  --ca "$ca" --compress "wss://localhost:$main/"
# Without compression the 1 MiB goes out as 1 MiB: the client's input pause
# (while much is buffered) and its resumption are on the path. Any good run
# takes well under a second.
client_timeout=10 expect_echo "kaze client -> kaze echo: a 1 MiB line, no compression" "$big"$'\nend\n' \
  --ca "$ca" "wss://localhost:$main/"

# kaze bench over wss://: every echo checked (type, length, content), verified certificate.
bench_check() { # NAME MODE ARGS...: MODE echo or connect, must report MODE_errors 0
  local name=$1
  shift
  local log brc
  log=$(timeout -k 5 60 "$kaze" bench "$@" 2>&1)
  brc=$?
  if [ "$brc" -eq 0 ] && grep -q "^bench: $1_errors 0 " <<<"$log"; then
    ok "$name"
  else
    bad "$name" "kaze bench $*" "$(tail -5 <<<"$log")"
  fi
}
bench_check "kaze bench echo over wss:// (verified)" echo "wss://localhost:$main/" --ca "$ca" \
  -c 4 -d 4 -n 2000 -s 1K --text
bench_check "kaze bench echo over wss://, deflate, 256 KiB" echo "wss://localhost:$main/" --ca "$ca" \
  -c 2 -d 2 -n 40 -s 256K --binary --deflate
bench_check "kaze bench connect over wss://" connect "wss://localhost:$main/" --ca "$ca" -c 50

start pyserver "$py" "$here/py_tls_server.py" "$certs/server.pem" "$certs/server.key" || exit 1
start nodeserver node "$here/node_tls_server.mjs" "$certs/server.pem" "$certs/server.key" || exit 1
for peer in python node; do
  srv=${peer/python/py}server
  p=${PORT[$srv]}
  log=$tmp/$srv.out
  n0=$(grep -c '^conn ' "$log")
  expect_echo "kaze client -> $peer wss server" "$abc" --ca "$ca" "wss://localhost:$p/"
  expect_echo "kaze client -> $peer wss server, --compress" "$abc" --ca "$ca" --compress "wss://localhost:$p/"
  expect_echo "kaze client -> $peer wss server, 1 MiB line, --compress --binary" "$big"$'\nend\n' \
    --ca "$ca" --compress --binary "wss://localhost:$p/"
  expect_echo "kaze client -> $peer wss server over wss://127.0.0.1" $'x\n' --ca "$ca" "wss://127.0.0.1:$p/"
  # What the server saw of those four connections, in order.
  sleep 0.2
  seen=$(grep '^conn ' "$log" | tail -n +"$((n0 + 1))")
  want=$'conn sni=localhost ext=-\nconn sni=localhost ext=permessage-deflate\nconn sni=localhost ext=permessage-deflate\nconn sni=- ext=-'
  if [ "$seen" = "$want" ]; then
    ok "kaze client -> $peer: SNI localhost sent (none for an IP), permessage-deflate only with --compress"
  else
    bad "kaze client -> $peer: what the server saw" "want:" "$want" "got:" "$seen"
  fi
done

# A server whose close frame and close_notify come in one segment: the client
# must see the end of the TLS stream at once, not after its close timeout (5 s).
start eofserver "$py" "$here/py_tls_eof.py" server "$certs/server.pem" "$certs/server.key" || exit 1
t=$(date +%s%N)
client "$abc" --ca "$ca" "wss://localhost:${PORT[eofserver]}/"
ms=$((($(date +%s%N) - t) / 1000000))
wait_for_line "$tmp/eofserver.out" '^conn '
seen=$(grep -m1 '^conn ' "$tmp/eofserver.out")
if [ "$rc" -eq 0 ] && [ "$out" = "${abc%$'\n'}" ] && [ "$ms" -lt 2500 ]; then
  ok "kaze client: a close frame and close_notify in one segment end the connection at once ($ms ms; server: $seen)"
else
  bad "kaze client: close frame + close_notify in one segment, want exit 0 within 2.5 s" \
    "exit $rc after $ms ms; stdout: $out; stderr: $err" "server: $seen"
fi

# ---- 3. kaze client refuses what it must refuse -----------------------------
section "kaze client refuses what it must refuse"
expect_refused "kaze client without --ca (system store) refuses the test CA's certificate" \
  'verif' "wss://localhost:$main/"
start_kaze wrong wrong || exit 1
expect_refused "kaze client refuses a certificate for another name (wrong.test)" \
  'mismatch|localhost' --ca "$ca" "wss://localhost:${PORT[wrong]}/"
expect_refused "kaze client refuses a certificate for another name, by IP" \
  'mismatch|127\.0\.0\.1' --ca "$ca" "wss://127.0.0.1:${PORT[wrong]}/"
start_kaze expired expired || exit 1
expect_refused "kaze client refuses an expired certificate" 'expired' --ca "$ca" "wss://localhost:${PORT[expired]}/"
start_kaze self self || exit 1
expect_refused "kaze client refuses a self-signed certificate" 'verif' --ca "$ca" "wss://localhost:${PORT[self]}/"
expect_refused "kaze client refuses a self-signed certificate (system store)" 'verif' "wss://localhost:${PORT[self]}/"
expect_echo "kaze client --insecure accepts the self-signed certificate" "$abc" --insecure "wss://localhost:${PORT[self]}/"
expect_echo "kaze client --insecure accepts the wrong name's certificate" "$abc" --insecure "wss://localhost:${PORT[wrong]}/"

start plain "$kaze" echo --host 127.0.0.1 --port 0 --threads 1 --quiet || exit 1
expect_refused "kaze client: wss:// to a plain ws:// kaze echo fails with a TLS error" \
  'TLS' --ca "$ca" "wss://localhost:${PORT[plain]}/"
expect_echo "the plain kaze echo still serves ws://" "$abc" "ws://localhost:${PORT[plain]}/"
expect_refused "kaze client: ws:// to the TLS port gets status 400" 'status 400' "ws://localhost:$main/"

# Plain HTTP to the TLS port: a 400 in plain HTTP that says to use wss://.
http_answer=$("$py" - "$main" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
data, end = b"", "closed"
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
except ConnectionResetError:
    end = "reset"  # the server closed with the rest of the request unread
sys.stdout.write(data.decode("latin-1") + "\n[connection %s]" % end)
EOF
)
if [[ "$http_answer" == "HTTP/1.1 400 Bad Request"* ]] && grep -q 'wss://' <<<"$http_answer"; then
  ok "plain HTTP to the TLS port: 400 Bad Request saying to use wss:// $(tail -n 1 <<<"$http_answer")"
else
  bad "plain HTTP to the TLS port" "answer: $http_answer"
fi

if "$py" -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
  start ipv6 "$kaze" echo --host ::1 --port 0 --threads 1 --quiet \
    --tls-cert "$certs/server.pem" --tls-key "$certs/server.key" || exit 1
  expect_echo "kaze client -> kaze echo over wss://[::1] (IPv6 SAN)" "$abc" --ca "$ca" "wss://[::1]:${PORT[ipv6]}/"
  stop ipv6 || bad "kaze echo on ::1 did not exit cleanly on SIGTERM"
else
  echo "skip kaze client -> kaze echo over wss://[::1]: no IPv6 loopback here"
fi

# ---- 4. SNI --------------------------------------------------------------------
section "SNI"
start_kaze sni server --tls-cert "$certs/other.pem" --tls-key "$certs/other.key" || exit 1
sp=${PORT[sni]}
sni_check() { # NAME WANT_CN s_client ARGS...
  local name=$1 want=$2
  shift 2
  sclient "$sp" -CAfile "$ca" "$@"
  local subj
  subj=$(grep -m1 '^subject=' <<<"$sout")
  if [ "$rc" -eq 0 ] && grep -q "CN = $want\$" <<<"$subj" && grep -q 'Verify return code: 0 (ok)' <<<"$sout"; then
    ok "$name ($subj)"
  else
    bad "$name" "openssl s_client $*: exit $rc, want CN = $want" "$(grep -E 'subject=|Verify return|error' <<<"$sout")"
  fi
}
sni_check "SNI other.test gets the second certificate" other.test -servername other.test
sni_check "no SNI gets the default certificate" localhost -noservername
sni_check "SNI localhost gets the default certificate" localhost -servername localhost
sni_check "SNI unknown.test gets the default certificate" localhost -servername unknown.test
sni_check "SNI OTHER.TEST (case-insensitive) gets the second certificate" other.test -servername OTHER.TEST
sclient "$sp" -CAfile "$ca" -servername other.test -alpn http/1.1
if [ "$rc" -eq 0 ] && grep -q '^ALPN protocol: http/1.1' <<<"$sout"; then
  ok "ALPN http/1.1 also with the second certificate"
else
  bad "ALPN with the second certificate" "$(grep -E 'ALPN|error' <<<"$sout")"
fi
got=$("$py" "$here/py_tls_client.py" peer 127.0.0.1 "$sp" "$ca" other.test 2>&1)
if grep -q '^subject O=Kaze Tests,CN=other.test$' <<<"$got"; then
  ok "Python ssl, server_hostname other.test: the second certificate, verified for other.test"
else
  bad "Python ssl with server_hostname other.test" "$got"
fi
got=$(timeout -k 5 30 "$py" "$here/py_tls_client.py" cert "wss://127.0.0.1:$sp/" "$ca" other.test 2>&1)
if [ "$(head -n 1 <<<"$got")" = "subject O=Kaze Tests,CN=other.test" ]; then
  ok "Python websockets over the SNI-chosen certificate echoes"
else
  bad "Python websockets over the SNI-chosen certificate" "$got"
fi

# ---- 5. SIGHUP reloads the certificate files ---------------------------------------
section "SIGHUP reloads the certificate files"
cp "$certs/server.pem" "$tmp/live.pem"
cp "$certs/server.key" "$tmp/live.key"
# Two event loops: the reload happens on one, and new connections on either
# must see it.
start reload "$kaze" echo --host 127.0.0.1 --port 0 --threads 2 --quiet \
  --tls-cert "$tmp/live.pem" --tls-key "$tmp/live.key" || exit 1
rp=${PORT[reload]}
rerr=$tmp/reload.err

subject_now() { # what a new connection's certificate says, as openssl prints it
  sclient "$rp" -CAfile "$ca" -verify_return_error -verify_hostname localhost
  [ "$rc" -eq 0 ] || { echo "s_client failed: $(grep -iE 'error|verif' <<<"$sout" | head -3)"; return; }
  grep -m1 '^subject=' <<<"$sout"
}
new_connection_echoes() { # a new wss connection, verified, whose echo works: prints its subject
  timeout -k 5 30 "$py" "$here/py_tls_client.py" cert "wss://localhost:$rp/" "$ca" 2>&1 | head -n 3
}
reloads() { # wait for the Nth "certificates reloaded" / "reload failed" line of stderr
  local re=$1 n=$2
  for _ in $(seq 100); do
    [ "$(grep -Ec -- "$re" "$rerr")" -ge "$n" ] && return 0
    sleep 0.1
  done
  return 1
}

"${pdeath[@]}" timeout -k 5 90 "$py" "$here/py_tls_client.py" hold "wss://localhost:$rp/" "$ca" "$tmp/go" \
  >"$tmp/hold.out" 2>&1 &
hold=$!
bg_pids+=("$hold")
if wait_for_line "$tmp/hold.out" '^open ' && grep -q '^open O=Kaze Tests,CN=localhost$' "$tmp/hold.out"; then
  ok "reload: a long-lived connection is open with the first certificate"
else
  bad "reload: the long-lived connection did not open" "$(cat "$tmp/hold.out")"
fi
cp "$certs/server2.pem" "$tmp/live.pem"
cp "$certs/server2.key" "$tmp/live.key"
kill -HUP "${PID[reload]}"
if reloads 'certificates reloaded' 1; then
  ok "reload: SIGHUP logs \"$(grep -m1 'certificates reloaded' "$rerr")\""
else
  bad "reload: no 'certificates reloaded' on stderr after SIGHUP" "$(cat "$rerr")"
fi
seen=""
for _ in 1 2 3 4 5 6; do
  s=$(subject_now)
  [ "$s" = "subject=O = Kaze Reloaded, CN = localhost" ] || seen+="$s"$'\n'
done
if [ -z "$seen" ]; then
  ok "reload: 6 new connections all get the new certificate (subject=O = Kaze Reloaded, CN = localhost)"
else
  bad "reload: a new connection's certificate" "want subject=O = Kaze Reloaded, CN = localhost" "got: $seen"
fi
s=$(new_connection_echoes)
if [ "$(head -n 1 <<<"$s")" = "subject O=Kaze Reloaded,CN=localhost" ]; then
  ok "reload: a new wss connection with the new certificate echoes"
else
  bad "reload: a new wss connection" "$s"
fi
touch "$tmp/go"
hold_rc=0
wait "$hold" || hold_rc=$?
if [ "$hold_rc" -eq 0 ] && grep -q '^echo ok$' "$tmp/hold.out"; then
  ok "reload: the connection opened before the reload still echoes and closes with 1000"
else
  bad "reload: the connection opened before the reload (exit $hold_rc)" "$(cat "$tmp/hold.out")"
fi

# A broken certificate file, then a key that does not match: the old
# certificate stays, the server goes on.
printf 'not a certificate\n' >"$tmp/live.pem"
kill -HUP "${PID[reload]}"
if reloads 'reload failed' 1; then
  ok "reload: a broken certificate file is refused: \"$(grep -m1 'reload failed' "$rerr")\""
else
  bad "reload: no 'reload failed' on stderr after SIGHUP with a broken file" "$(cat "$rerr")"
fi
cp "$certs/server.pem" "$tmp/live.pem" # the key is still server2's
kill -HUP "${PID[reload]}"
if reloads 'reload failed' 2; then
  ok "reload: a key that does not match is refused: \"$(grep 'reload failed' "$rerr" | sed -n 2p)\""
else
  bad "reload: no second 'reload failed' after SIGHUP with a mismatched key" "$(cat "$rerr")"
fi
s=$(new_connection_echoes)
if kill -0 "${PID[reload]}" 2>/dev/null && [ "$(head -n 1 <<<"$s")" = "subject O=Kaze Reloaded,CN=localhost" ]; then
  ok "reload: after the failed reloads the server still serves the last good certificate"
else
  bad "reload: after the failed reloads" "$s" "$(cat "$rerr")"
fi
cp "$certs/server.key" "$tmp/live.key"
kill -HUP "${PID[reload]}"
if reloads 'certificates reloaded' 2 && [ "$(subject_now)" = "subject=O = Kaze Tests, CN = localhost" ]; then
  ok "reload: once the files are good again, SIGHUP loads them"
else
  bad "reload: a good reload after failed ones" "$(subject_now)" "$(cat "$rerr")"
fi

# ---- 6. A failed handshake costs nothing ---------------------------------------
section "A failed handshake costs nothing"
start_kaze fail server || exit 1
fp=${PORT[fail]}
ferr=$tmp/fail.err
fds() { find "/proc/${PID[fail]}/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
expect_echo "failures: a normal wss client first" "$abc" --ca "$ca" "wss://localhost:$fp/"
sleep 0.2
fd0=$(fds)
failures=0
after_failure() { # NAME: the server logged one more line and still serves
  failures=$((failures + 1))
  for _ in $(seq 50); do
    [ "$(wc -l <"$ferr")" -ge "$failures" ] && break
    sleep 0.1
  done
  expect_echo "failures: after $1 the server still serves wss" "$abc" --ca "$ca" "wss://localhost:$fp/"
}
"$py" - "$fp" <<'EOF'
import random, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"\x16\x03\x01\x00\x10" + random.Random(3).randbytes(4000))  # a TLS record header, then junk
try:
    while s.recv(4096):
        pass
except OSError:
    pass
EOF
after_failure "garbage bytes"
printf 'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n' |
  timeout 10 "$py" -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",int(sys.argv[1]))); s.sendall(sys.stdin.buffer.read()); s.recv(4096)' "$fp"
after_failure "a plain HTTP request"
got=$("$py" "$here/py_tls_client.py" reject localhost "$fp" "$certs/self.pem" 2>&1)
grep -q '^rejected: ' <<<"$got" || bad "failures: the Python client did not reject the certificate" "$got"
after_failure "a Python client that rejects the certificate"
client $'a\n' "wss://localhost:$fp/"
[ "$rc" -eq 1 ] || bad "failures: kaze client without --ca did not fail" "exit $rc: $err"
after_failure "a kaze client that rejects the certificate"
# Node's tls with its own roots, TLS 1.3: it refuses the certificate and
# closes before its Finished (with TLS 1.2 the server's handshake would be
# complete by then: not a failure the server can see).
got=$(timeout 10 node -e "
const s = require('tls').connect({ host: '127.0.0.1', port: $fp, servername: 'localhost', minVersion: 'TLSv1.3' });
s.on('secureConnect', () => { console.log('accepted'); s.destroy(); });
s.on('error', (e) => console.log('rejected: ' + e.message));" 2>&1)
grep -q '^rejected: ' <<<"$got" || bad "failures: Node did not reject the certificate" "$got"
after_failure "a Node client that rejects the certificate"
sclient "$fp" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'
after_failure "a TLS 1.1 client"
sleep 0.5
lines=$(grep -c '' "$ferr")
tls_lines=$(grep -c '^kaze echo: TLS handshake failed: ' "$ferr")
if [ "$lines" -eq "$failures" ] && [ "$tls_lines" -eq "$failures" ]; then
  ok "failures: exactly one 'TLS handshake failed' line for each of the $failures failures"
  sed 's/^/       /' "$ferr"
else
  bad "failures: want $failures lines 'kaze echo: TLS handshake failed: ...' on stderr, got $lines" "$(cat "$ferr")"
fi
fd1=$(fds)
for _ in $(seq 30); do
  [ "$fd1" -le "$fd0" ] && break
  sleep 0.1
  fd1=$(fds)
done
if [ "$fd1" -le "$fd0" ]; then
  ok "failures: no file descriptor left behind ($fd0 before, $fd1 after)"
else
  bad "failures: the server had $fd0 open files before the failures, $fd1 after"
fi

# A client whose last message and close_notify (no close frame) come in one
# segment: the server must see the end of the stream and drop the connection,
# as it does when the close_notify comes alone.
got=$("$py" "$here/py_tls_eof.py" client "$fp" "$ca" 2>&1)
secs=$(sed -n 's/^server ended the connection after \([0-9.]*\) s$/\1/p' <<<"$got")
if [ -n "$secs" ] && awk -v s="$secs" 'BEGIN { exit !(s < 2.5) }'; then
  ok "kaze echo: a message and close_notify in one segment: echoed, then the connection ends (${secs} s)"
else
  bad "kaze echo: a message and close_notify in one segment, want the connection ended within 2.5 s" "$got"
fi

# A client that never finishes its handshake is dropped after
# --tls-handshake-timeout. One that sends nothing at all is first held by the
# kernel (the listener's TCP_DEFER_ACCEPT, about --handshake-timeout long),
# then dropped the same way.
start_kaze slow server --tls-handshake-timeout 500 --handshake-timeout 1000 || exit 1
slow_check() { # WHAT MIN MAX: the seconds the connection may live
  local what=$1 got secs
  got=$("$py" - "${PORT[slow]}" "$what" <<'EOF'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
if sys.argv[2] == "a cut ClientHello":
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
elif sys.argv[2] == "half a record header":
    s.sendall(b"\x16\x03")
t = time.monotonic()
try:
    while s.recv(4096):
        pass
    print("closed after %.2f s" % (time.monotonic() - t))
except socket.timeout:
    print("still open after 20 s")
except OSError as e:
    print("closed after %.2f s (%s)" % (time.monotonic() - t, e))
EOF
)
  secs=$(sed -n 's/^closed after \([0-9.]*\) s.*/\1/p' <<<"$got")
  if [ -n "$secs" ] && awk -v s="$secs" -v lo="$2" -v hi="$3" 'BEGIN { exit !(s >= lo && s < hi) }'; then
    ok "--tls-handshake-timeout 500: a client that sends $what is dropped ($got)"
  else
    bad "--tls-handshake-timeout 500: a client that sends $what, want closed within $2..$3 s" "$got"
  fi
}
slow_check "a cut ClientHello" 0.3 5
slow_check "half a record header" 0.3 5
slow_check "nothing" 0.3 10
expect_echo "--tls-handshake-timeout 500: a normal client still gets through" "$abc" --ca "$ca" "wss://localhost:${PORT[slow]}/"

# ---- 7. TLS versions and ALPN ------------------------------------------------------
section "TLS versions and ALPN"
version_check() { # NAME PORT WANT(TLSv1.x|refused) s_client ARGS...
  local name=$1 port=$2 want=$3
  shift 3
  sclient "$port" -CAfile "$ca" -verify_return_error "$@"
  if [ "$want" = refused ]; then
    if [ "$rc" -ne 0 ] && grep -q 'Cipher is (NONE)' <<<"$sout"; then
      ok "$name"
    else
      bad "$name" "openssl s_client $*: exit $rc" "$(grep -E 'Protocol|Cipher|error' <<<"$sout")"
    fi
  elif [ "$rc" -eq 0 ] && grep -Eq "^New, $want, Cipher is " <<<"$sout" &&
    grep -q 'Verify return code: 0 (ok)' <<<"$sout"; then
    ok "$name"
  else
    bad "$name" "openssl s_client $*: exit $rc, want $want" "$(grep -E 'Protocol|Cipher|Verif|error' <<<"$sout")"
  fi
}
version_check "TLS 1.1 is refused" "$main" refused -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'
version_check "TLS 1.0 is refused" "$main" refused -tls1 -cipher 'DEFAULT:@SECLEVEL=0'
version_check "TLS 1.2 works" "$main" TLSv1.2 -tls1_2
version_check "TLS 1.3 works" "$main" TLSv1.3 -tls1_3
version_check "without a version asked, TLS 1.3" "$main" TLSv1.3
start_kaze tls13 server --tls13-only || exit 1
version_check "--tls13-only: TLS 1.2 is refused" "${PORT[tls13]}" refused -tls1_2
version_check "--tls13-only: TLS 1.3 works" "${PORT[tls13]}" TLSv1.3 -tls1_3
expect_echo "--tls13-only: kaze client gets through" "$abc" --ca "$ca" "wss://localhost:${PORT[tls13]}/"

alpn_check() { # NAME OFFER WANT(protocol|none)
  sclient "$main" -CAfile "$ca" -verify_return_error -alpn "$2"
  local line
  line=$(grep -E '^(ALPN protocol:|No ALPN negotiated)' <<<"$sout")
  if [ "$rc" -eq 0 ] && { [ "$3" = none ] && [ "$line" = "No ALPN negotiated" ] || [ "$line" = "ALPN protocol: $3" ]; }; then
    ok "$1 ($line)"
  else
    bad "$1" "openssl s_client -alpn $2: exit $rc: $line" "$(grep -i error <<<"$sout")"
  fi
}
alpn_check "ALPN: http/1.1 offered, http/1.1 chosen" http/1.1 http/1.1
alpn_check "ALPN: h2,http/1.1 offered, http/1.1 chosen" h2,http/1.1 http/1.1
alpn_check "ALPN: only h2 offered, none chosen, the handshake goes on" h2 none

# ---- the end: every server still up, and each stops cleanly on SIGTERM -------------
clean=1
for name in main wrong expired self plain sni reload fail slow tls13 pyserver nodeserver eofserver; do
  if ! kill -0 "${PID[$name]}" 2>/dev/null; then
    bad "$name died during the test" "$(tail -n 20 "$tmp/$name.err")"
    clean=0
    stop "$name" || true
    continue
  fi
  src=0
  stop "$name" || src=$?
  if [ "$src" -ne 0 ]; then
    bad "$name exited with status $src after SIGTERM" "$(tail -n 20 "$tmp/$name.err")"
    clean=0
  fi
done
[ "$clean" -eq 1 ] && ok "every server was still up at the end and exited cleanly on SIGTERM"
echo "tls: $((SECONDS - t0)) s" >&2
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
