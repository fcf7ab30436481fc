"""certbind-authz behind each real gateway, started from the configurations the repository
ships (scripts/devstack/gateways.py renders only their paths and ports): Debian's NGINX
(`auth_request`), Traefik (`forwardAuth`), Envoy 1.40 `ext_authz` over HTTP and over gRPC.
Every test runs through each of them: the service fetches its signed snapshot from a control
plane of this module's own, as a deployment would, and the echo upstream shows what reached
the application."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from client import Answer, Client
from conftest import RUN_DIR
from test_hostile import PATHS
from devstack import filterconfig, gateways, tokens
from devstack.controlplane import Demo, start_demo
from devstack.procs import free_port, wait_until

ROUTE = "/mtls/hello"
# A route whose constraint no development card meets (none has an e-mail address there).
CONSTRAINED = {"path": "/constrained/*", "mode": "mtls", "require_enrolled_card": True,
               "constraints": {"allowed_email_domains": ["elsewhere.example"]}}
ROUTES = [CONSTRAINED, *filterconfig.DEMO_ROUTES]
# Facts of the card every stack's policy forwards upstream.
FORWARDED_FACTS = ["upn", "uuid", "fascn_pi"]


@pytest.fixture(scope="module")
def own_cp(logs, pki, issuer):
    """A control plane of this module's own (its revokes disturb no other module), with the
    demo card bound and the demo issuer registered for the platform."""
    demo = start_demo(RUN_DIR / "control-plane-gateways", logs, org="gateways", user="jane",
                      name="control-plane-gateways", label="e2e", tls_dir=pki.dir)
    demo.cp.bind(demo.admin_token, demo.user_id, pki.pem("demo-card"))
    demo.cp.register_issuer(demo.admin_token, tokens.ISSUER, [tokens.AUDIENCE], issuer.jwks(), scope="platform")
    yield demo
    demo.cp.stop()


@pytest.fixture(scope="module")
def revocable(pki):
    """A card per gateway for the revoke test, each bound there and revoked once."""
    return dict(zip(gateways.KINDS, pki.card_files(len(gateways.KINDS), "gateway-card")))


@pytest.fixture(scope="module")
def blockable(pki):
    """A card per gateway for the blocklist test, each bound there and blocklisted once."""
    return dict(zip(gateways.KINDS, pki.card_files(len(gateways.KINDS), "gateway-blocked-card")))


@dataclass
class Stack:
    kind: str
    authz: gateways.Authz
    gateway: gateways.Gateway
    client: Client

    def get(self, path: str = ROUTE, card=None, headers=None) -> Answer:
        return self.client.get(path, card=card, headers=headers)

    def stop(self) -> None:
        self.gateway.stop()
        self.authz.stop()


def start_stack(kind: str, name: str, pki, logs: Path, echo_port: int, snapshot: dict, *,
                replace: dict[str, str] | None = None, control_plane_ca: Path | None = None) -> Stack:
    """`kind` in front of certbind-authz, which fetches `snapshot` from the control plane over
    HTTPS, trusting the development CA (or `control_plane_ca`)."""
    ports = gateways.Ports(application=echo_port)
    run_dir = RUN_DIR / name
    config = gateways.write_authz_config(run_dir / "authz.json", kind, snapshot=snapshot, routes=ROUTES,
                                         forward_card_facts=FORWARDED_FACTS)
    authz = gateways.Authz(config, logs, ports, name=f"authz-{name}",
                           control_plane_ca=control_plane_ca or pki.dir / "ca.crt").start()
    try:
        gateway = gateways.start(kind, run_dir, logs, pki.dir, ports, replace=replace, name=name)
    except Exception:
        authz.stop()
        raise
    return Stack(kind, authz, gateway, Client(ports.listen, pki.ca))


def served_by(demo: Demo) -> dict:
    """The snapshot source for the service: `demo`'s control plane, its key pinned."""
    return filterconfig.snapshot(demo.public_key["public_key_pem"], demo.proxy_credential,
                                 cluster=f"127.0.0.1:{demo.cp.port}", authority=f"127.0.0.1:{demo.cp.port}")


def held(stack: Stack, pki, issuer) -> None:
    """Waits until the service holds the snapshot with the demo card bound and the demo issuer
    registered."""
    token = issuer.mint(subject="jane")
    wait_until(lambda: stack.get(card=pki.card("demo-card")).status == 200
               and stack.client.get("/public/ready", token=token).status == 200, 15,
               f"the service behind {stack.kind} to hold the demo card's binding and issuer", alive=stack.authz.process)


