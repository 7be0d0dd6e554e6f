#!/usr/bin/env bash
# End-to-end tests of `kaze client`, the terminal client, run as a user
# would run it: lines on stdin, messages on stdout, the reason for a failure
# on stderr, and the exit status (0 success, 1 connection/close/timeout
# failure, 2 usage error).
#
#   client_cli.sh KAZE_BINARY python|node
#
# Peers: the chosen echo server (py_server.py or node_server.mjs, the same
# ones client_direction.sh uses), py_special_server.py for behaviours an echo
# server does not have (403, 404, subprotocols, header checks, closes with an
# error code, echoing only some messages, broken handshake answers), and
# connect_proxy.py as an HTTP CONNECT proxy, with and without Basic auth.
# Every server is stopped on the way out (and gets SIGKILL if this script is
# killed outright, through setpriv --pdeathsig). Every client run is bounded
# by `timeout`. On a failure the command, its exit status, stdout and stderr
# are printed, so wording can be compared with what is expected.
set -uo pipefail

usage() {
  echo "usage: $0 KAZE_BINARY python|node" >&2
  exit 2
}
[ $# -eq 2 ] || usage
kaze=$1
peer=$2
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$kaze" ] || { echo "client_cli: $kaze is not an executable" >&2; exit 2; }
case $peer in python | node) ;; *) usage ;; esac
/usr/bin/python3 -c 'import websockets' 2>/dev/null || {
  echo "client_cli: Debian's python3-websockets is missing (scripts/deps.sh installs it)" >&2
  exit 1
}

# The tests decide which proxy applies; none may come from the environment.
unset http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY ALL_PROXY all_proxy

work=$(mktemp -d)
pids=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  pids=()
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pdeath=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
  pdeath=(setpriv --pdeathsig KILL)
fi

# N distinct free loopback ports (bound at once, so they differ).
free_ports() {
  /usr/bin/python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# start NAME COMMAND...: run a server in the background, stdout to
# $work/NAME.out, stderr to $work/NAME.err; wait until it prints its port.
start() {
  local name=$1
  shift
  "${pdeath[@]}" "$@" >"$work/$name.out" 2>"$work/$name.err" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 300); do
    [ -s "$work/$name.out" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "client_cli: $name did not start: $*" >&2
  cat "$work/$name.err" >&2
  exit 1
}

read -r port sport rawport proxyport authport auth2port closedport < <(free_ports 7)

case $peer in
  python) start peer /usr/bin/python3 "$here/py_server.py" "$port" ;;
  node)
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
      echo "client_cli: node and npm are missing (scripts/deps.sh installs them)" >&2
      exit 1
    fi
    if [ ! -d "$here/node_modules/ws" ]; then
      echo "client_cli: npm ci in $here" >&2
      (cd "$here" && npm ci --no-audit --no-fund >&2)
    fi
    start peer node "$here/node_server.mjs" "$port"
    ;;
esac
start special /usr/bin/python3 "$here/py_special_server.py" "$sport" "$rawport"
start proxy /usr/bin/python3 "$here/connect_proxy.py" "$proxyport" --log "$work/proxy.log"
start authproxy /usr/bin/python3 "$here/connect_proxy.py" "$authport" \
  --auth kaze:s3cret --log "$work/authproxy.log"
start auth2proxy /usr/bin/python3 "$here/connect_proxy.py" "$auth2port" \
  --auth 'us er:p@ss:w' --log "$work/auth2proxy.log"
ipv6=0
/usr/bin/python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null && ipv6=1

url=ws://127.0.0.1:$port/
surl=ws://127.0.0.1:$sport
rurl=ws://127.0.0.1:$rawport

# ---- inputs and expected outputs ------------------------------------------
printf 'a\nb\n' >"$work/ab"
printf 'a\nb\nc\n' >"$work/abc"
printf 'x\n\ny' >"$work/noeol"        # an empty line; the last line has no newline
printf 'x\n\ny\n' >"$work/noeol.want"
: >"$work/empty"
printf 'hi\n' >"$work/hi"
printf 'zzz\nyyy\n' >"$work/junk"
head -c 2000 /dev/zero | tr '\0' 'q' >"$work/2k"
echo >>"$work/2k"
/usr/bin/python3 - "$work" <<'EOF'
import sys
work = sys.argv[1]
# 2000 lines: short ASCII, UTF-8 (2-, 3- and 4-byte sequences), every 100th
# line 100 KiB long; text messages, so valid UTF-8 only.
utf8 = "héllo wörld ✓ 𝄞 日本語 Ωμέγα"
with open(f"{work}/many", "w", encoding="utf-8", newline="") as f:
    for i in range(2000):
        if i % 100 == 50:
            line = (f"{i}:" + utf8 * 4000)[: 100 * 1024]
        elif i % 3 == 0:
            line = f"{i} {utf8} {i}"
        else:
            line = f"line {i} " + "abcdefghij" * (i % 17)
        f.write(line + "\n")
