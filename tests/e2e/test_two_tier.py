"""The two-tier example (envoy/templates/edge.yaml → inner.yaml): the edge terminates TLS and
forwards XFCC; the inner Envoy passes it through (`ALWAYS_FORWARD_ONLY`) to the filter, which
believes it only because the TCP peer is the edge (trusted by CIDR)."""

import urllib.parse

import pytest

from conftest import RUN_DIR, demo_identity
from devstack import filterconfig
from test_hostile import xfcc_for


@pytest.fixture(scope="module")
def tiers(deploy, pki, demo, issuer):
    config = filterconfig.render(
        filterconfig.policy(source={"kind": "xfcc", "trust": "trusted_proxies"}, trusted_proxies=["127.0.0.1/32"]),
        demo_identity(pki, demo, issuer))
    inner = deploy("inner", config, template="inner.yaml", tls=False)
    edge = deploy("edge", None, template="edge.yaml", inner_port=inner.port)
    return edge, inner


def test_bound_card_through_both_tiers(tiers, pki, demo):
    edge, _ = tiers
    answer = edge.client.get("/mtls/hello", card=pki.card("demo-card"))
    assert answer.status == 200, answer
    assert answer.identity()["x-dm-user-id"] == demo.user_id


def test_no_card_at_the_edge(tiers):
    edge, _ = tiers
    assert edge.client.get("/mtls/hello").reason == "certificate_missing"


def test_client_xfcc_is_replaced_by_the_edge(tiers, pki):
    edge, _ = tiers
    answer = edge.client.get("/mtls/hello", card=pki.card("unbound-card"),
                             headers=[("X-Forwarded-Client-Cert", xfcc_for(pki, "demo-card"))])
    assert (answer.status, answer.reason) == (403, "card_not_enrolled"), answer


def test_edge_tls_refuses_before_the_inner_tier(tiers, pki):
    edge, inner = tiers
    before = inner.proxy.stats("wasmcustom")
    for card in ("expired", "untrusted-card", "card-auth"):
        assert edge.client.get("/mtls/hello", card=pki.card(card)).tls_refused
    assert inner.proxy.stats("wasmcustom") == before


def test_default_forward_mode_loses_the_certificate(deploy, pki, demo, issuer):
    """What the inner tier's comment warns of: with Envoy's default (SANITIZE) the edge's XFCC
    is dropped on the inner hop and every card route answers certificate_missing."""
    config = filterconfig.render(
        filterconfig.policy(source={"kind": "xfcc", "trust": "trusted_proxies"}, trusted_proxies=["127.0.0.1/32"]),
        demo_identity(pki, demo, issuer))
    inner = deploy("inner-sanitize", config, template="inner.yaml", forward_client_cert="SANITIZE", tls=False)
    edge = deploy("edge-sanitize", None, template="edge.yaml", inner_port=inner.port)
    answer = edge.client.get("/mtls/hello", card=pki.card("demo-card"))
    assert (answer.status, answer.reason) == (401, "certificate_missing"), answer


@pytest.fixture(scope="module")
def forger(pki):
    """A certificate from the trusted CA whose URI SAN carries a second XFCC element naming the
    demo card: the edge writes `URI=` unquoted, so the header it forwards ends with that
    forged element."""
    from cryptography import x509

    from devstack import pki as devpki

    victim = pki.pem("demo-card")
    forged = f'urn:x,Hash={pki.fingerprint("demo-card")};Cert="{urllib.parse.quote(victim.decode(), safe="")}"'
    issuer = devpki.load_issuer(pki.dir, "piv-issuing-ca")
    key = devpki.new_key()
    cert = devpki.issue(issuer, devpki._person("Mallory Forger", "Example Agency"), key, 0x666,
                        (devpki.LONG_START, devpki.LONG_END), eku=devpki.PIV_AUTH_EKU,
                        sans=[x509.UniformResourceIdentifier(forged)])
    path = RUN_DIR / "forger.crt"
    devpki.write_pem(path, cert)
    devpki.write_key(RUN_DIR / "forger.key", key)
    return path, RUN_DIR / "forger.key"


def test_uri_san_cannot_forge_an_xfcc_element(tiers, forger, demo):
    edge, _ = tiers
    answer = edge.client.get("/mtls/hello", card=forger)
    assert answer.status != 200 or answer.identity().get("x-dm-user-id") != demo.user_id, answer
    assert (answer.status, answer.reason) in ((400, "malformed_client_cert"), (403, "card_not_enrolled")), answer