@pytest.fixture(scope="module", params=gateways.KINDS)
def stack(request, pki, logs, echo_port, own_cp, issuer):
    kind = request.param
    stack = start_stack(kind, f"gateway-{kind}", pki, logs, echo_port, served_by(own_cp))
    try:
        held(stack, pki, issuer)
        yield stack
    finally:
        stack.stop()


def refused(answer: Answer, status: int, reason: str) -> None:
    """The filter's refusal, relayed by the gateway as the service answered it."""
    assert (answer.status, answer.reason) == (status, reason), answer
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.headers
    body = answer.json()
    assert (body["type"], body["reason"], body["status"]) == (f"urn:certbind:problem:{reason}", reason, status), body


def test_bound_card_reaches_the_upstream_with_its_identity(stack, pki, own_cp):
    answer = stack.get(card=pki.card("demo-card"))
    assert answer.status == 200, answer
    identity = answer.identity()
    assert identity["x-dm-user-id"] == own_cp.user_id
    assert identity["x-dm-org-id"] == own_cp.org_id
    assert identity["x-dm-smartcard-fingerprint"] == pki.fingerprint("demo-card")
    assert answer.json()["path"] == ROUTE
    # What the gateway told the service stays between them.
    seen = answer.upstream_headers()
    for private_header in ("ssl-client-cert", "x-certbind-client-verify", "x-certbind-original-uri",
                           "x-certbind-original-method"):
        assert private_header not in seen, (private_header, seen)


SPOOFED_IDENTITY = [("X-DM-User-Id", "admin"), ("x-dm-org-id", "other-org"), ("X-DM-PRINCIPAL", "root"),
                    ("X-DM-Principal", "root-again"), ("X-Dm-Token-Owner", "platform")]


def test_spoofed_identity_headers_are_replaced(stack, pki, own_cp):
    answer = stack.get(card=pki.card("demo-card"), headers=SPOOFED_IDENTITY)
    assert answer.status == 200, answer
    seen = answer.upstream_headers()
    assert seen["x-dm-user-id"] == [own_cp.user_id]
    assert seen["x-dm-org-id"] == [own_cp.org_id]
    assert len(seen["x-dm-principal"]) == 1 and "root" not in seen["x-dm-principal"][0], seen
    assert "x-dm-token-owner" not in seen, seen


def test_forwarded_card_facts_reach_the_upstream_and_a_clients_never(stack, pki):
    """The demo card's UPN, card UUID and FASC-N PI (scripts/devstack/pki.py), set by the
    service and copied by the gateway; a client's copies of those and of a fact the policy does
    not forward are gone."""
    spoofed = [("X-DM-Smartcard-UPN", "admin@mil"), ("x-dm-smartcard-fascn-pi", "0000000001"),
               ("X-DM-Smartcard-FASCN", "0" * 32), ("X-DM-Smartcard-UUID", "00000000-0000-0000-0000-000000000000")]
    answer = stack.get(card=pki.card("demo-card"), headers=spoofed)
    assert answer.status == 200, answer
    seen = answer.upstream_headers()
    assert seen["x-dm-smartcard-upn"] == ["1234567890@mil"], seen
    assert seen["x-dm-smartcard-uuid"] == ["3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81"], seen
    assert seen["x-dm-smartcard-fascn-pi"] == ["1234567890"], seen
    assert "x-dm-smartcard-fascn" not in seen, seen


def test_identity_headers_with_underscores_never_reach_the_upstream(stack, pki):
    answer = stack.get(card=pki.card("demo-card"), headers=[("X_DM_User_Id", "admin"), ("x_dm_org_id", "other")])
    if stack.kind.startswith("envoy"):
        # headers_with_underscores_action: REJECT_REQUEST
        assert answer.status == 400, answer
        return
    assert answer.status == 200, answer
    folded = {name.replace("_", "-") for name in answer.upstream_headers()}
    values = [v for name, vs in answer.upstream_headers().items() for v in vs if name.replace("_", "-").startswith("x-dm-")]
    assert "admin" not in values and "other" not in values, answer.upstream_headers()
    assert "x-dm-user-id" in folded


def spoofed_certificate_headers(pem: bytes) -> list[tuple[str, str]]:
    """The demo card's certificate in every header a gateway here forwards one in: a card is
    public, so a client without its key can send it."""
    escaped = urllib.parse.quote(pem.decode(), safe="")
    flat = "".join(pem.decode().splitlines()[1:-1])
    return [("ssl-client-cert", escaped), ("X-Forwarded-Tls-Client-Cert", flat), ("X-Certbind-Client-Verify", "SUCCESS"),
            ("X-Forwarded-Client-Cert", f'Hash=00;Cert="{escaped}"')]


