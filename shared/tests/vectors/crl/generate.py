#!/usr/bin/env python3
"""Regenerates the CRL test vectors (shared/src/crl/tests.rs reads them).

Run with the repository's virtualenv (`.venv/bin/python shared/tests/vectors/crl/generate.py`);
needs the `cryptography` package and the openssl CLI (for the annotated PEM only). Outputs
are committed, so the tests never run this. CRLs of the test PKI's issuing CA (P-256) and
root CA (P-384) are signed with the committed keys in tests/pki; the other CAs get fresh keys
that are thrown away (no vector needs them again). Rerunning changes every signature and the
fresh CAs' keys, never a serial, number or date the tests assert.
"""

import datetime
import pathlib
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

HERE = pathlib.Path(__file__).resolve().parent
PKI = HERE.parent.parent.parent.parent / "tests" / "pki"

# Dates the tests assert: CRLs are issued on THIS_UPDATE and due a week later.
THIS_UPDATE = datetime.datetime(2025, 6, 1, 0, 0, 0)
NEXT_UPDATE = THIS_UPDATE + datetime.timedelta(days=7)
REVOKED_ON = datetime.datetime(2025, 5, 20, 12, 0, 0)
COMPROMISED_ON = datetime.datetime(2025, 5, 19, 8, 30, 0)
EXPIRED_THIS = datetime.datetime(2025, 1, 1)
EXPIRED_NEXT = datetime.datetime(2025, 1, 8)
CA_FROM = datetime.datetime(2025, 1, 1)
CA_TO = datetime.datetime(2045, 1, 1)

UNKNOWN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")
SHARED_DN = x509.Name([
    x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certbind"),
    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Test PKI"),
    x509.NameAttribute(NameOID.COMMON_NAME, "ICAM Test Card Signing CA"),
])


def write(name, data):
    (HERE / name).write_bytes(data)


def load_pki(name):
    cert = x509.load_pem_x509_certificate((PKI / f"{name}.pem").read_bytes())
    key = serialization.load_pem_private_key((PKI / f"{name}.key").read_bytes(), password=None)
    return cert, key


def make_ca(name, key, ski=True):
    """A self-signed CA certificate, written as NAME.pem."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(0x0c0ffee).not_valid_before(CA_FROM).not_valid_after(CA_TO)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    )
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return builder.sign(key, hashes.SHA256())


def entry(serial, reason=None, invalidity=None, critical_unknown=False, issuer=None):
    builder = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(REVOKED_ON)
    if reason is not None:
        builder = builder.add_extension(x509.CRLReason(reason), critical=False)
    if invalidity is not None:
        builder = builder.add_extension(x509.InvalidityDate(invalidity), critical=False)
    if critical_unknown:
        builder = builder.add_extension(x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), critical=True)
    if issuer is not None:
        builder = builder.add_extension(x509.CertificateIssuer([x509.DirectoryName(issuer)]), critical=True)
    return builder.build()


def idp(uri=None, **flags):
    options = dict(only_contains_user_certs=False, only_contains_ca_certs=False, only_some_reasons=None,
                   indirect_crl=False, only_contains_attribute_certs=False)
    options.update(flags)
    return x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(uri)] if uri else None, relative_name=None, **options)


def crl(ca, signing_key, number, entries, *, algorithm=hashes.SHA256(), rsa_padding=None, this=THIS_UPDATE,
        next_=NEXT_UPDATE, base=None, aki=True, extensions=()):
    """A CRL issued in `ca`'s name, signed by `signing_key`, as DER."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject).last_update(this).next_update(next_)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    if aki:
        ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    if base is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(base), critical=True)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    for revoked in entries:
        builder = builder.add_revoked_certificate(revoked)
    kwargs = {"rsa_padding": rsa_padding} if rsa_padding is not None else {}
    return builder.sign(signing_key, algorithm, **kwargs).public_bytes(serialization.Encoding.DER)


# --- A little DER, to re-sign a CRL whose TBS the builder cannot make (no nextUpdate). ---

def read_tlv(data, at):
    tag, first = data[at], data[at + 1]
    if first < 0x80:
        return tag, at + 2, at + 2 + first
    n = first & 0x7f
    length = int.from_bytes(data[at + 2:at + 2 + n], "big")
    return tag, at + 2 + n, at + 2 + n + length


def tlv(tag, value):
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + value