# The same for --binary, with arbitrary bytes (all but the newline),
# including invalid UTF-8, NUL and CR.
allbytes = bytes(b for b in range(256) if b != 10)
with open(f"{work}/manybin", "wb") as f:
    for i in range(2000):
        if i % 100 == 50:
            line = (allbytes * 420)[: 100 * 1024]
        elif i % 2 == 0:
            line = bytes([(i + k) % 256 for k in range(i % 300)]).replace(b"\n", b"+")
        else:
            line = f"bin {i} ".encode() + b"\xff\xfe\x00\r\x80"
        f.write(line + b"\n")
EOF

# ---- the check helpers ----------------------------------------------------
passed=0
failed=0
limit=20      # seconds any single client run may take
budget=200    # seconds for the whole run; checks after that are not run
started=$SECONDS
name=""
why=()
cmdline=""
rc=0
elapsed_ms=0
in=$work/empty

# t NAME [STDIN_FILE]: begin a check
t() {
  name=$1
  in=${2:-$work/empty}
  why=()
  cmdline=""
  rc=0
}

# c [VAR=VALUE...] -- ARGS...: run `kaze client ARGS` with the environment
# additions, stdin from the check's input, stdout/stderr to files.
c() {
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    envs+=("$1")
    shift
  done
  shift
  cmdline="${envs[*]}${envs[*]:+ }kaze client"
  local a
  for a in "$@"; do cmdline+=" $(printf '%q' "$a")"; done
  cmdline+=" <$(basename "$in")"
  if [ $((SECONDS - started)) -ge "$budget" ]; then
    rc=-1
    elapsed_ms=0
    : >"$work/out"
    : >"$work/err"
    why+=("not run: the run has used up its ${budget} s (earlier checks hung?)")
    return
  fi
  local t0
  t0=$(date +%s%N)
  env "${envs[@]}" timeout --kill-after=5 "$limit" "$kaze" client "$@" \
    <"$in" >"$work/out" 2>"$work/err"
  rc=$?
  elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    why+=("did not finish within ${limit} s (killed by timeout)")
  fi
}

want_rc() {
  [ "$rc" -eq "$1" ] || why+=("exit status $rc, want $1")
}

# want_out FILE: stdout must be byte for byte FILE
want_out() {
  if ! cmp -s "$work/out" "$1"; then
    why+=("stdout differs from $(basename "$1"): $(cmp "$work/out" "$1" 2>&1 | head -1);\
 got $(wc -l <"$work/out") lines / $(wc -c <"$work/out") bytes,\
 want $(wc -l <"$1") lines / $(wc -c <"$1") bytes")
  fi
}

# want_out_str STRING: stdout must be exactly STRING
want_out_str() {
  printf '%s' "$1" >"$work/want"
  want_out "$work/want"
}

# want_err REGEX: stderr must match REGEX (extended, case-insensitive)
want_err() {
  grep -qiE -- "$1" "$work/err" || why+=("stderr does not match /$1/ (case-insensitive)")
}

# want_faster MS: the run must have taken less than MS milliseconds
want_faster() {
  [ "$elapsed_ms" -lt "$1" ] || why+=("took $elapsed_ms ms, want under $1 ms")
}

# want_log LOGFILE REGEX / want_no_log LOGFILE: what a proxy saw
want_log() {
  grep -qE -- "$2" "$1" 2>/dev/null ||
    why+=("$(basename "$1") has no line matching /$2/: $(tr '\n' '|' <"$1" 2>/dev/null)")
}
want_no_log() {
  if [ -s "$1" ]; then why+=("$(basename "$1") should be empty: $(tr '\n' '|' <"$1")"); fi
}