def test_certificate_headers_from_a_client_without_a_card_are_not_believed(stack, pki):
    pem = pki.pem("demo-card")
    refused(stack.get(headers=spoofed_certificate_headers(pem)), 401, "certificate_missing")
    for name, value in spoofed_certificate_headers(pem):
        underscored = [(name.replace("-", "_"), value)]
        answer = stack.get(headers=underscored)
        if stack.kind.startswith("envoy"):
            assert answer.status == 400, (name, answer)
        else:
            assert answer.status in (400, 401), (name, answer)
            assert answer.status != 200 and answer.reason in (None, "certificate_missing", "malformed_client_cert"), \
                (name, answer)


def test_a_token_bound_to_the_card_passes_and_to_another_card_is_refused(stack, pki, issuer):
    token = issuer.mint(subject="jane", cert_pem=pki.pem("demo-card"))
    answer = stack.client.get("/secure/hello", card=pki.card("demo-card"), token=token)
    assert answer.status == 200, answer
    assert answer.identity()["x-dm-token-subject"] == "jane"
    refused(stack.client.get("/secure/hello", card=pki.card("unbound-card"), token=token), 401,
            "sender_binding_mismatch")


@pytest.mark.parametrize("path", [p[0] for p in PATHS])
def test_non_canonical_paths_reach_no_weaker_mode(stack, issuer, path):
    """A token good for `/public/` and a path that folds to `/mtls/hello`: the gateway or the
    service refuses it (each gateway normalises some spellings itself, the service folds what
    it is forwarded as the filter does); never the bearer route's 200."""
    answer = stack.client.get(path, token=issuer.mint(subject="jane"))
    assert answer.status in (400, 401, 404), answer
    assert answer.reason in (None, "certificate_missing", "invalid_path"), answer


def test_no_card_is_refused_with_the_filters_challenge(stack):
    answer = stack.get()
    refused(answer, 401, "certificate_missing")
    assert 'error="certificate_missing"' in answer.headers.get("www-authenticate", ""), answer.headers


def test_unbound_card_is_refused_with_the_problem_body_relayed(stack, pki):
    refused(stack.get(card=pki.card("unbound-card")), 403, "card_not_enrolled")


def test_a_card_the_gateway_does_not_trust_never_gets_through(stack, pki):
    answer = stack.get(card=pki.card("untrusted-card"))
    if stack.kind == "nginx":
        # ssl_verify_client optional: NGINX answers a failed verification 400 itself.
        assert answer.status == 400, answer
    else:
        assert answer.tls_refused, answer


def test_a_revoked_card_is_refused_after_the_revoke(stack, own_cp, revocable):
    card = revocable[stack.kind]
    pem = card[0].read_bytes()
    own_cp.cp.bind(own_cp.admin_token, own_cp.user_id, pem)
    wait_until(lambda: stack.get(card=card).status == 200, 10, "the bind to reach the service")
    own_cp.cp.revoke(own_cp.admin_token, tokens.fingerprint_hex(pem))
    wait_until(lambda: stack.get(card=card).reason == "card_not_enrolled", 5, "the revoke to reach the service")
    refused(stack.get(card=card), 403, "card_not_enrolled")


def test_a_blocklisted_card_is_refused_after_the_block(stack, own_cp, blockable):
    card = blockable[stack.kind]
    pem = card[0].read_bytes()
    own_cp.cp.bind(own_cp.admin_token, own_cp.user_id, pem)
    wait_until(lambda: stack.get(card=card).status == 200, 10, "the bind to reach the service")
    own_cp.cp.api("POST", "/api/v1/admin/blocklist", own_cp.admin_token, {"fingerprint": tokens.fingerprint_hex(pem)})
    wait_until(lambda: stack.get(card=card).reason == "certificate_blocklisted", 5, "the block to reach the service")
    refused(stack.get(card=card), 401, "certificate_blocklisted")


def test_card_authentication_certificate_is_refused(stack, pki, issuer):
    """A Card-Auth certificate with no EKU passes every gateway's TLS (no EKU: any purpose);
    the service knows it by its cardAuth policy and refuses it (it needs no PIN), even with a
    token bound to it on a route that needs no enrolment."""
    token = issuer.mint(cert_pem=pki.pem("card-auth-policy"))
    answer = stack.client.get("/api/execute", card=pki.card("card-auth-policy"), token=token)
    assert not answer.tls_refused, answer
    refused(answer, 403, "certificate_not_allowed")


def test_a_route_constraint_refuses_the_bound_card(stack, pki):
    assert stack.get(card=pki.card("demo-card")).status == 200
    refused(stack.get("/constrained/hello", card=pki.card("demo-card")), 403, "certificate_not_allowed")