def children(data, start, end):
    out = []
    while start < end:
        _, _, stop = read_tlv(data, start)
        out.append(data[start:stop])
        start = stop
    return out


def without_next_update(der, key):
    """The same CRL with tbsCertList.nextUpdate removed, signed again by `key` (ECDSA)."""
    _, start, end = read_tlv(der, 0)
    tbs, algorithm, _ = children(der, start, end)
    _, tbs_start, tbs_end = read_tlv(tbs, 0)
    fields = children(tbs, tbs_start, tbs_end)
    # version, signature, issuer, thisUpdate, nextUpdate, ...
    assert fields[4][0] in (0x17, 0x18)
    new_tbs = tlv(0x30, b"".join(fields[:4] + fields[5:]))
    signature = key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    return tlv(0x30, new_tbs + algorithm + tlv(0x03, b"\x00" + signature))


def main():
    issuing, issuing_key = load_pki("piv-issuing-ca")
    root, root_key = load_pki("root-ca")
    piv_auth = x509.load_pem_x509_certificate((PKI / "piv-auth.pem").read_bytes())
    cac = x509.load_pem_x509_certificate((PKI / "cac.pem").read_bytes())
    piv_auth_2 = x509.load_pem_x509_certificate((PKI / "piv-auth-2.pem").read_bytes())
    reasons = x509.ReasonFlags

    # RSA CA: PKCS#1 v1.5 and PSS, three hashes, a leaf naming its distribution points.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certbind"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "certbind Test RSA CA")])
    rsa_ca = make_ca(rsa_name, rsa_key)
    write("ca-rsa-2048.pem", rsa_ca.public_bytes(serialization.Encoding.PEM))
    three = [
        entry(0x1001, reasons.key_compromise, COMPROMISED_ON),
        entry(0x9F3A5C7E21D04B68),
        entry(0x1003, reasons.certificate_hold),
    ]
    idp_uri = (idp("http://crl.certbind.test/rsa-ca.crl"), True)
    write("rsa-pkcs1-sha256-three-entries.crl.der", crl(rsa_ca, rsa_key, 7, three, extensions=[idp_uri]))
    write("rsa-pkcs1-sha384.crl.der", crl(rsa_ca, rsa_key, 7, three[:1], algorithm=hashes.SHA384()))
    write("rsa-pkcs1-sha512.crl.der", crl(rsa_ca, rsa_key, 7, three[:1], algorithm=hashes.SHA512()))
    for hash_, salt in [(hashes.SHA256(), 32), (hashes.SHA384(), 48), (hashes.SHA512(), 20)]:
        pss = padding.PSS(mgf=padding.MGF1(hash_), salt_length=salt)
        write(f"rsa-pss-{hash_.name}-salt-{salt}.crl.der", crl(rsa_ca, rsa_key, 7, three[:1], algorithm=hash_, rsa_padding=pss))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Leaf With Distribution Points")]))
        .issuer_name(rsa_name).public_key(leaf_key.public_key()).serial_number(0x1001)
        .not_valid_before(CA_FROM).not_valid_after(CA_TO)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(rsa_key.public_key()), critical=False)
        .add_extension(x509.CRLDistributionPoints([
            x509.DistributionPoint([x509.UniformResourceIdentifier("http://crl.certbind.test/rsa-ca.crl"),
                                    x509.UniformResourceIdentifier("ldap://ldap.certbind.test/cn=certbind%20Test%20RSA%20CA?certificateRevocationList;binary"),
                                    x509.UniformResourceIdentifier("ftp://ftp.certbind.test/rsa-ca.crl")], None, None, None),
            # Limited to some reasons: leads to a partial CRL, which the reader refuses.
            x509.DistributionPoint([x509.UniformResourceIdentifier("http://crl.certbind.test/rsa-ca-key-compromise.crl")],
                                   None, frozenset([reasons.key_compromise]), None),
        ]), critical=False)
        .sign(rsa_key, hashes.SHA256())
    )
    write("leaf-with-crl-distribution-points.pem", leaf.public_bytes(serialization.Encoding.PEM))

    # The test PKI's issuing CA (P-256): the complete CRL 10, a delta on it, and the bad cases.
    base_entries = [
        entry(piv_auth.serial_number, reasons.key_compromise, COMPROMISED_ON),
        entry(cac.serial_number, reasons.certificate_hold),
    ]
    write("p256-piv-issuing-ca-number-10.crl.der", crl(issuing, issuing_key, 10, base_entries))
    delta_entries = [entry(cac.serial_number, reasons.remove_from_crl), entry(piv_auth_2.serial_number, reasons.superseded)]
    write("p256-piv-issuing-ca-delta-11-on-10.crl.der", crl(issuing, issuing_key, 11, delta_entries, base=10))
    write("p256-piv-issuing-ca-number-9.crl.der", crl(issuing, issuing_key, 9, base_entries[:1]))
    write("p256-piv-issuing-ca-sha384.crl.der", crl(issuing, issuing_key, 12, base_entries, algorithm=hashes.SHA384()))
    write("p256-piv-issuing-ca-expired.crl.der",
          crl(issuing, issuing_key, 8, base_entries, this=EXPIRED_THIS, next_=EXPIRED_NEXT))
    write("p256-piv-issuing-ca-no-next-update.crl.der",
          without_next_update(crl(issuing, issuing_key, 13, base_entries), issuing_key))
    write("p256-piv-issuing-ca-empty.crl.der", crl(issuing, issuing_key, 14, []))
    wrong_key = ec.generate_private_key(ec.SECP256R1())
    write("p256-piv-issuing-ca-signed-by-wrong-key.crl.der", crl(issuing, wrong_key, 15, base_entries))
    unknown = (x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), True)
    write("p256-unknown-critical-extension.crl.der", crl(issuing, issuing_key, 16, base_entries, extensions=[unknown]))
    unknown_quiet = (x509.UnrecognizedExtension(UNKNOWN_OID, b"\x05\x00"), False)
    write("p256-unknown-non-critical-extension.crl.der",
          crl(issuing, issuing_key, 16, base_entries, extensions=[unknown_quiet]))
    write("p256-unknown-critical-entry-extension.crl.der",
          crl(issuing, issuing_key, 17, [entry(0x77, critical_unknown=True)]))
    write("p256-indirect-idp.crl.der",
          crl(issuing, issuing_key, 18, base_entries, extensions=[(idp("http://crl.certbind.test/x.crl", indirect_crl=True), True)]))
    write("p256-indirect-certificate-issuer-entry.crl.der",
          crl(issuing, issuing_key, 19, [entry(0x78, issuer=root.subject)]))
    write("p256-only-some-reasons.crl.der",
          crl(issuing, issuing_key, 20, base_entries, extensions=[(idp(only_some_reasons=frozenset([reasons.key_compromise])), True)]))
    write("p256-only-ca-certificates.crl.der",
          crl(issuing, issuing_key, 21, [], extensions=[(idp(only_contains_ca_certs=True), True)]))

    # The test PKI's root (P-384, SHA-384).
    write("p384-root-ca-sha384.crl.der", crl(root, root_key, 3, [entry(0x0bad, reasons.ca_compromise)], algorithm=hashes.SHA384()))

    # Two CAs of one DN and two keys, each revoking serial 0x42.
    for label in ("a", "b"):
        key = ec.generate_private_key(ec.SECP256R1())
        ca = make_ca(SHARED_DN, key)
        write(f"shared-dn-ca-{label}.pem", ca.public_bytes(serialization.Encoding.PEM))
        write(f"shared-dn-ca-{label}.crl.der", crl(ca, key, 1, [entry(0x42, reasons.key_compromise)]))
        if label == "a":
            write("shared-dn-ca-a-without-aki.crl.der", crl(ca, key, 2, [entry(0x42)], aki=False))

    # A CA without a SubjectKeyIdentifier (its key identifier is the SHA-256 of its SPKI).
    no_ski_key = ec.generate_private_key(ec.SECP256R1())
    no_ski = make_ca(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certbind Test CA Without SKI")]), no_ski_key, ski=False)
    write("ca-p256-without-ski.pem", no_ski.public_bytes(serialization.Encoding.PEM))
    write("ca-p256-without-ski.crl.der", crl(no_ski, no_ski_key, 5, [entry(0x10)], aki=False))

    # PEM as `openssl crl -text` writes it: the decoded text above the block.
    subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(HERE / "rsa-pkcs1-sha256-three-entries.crl.der"),
                    "-text", "-out", str(HERE / "rsa-pkcs1-sha256-three-entries.crl.txt.pem")], check=True)


if __name__ == "__main__":
    main()
