"""Envoy's Prometheus endpoint shows the filter's counters, each moving with its outcome, and
the refusals by reason and detail as one labelled family through the shipped configuration's
`stats_tags`."""

import re

from conftest import PROMETHEUS_PREFIX, prometheus


def counters(deployment) -> dict[str, int]:
    return prometheus(deployment, "requests")


def test_prometheus_counters_follow_outcomes(dev, pki):
    before = counters(dev)
    assert "certbind_requests_allowed" in before, "no certbind counters in /stats/prometheus"
    assert "certbind_requests_denied_card_not_enrolled" in before
    dev.client.get("/mtls/hello", card=pki.card("demo-card"))
    dev.client.get("/mtls/hello", card=pki.card("demo-card"))
    dev.client.get("/mtls/hello", card=pki.card("unbound-card"))
    dev.client.get("/mtls/hello")
    after = counters(dev)
    moved = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    assert moved == {"certbind_requests_allowed": 2, "certbind_requests_denied_card_not_enrolled": 1,
                     "certbind_requests_denied_certificate_missing": 1}


def denied_total(deployment) -> dict[tuple[str, str], int]:
    text = deployment.proxy.admin("/stats/prometheus")
    prefix = re.escape(PROMETHEUS_PREFIX[deployment.artefact])
    series = re.finditer(rf'^{prefix}certbind_denied_total\{{reason="(\w+)",detail="(\w+)"\}} (\d+)$', text, re.M)
    return {(m.group(1), m.group(2)): int(m.group(3)) for m in series}


def test_refusals_by_reason_and_detail(dev, pki):
    before = denied_total(dev)
    # Every refusal has its series from the start, at zero until it happens.
    assert before.get(("certificate_not_allowed", "card_authentication")) == 0, before
    assert ("card_not_enrolled", "none") in before
    # The Card Authentication certificate without an EKU passes TLS; the filter refuses it.
    refused = dev.client.get("/mtls/hello", card=pki.card("card-auth-policy"))
    assert (refused.status, refused.reason) == (403, "certificate_not_allowed"), refused
    assert b"card_authentication" not in refused.body, "the detail reached the client"
    dev.client.get("/mtls/hello", card=pki.card("unbound-card"))
    after = denied_total(dev)
    moved = {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}
    assert moved == {("certificate_not_allowed", "card_authentication"): 1, ("card_not_enrolled", "none"): 1}
    # The log line names reason and detail, in the wasm filter's log as in the module's.
    assert "certbind: refused 403 certificate_not_allowed (detail card_authentication)" in dev.proxy.process.log_text()
