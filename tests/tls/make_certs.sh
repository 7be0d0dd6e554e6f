#!/usr/bin/env bash
# Makes the certificates the TLS tests use, with the openssl CLI, in DIR
# (created if missing). Nothing here is ever committed: every run makes new keys.
#
#   make_certs.sh DIR
#
# All keys are EC P-256 (fast to make). Files, each NAME.pem (certificate) and
# NAME.key (its key):
#   ca        the test CA (CN=Kaze Test CA), the only root the tests trust
#   server    CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1; from the CA
#   server2   the same names, another subject (CN=localhost, O=Kaze Reloaded) and
#             serial, from the CA: what a SIGHUP reload swaps in
#   other     CN=other.test, SAN DNS:other.test; from the CA: the second
#             certificate of an SNI test
#   expired   names as server, from the CA, valid only in January 2020
#   wrong     CN=wrong.test, SAN DNS:wrong.test only; from the CA
#   self      names as server, self-signed: not from the CA
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
mkdir -p "$dir"
cd "$dir"
command -v openssl >/dev/null || { echo "make_certs: openssl is missing" >&2; exit 1; }

ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
names="DNS:localhost,IP:127.0.0.1,IP:::1"
log=make_certs.log
: >"$log"

# The CA, self-signed.
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 -sha256 \
  -subj "/O=Kaze Tests/CN=Kaze Test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" 2>>"$log"

# `openssl ca` signs the leaves: unlike `openssl x509 -req` it can set any
# validity period (the expired certificate) and it numbers serials itself.
mkdir -p ca.db
: >ca.db/index.txt
echo 1000 >ca.db/serial
cat >ca.cnf <<'CNF'
[ ca ]
default_ca = test_ca

[ test_ca ]
database        = ca.db/index.txt
new_certs_dir   = ca.db
serial          = ca.db/serial
default_md      = sha256
policy          = anything
unique_subject  = no
email_in_dn     = no
copy_extensions = none

[ anything ]
organizationName = optional
commonName       = supplied

[ leaf ]
basicConstraints       = critical,CA:FALSE
keyUsage               = critical,digitalSignature
extendedKeyUsage       = serverAuth
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid
subjectAltName         = ${ENV::KAZE_SAN}
CNF

leaf() { # name, subject, SAN, then extra `openssl ca` arguments (validity)
  local name=$1 subj=$2 san=$3
  shift 3
  openssl req -new "${ec[@]}" -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>>"$log"
  KAZE_SAN=$san openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key \
    -extensions leaf -notext -in "$name.csr" -out "$name.pem" "$@" >>"$log" 2>&1
  rm -f "$name.csr"
}

leaf server "/O=Kaze Tests/CN=localhost" "$names" -days 30
leaf server2 "/O=Kaze Reloaded/CN=localhost" "$names" -days 30
leaf other "/O=Kaze Tests/CN=other.test" "DNS:other.test" -days 30
leaf expired "/O=Kaze Expired/CN=localhost" "$names" -startdate 20200101000000Z -enddate 20200201000000Z
leaf wrong "/O=Kaze Tests/CN=wrong.test" "DNS:wrong.test" -days 30

# Self-signed, with the right names: only its issuer is wrong.
openssl req -x509 "${ec[@]}" -keyout self.key -out self.pem -days 30 -sha256 \
  -subj "/O=Kaze Self-Signed/CN=localhost" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -addext "keyUsage=critical,digitalSignature" \
  -addext "extendedKeyUsage=serverAuth" \
  -addext "subjectAltName=$names" 2>>"$log"

chmod 600 ./*.key
# Every certificate from the CA must verify against it (the expired one but
# for its dates).
for n in server server2 other wrong; do
  openssl verify -CAfile ca.pem "$n.pem" >>"$log" 2>&1 ||
    { echo "make_certs: $n.pem does not verify against ca.pem" >&2; cat "$log" >&2; exit 1; }
done
openssl verify -CAfile ca.pem -no_check_time expired.pem >>"$log" 2>&1 ||
  { echo "make_certs: expired.pem is not from ca.pem" >&2; cat "$log" >&2; exit 1; }