# want_srv_close PATH CODE: the special server saw the connection to PATH
# (with its query) end with a close frame with CODE from the client.
want_srv_close() {
  local line="close $1 $2"
  for _ in $(seq 30); do
    grep -qxF -- "$line" "$work/special.out" && return 0
    sleep 0.1
  done
  why+=("special server did not log \"$line\": $(grep -F -- " $1 " "$work/special.out" | tr '\n' '|')")
}

# done_t: record the verdict of the current check
done_t() {
  if [ ${#why[@]} -eq 0 ]; then
    passed=$((passed + 1))
    return
  fi
  failed=$((failed + 1))
  echo "FAIL [$peer] $name"
  echo "  command: $cmdline"
  if [ "$rc" -eq -1 ]; then
    echo "  - ${why[0]}"
    return
  fi
  local w
  for w in "${why[@]}"; do echo "  - $w"; done
  echo "  exit status: $rc ($elapsed_ms ms)"
  echo "  stdout (first 400 bytes):"
  head -c 400 "$work/out" | cat -v | sed 's/^/    | /'
  echo
  echo "  stderr:"
  head -n 20 "$work/err" | sed 's/^/    | /'
}

# ---- against the $peer echo server, compression off and on -----------------
for mode in plain deflate; do
  comp=()
  [ "$mode" = deflate ] && comp=(--compress)

  t "$mode: two lines come back (printf 'a\\nb\\n')" "$work/ab"
  c -- "${comp[@]}" "$url"
  want_rc 0
  want_out_str $'a\nb\n'
  done_t

  t "$mode: 2000 text lines, UTF-8 and 100 KiB ones, identical and in order" "$work/many"
  c -- "${comp[@]}" "$url"
  want_rc 0
  want_out "$work/many"
  done_t

  t "$mode: 2000 --binary lines with arbitrary bytes, identical and in order" "$work/manybin"
  c -- "${comp[@]}" --binary "$url"
  want_rc 0
  want_out "$work/manybin"
  done_t

  t "$mode: an empty line is an empty message; a last line without newline is sent" "$work/noeol"
  c -- "${comp[@]}" "$url"
  want_rc 0
  want_out "$work/noeol.want"
  done_t

  t "$mode: empty input: nothing to wait for, exit 0" "$work/empty"
  c -- "${comp[@]}" "$url"
  want_rc 0
  want_out_str ""
  done_t

  t "$mode: --wait 10 is a bound, not a delay" "$work/ab"
  c -- "${comp[@]}" --wait 10 "$url"
  want_rc 0
  want_out_str $'a\nb\n'
  want_faster 5000
  done_t

  t "$mode: --count 1 with three echoes coming: exit 0 once one arrived" "$work/abc"
  c -- "${comp[@]}" --count 1 "$url"
  want_rc 0
  case $(cat "$work/out"; echo .) in
    $'a\n.' | $'a\nb\n.' | $'a\nb\nc\n.') ;;
    *) why+=("stdout should be a, then possibly b and c, one per line") ;;
  esac
  done_t

  t "$mode: --count 5 --wait 1 with three echoes: exit 1 after about 1 s" "$work/abc"
  c -- "${comp[@]}" --count 5 --wait 1 "$url"
  want_rc 1
  want_out_str $'a\nb\nc\n'
  want_err 'timed out'
  want_faster 6000
  done_t

  t "$mode: --quiet changes nothing on stdout" "$work/ab"
  c -- "${comp[@]}" --quiet "$url"
  want_rc 0
  want_out_str $'a\nb\n'
  done_t

  t "$mode: --max-message 4K lets a 2000-byte echo through" "$work/2k"
  c -- "${comp[@]}" --max-message 4K "$url"
  want_rc 0
  want_out "$work/2k"
  done_t

  t "$mode: --max-message 1K refuses a 2000-byte echo: exit 1" "$work/2k"
  c -- "${comp[@]}" --max-message 1K "$url"
  want_rc 1
  done_t

  : >"$work/proxy.log"
  t "$mode: --proxy: the lines go through the proxy's CONNECT" "$work/many"
  c -- "${comp[@]}" --proxy "http://127.0.0.1:$proxyport" "$url"
  want_rc 0
  want_out "$work/many"
  want_log "$work/proxy.log" "^CONNECT 127\.0\.0\.1:$port HTTP/1\.1 -> 200$"
  done_t
done

