#!/usr/bin/env bash
# Regenerates the test certificates and their expected facts with OpenSSL alone, so the
# expectations do not come from the code under test. Run from this directory.
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key"
openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days 3650 -set_serial 1 \
  -subj "/C=US/O=U.S. Government/OU=DoD/OU=PKI/CN=DOD ID CA-59" -out "$tmp/ca.pem"

make_leaf() { # name serial subject
  openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/$1.key"
  openssl req -new -key "$tmp/$1.key" -subj "$3" -out "$tmp/$1.csr"
  openssl x509 -req -in "$tmp/$1.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -set_serial "$2" \
    -days 1095 -sha256 -out "$1.pem"
  local der_sha256
  der_sha256=$(openssl x509 -in "$1.pem" -outform DER | sha256sum | cut -d' ' -f1)
  cat > "$1.facts.json" <<JSON
{
  "fingerprint": "$der_sha256",
  "subject_dn": "$(openssl x509 -in "$1.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')",
  "issuer_dn": "$(openssl x509 -in "$1.pem" -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//')",
  "serial": "$(openssl x509 -in "$1.pem" -noout -serial | sed 's/^serial=//' | tr 'A-F' 'a-f')",
  "not_before": "$(date -u -d "$(openssl x509 -in "$1.pem" -noout -startdate | sed 's/^notBefore=//')" +%Y-%m-%dT%H:%M:%SZ)",
  "not_after": "$(date -u -d "$(openssl x509 -in "$1.pem" -noout -enddate | sed 's/^notAfter=//')" +%Y-%m-%dT%H:%M:%SZ)"
}
JSON
}

make_leaf cac-doe 0x12ABCDEF0123 "/C=US/O=U.S. Government/OU=DoD/OU=PKI/OU=USA/CN=DOE.JOHN.A.1234567890"
make_leaf cac-roe 0x7A2B "/C=US/O=U.S. Government/OU=DoD/OU=PKI/OU=USA/CN=ROE.JANE.B.2345678901"
