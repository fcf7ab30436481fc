"""Clients that know Envoy: their own XFCC, identity headers in any case or with underscores,
other proxies' certificate headers, X-Forwarded-For naming a trusted range, and every
spelling of a path. None may gain an identity, or a weaker mode, it should not have."""

import urllib.parse

import pytest

import http2
from conftest import demo_identity, wait_for_snapshot
from devstack import filterconfig


def xfcc_for(pki, card: str) -> str:
    """An XFCC element naming `card`, as Envoy would write it (anyone can build one: the
    certificate is public)."""
    pem = pki.pem(card).decode()
    return f'Hash={pki.fingerprint(card)};Cert="{urllib.parse.quote(pem, safe="")}"'


def test_own_xfcc_without_a_card_gives_no_identity(dev, pki):
    answer = dev.client.get("/mtls/hello", headers=[("X-Forwarded-Client-Cert", xfcc_for(pki, "demo-card"))])
    assert (answer.status, answer.reason) == (401, "certificate_missing"), answer


def test_own_xfcc_beside_another_card_is_replaced(dev, pki, issuer):
    """The client presents the unbound card and claims the demo card in XFCC."""
    token = issuer.mint(cert_pem=pki.pem("unbound-card"))
    answer = dev.client.get("/api/execute", card=pki.card("unbound-card"), token=token,
                            headers=[("X-Forwarded-Client-Cert", xfcc_for(pki, "demo-card"))])
    assert answer.status == 200, answer
    identity = answer.identity()
    assert identity["x-dm-smartcard-fingerprint"] == pki.fingerprint("unbound-card")
    assert "x-dm-user-id" not in identity
    xfcc = answer.upstream_headers().get("x-forwarded-client-cert", [])
    assert all(pki.fingerprint("demo-card") not in v for v in xfcc)


@pytest.mark.parametrize("bound_to,status,reason", [
    ("unbound-card", 401, "sender_binding_mismatch"),  # bound to another card: refused
    ("demo-card", 200, None),                           # bound to this card: passes as sent
    (None, 200, None),                                  # unbound: passes as sent
])
def test_token_on_an_mtls_route_bound_to_another_card_is_refused(dev, pki, issuer, bound_to, status, reason):
    """`mtls` routes verify no token, but a token bound (RFC 8705 `cnf`) to another card is
    never forwarded beside this one: a stolen bound token cannot ride someone else's card."""
    token = issuer.mint(cert_pem=pki.pem(bound_to) if bound_to else None)
    answer = dev.client.get("/mtls/hello", card=pki.card("demo-card"), token=token)
    assert (answer.status, answer.reason if status != 200 else None) == (status, reason), answer
    if status == 200:
        assert answer.identity()["x-dm-smartcard-fingerprint"] == pki.fingerprint("demo-card")


SPOOFED = ["X-DM-User-Id", "x-dm-user-id", "X-Dm-User-ID", "X-DM-Org-Id", "X-DM-Principal",
           "X-DM-SmartCard-Fingerprint", "x-dm-smartcard-subject", "X-DM-Token-Subject", "X-DM-Anything"]


@pytest.mark.parametrize("name", SPOOFED)
@pytest.mark.parametrize("path,card,token_kind", [("/mtls/hello", "demo-card", None), ("/public/x", None, "plain")])
def test_spoofed_identity_headers_are_stripped(dev, pki, issuer, demo, name, path, card, token_kind):
    token = issuer.mint(subject="jane") if token_kind else None
    answer = dev.client.get(path, card=pki.card(card) if card else None, token=token,
                            headers=[(name, "spoofed-admin")])
    assert answer.status == 200, answer
    for values in answer.upstream_headers().values():
        assert "spoofed-admin" not in values


@pytest.mark.parametrize("name", ["x_dm_user_id", "X_DM_User_Id", "x-dm_user-id", "x_forwarded_client_cert"])
def test_underscored_headers_are_refused_by_envoy(dev, pki, name):
    """`headers_with_underscores_action: REJECT_REQUEST`: Envoy answers 400 before the filter."""
    answer = dev.client.get("/mtls/hello", card=pki.card("demo-card"), headers=[(name, "spoofed-admin")])
    assert answer.status == 400, answer
    assert answer.reason is None


OTHER_PROXIES = ["X-SSL-Client-Cert", "X-SSL-Client-Verify", "X-Client-Cert", "X-Client-Certificate",
                 "SSL-Client-Cert", "SSL-Client-Verify", "X-Forwarded-Tls-Client-Cert", "Client-Cert",
                 "X-ARR-ClientCert", "X-Amzn-Mtls-Clientcert"]