# ---- the special server ----------------------------------------------------
t "echo-first-only server, --wait 1: exit 1, 'timed out', closes with 1000" "$work/ab"
c -- --wait 1 "$surl/first-only?t=wait"
want_rc 1
want_out_str $'a\n'
want_err 'timed out'
want_faster 6000
want_srv_close "/first-only?t=wait" 1000
done_t

t "echo-first-only server, --count 1: exit 0" "$work/ab"
c -- --count 1 "$surl/first-only?t=count"
want_rc 0
want_out_str $'a\n'
want_srv_close "/first-only?t=count" 1000
done_t

t "silent server, --wait 1: exit 1 with nothing on stdout" "$work/hi"
c -- --wait 1 "$surl/silent"
want_rc 1
want_out_str ""
want_err 'timed out'
want_faster 6000
done_t

t "silent server, empty input: exit 0 at once, closes with 1000" "$work/empty"
c -- "$surl/silent?t=empty"
want_rc 0
want_out_str ""
want_faster 5000
want_srv_close "/silent?t=empty" 1000
done_t

t "echo-twice server, --count 4: both copies of both lines" "$work/ab"
c -- --count 4 "$surl/double"
want_rc 0
want_out_str $'a\na\nb\nb\n'
done_t

t "a normal run closes with 1000" "$work/ab"
c -- "$surl/?t=close1000"
want_rc 0
want_out_str $'a\nb\n'
want_srv_close "/?t=close1000" 1000
done_t

t "--header Authorization and Cookie (and one with a space) reach the server" "$work/hi"
c -- --header 'Authorization: Bearer x' --header 'Cookie: a=b' \
  --header 'X-Custom: hello world' "$surl/auth"
want_rc 0
want_out_str $'auth=Bearer x cookie=a=b custom=hello world msg=hi\n'
done_t

t "no Authorization header: the server refuses with 403: exit 1" "$work/hi"
c -- --header 'Cookie: a=b' "$surl/auth"
want_rc 1
want_out_str ""
want_err '403'
done_t

t "no Cookie header: the server refuses with 403: exit 1" "$work/hi"
c -- --header 'Authorization: Bearer x' "$surl/auth"
want_rc 1
want_err '403'
done_t

t "--subprotocol chat: offered, chosen, accepted" "$work/hi"
c -- --subprotocol chat "$surl/info"
want_rc 0
want_out_str "type=text proto=chat offered=chat ext=- host=127.0.0.1:$sport path=/info msg=hi"$'\n'
done_t

t "--subprotocol twice: offered in order, the server's choice accepted" "$work/hi"
c -- --subprotocol superchat --subprotocol chat "$surl/info"
want_rc 0
want_out_str "type=text proto=superchat offered=superchat,chat ext=- host=127.0.0.1:$sport path=/info msg=hi"$'\n'
done_t

t "--subprotocol the server does not know, then one it knows" "$work/hi"
c -- --subprotocol nope --subprotocol chat "$surl/info"
want_rc 0
want_out_str "type=text proto=chat offered=nope,chat ext=- host=127.0.0.1:$sport path=/info msg=hi"$'\n'
done_t

t "no --subprotocol: none offered; no --compress: no extension" "$work/hi"
c -- "$surl/info"
want_rc 0
want_out_str "type=text proto=- offered=- ext=- host=127.0.0.1:$sport path=/info msg=hi"$'\n'
done_t

t "--compress negotiates permessage-deflate" "$work/hi"
c -- --compress "$surl/info"
want_rc 0
want_out_str "type=text proto=- offered=- ext=permessage-deflate host=127.0.0.1:$sport path=/info msg=hi"$'\n'
done_t

t "--binary sends binary messages; the query string is kept" "$work/hi"
c -- --binary "$surl/info?x=1&y=%2F"
want_rc 0
want_out_str "type=binary proto=- offered=- ext=- host=127.0.0.1:$sport path=/info?x=1&y=%2F msg=hi"$'\n'
done_t

if [ "$ipv6" -eq 1 ]; then
  t "IPv6 literal ws://[::1]:P/: connects, Host is [::1]:P" "$work/hi"
  c -- "ws://[::1]:$sport/info"
  want_rc 0
  want_out_str "type=text proto=- offered=- ext=- host=[::1]:$sport path=/info msg=hi"$'\n'
  done_t
fi

