"""The filter defends itself without Envoy's protective settings. Each deployment here is an
example template with Envoy's defaults in place of them (`use_remote_address: false`, no
`normalize_path` or `merge_slashes`, escaped slashes kept, underscores in header names
allowed: devstack.envoy.PROTECTIVE_SETTINGS), so every refusal below is the filter's own, and
each is checked for its exact status and problem `reason`. test_hostile.py holds the same
attacks against the protected templates."""

import pytest

from conftest import demo_identity, wait_for_snapshot
from devstack import filterconfig
from test_hostile import xfcc_for

DEMO = "demo-card"


@pytest.fixture(scope="module")
def bare(deploy, demo):
    """dev.yaml (TLS, XFCC `SANITIZE_SET`, `trust: this_proxy`) with Envoy's defaults."""
    deployment = deploy("defaults", filterconfig.render(filterconfig.policy(), snapshot=demo.snapshot_source()),
                        envoy_defaults=True)
    wait_for_snapshot(deployment)
    return deployment


@pytest.fixture(scope="module")
def bare_inner(deploy, pki, demo, issuer):
    """inner.yaml (plain HTTP, XFCC passed through) with Envoy's defaults, the filter
    believing XFCC from 127.0.0.1/32 — the address every client of this suite connects from.
    With `use_remote_address: false` Envoy takes `source.address` from the last
    X-Forwarded-For entry; only the filter's rule that such an address (port 0) is no peer
    stands between that header and trust."""
    config = filterconfig.render(
        filterconfig.policy(source={"kind": "xfcc", "trust": "trusted_proxies"}, trusted_proxies=["127.0.0.1/32"]),
        demo_identity(pki, demo, issuer))
    return deploy("defaults-inner", config, template="inner.yaml", envoy_defaults=True, tls=False)


# --- the deployment really runs on Envoy's defaults --------------------------------------


def test_envoy_passes_raw_paths_and_underscored_names(bare, issuer):
    answer = bare.client.get("/public//a/./b", token=issuer.mint(subject="jane"),
                             headers=[("x_innocent", "kept")])
    assert answer.status == 200, answer
    assert answer.json()["path"] == "/public//a/./b"  # neither merged nor normalised
    assert answer.upstream_headers()["x_innocent"] == ["kept"]


def test_escaped_slash_reaches_the_filter(bare, issuer):
    """With `REJECT_REQUEST` Envoy answers 400 itself (no problem body); here the filter does."""
    answer = bare.client.get("/public/a%2Fb", token=issuer.mint(subject="jane"))
    assert (answer.status, answer.reason) == (400, "invalid_path"), answer


# --- who is the peer ------------------------------------------------------------------------


def test_the_real_peer_is_trusted(bare_inner, pki, demo):
    """The control: from its TCP address (127.0.0.1, a real port) a client *is* a trusted
    proxy here, and its XFCC is believed."""
    answer = bare_inner.client.get("/mtls/hello", headers=[("X-Forwarded-Client-Cert", xfcc_for(pki, DEMO))])
    assert answer.status == 200, answer
    assert answer.identity()["x-dm-user-id"] == demo.user_id


@pytest.mark.parametrize("claims", [["127.0.0.1"], ["192.0.2.7, 127.0.0.1"], ["127.0.0.1,127.0.0.1"],
                                    ["192.0.2.7", "127.0.0.1"]], ids=["one", "chain", "repeated", "two-headers"])
def test_forwarded_for_naming_a_trusted_address_gives_no_identity(bare_inner, pki, claims):
    headers = [("X-Forwarded-For", claim) for claim in claims]
    answer = bare_inner.client.get("/mtls/hello", headers=[*headers, ("X-Forwarded-Client-Cert", xfcc_for(pki, DEMO))])
    assert (answer.status, answer.reason) == (401, "certificate_missing"), answer


def test_forwarded_for_on_a_bearer_route_forwards_no_certificate(bare_inner, pki, issuer):
    answer = bare_inner.client.get("/public/x", token=issuer.mint(subject="jane"),
                                   headers=[("X-Forwarded-For", "127.0.0.1"),
                                            ("X-Forwarded-Client-Cert", xfcc_for(pki, DEMO))])
    assert answer.status == 200, answer
    seen = answer.upstream_headers()
    assert not [name for name in seen if name.startswith("x-dm-smartcard") or name == "x-dm-user-id"], seen
    assert "x-forwarded-client-cert" not in seen


