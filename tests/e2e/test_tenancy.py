"""Token issuers by owner, through Envoy: an org's issuer vouches only for tokens presented
with a certificate that resolves into that org, so a `bearer` route (no certificate, no org)
accepts platform issuers alone, and another org's card or an unbound one does not lend an
org's issuer any weight."""

import pytest

from conftest import RUN_DIR, wait_for_snapshot
from devstack import tokens
from devstack.procs import wait_until

ORG_ISSUER = "https://issuer.demo-org.certbind.dev"


@pytest.fixture(scope="module")
def cards(pki):
    """Two cards of this module's own: one bound in the demo org, one in a second org."""
    demo, other = pki.card_files(2, "tenancy-card")
    return {"demo": demo, "other": other}


@pytest.fixture(scope="module")
def org_issuer() -> tokens.Issuer:
    return tokens.Issuer(RUN_DIR / "org-issuer")


@pytest.fixture(scope="module")
def tenancy(dev, demo, cards, org_issuer):
    """The demo org registers an issuer of its own (org scope); a second org binds a card."""
    cp = demo.cp
    cp.register_issuer(demo.admin_token, ORG_ISSUER, [tokens.AUDIENCE], org_issuer.jwks(), scope="org")
    cp.bind(demo.admin_token, demo.user_id, cards["demo"][0].read_bytes())
    other = cp.api("POST", "/api/v1/admin/orgs", demo.admin_token, {"name": "other"})["id"]
    other_admin = cp.api("POST", f"/api/v1/admin/orgs/{other}/tokens", demo.admin_token, {"label": "e2e"})["token"]
    other_user = cp.api("POST", "/api/v1/admin/users", other_admin, {"name": "olga"})["id"]
    cp.bind(other_admin, other_user, cards["other"][0].read_bytes())
    # Every answer below is given by a snapshot that holds all of the above.
    wait_for_snapshot(dev, version=cp.last_version)
    return {"other_org": other, "other_user": other_user}


def org_token(org_issuer, card=None) -> str:
    return org_issuer.mint(issuer=ORG_ISSUER, subject="jane", cert_pem=card[0].read_bytes() if card else None)


def test_org_issuer_is_refused_on_a_bearer_route(dev, tenancy, org_issuer, issuer):
    answer = dev.client.get("/public/news", token=org_token(org_issuer))
    assert (answer.status, answer.reason) == (401, "invalid_token"), answer
    # The same claims from the platform's issuer pass: the route, the audience and the
    # subject are not what refused the org's token.
    answer = dev.client.get("/public/news", token=issuer.mint(subject="jane"))
    assert answer.status == 200, answer


def test_org_issuer_is_accepted_with_a_card_of_its_org(dev, tenancy, org_issuer, issuer, demo, cards):
    card = cards["demo"]
    answer = dev.client.get("/secure/data", card=card, token=org_token(org_issuer, card))
    assert answer.status == 200, answer
    identity = answer.identity()
    assert identity["x-dm-org-id"] == demo.org_id
    assert identity["x-dm-user-id"] == demo.user_id
    assert identity["x-dm-token-subject"] == "jane"
    # An org's registration is named in the org's namespace: no org can mint another owner's
    # (issuer, subject).
    assert (identity["x-dm-token-owner"], identity["x-dm-token-issuer"]) == (
        f"org:{demo.org_id}", f"org:{demo.org_id}:{ORG_ISSUER}")
    # The platform's issuer with the same card: its own name, bare.
    answer = dev.client.get("/secure/data", card=card, token=issuer.mint(subject="jane", cert_pem=card[0].read_bytes()))
    assert answer.status == 200, answer
    identity = answer.identity()
    assert (identity["x-dm-token-owner"], identity["x-dm-token-issuer"]) == ("platform", tokens.ISSUER)