t "handshake refused with 403: exit 1, status on stderr" "$work/hi"
c -- "$surl/refuse"
want_rc 1
want_out_str ""
want_err '403'
done_t

t "handshake refused with 404: exit 1, status on stderr" "$work/hi"
c -- "$surl/no/such/path"
want_rc 1
want_out_str ""
want_err '404'
done_t

for what in bad-accept bad-proto bad-ext not-101 garbage hangup; do
  t "bad handshake answer ($what): exit 1 with a reason" "$work/hi"
  if [ "$what" = bad-proto ]; then
    c -- --subprotocol chat "$rurl/$what"
  else
    c -- "$rurl/$what"
  fi
  want_rc 1
  want_out_str ""
  [ -s "$work/err" ] || why+=("nothing on stderr")
  [ "$what" = not-101 ] && want_err '200'
  done_t
done

for code in 1011 4000; do
  t "the server closes with $code: exit 1, the code on stderr" "$work/hi"
  c -- --wait 5 "$surl/close/$code"
  want_rc 1
  want_err "$code"
  done_t
done

for code in 1000 1001 1005; do
  t "--echo: every message back unchanged, server closes with $code: exit 0 (stdin ignored)" "$work/junk"
  c -- --echo "$surl/drive/$code"
  want_rc 0
  done_t
done

t "--echo --compress: every message back unchanged: exit 0" "$work/junk"
c -- --echo --compress "$surl/drive/1000"
want_rc 0
done_t

for code in 1011 4000; do
  t "--echo: server closes with $code: non-zero exit" "$work/empty"
  c -- --echo "$surl/drive/$code"
  [ "$rc" -ne 0 ] || why+=("exit status 0, want non-zero")
  done_t
done

# ---- failures to connect and usage errors ---------------------------------
t "connection refused (closed port): exit 1" "$work/hi"
c -- "ws://127.0.0.1:$closedport/"
want_rc 1
want_err 'refused'
done_t

t "unknown host (DNS): exit 1" "$work/hi"
c -- "ws://nonexistent.invalid:$port/"
want_rc 1
[ -s "$work/err" ] || why+=("nothing on stderr")
done_t

for bad in notaurl "ftp://127.0.0.1:$port/" "ws://" "ws://127.0.0.1:99999/" "ws://127.0.0.1:x/"; do
  t "invalid URL '$bad': exit 2" "$work/hi"
  c -- "$bad"
  want_rc 2
  [ -s "$work/err" ] || why+=("nothing on stderr")
  done_t
done

t "no URL: exit 2" "$work/hi"
c --
want_rc 2
done_t

t "unknown option: exit 2" "$work/hi"
c -- --no-such-option "$url"
want_rc 2
done_t

t "--count not a number: exit 2" "$work/hi"
c -- --count abc "$url"
want_rc 2
done_t

t "--header without a colon: exit 2" "$work/hi"
c -- --header 'NoColonHere' "$url"
want_rc 2
done_t

# ---- proxies ----------------------------------------------------------------
: >"$work/proxy.log"
t "http_proxy from the environment is used" "$work/ab"
c "http_proxy=http://127.0.0.1:$proxyport" -- "$url"
want_rc 0
want_out_str $'a\nb\n'
want_log "$work/proxy.log" "^CONNECT 127\.0\.0\.1:$port HTTP/1\.1 -> 200$"
done_t

: >"$work/proxy.log"
t "http_proxy with no_proxy=127.0.0.1: direct, the proxy sees nothing" "$work/ab"
c "http_proxy=http://127.0.0.1:$proxyport" no_proxy=127.0.0.1 -- "$url"
want_rc 0
want_out_str $'a\nb\n'
want_no_log "$work/proxy.log"
done_t

: >"$work/proxy.log"
t "http_proxy with no_proxy=example.com,127.0.0.1 (a list): direct" "$work/ab"
c "http_proxy=http://127.0.0.1:$proxyport" no_proxy=example.com,127.0.0.1 -- "$url"
want_rc 0
want_out_str $'a\nb\n'
want_no_log "$work/proxy.log"
done_t

: >"$work/proxy.log"
t "http_proxy with no_proxy=example.com (no match): through the proxy" "$work/ab"
c "http_proxy=http://127.0.0.1:$proxyport" no_proxy=example.com -- "$url"
want_rc 0
want_out_str $'a\nb\n'
want_log "$work/proxy.log" "^CONNECT 127\.0\.0\.1:$port "
done_t

