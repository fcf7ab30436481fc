"""Envoy's Prometheus endpoint shows the filter's counters, each moving with its outcome."""

from conftest import prometheus


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
