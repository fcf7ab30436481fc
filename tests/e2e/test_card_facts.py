"""What the card says, end to end: the control plane shows the demo card's facts as it bound it,
and a policy that forwards chosen facts (`forward_card_facts`) has Envoy's filter set them
upstream from the same certificate, while a client's own copies, in any spelling, never reach
the upstream."""

import pytest

from conftest import wait_for_snapshot
from devstack import filterconfig

# The demo card (scripts/devstack/pki.py): FASC-N agency 9999, system 9999, credential 999999,
# CS 1, ICI 1, PI 1234567890, OC 1, OI 1223, POA 2; UPN 1234567890@mil; the card UUID.
UPN = "1234567890@mil"
UUID = "3f2b6c1e-8a4d-4e2f-9b7a-1c5d0e6f7a81"
FASCN = "99999999999999111234567890112232"
PI = "1234567890"


@pytest.fixture(scope="module")
def forwarding(deploy, demo):
    """The development deployment (snapshot from the control plane) with a policy that forwards
    the UPN, the card UUID and the FASC-N's PI everywhere, and a route that forwards none."""
    routes = filterconfig.DEMO_ROUTES + [{"path": "/plain/*", "mode": "mtls", "forward_card_facts": []}]
    policy = filterconfig.policy(routes=routes, forward_card_facts=["upn", "uuid", "fascn_pi"])
    source = demo.snapshot_source(credential_env=filterconfig.CREDENTIAL_ENV)
    deployment = deploy("card-facts", filterconfig.render(policy, snapshot=source),
                        env={filterconfig.CREDENTIAL_ENV: demo.proxy_credential})
    wait_for_snapshot(deployment)
    return deployment


def test_the_control_plane_shows_what_it_read_from_the_card(demo, pki):
    card = demo.cp.api("GET", f"/api/v1/admin/smartcards/{pki.fingerprint('demo-card')}", demo.admin_token)
    facts = card["facts"]
    assert facts["certificate_type"] == "piv_authentication"
    assert (facts["upns"], facts["card_uuid"]) == ([UPN], UUID)
    assert facts["uris"] == [f"urn:uuid:{UUID}"]
    assert facts["fascn"] == {
        "digits": FASCN, "agency_code": "9999", "system_code": "9999", "credential_number": "999999",
        "credential_series": "1", "individual_credential_issue": "1", "person_identifier": PI,
        "organizational_category": "1", "organizational_identifier": "1223", "association_category": "2",
    }
    assert facts["policy_oids"] == ["2.16.840.1.101.3.2.1.3.13"]
    assert facts["public_key"] == {"algorithm": "EC", "curve": "P-256", "bits": 256}


def test_envoy_forwards_the_chosen_facts_and_never_the_clients(forwarding, pki):
    spoofed = [("X-DM-SmartCard-UPN", "admin@mil"), ("x-dm-smartcard-fascn-pi", "0000000001"),
               ("X-DM-Smartcard-FASCN", "0" * 32)]
    answer = forwarding.client.get("/mtls/hello", card=pki.card("demo-card"), headers=spoofed)
    assert answer.status == 200, answer
    received = answer.upstream_headers()
    assert received["x-dm-smartcard-upn"] == [UPN]
    assert received["x-dm-smartcard-uuid"] == [UUID]
    assert received["x-dm-smartcard-fascn-pi"] == [PI]
    # Not chosen: the client's copy is removed, and nothing set in its place.
    assert "x-dm-smartcard-fascn" not in received
    assert answer.identity()["x-dm-smartcard-fingerprint"] == pki.fingerprint("demo-card")


def test_a_route_that_forwards_none_removes_the_clients_copies(forwarding, pki):
    spoofed = [("X-DM-SmartCard-UUID", "00000000-0000-0000-0000-000000000000"), ("x-dm-smartcard-upn", "admin@mil")]
    answer = forwarding.client.get("/plain/hello", card=pki.card("demo-card"), headers=spoofed)
    assert answer.status == 200, answer
    received = answer.upstream_headers()
    assert "x-dm-smartcard-uuid" not in received and "x-dm-smartcard-upn" not in received
    assert answer.identity()["x-dm-smartcard-fingerprint"] == pki.fingerprint("demo-card")


def test_a_cac_without_fascn_forwards_only_its_upn(forwarding, pki, issuer):
    """The CAC-shaped card carries a UPN but no FASC-N or UUID (unbound: on a route that needs
    no enrolment, with a token bound to it)."""
    token = issuer.mint(cert_pem=pki.pem("cac"))
    answer = forwarding.client.get("/api/execute", card=pki.card("cac"), token=token,
                                   headers=[("x-dm-smartcard-uuid", UUID)])
    assert answer.status == 200, answer
    received = answer.upstream_headers()
    assert received["x-dm-smartcard-upn"] == [UPN]
    assert "x-dm-smartcard-uuid" not in received and "x-dm-smartcard-fascn-pi" not in received