: >"$work/proxy.log"
t "only https_proxy set: a ws:// URL goes direct (like curl)" "$work/ab"
c "https_proxy=http://127.0.0.1:$proxyport" -- "$url"
want_rc 0
want_out_str $'a\nb\n'
want_no_log "$work/proxy.log"
done_t

: >"$work/proxy.log"
t "only HTTP_PROXY (upper case) set: ignored, direct (like curl)" "$work/ab"
c "HTTP_PROXY=http://127.0.0.1:$proxyport" -- "$url"
want_rc 0
want_out_str $'a\nb\n'
want_no_log "$work/proxy.log"
done_t

: >"$work/proxy.log"
t "--proxy wins over http_proxy" "$work/ab"
c "http_proxy=http://127.0.0.1:$closedport" -- --proxy "http://127.0.0.1:$proxyport" "$url"
want_rc 0
want_out_str $'a\nb\n'
want_log "$work/proxy.log" "^CONNECT 127\.0\.0\.1:$port "
done_t

if [ "$ipv6" -eq 1 ]; then
  : >"$work/proxy.log"
  t "--proxy to an IPv6 literal: CONNECT [::1]:P" "$work/hi"
  c -- --proxy "http://127.0.0.1:$proxyport" "ws://[::1]:$sport/info"
  want_rc 0
  want_out_str "type=text proto=- offered=- ext=- host=[::1]:$sport path=/info msg=hi"$'\n'
  want_log "$work/proxy.log" "^CONNECT \[::1\]:$sport HTTP/1\.1 -> 200$"
  done_t
fi

: >"$work/proxy.log"
t "--proxy: the target refuses, the proxy answers 502: exit 1" "$work/hi"
c -- --proxy "http://127.0.0.1:$proxyport" "ws://127.0.0.1:$closedport/"
want_rc 1
want_err '502'
want_log "$work/proxy.log" "^CONNECT 127\.0\.0\.1:$closedport HTTP/1\.1 -> 502$"
done_t

t "--proxy on a closed port: exit 1" "$work/hi"
c -- --proxy "http://127.0.0.1:$closedport" "$url"
want_rc 1
[ -s "$work/err" ] || why+=("nothing on stderr")
done_t

: >"$work/authproxy.log"
t "proxy auth: --proxy http://user:pass@host:port works" "$work/ab"
c -- --proxy "http://kaze:s3cret@127.0.0.1:$authport" "$url"
want_rc 0
want_out_str $'a\nb\n'
want_log "$work/authproxy.log" "^CONNECT 127\.0\.0\.1:$port HTTP/1\.1 -> 200$"
done_t

: >"$work/authproxy.log"
t "proxy auth from http_proxy=http://user:pass@host:port" "$work/ab"
c "http_proxy=http://kaze:s3cret@127.0.0.1:$authport" -- "$url"
want_rc 0
want_out_str $'a\nb\n'
want_log "$work/authproxy.log" "^CONNECT 127\.0\.0\.1:$port HTTP/1\.1 -> 200$"
done_t

t "proxy auth: wrong password: exit 1, 407 on stderr" "$work/ab"
c -- --proxy "http://kaze:wrong@127.0.0.1:$authport" "$url"
want_rc 1
want_out_str ""
want_err '407'
done_t

t "proxy auth: no credentials: exit 1, 407 on stderr" "$work/ab"
c -- --proxy "http://127.0.0.1:$authport" "$url"
want_rc 1
want_out_str ""
want_err '407'
done_t

: >"$work/auth2proxy.log"
t "proxy auth: percent-encoded user and password (us%20er:p%40ss%3Aw)" "$work/ab"
c -- --proxy "http://us%20er:p%40ss%3Aw@127.0.0.1:$auth2port" "$url"
want_rc 0
want_out_str $'a\nb\n'
want_log "$work/auth2proxy.log" "^CONNECT 127\.0\.0\.1:$port HTTP/1\.1 -> 200$"
done_t

# ---- the servers must still be alive ---------------------------------------
i=0
for s in peer special proxy authproxy auth2proxy; do # the order they were started in
  i=$((i + 1))
  if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then
    failed=$((failed + 1))
    echo "FAIL [$peer] the $s server died:"
    cat "$work/$s.err"
  fi
done

echo "client_cli [$peer]: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