def test_org_issuer_is_refused_with_another_orgs_card(dev, tenancy, org_issuer, issuer, cards):
    card = cards["other"]
    assert dev.client.get("/mtls/hello", card=card).identity()["x-dm-org-id"] == tenancy["other_org"]
    answer = dev.client.get("/secure/data", card=card, token=org_token(org_issuer, card))
    assert (answer.status, answer.reason) == (401, "invalid_token"), answer
    platform = issuer.mint(subject="jane", cert_pem=card[0].read_bytes())
    assert dev.client.get("/secure/data", card=card, token=platform).status == 200


def test_org_issuer_is_refused_with_an_unbound_card(dev, tenancy, org_issuer, issuer, pki):
    card = pki.card("cac")
    answer = dev.client.get("/api/execute", card=card, token=org_token(org_issuer, card))
    assert (answer.status, answer.reason) == (401, "invalid_token"), answer
    assert dev.client.get("/api/execute", card=card, token=issuer.mint(subject="jane", cert_pem=pki.pem("cac"))).status == 200


# The dev PKI's PIV issuing CA, as the filter renders issuer DNs.
PIV_CA = "CN=certbind Dev PIV Issuing CA,OU=Development PKI,O=certbind,C=US"


@pytest.fixture(scope="module")
def claims(dev, demo, tenancy, pki, issuer):
    """The second org resolves its card holder Olga by a SAN rule for its own domain (assigned
    by a super-admin); an admin of the demo org, who knows only her public certificate, then
    claims it: by fingerprint alone (a thumbprint mapping) and by fields naming another issuer
    (a binding). The domain and the card are this run's own (named after the org, new each
    run): a SAN rule's domain belongs to the first owner that claims it, and the control
    plane's database outlives a run."""
    cp = demo.cp
    other = tenancy["other_org"]
    domain = f"{other.lower()}.example.mil"
    olga = pki.email_card(f"olga-{other.lower()}", f"olga@{domain}")
    cp.api("POST", f"/api/v1/admin/orgs/{other}/domains", demo.admin_token, {"domain": domain})
    other_admin = cp.api("POST", f"/api/v1/admin/orgs/{other}/tokens", demo.admin_token, {"label": "e2e-claims"})["token"]
    attacker = cp.api("POST", f"/api/v1/admin/orgs/{demo.org_id}/tokens", demo.admin_token, {"label": "e2e-claims"})["token"]
    rule = {"san": "email", "domain": domain, "issuer_dn": PIV_CA}
    sentinel = pki.email_card(f"sentinel-{other.lower()}", f"sentinel@{domain}.invalid")
    return {"other": other, "olga": olga, "email": f"olga@{domain}", "sentinel": sentinel, "other_admin": other_admin, "attacker": attacker, "rule": rule, "issuer": issuer,
            "fingerprint": tokens.fingerprint_hex(olga[0].read_bytes())}


def with_card(dev, claims, card):
    """A request with `card` and a platform token bound to it (a route that takes any card,
    enrolled or not)."""
    token = claims["issuer"].mint(subject="olga", cert_pem=card[0].read_bytes())
    return dev.client.get("/secure/data", card=card, token=token)


def settled(dev, demo, claims) -> None:
    """Waits until the worker answering requests holds every change made so far: a platform
    block of a card no one claims, made last, is seen refusing it, then its removal seen
    answering it again (the version the filter reports is its fetching context's, which the
    others adopt on their next tick)."""
    fingerprint = tokens.fingerprint_hex(claims["sentinel"][0].read_bytes())
    block = demo.cp.api("POST", "/api/v1/admin/blocklist", demo.admin_token, {"fingerprint": fingerprint, "scope": "platform"})
    wait_until(lambda: with_card(dev, claims, claims["sentinel"]).reason == "certificate_blocklisted" or None, 15,
               "the sentinel block to reach the worker", interval=0.05)
    demo.cp.api("DELETE", f"/api/v1/admin/blocklist/{block['id']}", demo.admin_token)
    wait_until(lambda: with_card(dev, claims, claims["sentinel"]).status == 200 or None, 15,
               "the sentinel block's removal to reach the worker", interval=0.05)


def olga_answer(dev, demo, claims):
    """Olga's request, once every change made so far is held."""
    wait_for_snapshot(dev, version=demo.cp.last_version)
    settled(dev, demo, claims)
    return with_card(dev, claims, claims["olga"])