@pytest.mark.parametrize("name", OTHER_PROXIES)
def test_other_proxies_certificate_headers_do_not_reach_upstream(dev, pki, issuer, name):
    token = issuer.mint(subject="jane")
    answer = dev.client.get("/public/x", token=token, headers=[(name, "spoofed")])
    assert answer.status == 200, answer
    assert name.lower() not in answer.upstream_headers()


@pytest.fixture(scope="module")
def forwarded(deploy, pki, demo, issuer):
    """The two-tier example's inner Envoy (XFCC passed through, `ALWAYS_FORWARD_ONLY`), with
    the filter believing XFCC from 10.0.0.0/8 only: here every client is untrusted, however
    it names itself."""
    config = filterconfig.render(
        filterconfig.policy(source={"kind": "xfcc", "trust": "trusted_proxies"}, trusted_proxies=["10.0.0.0/8"]),
        demo_identity(pki, demo, issuer))
    return deploy("forwarded", config, template="inner.yaml", tls=False)


@pytest.mark.parametrize("header", ["X-Forwarded-For", "X-Real-IP", "Forwarded"])
@pytest.mark.parametrize("claim", ["10.1.2.3", "10.1.2.3, 127.0.0.1", "127.0.0.1, 10.0.0.1", "for=10.1.2.3"])
def test_forwarded_for_does_not_make_a_trusted_proxy(forwarded, pki, header, claim):
    answer = forwarded.client.get("/mtls/hello", headers=[(header, claim),
                                                          ("X-Forwarded-Client-Cert", xfcc_for(pki, "demo-card"))])
    assert (answer.status, answer.reason) == (401, "certificate_missing"), answer


# Spellings of a stricter route's path sent with a token that is good for a `bearer` route,
# and who answers: Envoy's normalisation makes most of them `/mtls/hello` before the filter
# sees them (then the route's own refusal, `certificate_missing`); Envoy refuses encoded
# slashes and backslashes and a fragment itself (400, no problem body: reason None); the filter
# refuses the path parameters that reach it (`invalid_path`). test_envoy_defaults.py sends them with Envoy's defaults.
PATHS = [
    ("//mtls/hello", 401, "certificate_missing"),
    ("/%6dtls/hello", 401, "certificate_missing"),
    ("/%6Dtls/hello", 401, "certificate_missing"),
    ("/public/../mtls/hello", 401, "certificate_missing"),
    ("/public/%2e%2e/mtls/hello", 401, "certificate_missing"),
    ("/public/%2E%2E/mtls/hello", 401, "certificate_missing"),
    ("/public/./../mtls/hello", 401, "certificate_missing"),
    ("/public/..%2fmtls/hello", 400, None),
    ("/public/..%5cmtls/hello", 400, None),
    ("/public%2f..%2fmtls/hello", 400, None),
    ("/./mtls/hello", 401, "certificate_missing"),
    ("/public/..;/mtls/hello", 401, "certificate_missing"),  # Envoy's normalisation drops the `;`
    ("/mtls;x/hello", 400, "invalid_path"),
    ("/mtls/hello#/public/x", 400, None),  # refused by Envoy whatever its settings
    ("/public/../../mtls/hello", 401, "certificate_missing"),
    ("///mtls//hello", 401, "certificate_missing"),
    ("/api/execute/", 401, "certificate_missing"),
]


@pytest.mark.parametrize("path,status,reason", PATHS, ids=[p[0] for p in PATHS])
def test_non_canonical_paths_reach_no_weaker_mode(dev, issuer, path, status, reason):
    answer = dev.client.get(path, token=issuer.mint(subject="jane"))
    assert (answer.status, answer.reason) == (status, reason), answer


def test_non_utf8_path_is_refused(dev, issuer):
    token = issuer.mint(subject="jane")
    request = (b"GET /public/\xff/../../mtls/hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
               b"Authorization: Bearer " + token.encode() + b"\r\n\r\n")
    answer = dev.client.raw(request)
    assert answer.status in (400, 401, 404), answer


