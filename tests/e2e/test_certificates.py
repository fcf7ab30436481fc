"""Each kind of certificate, refused by the layer the README says: Envoy's TLS layer refuses
what does not verify (untrusted CA, expired, not yet valid, and a Card-Auth certificate, whose
only EKU is id-PIV-cardAuth, not clientAuth) before any filter runs; the filter refuses what is
about who the card is (not enrolled, Card-Auth when TLS lets it through, revoked, blocklisted)."""

import pytest

from conftest import demo_identity
from devstack import filterconfig

TLS_REFUSED = ["untrusted-card", "expired", "not-yet-valid", "card-auth"]


@pytest.mark.parametrize("card", TLS_REFUSED)
def test_tls_layer_refuses(dev, pki, card):
    answer = dev.client.get("/mtls/hello", card=pki.card(card))
    assert answer.tls_refused, answer


def test_tls_refusal_reaches_no_filter(dev, pki):
    before = dev.proxy.stats("wasmcustom")
    for card in TLS_REFUSED:
        dev.client.get("/mtls/hello", card=pki.card(card))
    assert dev.proxy.stats("wasmcustom") == before


def test_unbound_card_is_not_enrolled(dev, pki):
    answer = dev.client.get("/mtls/hello", card=pki.card("unbound-card"))
    assert (answer.status, answer.reason) == (403, "card_not_enrolled")


def test_unbound_card_gets_canonical_principal_where_enrolment_is_optional(dev, pki, issuer):
    token = issuer.mint(cert_pem=pki.pem("cac"))
    answer = dev.client.get("/api/execute", card=pki.card("cac"), token=token)
    assert answer.status == 200, answer
    identity = answer.identity()
    assert identity["x-dm-principal"].startswith("auth:account:x509:sha256:")
    assert "x-dm-user-id" not in identity


@pytest.mark.parametrize("card", ["cac", "service", "demo-card"])
def test_trusted_certificates_pass_tls(dev, pki, card):
    answer = dev.client.get("/public/x", card=pki.card(card))
    assert (answer.status, answer.reason) == (401, "token_missing")


@pytest.fixture(scope="module")
def lenient(deploy, pki, demo, issuer):
    """A listener that lets expired and not-yet-valid certificates through TLS
    (`allow_expired_certificate`), so the filter's own refusals show."""
    identity = demo_identity(pki, demo, issuer, blocklist=[pki.fingerprint("service")],
                             revoked=[("CN=certbind Dev PIV Issuing CA,OU=Development PKI,O=certbind,C=US", "3001")])
    return deploy("lenient", filterconfig.render(filterconfig.policy(), identity), allow_expired=True)


@pytest.mark.parametrize("card,status,reason", [
    ("expired", 401, "certificate_expired"),
    ("not-yet-valid", 401, "certificate_expired"),
    ("service", 401, "certificate_blocklisted"),
    ("cac", 401, "certificate_revoked"),
    ("demo-card", 200, None),
])
def test_filter_refuses_what_tls_lets_through(lenient, pki, card, status, reason):
    answer = lenient.client.get("/api/execute", card=pki.card(card), token=None)
    if status == 200:
        answer = lenient.client.get("/mtls/hello", card=pki.card(card))
    assert (answer.status, answer.reason) == (status, reason), answer


def test_untrusted_ca_still_refused_by_tls_when_lenient(lenient, pki):
    assert lenient.client.get("/mtls/hello", card=pki.card("untrusted-card")).tls_refused


def test_card_auth_without_eku_is_refused_by_the_filter(dev, pki, issuer):
    """A Card-Auth certificate with no EKU passes TLS (no EKU: any purpose); the filter must
    know it by its id-fpki-common-cardAuth policy and refuse it (it needs no PIN), even with
    a token bound to it on a route that needs no enrolment."""
    token = issuer.mint(cert_pem=pki.pem("card-auth-policy"))
    answer = dev.client.get("/api/execute", card=pki.card("card-auth-policy"), token=token)
    assert not answer.tls_refused
    assert (answer.status, answer.reason) == (403, "certificate_not_allowed"), answer
