#!/bin/sh
# Generates the certbind test PKI into OUTDIR: CAs, PIV/CAC-shaped user certificates, a service
# certificate and the negative cases (expired, untrusted issuer, test policy arc).
#
#   envoy/pki/gen-test-pki.sh OUTDIR
#
# The committed copy in tests/pki/ is the fixture the tests assert against: every run makes new
# keys (and so new fingerprints), but the same names, subjects, SANs, serials, policies and
# validity windows. Keys are for tests only. Needs OpenSSL 3.x (`openssl ca -startdate`).
set -eu

if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
OUT=$1
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT INT TERM

# Fixed windows so the fixture does not depend on the day it was made. UTCTime below 2050,
# GeneralizedTime from 2050 on (RFC 5280 4.1.2.5): the service certificate's end exercises it.
LONG_START=20250101000000Z
LONG_END=20450101000000Z
CA_END=20550101000000Z
ROOT_END=20600101000000Z
GENERALIZED_END=20500601000000Z
EXPIRED_START=20200101000000Z
EXPIRED_END=20210101000000Z

# OIDs named where they are used.
FASCN_OID=2.16.840.1.101.3.6.6                  # id-PIV-FASC-N otherName
UPN_OID=1.3.6.1.4.1.311.20.2.3                  # Microsoft UPN otherName
SMARTCARD_LOGON=1.3.6.1.4.1.311.20.2.2          # msSmartcardLogin EKU
PIV_CARD_AUTH_EKU=2.16.840.1.101.3.6.8          # id-PIV-cardAuth EKU
FPKI_COMMON_AUTH=2.16.840.1.101.3.2.1.3.13      # id-fpki-common-authentication (PIV-Auth)
FPKI_COMMON_CARD_AUTH=2.16.840.1.101.3.2.1.3.17 # id-fpki-common-cardAuth
FPKI_TEST_COMMON_AUTH=2.16.840.1.101.3.2.1.48.11 # the same policy on the FPKI test arc
DOD_MEDIUM_HARDWARE_112=2.16.840.1.101.2.1.11.42 # id-US-dod-mediumHardware-112

# fascn_hex AGENCY SYSTEM CREDENTIAL CS ICI PI OC OI POA
# Encodes a FASC-N (SP 800-73-4, TIG SCEPACS): 40 characters of 4-bit BCD, least significant
# bit first, each followed by an odd-parity bit; start sentinel, field separators, end
# sentinel, then the LRC (XOR of the 39 preceding characters' data bits). Prints 50 hex digits.
fascn_hex() {
    printf '%s %s %s %s %s %s %s %s %s\n' "$@" | awk '
    function emit(v,   b, i, ones, bits) {
        ones = 0; bits = ""
        for (i = 0; i < 4; i++) {
            b = int(v / (2 ^ i)) % 2
            ones += b; bits = bits b
            if (!last) lrc[i] = (lrc[i] + b) % 2
        }
        out = out bits ((ones % 2 == 0) ? 1 : 0)
    }
    function digits(s,   i) { for (i = 1; i <= length(s); i++) emit(substr(s, i, 1) + 0) }
    {
        out = ""; last = 0; lrc[0] = lrc[1] = lrc[2] = lrc[3] = 0
        SS = 11; FS = 13; ES = 15
        emit(SS); digits($1); emit(FS); digits($2); emit(FS); digits($3); emit(FS)
        digits($4); emit(FS); digits($5); emit(FS); digits($6); digits($7); digits($8)
        digits($9); emit(ES)
        last = 1; emit(lrc[0] + 2 * lrc[1] + 4 * lrc[2] + 8 * lrc[3])
        if (length(out) != 200) { print "bad FASC-N field lengths" > "/dev/stderr"; exit 1 }
        hex = ""
        for (i = 1; i <= 200; i += 4) {
            n = substr(out, i, 1) * 8 + substr(out, i + 1, 1) * 4 + substr(out, i + 2, 1) * 2 + substr(out, i + 3, 1)
            hex = hex substr("0123456789ABCDEF", n + 1, 1)
        }
        print hex
    }'
}