def test_forwarded_for_with_a_bound_token_gives_no_certificate(bare_inner, pki, issuer):
    """A token bound to the victim's card needs that card; the forged XFCC does not count."""
    token = issuer.mint(subject="jane", cert_pem=pki.pem(DEMO))
    answer = bare_inner.client.get("/api/execute", token=token,
                                   headers=[("X-Forwarded-For", "127.0.0.1"),
                                            ("X-Forwarded-Client-Cert", xfcc_for(pki, DEMO))])
    assert (answer.status, answer.reason) == (401, "certificate_missing"), answer


# --- which path -----------------------------------------------------------------------------

# (spelling sent with a token good for `/public/`, the filter's answer). Every spelling of a
# stricter route gets that route's refusal — for /mtls/ (a card) and /api/execute* (a card
# bound to the token) `certificate_missing`, for what no route names the default mode
# (bearer_plus_mtls_required), the same — and a spelling whose meaning depends on the
# upstream's decoding is refused outright.
PATHS = [
    ("//mtls/hello", 401, "certificate_missing"),
    ("///mtls//hello", 401, "certificate_missing"),
    ("/%6dtls/hello", 401, "certificate_missing"),
    ("/%6Dtls/hello", 401, "certificate_missing"),
    ("/static/../mtls/hello", 401, "certificate_missing"),
    ("/public/../mtls/hello", 401, "certificate_missing"),
    ("/public/%2e%2e/mtls/hello", 401, "certificate_missing"),
    ("/public/%2E%2E/mtls/hello", 401, "certificate_missing"),
    ("/public/./../mtls/hello", 401, "certificate_missing"),
    ("/public/../../mtls/hello", 401, "certificate_missing"),
    ("/./mtls/hello", 401, "certificate_missing"),
    ("/mtls/./hello", 401, "certificate_missing"),
    ("/mtls", 401, "certificate_missing"),
    ("/mtls/", 401, "certificate_missing"),
    ("/MTLS/hello", 401, "certificate_missing"),
    ("/api/execute/", 401, "certificate_missing"),
    ("/api/execute//", 401, "certificate_missing"),
    ("/api/execute/.", 401, "certificate_missing"),
    ("/api/./execute/", 401, "certificate_missing"),
    ("/api/%65xecute/", 401, "certificate_missing"),
    ("/api//execute", 401, "certificate_missing"),
    ("/api/items/../execute", 401, "certificate_missing"),
    ("/mtls;a/hello", 400, "invalid_path"),
    ("/mtls;/hello", 400, "invalid_path"),
    ("/public/..;/mtls/hello", 400, "invalid_path"),
    ("/mtls%3bx/hello", 400, "invalid_path"),
    ("/mtls%2fhello", 400, "invalid_path"),
    ("/mtls%2Fhello", 400, "invalid_path"),
    ("/public/..%2fmtls/hello", 400, "invalid_path"),
    ("/public%2f..%2fmtls/hello", 400, "invalid_path"),
    ("/mtls%5chello", 400, "invalid_path"),
    ("/public/..%5cmtls/hello", 400, "invalid_path"),
    ("/mtls\\hello", 400, "invalid_path"),
    ("/public/..\\mtls/hello", 400, "invalid_path"),
    ("/mtls%252fhello", 400, "invalid_path"),
    ("/mtls%00/hello", 400, "invalid_path"),
    ("/public/%C0%AE%C0%AE/mtls/hello", 400, "invalid_path"),
    ("/public/%2/mtls/hello", 400, "invalid_path"),
]


@pytest.mark.parametrize("path,status,reason", PATHS, ids=[p[0] for p in PATHS])
def test_non_canonical_paths_get_the_stricter_answer(bare, issuer, path, status, reason):
    answer = bare.client.get(path, token=issuer.mint(subject="jane"))
    assert (answer.status, answer.reason) == (status, reason), answer