# Credentials the filter does not read, beside the demo card on the enrolled-card route: a
# token bound to another card in every spelling an upstream library may still accept. Each is
# refused, so no upstream ever sees a token the filter did not hold to its card (RFC 8705 §3).
def _credential_spellings(token: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    return [
        ("two spaces", "", [("Authorization", f"Bearer  {token}")]),
        ("a tab", "", [("Authorization", f"Bearer\t{token}")]),
        ("a JWT scheme", "", [("Authorization", f"JWT {token}")]),
        ("the bare token", "", [("Authorization", token)]),
        ("a trailing comma", "", [("Authorization", f"Bearer {token},")]),
        ("two Authorization headers", "", [("Authorization", f"Bearer {token}"), ("Authorization", "Bearer x")]),
        ("access_token in the query", "?access_token=" + token, []),
        ("Access-Token in the query", "?Access-Token=" + token, []),
        ("an escaped access_token in the query", "?%61ccess_token=" + token, []),
    ]


@pytest.mark.parametrize("index", range(9), ids=[s[0] for s in _credential_spellings("t")])
def test_a_credential_the_filter_cannot_read_is_refused(dev, pki, issuer, index):
    what, query, headers = _credential_spellings(issuer.mint(cert_pem=pki.pem("unbound-card")))[index]
    answer = dev.client.get("/mtls/hello" + query, card=pki.card("demo-card"), headers=headers)
    assert (answer.status, answer.reason) == (401, "invalid_token"), (what, answer)


URL_OVERRIDES = ["X-Original-URL", "X-Rewrite-URL", "X-Forwarded-Uri", "X-Forwarded-Prefix", "X-Original-URI",
                 "X-Forwarded-Path", "X-Envoy-Original-Path"]


@pytest.mark.parametrize("name", URL_OVERRIDES)
def test_headers_that_rewrite_the_url_upstream_are_stripped(dev, issuer, name):
    answer = dev.client.get("/public/x", token=issuer.mint(subject="jane"), headers=[(name, "/mtls/hello")])
    assert answer.status == 200, answer
    assert name.lower() not in answer.upstream_headers()
    assert all("/mtls/hello" not in values for values in answer.upstream_headers().values())


# Spellings many upstreams route to the handler of a stricter route: the route's checks apply.
# A plain token with no card on the binding path, and the unbound card (with a token bound to
# it, good on the default route) on the enrolled-card route.
FOLDED = [
    ("/api/execute.json", None, 401, "certificate_missing"),
    ("/api/execute.", None, 401, "certificate_missing"),
    ("/API/execute", None, 401, "certificate_missing"),
    ("/api/Execute.XML", None, 401, "certificate_missing"),
    ("/MTLS/hello", "unbound-card", 403, "card_not_enrolled"),
    ("/Mtls/hello", "unbound-card", 403, "card_not_enrolled"),
    ("/mtls.json", "unbound-card", 403, "card_not_enrolled"),
    ("/mtls./hello", "unbound-card", 403, "card_not_enrolled"),
]


@pytest.mark.parametrize("path,card,status,reason", FOLDED, ids=[f[0] for f in FOLDED])
def test_folded_spellings_get_the_stricter_route(dev, pki, issuer, path, card, status, reason):
    token = issuer.mint(cert_pem=pki.pem(card)) if card else issuer.mint(subject="jane")
    answer = dev.client.get(path, card=pki.card(card) if card else None, token=token)
    assert (answer.status, answer.reason) == (status, reason), answer


@pytest.fixture(scope="module")
def h2_upstream(deploy, demo):
    """The development deployment with Envoy speaking HTTP/2 to its upstream, as to a gRPC
    server: request trailers reach the upstream there."""
    echo = http2.H2Echo()
    deployment = deploy("h2-upstream", filterconfig.render(filterconfig.policy(), snapshot=demo.snapshot_source()),
                        upstream_http2=True, echo_port=echo.port)
    wait_for_snapshot(deployment)
    yield deployment
    echo.stop()


HOSTILE_TRAILERS = [("x-dm-user-id", "u-admin"), ("x-dm-org-id", "o-other"), ("x-dm-principal", "auth:account:user:root"),
                    ("authorization", "Bearer stolen"), ("cookie", "session=stolen"), ("x-original-url", "/admin")]


@pytest.mark.parametrize("path,card,token_kind", [("/mtls/hello", "demo-card", None), ("/public/x", None, "plain")])
def test_identity_trailers_do_not_reach_an_http2_upstream(h2_upstream, pki, issuer, path, card, token_kind):
    headers = [("authorization", f"Bearer {issuer.mint(subject='jane')}")] if token_kind else []
    xfcc = ("x-forwarded-client-cert", xfcc_for(pki, "unbound-card"))
    trailers = [("x-checksum", "sha256=abc"), *HOSTILE_TRAILERS, xfcc]
    answer = http2.request(h2_upstream.port, pki.ca, pki.card(card) if card else None, path, headers=headers,
                        body=b"{}", trailers=trailers)
    assert answer.status == 200, answer
    seen = answer.json()
    # The ordinary trailer arrives: trailers do flow to this upstream, and only the hostile ones go.
    assert seen["trailers"] == [["x-checksum", "sha256=abc"]], seen
    if card:
        assert dict(seen["headers"])["x-dm-smartcard-fingerprint"] == pki.fingerprint(card)