# Agency 9999, system 9999, credential 999999, CS 1, ICI 1, PI 1234567890, OC 1, OI 1223, POA 2.
JANE_FASCN=$(fascn_hex 9999 9999 999999 1 1 1234567890 1 1223 2)
JANE_UUID=urn:uuid:3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81
JOHN_FASCN=$(fascn_hex 9999 9999 000123 1 1 9876543210 1 1223 1)
JOHN_UUID=urn:uuid:c0b1d2e3-f405-4617-8829-3a4b5c6d7e8f

cat > "$WORK/openssl.cnf" <<EOF
[ ca ]
default_ca = test_ca

[ test_ca ]
dir = $WORK
database = \$dir/index.txt
new_certs_dir = \$dir/issued
serial = \$dir/serial
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none
email_in_dn = yes

[ any_name ]
countryName = optional
stateOrProvinceName = optional
localityName = optional
organizationName = optional
organizationalUnitName = optional
commonName = optional
emailAddress = optional
userId = optional

[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = placeholder

[ root_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ issuing_ca ]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ piv_auth_jane ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth, $SMARTCARD_LOGON
certificatePolicies = $FPKI_COMMON_AUTH
subjectAltName = @san_jane
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ san_jane ]
otherName.1 = $FASCN_OID;FORMAT:HEX,OCTETSTRING:$JANE_FASCN
URI.1 = $JANE_UUID
otherName.2 = $UPN_OID;UTF8:1234567890@mil
email.1 = jane.doe@example.mil

[ piv_card_auth ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = $PIV_CARD_AUTH_EKU
certificatePolicies = $FPKI_COMMON_CARD_AUTH
subjectAltName = @san_card_auth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ san_card_auth ]
otherName.1 = $FASCN_OID;FORMAT:HEX,OCTETSTRING:$JANE_FASCN
URI.1 = $JANE_UUID

[ cac ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth, $SMARTCARD_LOGON
certificatePolicies = $DOD_MEDIUM_HARDWARE_112, $FPKI_COMMON_AUTH
subjectAltName = otherName:$UPN_OID;UTF8:1234567890@mil
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ service ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth, serverAuth
subjectAltName = URI:spiffe://certbind.test/ns/default/sa/api, DNS:api.certbind.test
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ piv_auth_john ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth, $SMARTCARD_LOGON
certificatePolicies = $FPKI_COMMON_AUTH
subjectAltName = @san_john
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ san_john ]
otherName.1 = $FASCN_OID;FORMAT:HEX,OCTETSTRING:$JOHN_FASCN
URI.1 = $JOHN_UUID
otherName.2 = $UPN_OID;UTF8:9876543210@mil
email.1 = john.roe@example.mil

[ piv_auth_test_arc ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth, $SMARTCARD_LOGON
certificatePolicies = $FPKI_TEST_COMMON_AUTH
subjectAltName = otherName:$UPN_OID;UTF8:5555555555@mil, email:test.user@example.mil
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ untrusted_user ]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth, $SMARTCARD_LOGON
certificatePolicies = $FPKI_COMMON_AUTH
subjectAltName = otherName:$UPN_OID;UTF8:1234567890@mil, email:jane.doe@example.mil
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF

key_rsa() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$OUT/$1.key" 2>/dev/null; }
key_ec() { openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:$2" -out "$OUT/$1.key" 2>/dev/null; }

# issue NAME SIGNER SUBJECT EXTENSIONS SERIAL START END [-multivalue-rdn]
# SIGNER is "self" for the root. Serials are fixed so that tests can name them.
issue() {
    name=$1 signer=$2 subject=$3 extensions=$4 serial=$5 start=$6 end=$7
    shift 7
    : > "$WORK/index.txt"
    rm -rf "$WORK/issued"
    mkdir "$WORK/issued"
    echo "$serial" > "$WORK/serial"
    openssl req -new -config "$WORK/openssl.cnf" -key "$OUT/$name.key" -subj "$subject" "$@" \
        -out "$WORK/$name.csr"
    if [ "$signer" = self ]; then
        set -- -selfsign -keyfile "$OUT/$name.key"
    else
        set -- -cert "$OUT/$signer.pem" -keyfile "$OUT/$signer.key"
    fi
    openssl ca -batch -notext -preserveDN -config "$WORK/openssl.cnf" "$@" \
        -extensions "$extensions" -startdate "$start" -enddate "$end" \
        -in "$WORK/$name.csr" -out "$OUT/$name.pem" 2>/dev/null
}

key_ec root-ca P-384
issue root-ca self "/C=US/O=certbind/OU=Test PKI/CN=certbind Test Root CA" \
    root_ca 01 "$LONG_START" "$ROOT_END"

key_ec piv-issuing-ca P-256
issue piv-issuing-ca root-ca "/C=US/O=certbind/OU=Test PKI/CN=certbind Test PIV Issuing CA" \
    issuing_ca 1000 "$LONG_START" "$CA_END"

key_ec untrusted-ca P-256
issue untrusted-ca self "/C=US/O=Not certbind/CN=Untrusted Test CA" \
    root_ca 0BAD "$LONG_START" "$ROOT_END"

# Serial with the top bit set: DER adds a 0x00 sign byte that serial_hex must not show.
key_rsa piv-auth
issue piv-auth piv-issuing-ca "/C=US/O=U.S. Government/OU=Example Agency/OU=People/CN=Jane Q. Doe" \
    piv_auth_jane 9F3A5C7E21D04B68 "$LONG_START" "$LONG_END"

key_ec piv-card-auth P-256
issue piv-card-auth piv-issuing-ca "/C=US/O=U.S. Government/OU=Example Agency/CN=Card Authentication" \
    piv_card_auth 2001 "$LONG_START" "$LONG_END"

key_ec cac P-256
issue cac piv-issuing-ca "/C=US/O=U.S. Government/OU=DoD/OU=PKI/OU=USA/CN=LAST.FIRST.MI.1234567890" \
    cac 3001 "$LONG_START" "$LONG_END"

key_ec service P-384
issue service piv-issuing-ca "/C=US/O=certbind/OU=Services/CN=api.certbind.test" \
    service 4001 "$LONG_START" "$GENERALIZED_END"

# A multi-valued RDN, a comma that RFC 4514 must escape and an emailAddress attribute that it
# renders as #hex.
key_rsa piv-auth-2
issue piv-auth-2 piv-issuing-ca \
    "/C=US/O=Example, Inc./OU=People/CN=John R. Roe+UID=jroe/emailAddress=john.roe@example.mil" \
    piv_auth_john 5001 "$LONG_START" "$LONG_END" -multivalue-rdn

key_ec expired P-256
issue expired piv-issuing-ca "/C=US/O=U.S. Government/OU=Example Agency/OU=People/CN=Expired Q. User" \
    piv_auth_jane 6001 "$EXPIRED_START" "$EXPIRED_END"

key_ec untrusted-user P-256
issue untrusted-user untrusted-ca "/C=US/O=U.S. Government/OU=Example Agency/OU=People/CN=Jane Q. Doe" \
    untrusted_user 7001 "$LONG_START" "$LONG_END"

key_rsa piv-auth-test-arc
issue piv-auth-test-arc piv-issuing-ca "/C=US/O=U.S. Government/OU=Example Agency/OU=People/CN=Test Q. Arc" \
    piv_auth_test_arc 8001 "$LONG_START" "$LONG_END"

cat "$OUT/root-ca.pem" "$OUT/piv-issuing-ca.pem" > "$OUT/ca-bundle.pem"

# Each leaf must verify against the bundle, except the deliberate failures.
for leaf in piv-auth piv-card-auth cac service piv-auth-2 piv-auth-test-arc; do
    openssl verify -CAfile "$OUT/ca-bundle.pem" "$OUT/$leaf.pem" > /dev/null
done
if openssl verify -CAfile "$OUT/ca-bundle.pem" "$OUT/expired.pem" > /dev/null 2>&1; then
    echo "expired.pem unexpectedly verifies" >&2; exit 1
fi
if openssl verify -CAfile "$OUT/ca-bundle.pem" "$OUT/untrusted-user.pem" > /dev/null 2>&1; then
    echo "untrusted-user.pem unexpectedly verifies" >&2; exit 1
fi
echo "test PKI written to $OUT"
