"""Token issuers by owner, through Envoy: an org's issuer vouches only for tokens presented
with a certificate that resolves into that org, so a `bearer` route (no certificate, no org)
accepts platform issuers alone, and another org's card or an unbound one does not lend an
org's issuer any weight."""

import pytest

from conftest import RUN_DIR, wait_for_snapshot
from devstack import tokens

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
