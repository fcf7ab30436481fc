"""The acceptance matrix (every mode × every certificate and token case) through a real Envoy, one row per mode and case, with real
client certificates over TLS and ES256 tokens bound by cnf.x5t#S256."""

import pytest

from devstack import tokens

DEMO, OTHER = "demo-card", "unbound-card"


@pytest.fixture(scope="module")
def t(pki, issuer):
    """Tokens: bound to the demo card, bound to another card, and unbound."""
    return {
        "bound": issuer.mint(subject="jane", cert_pem=pki.pem(DEMO)),
        "other": issuer.mint(subject="jane", cert_pem=pki.pem(OTHER)),
        "plain": issuer.mint(subject="jane"),
    }


# (mode, path, token, card, expected status, expected reason)
MATRIX = [
    # bearer_plus_mtls_optional, path listed (/api/execute): binding required
    ("optional listed, JWT + cert + PoP match", "/api/execute", "bound", DEMO, 200, None),
    ("optional listed, JWT + cert, PoP mismatch", "/api/execute", "other", DEMO, 401, "sender_binding_mismatch"),
    ("optional listed, unbound JWT + cert", "/api/execute", "plain", DEMO, 401, "sender_binding_mismatch"),
    ("optional listed, JWT, no cert", "/api/execute", "plain", None, 401, "certificate_missing"),
    # bearer_plus_mtls_optional, path not listed: bearer alone works
    ("optional unlisted, JWT, no cert", "/api/items", "plain", None, 200, None),
    ("optional unlisted, no JWT", "/api/items", None, None, 401, "token_missing"),
    # bearer_plus_mtls_required
    ("required, JWT, no cert", "/secure/data", "plain", None, 401, "certificate_missing"),
    ("required, JWT + cert, PoP mismatch", "/secure/data", "other", DEMO, 401, "sender_binding_mismatch"),
    ("required, JWT + cert, PoP match", "/secure/data", "bound", DEMO, 200, None),
    ("required, cert, no JWT", "/secure/data", None, DEMO, 401, "token_missing"),
    # mtls (enrolled card required)
    ("mtls, no JWT, bound cert", "/mtls/hello", None, DEMO, 200, None),
    ("mtls, no cert", "/mtls/hello", None, None, 401, "certificate_missing"),
    ("mtls, unbound cert", "/mtls/hello", None, OTHER, 403, "card_not_enrolled"),
    # bearer
    ("bearer, JWT, no cert", "/public/news", "plain", None, 200, None),
    ("bearer, no JWT", "/public/news", None, None, 401, "token_missing"),
    ("bearer, forged JWT", "/public/news", "forged", None, 401, "invalid_token"),
]


@pytest.mark.parametrize("case,path,token,card,status,reason", MATRIX, ids=[m[0] for m in MATRIX])
def test_acceptance_matrix(dev, pki, t, case, path, token, card, status, reason):
    bearer = {"forged": t["plain"][:-6] + "AAAAAA"}.get(token) or t.get(token) if token else None
    answer = dev.client.get(path, card=pki.card(card) if card else None, token=bearer)
    assert (answer.status, answer.reason) == (status, reason), answer
    if status == 200:
        identity = answer.identity()
        if card:
            assert identity["x-dm-smartcard-fingerprint"] == pki.fingerprint(card)
        if token:
            assert identity["x-dm-token-subject"] == "jane"
            # The demo issuer is the platform's: its iss is forwarded as it is.
            assert (identity["x-dm-token-owner"], identity["x-dm-token-issuer"]) == ("platform", tokens.ISSUER)
    else:
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["content-type"].startswith("application/problem+json")
        if status == 401:
            assert "www-authenticate" in answer.headers


def test_bound_card_identity(dev, pki, demo):
    identity = dev.client.get("/mtls/hello", card=pki.card(DEMO)).identity()
    assert identity["x-dm-user-id"] == demo.user_id
    assert identity["x-dm-org-id"] == demo.org_id
    assert identity["x-dm-principal"] == f"auth:account:user:{demo.user_id}"
    assert identity["x-dm-smartcard-serial"] == "9f3a5c7e21d04b68"
    assert identity["x-dm-smartcard-subject"] == "CN=Jane Q. Demo,OU=People,OU=Example Agency,O=U.S. Government,C=US"
    assert identity["x-dm-smartcard-issuer"].startswith("CN=certbind Dev PIV Issuing CA,")
