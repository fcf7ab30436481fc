"""The development PKI: a CA the dev Envoy trusts, a server certificate for localhost, the
demo smart cards and every negative case the end-to-end suite needs.

    python -m devstack.pki OUTDIR        # or envoy/pki/gen-dev-pki.sh OUTDIR

Files (each NAME.crt has its key in NAME.key; every key is for development only):

    ca.crt              trust bundle: the dev root and the dev PIV issuing CA
    server.crt          localhost / 127.0.0.1, for the HTTPS listener
    demo-card.crt       PIV Authentication: FASC-N, UPN, UUID URI, email, id-fpki-common-authentication
    unbound-card.crt    a second PIV Authentication card (never bound by `make run`)
    cac.crt             CAC-shaped (DoD medium-hardware policy, UPN)
    card-auth.crt       PIV Card Authentication (id-PIV-cardAuth EKU, cardAuth policy; no PIN)
    card-auth-policy.crt  the same without an EKU, known only by its cardAuth policy OID
    service.crt         a service certificate (SPIFFE URI, DNS)
    expired.crt         ended in 2021
    not-yet-valid.crt   starts in 2045
    untrusted-ca.crt, untrusted-card.crt   a root the proxy does not trust, and a card from it
    proxy-ca.crt        the CA of the proxies' client certificates, for the control plane
    proxy.crt           a proxy's client certificate (clientAuth), Envoy's to the control plane

Running it again keeps what exists (fingerprints stay stable across `make run`s).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from . import private

FASCN_OID = ObjectIdentifier("2.16.840.1.101.3.6.6")  # id-PIV-FASC-N otherName
UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")  # Microsoft UPN otherName
SMARTCARD_LOGON = ObjectIdentifier("1.3.6.1.4.1.311.20.2.2")
PIV_CARD_AUTH_EKU = ObjectIdentifier("2.16.840.1.101.3.6.8")
FPKI_COMMON_AUTH = ObjectIdentifier("2.16.840.1.101.3.2.1.3.13")
FPKI_COMMON_CARD_AUTH = ObjectIdentifier("2.16.840.1.101.3.2.1.3.17")
DOD_MEDIUM_HARDWARE_112 = ObjectIdentifier("2.16.840.1.101.2.1.11.42")

LONG_START = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
LONG_END = dt.datetime(2045, 1, 1, tzinfo=dt.timezone.utc)
CA_END = dt.datetime(2055, 1, 1, tzinfo=dt.timezone.utc)
EXPIRED = (dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc))
NOT_YET = (dt.datetime(2045, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2046, 1, 1, tzinfo=dt.timezone.utc))


def fascn(agency: str, system: str, credential: str, cs: str, ici: str, pi: str, oc: str, oi: str, poa: str) -> bytes:
    """A FASC-N (SP 800-73-4, TIG SCEPACS): 40 characters of 4-bit BCD, least significant bit
    first, each with an odd-parity bit; start sentinel, field separators, end sentinel, LRC."""
    ss, fs, es = 11, 13, 15
    chars = [ss, *map(int, agency), fs, *map(int, system), fs, *map(int, credential), fs, *map(int, cs), fs,
             *map(int, ici), fs, *map(int, pi + oc + oi + poa), es]
    if len(chars) != 39:
        raise ValueError("FASC-N fields have the wrong lengths")
    lrc = 0
    for c in chars:
        lrc ^= c
    bits = ""
    for c in [*chars, lrc]:
        data = "".join(str((c >> i) & 1) for i in range(4))
        bits += data + ("1" if data.count("1") % 2 == 0 else "0")
    return int(bits, 2).to_bytes(25, "big")


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _octet_string(value: bytes) -> bytes:
    return b"\x04" + _der_length(len(value)) + value


def _utf8_string(value: str) -> bytes:
    raw = value.encode()
    return b"\x0c" + _der_length(len(raw)) + raw


def _name(*parts: tuple[ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts])


def _person(cn: str, *ous: str) -> x509.Name:
    return _name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "U.S. Government"),
                 *[(NameOID.ORGANIZATIONAL_UNIT_NAME, ou) for ou in ous], (NameOID.COMMON_NAME, cn))


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


class Issuer:
    def __init__(self, name: x509.Name, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate | None = None):
        self.name, self.key, self.cert = name, key, cert


def issue(issuer: Issuer | None, subject: x509.Name, key, serial: int, window, *, ca: bool = False,
          pathlen: int | None = None, eku=None, policies=(), sans=(), server: bool = False) -> x509.Certificate:
    """One certificate. `issuer` None: self-signed."""
    signer = issuer or Issuer(subject, key)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(signer.name)
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(window[0]).not_valid_after(window[1])
               .add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, server, False, False, False, False, False, False), critical=True)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if policies:
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(p, None) for p in policies]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(signer.key, hashes.SHA256())


def piv_sans(fascn_bytes: bytes, uuid: str, upn: str | None, email: str | None) -> list:
    sans: list = [x509.OtherName(FASCN_OID, _octet_string(fascn_bytes)), x509.UniformResourceIdentifier(uuid)]
    if upn:
        sans.append(x509.OtherName(UPN_OID, _utf8_string(upn)))
    if email:
        sans.append(x509.RFC822Name(email))
    return sans


PIV_AUTH_EKU = (ExtendedKeyUsageOID.CLIENT_AUTH, SMARTCARD_LOGON)


def write_pem(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_key(path: Path, key) -> None:
    private.write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))


def load_issuer(out: Path, name: str) -> Issuer:
    cert = x509.load_pem_x509_certificate((out / f"{name}.crt").read_bytes())
    key = serialization.load_pem_private_key((out / f"{name}.key").read_bytes(), None)
    return Issuer(cert.subject, key, cert)


def generate(out: Path) -> None:
    """Writes every file named in the module's doc into `out`, unless `ca.crt` is there."""
    private.directory(out)
    if (out / "ca.crt").exists() and (out / "proxy.crt").exists():
        return
    root_key, piv_key, untrusted_key, proxy_ca_key = new_key(), new_key(), new_key(), new_key()
    root_name = _name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "certbind"),
                      (NameOID.ORGANIZATIONAL_UNIT_NAME, "Development PKI"), (NameOID.COMMON_NAME, "certbind Dev Root CA"))
    root_cert = issue(None, root_name, root_key, 0x01, (LONG_START, CA_END), ca=True)
    root = Issuer(root_name, root_key, root_cert)
    piv_name = _name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "certbind"),
                     (NameOID.ORGANIZATIONAL_UNIT_NAME, "Development PKI"), (NameOID.COMMON_NAME, "certbind Dev PIV Issuing CA"))
    piv_cert = issue(root, piv_name, piv_key, 0x1000, (LONG_START, CA_END), ca=True, pathlen=0)
    piv = Issuer(piv_name, piv_key, piv_cert)
    untrusted_name = _name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "Not certbind"),
                           (NameOID.COMMON_NAME, "Untrusted Dev CA"))
    untrusted_cert = issue(None, untrusted_name, untrusted_key, 0x0BAD, (LONG_START, CA_END), ca=True)
    untrusted = Issuer(untrusted_name, untrusted_key, untrusted_cert)
    proxy_ca_name = _name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "certbind"),
                          (NameOID.ORGANIZATIONAL_UNIT_NAME, "Development PKI"), (NameOID.COMMON_NAME, "certbind Dev Proxy CA"))
    proxy_ca = Issuer(proxy_ca_name, proxy_ca_key, issue(None, proxy_ca_name, proxy_ca_key, 0x02, (LONG_START, CA_END), ca=True))

    jane = fascn("9999", "9999", "999999", "1", "1", "1234567890", "1", "1223", "2")
    john = fascn("9999", "9999", "000123", "1", "1", "9876543210", "1", "1223", "1")
    jane_uuid = "urn:uuid:3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81"
    john_uuid = "urn:uuid:c0b1d2e3-f405-4617-8829-3a4b5c6d7e8f"
    leaves = {
        "server": dict(issuer=root, subject=_name((NameOID.ORGANIZATION_NAME, "certbind"), (NameOID.COMMON_NAME, "localhost")),
                       serial=0x10, window=(LONG_START, LONG_END), server=True, eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
                       sans=[x509.DNSName("localhost"), x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
        "demo-card": dict(issuer=piv, subject=_person("Jane Q. Demo", "Example Agency", "People"), serial=0x9F3A5C7E21D04B68,
                          window=(LONG_START, LONG_END), eku=PIV_AUTH_EKU, policies=(FPKI_COMMON_AUTH,),
                          sans=piv_sans(jane, jane_uuid, "1234567890@mil", "jane.demo@example.mil")),
        "unbound-card": dict(issuer=piv, subject=_person("John R. Unbound", "Example Agency", "People"), serial=0x5001,
                             window=(LONG_START, LONG_END), eku=PIV_AUTH_EKU, policies=(FPKI_COMMON_AUTH,),
                             sans=piv_sans(john, john_uuid, "9876543210@mil", "john.unbound@example.mil")),
        "cac": dict(issuer=piv, subject=_person("LAST.FIRST.MI.1234567890", "DoD", "PKI", "USA"), serial=0x3001,
                    window=(LONG_START, LONG_END), eku=PIV_AUTH_EKU, policies=(DOD_MEDIUM_HARDWARE_112, FPKI_COMMON_AUTH),
                    sans=[x509.OtherName(UPN_OID, _utf8_string("1234567890@mil"))]),
        "card-auth": dict(issuer=piv, subject=_person("Card Authentication", "Example Agency"), serial=0x2001,
                          window=(LONG_START, LONG_END), eku=(PIV_CARD_AUTH_EKU,), policies=(FPKI_COMMON_CARD_AUTH,),
                          sans=piv_sans(jane, jane_uuid, None, None)),
        # The same card's Card Authentication certificate as many are issued: no EKU at all
        # (so TLS accepts it for any purpose), recognised by its cardAuth policy OID.
        "card-auth-policy": dict(issuer=piv, subject=_person("Card Authentication", "Example Agency"), serial=0x2002,
                                 window=(LONG_START, LONG_END), policies=(FPKI_COMMON_CARD_AUTH,),
                                 sans=piv_sans(jane, jane_uuid, None, None)),
        "service": dict(issuer=piv, subject=_name((NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "certbind"),
                                                  (NameOID.ORGANIZATIONAL_UNIT_NAME, "Services"), (NameOID.COMMON_NAME, "api.certbind.test")),
                        serial=0x4001, window=(LONG_START, LONG_END),
                        eku=(ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH),
                        sans=[x509.UniformResourceIdentifier("spiffe://certbind.test/ns/default/sa/api"), x509.DNSName("api.certbind.test")]),
        "expired": dict(issuer=piv, subject=_person("Expired Q. User", "Example Agency", "People"), serial=0x6001,
                        window=EXPIRED, eku=PIV_AUTH_EKU, policies=(FPKI_COMMON_AUTH,),
                        sans=piv_sans(jane, jane_uuid, "1234567890@mil", None)),
        "not-yet-valid": dict(issuer=piv, subject=_person("Future Q. User", "Example Agency", "People"), serial=0x6002,
                              window=NOT_YET, eku=PIV_AUTH_EKU, policies=(FPKI_COMMON_AUTH,),
                              sans=piv_sans(jane, jane_uuid, "1234567890@mil", None)),
        "proxy": dict(issuer=proxy_ca, subject=_name((NameOID.ORGANIZATION_NAME, "certbind"), (NameOID.COMMON_NAME, "envoy proxy")),
                      serial=0x11, window=(LONG_START, LONG_END), eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)),
        "untrusted-card": dict(issuer=untrusted, subject=_person("Jane Q. Demo", "Example Agency", "People"), serial=0x7001,
                               window=(LONG_START, LONG_END), eku=PIV_AUTH_EKU, policies=(FPKI_COMMON_AUTH,),
                               sans=piv_sans(jane, jane_uuid, "1234567890@mil", "jane.demo@example.mil")),
    }
    for name, spec in leaves.items():
        key = new_key()
        cert = issue(spec.pop("issuer"), spec.pop("subject"), key, spec.pop("serial"), spec.pop("window"), **spec)
        write_pem(out / f"{name}.crt", cert)
        write_key(out / f"{name}.key", key)
    for name, issuer in (("root-ca", root), ("piv-issuing-ca", piv), ("untrusted-ca", untrusted), ("proxy-ca", proxy_ca)):
        write_pem(out / f"{name}.crt", issuer.cert)
        write_key(out / f"{name}.key", issuer.key)
    # Written last: its presence means the set is complete.
    (out / "ca.crt").write_bytes(root_cert.public_bytes(serialization.Encoding.PEM)
                                 + piv_cert.public_bytes(serialization.Encoding.PEM))


def envoy_files(out: Path) -> dict[str, Path]:
    """The files a shipped Envoy configuration names (scripts/devstack/envoy.py SHIPPED_FILES),
    from the PKI in `out`: the listener's certificate, the cards' CA bundle, the CA of the
    control plane's certificate (the dev root, in ca.crt) and the proxy's client certificate."""
    return {"server_cert": out / "server.crt", "server_key": out / "server.key", "ca_bundle": out / "ca.crt",
            "control_plane_ca": out / "ca.crt", "proxy_cert": out / "proxy.crt", "proxy_key": out / "proxy.key"}


def _issued_by(pem_file: Path, issuer: Issuer) -> bool:
    """Whether the first certificate in `pem_file` was signed by `issuer` (a set kept from a
    PKI since regenerated was not, and would fail TLS)."""
    try:
        x509.load_pem_x509_certificate(pem_file.read_bytes()).verify_directly_issued_by(issuer.cert)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def card_set(out: Path, count: int) -> Path:
    """`count` distinct cards from the PIV issuing CA in `out` (one key, `cards-COUNT.key`,
    and distinct serials: each is a distinct certificate with its own fingerprint), as PEM
    concatenated into `out/cards-COUNT.pem`. Kept between runs."""
    target = out / f"cards-{count}.pem"
    piv = load_issuer(out, "piv-issuing-ca")
    if target.exists() and _issued_by(target, piv):
        return target
    key = new_key()
    write_key(out / f"cards-{count}.key", key)
    jane = fascn("9999", "9999", "999999", "1", "1", "1234567890", "1", "1223", "2")
    chunks = []
    for i in range(count):
        cert = issue(piv, _person(f"Rotation User {i:06d}", "Example Agency", "People"), key, 0x700000 + i,
                     (LONG_START, LONG_END), eku=PIV_AUTH_EKU, policies=(FPKI_COMMON_AUTH,),
                     sans=piv_sans(jane, f"urn:uuid:00000000-0000-4000-8000-{i:012d}", f"{i:010d}@mil", None))
        chunks.append(cert.public_bytes(serialization.Encoding.PEM))
    partial = target.with_suffix(".partial")  # renamed when whole: its presence means complete
    partial.write_bytes(b"".join(chunks))
    partial.rename(target)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m devstack.pki OUTDIR", file=sys.stderr)
        sys.exit(2)
    generate(Path(sys.argv[1]))
    print(f"development PKI in {sys.argv[1]}")


def email_card(out: Path, name: str, email: str) -> tuple[Path, Path]:
    """A PIV Authentication card from the PIV issuing CA whose only address is the RFC 822 SAN
    `email` (no UPN), as `out/NAME.crt` and its key: a card one SAN rule for its domain names
    and no other card here. Kept between runs."""
    cert_path, key_path = out / f"{name}.crt", out / f"{name}.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    piv = load_issuer(out, "piv-issuing-ca")
    key = new_key()
    holder = fascn("9999", "9999", "424242", "1", "1", "4242424242", "1", "1223", "1")
    cert = issue(piv, _person(f"Email Only {name}", "Example Agency", "People"), key,
                 int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") | 1,
                 (LONG_START, LONG_END), eku=PIV_AUTH_EKU, policies=(FPKI_COMMON_AUTH,),
                 sans=piv_sans(holder, "urn:uuid:42424242-4242-4242-8242-424242424242", None, email))
    write_key(key_path, key)
    write_pem(cert_path, cert)  # written last: its presence means both are there
    return cert_path, key_path


def split_pem(bundle: Path) -> list[bytes]:
    """The certificates of a PEM bundle, each as its own PEM."""
    marker = b"-----END CERTIFICATE-----\n"
    return [part + marker for part in bundle.read_bytes().split(marker) if part.strip()]