def test_nginx_unverified_certificate_counts_as_none(pki, logs, echo_port, own_cp, issuer):
    """With `ssl_verify_client optional_no_ca` NGINX lets a certificate it could not verify
    through, and `$ssl_client_verify` says FAILED: the service treats it as absent, whatever
    X-Certbind-Client-Verify the client sent."""
    stack = start_stack("nginx", "gateway-nginx-no-ca", pki, logs, echo_port, served_by(own_cp),
                        replace={"ssl_verify_client      optional;": "ssl_verify_client      optional_no_ca;"})
    try:
        held(stack, pki, issuer)
        refused(stack.get(card=pki.card("untrusted-card")), 401, "certificate_missing")
        refused(stack.get(card=pki.card("untrusted-card"), headers=[("X-Certbind-Client-Verify", "SUCCESS")]), 401,
                "certificate_missing")
    finally:
        stack.stop()


@pytest.mark.parametrize("kind", gateways.KINDS)
def test_identity_unavailable_without_a_snapshot(kind, pki, logs, echo_port, own_cp):
    """A service that holds no verified snapshot (its control plane unreachable) refuses what
    needs identity data with 503 identity_unavailable, relayed by the gateway."""
    nowhere = dict(served_by(own_cp))
    nowhere["control_plane"] = {**nowhere["control_plane"], "cluster": f"127.0.0.1:{free_port()}"}
    stack = start_stack(kind, f"gateway-{kind}-no-snapshot", pki, logs, echo_port, nowhere)
    try:
        assert not stack.authz.ready()
        refused(stack.get(card=pki.card("demo-card")), 503, "identity_unavailable")
    finally:
        stack.stop()


def test_a_control_plane_certificate_of_another_ca_is_never_believed(pki, logs, echo_port, own_cp):
    """The service fetches over TLS and checks the control plane's certificate: trusting
    another CA (the test PKI's root), it holds no snapshot and refuses 503 identity_unavailable."""
    other_ca = Path(__file__).resolve().parents[1] / "pki" / "root-ca.pem"
    stack = start_stack("nginx", "gateway-nginx-other-ca", pki, logs, echo_port, served_by(own_cp),
                        control_plane_ca=other_ca)
    try:
        wait_until(lambda: "TLS with 127.0.0.1" in stack.authz.process.log_text(), 15,
                   "the service to refuse the control plane's certificate", alive=stack.authz.process)
        assert not stack.authz.ready()
        refused(stack.get(card=pki.card("demo-card")), 503, "identity_unavailable")
    finally:
        stack.stop()


@pytest.mark.parametrize("kind", [k for k in gateways.KINDS if k != "traefik"])
def test_shipped_configuration_passes_the_gateways_own_check(kind, pki, logs):
    """`nginx -t` and `envoy --mode validate` on the rendered file (Traefik has no check mode:
    the tests above start it); a file the gateway refuses fails the check."""
    gateways.check(kind, RUN_DIR / f"check-{kind}", logs, pki.dir)
    broken = {"nginx": ("auth_request /_certbind/authz;", "auth_request;"),
              "envoy_http": ("path_prefix: /auth/envoy", "path_prefix: auth/envoy"),
              "envoy_grpc": ("include_peer_certificate: true", "include_peer_certificate: maybe")}[kind]
    with pytest.raises(RuntimeError, match="refused"):
        gateways.check(kind, RUN_DIR / f"check-{kind}-broken", logs, pki.dir, replace=dict([broken]))


def test_the_last_good_snapshot_decides_while_the_control_plane_is_stopped(pki, logs, echo_port, issuer):
    """A control plane of its own behind every gateway's service, stopped once each holds its
    snapshot: the bound card still passes and the unbound one is still refused, from the
    snapshot kept."""
    demo = start_demo(RUN_DIR / "control-plane-stopped", logs, org="stopped", user="jane",
                      name="control-plane-stopped", label="e2e", tls_dir=pki.dir)
    stacks = []
    try:
        demo.cp.bind(demo.admin_token, demo.user_id, pki.pem("demo-card"))
        demo.cp.register_issuer(demo.admin_token, tokens.ISSUER, [tokens.AUDIENCE], issuer.jwks(), scope="platform")
        for kind in gateways.KINDS:
            stacks.append(start_stack(kind, f"gateway-{kind}-stopped", pki, logs, echo_port, served_by(demo)))
            held(stacks[-1], pki, issuer)
        demo.cp.stop()
        for stack in stacks:
            assert stack.get(card=pki.card("demo-card")).status == 200, stack.kind
            refused(stack.get(card=pki.card("unbound-card")), 403, "card_not_enrolled")
            assert stack.authz.ready(), stack.kind
    finally:
        for stack in stacks:
            stack.stop()
        demo.cp.stop()
