#!/usr/bin/env bash
# Browser test: headless Chromium, the browser users run, against `kaze echo`
# over wss://, trusting the test CA the way a user's machine does (an NSS
# database), not by ignoring certificate errors.
#
#   run.sh KAZE_BINARY
#
# Needs Debian's chromium and libnss3-tools (scripts/deps.sh installs them) and
# playwright-core (npm ci here). Without Chromium the test fails: it is not
# skipped. Makes the certificates (tests/tls/make_certs.sh), a private $HOME
# whose NSS database trusts the test CA, and four kaze echo servers on ports the
# system picks: the CA's certificate for localhost, a self-signed one, one for
# another name, an expired one. Every server is stopped on every way out; each
# also gets SIGKILL if this script is killed outright (setpriv --pdeathsig).
# Prints a line per check, then "N passed, N failed"; exit status 1 on failure.
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: $0 KAZE_BINARY" >&2; exit 2; }
kaze=$1
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$kaze" ] || { echo "browser: $kaze is not an executable" >&2; exit 2; }
chromium=${CHROMIUM:-/usr/bin/chromium}

passed=0
failed=0
ok() {
  passed=$((passed + 1))
  echo "ok   $1"
}
bad() {
  failed=$((failed + 1))
  echo "FAIL $1"
  shift
  [ $# -gt 0 ] && printf '%s\n' "$@" | sed 's/^/       /'
  return 0
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

# No Chromium, no test: that is a failure, never a skip.
missing=""
[ -x "$chromium" ] || missing+=" chromium"
command -v certutil >/dev/null || missing+=" libnss3-tools"
command -v openssl >/dev/null || missing+=" openssl"
command -v node >/dev/null && command -v npm >/dev/null || missing+=" nodejs/npm"
if [ -n "$missing" ]; then
  bad "browser: missing:$missing (scripts/deps.sh installs them)"
  finish
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
  echo "browser: npm ci in $here" >&2
  if ! (cd "$here" && npm ci --no-audit --no-fund >&2); then
    bad "browser: npm ci failed in $here"
    finish
  fi
fi

tmp=$(mktemp -d)
declare -A PID PORT
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
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 1
  fi
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  local name
  for name in "${!PID[@]}"; do stop "$name" || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pdeath=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
  pdeath=(setpriv --pdeathsig KILL)
fi

certs=$tmp/certs
if ! "$here/../tls/make_certs.sh" "$certs" >"$tmp/make_certs.out" 2>&1; then
  bad "browser: make_certs.sh failed" "$(cat "$tmp/make_certs.out")"
  finish
fi

# A private $HOME whose NSS database trusts the test CA as a root (C,,: a CA
# trusted to issue server certificates). Chromium on Linux reads
# $HOME/.pki/nssdb.
export HOME=$tmp/home
nssdb=$HOME/.pki/nssdb
mkdir -p "$nssdb"
if certutil -d "sql:$nssdb" -N --empty-password 2>"$tmp/certutil.err" &&
  certutil -d "sql:$nssdb" -A -t C,, -n kaze-test-ca -i "$certs/ca.pem" 2>>"$tmp/certutil.err"; then
  ok "browser: the test CA is a trusted root in a fresh NSS database ($nssdb)"
else
  bad "browser: certutil failed" "$(cat "$tmp/certutil.err")"
  finish
fi

start_kaze() { # NAME CERT [kaze echo options...]
  local name=$1 cert=$2 line=""
  shift 2
  : >"$tmp/$name.out"
  "${pdeath[@]}" "$kaze" echo --host 127.0.0.1 --port 0 --threads 1 --quiet \
    --tls-cert "$certs/$cert.pem" --tls-key "$certs/$cert.key" "$@" \
    </dev/null >"$tmp/$name.out" 2>"$tmp/$name.err" &
  PID[$name]=$!
  for _ in $(seq 300); do
    if IFS= read -r line <"$tmp/$name.out" && [[ "$line" =~ ^[0-9]+$ ]]; then
      PORT[$name]=$line
      return 0
    fi
    kill -0 "${PID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  bad "browser: kaze echo ($name) printed no port" "$(cat "$tmp/$name.err")"
  finish
}
start_kaze good server --subprotocol chat
start_kaze self self
start_kaze wrong wrong
start_kaze expired expired

t0=$SECONDS
timeout -k 10 150 "${pdeath[@]}" node "$here/browser_test.mjs" \
  "${PORT[good]}" "${PORT[self]}" "${PORT[wrong]}" "${PORT[expired]}" >"$tmp/browser.out" 2>&1
brc=$?
last=$(tail -n 1 "$tmp/browser.out")
if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
  passed=$((passed + BASH_REMATCH[1]))
  failed=$((failed + BASH_REMATCH[2]))
  sed '$d' "$tmp/browser.out"
  [ "$brc" -eq 0 ] || [ "${BASH_REMATCH[2]}" -ne 0 ] || bad "browser: the test exited $brc after all passed"
else
  bad "browser: the Chromium test did not finish (exit $brc)" "$(tail -n 30 "$tmp/browser.out")"
fi

echo "browser: Chromium took $((SECONDS - t0)) s" >&2

# The control: a $HOME with an empty NSS database, where the same server must
# be refused. It shows the passes above come from trusting the test CA.
mkdir -p "$tmp/home2/.pki/nssdb"
certutil -d "sql:$tmp/home2/.pki/nssdb" -N --empty-password 2>/dev/null
HOME=$tmp/home2 timeout -k 10 90 "${pdeath[@]}" node "$here/browser_test.mjs" --untrusted "${PORT[good]}" \
  >"$tmp/control.out" 2>&1
crc=$?
last=$(tail -n 1 "$tmp/control.out")
if [ "$crc" -eq 0 ] && [ "$last" = "1 passed, 0 failed" ]; then
  passed=$((passed + 1))
  sed '$d' "$tmp/control.out"
else
  bad "browser: control without the test CA (exit $crc)" "$(tail -n 30 "$tmp/control.out")"
fi
# The control's refusal is the one failed handshake the trusted server may log.
control_failures=1

# The trusted server saw no failed handshake; the others saw Chromium refuse.
n=$(grep -c 'TLS handshake failed' "$tmp/good.err")
if [ "$n" -le "$control_failures" ]; then
  ok "browser: no failed handshake at the trusted server but the control's ($(grep -m1 'TLS handshake failed' "$tmp/good.err"))"
else
  bad "browser: the trusted server logged $n failed handshakes, want at most $control_failures" "$(cat "$tmp/good.err")"
fi
for name in self wrong expired; do
  echo "       ($name: $(grep -m1 'TLS handshake failed' "$tmp/$name.err" || echo 'nothing logged'))"
done

for name in good self wrong expired; do
  if ! kill -0 "${PID[$name]}" 2>/dev/null; then
    bad "browser: kaze echo ($name) died during the test" "$(tail -n 20 "$tmp/$name.err")"
  fi
  src=0
  stop "$name" || src=$?
  [ "$src" -eq 0 ] || bad "browser: kaze echo ($name) exited with status $src after SIGTERM" "$(tail -n 20 "$tmp/$name.err")"
done
finish