def assert_answered_by_her_org(answer, claims):
    assert answer.status == 200, answer
    identity = answer.identity()
    assert identity.get("x-dm-org-id") == claims["other"], identity
    assert identity.get("x-dm-principal") == f"auth:account:org:{claims['other']}:email:{claims['email']}", identity
    assert "x-dm-user-id" not in identity, identity


def stated_claims(demo, claims) -> list[tuple[str, dict]]:
    """The demo org's claims on Olga's card, by what it can know without the card."""
    facts = ["/api/v1/admin/smartcards", {
        "user_id": demo.user_id, "fingerprint": claims["fingerprint"], "subject_dn": "CN=Olga",
        "issuer_dn": "CN=Somewhere Else,O=Elsewhere,C=US", "serial": "42",
        "not_before": "2025-01-01T00:00:00Z", "not_after": "2044-01-01T00:00:00Z"}]
    fingerprint = ["/api/v1/admin/thumbprint-mappings", {"fingerprint": claims["fingerprint"], "principal": "olga"}]
    return [tuple(fingerprint), tuple(facts)]


@pytest.mark.parametrize("kind", [0, 1], ids=["mapping by fingerprint", "binding by fields"])
@pytest.mark.parametrize("rule_first", [True, False], ids=["after her org's rule", "before it"])
def test_another_orgs_claim_without_the_certificate_never_locks_her_out(dev, demo, claims, kind, rule_first):
    cp = demo.cp
    path, body = stated_claims(demo, claims)[kind]
    rule = None
    if rule_first:
        rule = cp.api("POST", "/api/v1/admin/mapping-rules", claims["other_admin"], claims["rule"])
        assert_answered_by_her_org(olga_answer(dev, demo, claims), claims)
    made = cp.api("POST", path, claims["attacker"], body)
    # Accepted (the org's word, where nothing it can see conflicts), marked unverified.
    assert made["verified"] is False, made
    if rule is None:
        # Her org's rule may still be made: the claim rests on the other org's word alone.
        rule = cp.api("POST", "/api/v1/admin/mapping-rules", claims["other_admin"], claims["rule"])
    assert_answered_by_her_org(olga_answer(dev, demo, claims), claims)
    # The claiming org's block of the card does not reach her either; her own org's does.
    block = cp.api("POST", "/api/v1/admin/blocklist", claims["attacker"], {"fingerprint": claims["fingerprint"]})
    assert_answered_by_her_org(olga_answer(dev, demo, claims), claims)
    cp.api("DELETE", f"/api/v1/admin/blocklist/{block['id']}", claims["attacker"])
    own = cp.api("POST", "/api/v1/admin/blocklist", claims["other_admin"], {"fingerprint": claims["fingerprint"]})
    answer = olga_answer(dev, demo, claims)
    assert (answer.status, answer.reason) == (401, "certificate_blocklisted"), answer
    cp.api("DELETE", f"/api/v1/admin/blocklist/{own['id']}", claims["other_admin"])
    cp.api("DELETE", f"{path}/{claims['fingerprint']}", claims["attacker"])
    cp.api("DELETE", f"/api/v1/admin/mapping-rules/{rule['id']}", claims["other_admin"])


def test_a_claim_from_the_certificate_is_checked_against_her_orgs_rule(dev, demo, claims):
    cp = demo.cp
    rule = cp.api("POST", "/api/v1/admin/mapping-rules", claims["other_admin"], claims["rule"])
    pem = claims["olga"][0].read_bytes().decode()
    for path, body in [("/api/v1/admin/smartcards", {"user_id": demo.user_id, "certificate_pem": pem}),
                       ("/api/v1/admin/thumbprint-mappings", {"certificate_pem": pem, "principal": "olga"})]:
        status, _, raw = cp.request("POST", path, claims["attacker"], body)
        assert status == 409, raw
    assert_answered_by_her_org(olga_answer(dev, demo, claims), claims)
    cp.api("DELETE", f"/api/v1/admin/mapping-rules/{rule['id']}", claims["other_admin"])
