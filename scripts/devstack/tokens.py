"""Demo bearer tokens: an ES256 issuer whose key lives in the development state, its JWKS for
the control plane (or the inline development identity), and JWTs bound to a certificate by
`cnf.x5t#S256` (RFC 8705).

    python -m devstack.tokens --state .dev --cert .dev/pki/demo-card.crt [--sub alice] [--ttl 3600]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from . import private

ISSUER = "https://issuer.certbind.dev"
AUDIENCE = "https://api.certbind.dev"
KEY_ID = "certbind-dev-1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def x5t_s256(cert_pem: bytes) -> str:
    """The certificate's thumbprint as RFC 8705 spells it: base64url(SHA-256(DER)), unpadded."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return b64url(hashlib.sha256(der).digest())


def fingerprint_hex(cert_pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


class Issuer:
    """The demo issuer's signing key, created once under `state/issuer/`."""

    def __init__(self, state: Path):
        directory = state / "issuer"
        private.directory(directory)
        path = directory / "issuer.key"
        if not path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            private.write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
        self.key = serialization.load_pem_private_key(path.read_bytes(), None)

    def jwks(self) -> dict:
        numbers = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": KEY_ID,
                          "x": b64url(numbers.x.to_bytes(32, "big")), "y": b64url(numbers.y.to_bytes(32, "big"))}]}

    def mint(self, *, subject: str = "demo-user", cert_pem: bytes | None = None, ttl: int = 3600,
             audience: str = AUDIENCE, issuer: str = ISSUER, now: int | None = None, extra: dict | None = None) -> str:
        now = int(time.time()) if now is None else now
        claims = {"iss": issuer, "sub": subject, "aud": audience, "iat": now, "nbf": now - 5, "exp": now + ttl}
        if cert_pem is not None:
            claims["cnf"] = {"x5t#S256": x5t_s256(cert_pem)}
        claims.update(extra or {})
        header = {"alg": "ES256", "typ": "JWT", "kid": KEY_ID}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def main() -> int:
    parser = argparse.ArgumentParser(description="Mint a demo JWT bound to a certificate (cnf.x5t#S256).")
    parser.add_argument("--state", type=Path, default=Path(".dev"))
    parser.add_argument("--cert", type=Path, help="PEM certificate to bind the token to (omit for an unbound token)")
    parser.add_argument("--sub", default="demo-user")
    parser.add_argument("--ttl", type=int, default=3600)
    args = parser.parse_args()
    cert = args.cert.read_bytes() if args.cert else None
    print(Issuer(args.state).mint(subject=args.sub, cert_pem=cert, ttl=args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
