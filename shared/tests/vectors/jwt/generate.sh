#!/usr/bin/env bash
# Regenerates the JWT test keys and their JWKS. Run once; the outputs are committed, so the
# tests never depend on openssl. Needs openssl 3 and coreutils (basenc).
set -euo pipefail
cd "$(dirname "$0")"

b64url() { basenc --base64url -w0 | tr -d '='; }

# Public point of an EC or OKP key: the last N bytes of its SubjectPublicKeyInfo DER.
spki_tail() { openssl pkey -in "$1" -pubout -outform DER | tail -c "$2"; }

ec_jwk() { # pem kid crv coordinate-bytes alg
    local point x y
    point=$(spki_tail "$1" $((1 + 2 * $4)) | tail -c $((2 * $4)) | basenc --base16 -w0)
    x=$(printf %s "${point:0:$((2 * $4))}" | basenc --base16 -d | b64url)
    y=$(printf %s "${point:$((2 * $4))}" | basenc --base16 -d | b64url)
    printf '{"kty":"EC","crv":"%s","kid":"%s","use":"sig","alg":"%s","x":"%s","y":"%s"}' "$3" "$2" "$5" "$x" "$y"
}

rsa_jwk() { # pem kid [alg]
    local n e alg_member=""
    n=$(openssl rsa -in "$1" -noout -modulus | sed 's/^Modulus=//' | basenc --base16 -d | b64url)
    e=$(openssl rsa -in "$1" -noout -text | sed -n 's/^publicExponent: \([0-9]*\).*/\1/p')
    [ "$e" = 65537 ] || { echo "unexpected exponent $e" >&2; exit 1; }
    [ -n "${3:-}" ] && alg_member=",\"alg\":\"$3\""
    printf '{"kty":"RSA","kid":"%s","use":"sig"%s,"n":"%s","e":"AQAB"}' "$2" "$alg_member" "$n"
}

okp_jwk() { # pem kid
    printf '{"kty":"OKP","crv":"Ed25519","kid":"%s","use":"sig","alg":"EdDSA","x":"%s"}' "$2" "$(spki_tail "$1" 32 | b64url)"
}

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec-p256.pem 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec-p256-not-in-jwks.pem 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec-p384.pem 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-2048.pem 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa-1024-too-short.pem 2>/dev/null
openssl genpkey -algorithm ED25519 -out ed25519.pem 2>/dev/null

# The issuer's published key set. The RSA key carries no `alg`, so it may verify RS256 and PS256.
printf '{"keys":[%s,%s,%s,%s]}\n' \
    "$(ec_jwk ec-p256.pem p256-key P-256 32 ES256)" \
    "$(ec_jwk ec-p384.pem p384-key P-384 48 ES384)" \
    "$(rsa_jwk rsa-2048.pem rsa-key)" \
    "$(okp_jwk ed25519.pem ed25519-key)" > issuer-jwks.json

# The same RSA key pinned to RS256: a PS256 token must not verify against it.
printf '{"keys":[%s]}\n' "$(rsa_jwk rsa-2048.pem rsa-key RS256)" > rsa-pinned-rs256-jwks.json

# A 1024-bit RSA key: the parser must refuse it as too short.
printf '{"keys":[%s]}\n' "$(rsa_jwk rsa-1024-too-short.pem short-key)" > rsa-1024-too-short-jwks.json

# The P-256 key with its private scalar `d` left in: the parser must refuse it.
d=$(openssl ec -in ec-p256.pem -noout -text 2>/dev/null | sed -n '/^priv:/,/^pub:/p' | sed '1d;$d' \
    | tr -d ' :\n' | tr a-f A-F | basenc --base16 -d | b64url)
printf '{"keys":[%s]}\n' "$(ec_jwk ec-p256.pem p256-key P-256 32 ES256 | sed "s/}\$/,\"d\":\"$d\"}/")" > ec-p256-with-private-d-jwks.json
