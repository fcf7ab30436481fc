#!/bin/sh
# Writes seed inputs for every fuzz target into fuzz/corpus/TARGET/ (gitignored), each in the
# header format its parser expects, built from the committed test PKI. Run from anywhere.
set -eu
cd "$(dirname "$0")"
pki=../tests/pki
for target in xfcc certificate_facts nginx_header traefik_header rfc9440_header dn_text path header_set header_map; do
    mkdir -p "corpus/$target"
done
for pem in "$pki"/*.pem; do
    name=$(basename "$pem" .pem)
    [ "$name" = ca-bundle ] && continue
    b64=$(openssl x509 -in "$pem" -outform DER | base64 -w0)
    hash=$(openssl x509 -in "$pem" -outform DER | sha256sum | cut -d' ' -f1)
    openssl x509 -in "$pem" -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//' > "corpus/dn_text/$name.issuer"
    openssl x509 -in "$pem" -noout -subject | sed 's/^subject=//' > "corpus/dn_text/$name.subject"
    openssl x509 -in "$pem" -outform DER > "corpus/certificate_facts/$name.der"
    cp "$pem" "corpus/certificate_facts/$name.pem"
    python3 - "$pem" "$hash" "$b64" "$name" <<'PY'
import sys, urllib.parse
pem_path, digest, b64, name = sys.argv[1:]
pem = open(pem_path).read()
quoted = urllib.parse.quote(pem, safe="")
open(f"corpus/xfcc/{name}", "w").write(
    f'By=spiffe://certbind.test/envoy;Hash={digest};Cert="{quoted}";'
    f'Subject="CN=x,O=y";URI=spiffe://certbind.test/ns/default/sa/api;DNS=api.certbind.test')
open(f"corpus/nginx_header/{name}.escaped", "w").write(quoted)
open(f"corpus/nginx_header/{name}.legacy", "w").write(pem.rstrip("\n").replace("\n", "\n\t"))
open(f"corpus/traefik_header/{name}", "w").write(b64 + "," + b64)
open(f"corpus/rfc9440_header/{name}", "w").write(f":{b64}:, :{b64}:")
open(f"corpus/header_set/{name}", "w").write(
    f"/mtls/x\nssl-client-cert:{quoted}\nx-dm-user-id:root\nAuthorization:Bearer a.b.c")
# The header map Envoy hands the filter for such a request (the proxy-wasm pair format).
pairs = [(b":path", b"/mtls/x"), (b":method", b"GET"), (b"x-forwarded-client-cert", f'Hash={digest};Cert="{quoted}"'.encode())]
import struct
blob = struct.pack("<I", len(pairs)) + b"".join(struct.pack("<II", len(k), len(v)) for k, v in pairs)
blob += b"".join(k + b"\0" + v + b"\0" for k, v in pairs)
open(f"corpus/header_map/{name}", "wb").write(blob)
PY
done
i=0
for p in '/admin/x' '//admin//x' '/%61dmin/%2e%2e/x' '/a/./b/../c/' '/a;b/c' '/a%2Fb' '/caf%C3%A9?q=/..' \
         '/%C0%AE%C0%AE/' '/a\\b' '/MTLS/x' '/optional/bound/x?y=1#z'; do
    i=$((i + 1))
    printf '%s' "$p" > "corpus/path/$i"
    printf '%s\nSSL_Client_Cert:x\nauthorization:Bearer x.y.z' "$p" > "corpus/header_set/path-$i"
done
mkdir -p corpus/crl
cp ../shared/tests/vectors/crl/*.crl.* corpus/crl/
echo "seed corpora written under $(pwd)/corpus"
