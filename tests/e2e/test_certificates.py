"""Each kind of certificate, refused by the layer the README says: Envoy's TLS layer refuses
what does not verify (untrusted CA, expired, not yet valid, and a Card-Auth certificate, whose
only EKU is id-PIV-cardAuth, not clientAuth) before any filter runs; the filter refuses what is
about who the card is (not enrolled, Card-Auth when TLS lets it through, revoked, blocklisted)."""

import pytest

from conftest import demo_identity
from devstack.procs import wait_until
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




# What Envoy's debug log says for each certificate its TLS layer refuses (BoringSSL's
# verification error), with `--component-log-level connection:debug` or, at run time,
# `POST /logging?connection=debug` on the admin endpoint.
TLS_VERIFY_ERRORS = {
    "untrusted-card": "unable to get local issuer certificate",
    "expired": "certificate has expired",
    "not-yet-valid": "certificate is not yet valid",
    "card-auth": "unsupported certificate purpose",
}


def listener_ssl(dev) -> dict[str, int]:
    """The listener's TLS stats by their last name (`listener.<address>.ssl.<name>`)."""
    return {name.rsplit(".ssl.", 1)[1]: value for name, value in dev.proxy.stats("ssl").items()
            if name.startswith("listener.") and ".ssl." in name}


def test_each_tls_refusal_is_counted_and_logged_at_debug(dev, pki):
    """docs/filter.md, "Refusals in the TLS layer": the stat and the log line that show each."""
    dev.proxy.set_log_level("connection", "debug")
    try:
        for card, error in TLS_VERIFY_ERRORS.items():
            before, mark = listener_ssl(dev), len(dev.proxy.process.log_text())
            assert dev.client.get("/mtls/hello", card=pki.card(card)).tls_refused
            wait_until(lambda: error in dev.proxy.process.log_text()[mark:], 5, f"the log line for {card}")
            after = listener_ssl(dev)
            moved = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
            assert moved == {"fail_verify_error": 1}, (card, moved)
            assert f"CERTIFICATE_VERIFY_FAILED:verify cert failed: X509_verify_cert: certificate verification error at depth 0: {error}" \
                in dev.proxy.process.log_text()[mark:], card
    finally:
        dev.proxy.set_log_level("connection", "info")
    # A card that verifies completes the handshake; a client without one is counted apart.
    before = listener_ssl(dev)
    dev.client.get("/mtls/hello", card=pki.card("demo-card"))
    dev.client.get("/mtls/hello")
    after = listener_ssl(dev)
    assert after["handshake"] - before["handshake"] == 2
    assert after["no_certificate"] - before["no_certificate"] == 1
    assert after["fail_verify_error"] == before["fail_verify_error"]