# --- header names ---------------------------------------------------------------------------

LOOK_ALIKES = ["x_dm_user_id", "X_DM_User_Id", "x-dm_user-id", "x_dm_org_id", "x_dm_principal",
               "x_dm_smartcard_fingerprint", "x_dm_token_subject", "x_ssl_client_cert", "ssl_client_verify",
               "x_client_cert", "x-amzn_mtls_clientcert", "x_arr_clientcert", "client_cert"]


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_look_alike_headers_are_stripped_by_the_filter(bare, pki, demo, name):
    answer = bare.client.get("/mtls/hello", card=pki.card(DEMO), headers=[(name, "spoofed-admin")])
    assert answer.status == 200, answer
    seen = answer.upstream_headers()
    assert not [n for n, values in seen.items() if "spoofed-admin" in values], seen
    assert seen["x-dm-user-id"] == [demo.user_id]


@pytest.mark.parametrize("name", ["x_dm_user_id", "X-DM-User-Id", "x_ssl_client_cert"])
def test_look_alike_headers_are_stripped_on_a_bearer_route(bare, issuer, name):
    answer = bare.client.get("/public/x", token=issuer.mint(subject="jane"), headers=[(name, "spoofed-admin")])
    assert answer.status == 200, answer
    assert not [n for n, values in answer.upstream_headers().items() if "spoofed-admin" in values], answer


def test_underscored_xfcc_beside_envoys_is_a_duplicate(bare, pki):
    """Envoy writes `x-forwarded-client-cert` for the card and leaves the client's
    `x_forwarded_client_cert` alone: the filter sees two spellings of its source header."""
    answer = bare.client.get("/mtls/hello", card=pki.card(DEMO),
                             headers=[("x_forwarded_client_cert", xfcc_for(pki, "unbound-card"))])
    assert (answer.status, answer.reason) == (400, "malformed_client_cert"), answer


def test_underscored_xfcc_without_a_card_is_not_believed(bare, pki, issuer):
    card_route = bare.client.get("/mtls/hello", headers=[("x_forwarded_client_cert", xfcc_for(pki, DEMO))])
    assert (card_route.status, card_route.reason) == (401, "certificate_missing"), card_route
    answer = bare.client.get("/public/x", token=issuer.mint(subject="jane"),
                             headers=[("x_forwarded_client_cert", xfcc_for(pki, DEMO))])
    assert answer.status == 200, answer
    seen = answer.upstream_headers()
    assert "x_forwarded_client_cert" not in seen and "x-dm-user-id" not in seen, seen


# --- a forward mode that passes the client's XFCC on ----------------------------------------


@pytest.fixture(scope="module")
def passing_on(deploy, demo):
    """dev.yaml with Envoy's defaults and, wrongly for a TLS-terminating Envoy,
    `ALWAYS_FORWARD_ONLY`: the client's own XFCC reaches the filter, which believes an element
    only when its Hash is the connection's certificate."""
    deployment = deploy("defaults-forwarding", filterconfig.render(filterconfig.policy(), snapshot=demo.snapshot_source()),
                        envoy_defaults=True, forward_client_cert="ALWAYS_FORWARD_ONLY")
    wait_for_snapshot(deployment)
    return deployment


def test_clients_xfcc_without_a_card_is_not_believed(passing_on, pki):
    answer = passing_on.client.get("/mtls/hello", headers=[("X-Forwarded-Client-Cert", xfcc_for(pki, DEMO))])
    assert (answer.status, answer.reason) == (401, "certificate_missing"), answer


def test_clients_xfcc_naming_another_card_is_refused(passing_on, pki):
    answer = passing_on.client.get("/mtls/hello", card=pki.card("unbound-card"),
                                   headers=[("X-Forwarded-Client-Cert", xfcc_for(pki, DEMO))])
    assert (answer.status, answer.reason) == (400, "malformed_client_cert"), answer


def test_card_without_envoys_xfcc_fails_closed(passing_on, pki):
    answer = passing_on.client.get("/mtls/hello", card=pki.card(DEMO))
    assert (answer.status, answer.reason) == (401, "certificate_missing"), answer
