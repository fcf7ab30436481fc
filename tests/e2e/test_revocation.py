"""Revocation by the issuing CA's own CRL through a real Envoy. The dev PKI's PIV issuing CA is
registered; CRLs are made and signed with its key by `cryptography`: one uploaded that lists
the bound demo card refuses it (401 certificate_revoked); one served by a local HTTP server is
fetched by the control plane's poller; with the server stopped and that CRL past nextUpdate
plus the grace period, the CA's cards are refused 401 revocation_unknown."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from conftest import RUN_DIR, wait_for_snapshot
from devstack import filterconfig
from devstack.controlplane import start_demo
from devstack.pki import load_issuer
from devstack.procs import wait_until

# The poller looks every second, so a CRL served is fetched within a second or two.
POLLER = {"CERTBIND_CRL_FETCH_MIN_INTERVAL_SECONDS": "1", "CERTBIND_CRL_FETCH_MAX_INTERVAL_SECONDS": "2",
          "CERTBIND_CRL_FETCH_TIMEOUT_SECONDS": "2"}


@pytest.fixture(scope="module")
def own_cp(logs, pki, artefact):
    """A control plane of this module's own (its CAs and poller disturb no other module), the
    demo card bound in it."""
    demo = start_demo(RUN_DIR / f"control-plane-revocation-{artefact}", logs, org="revocation", user="jane",
                      name=f"control-plane-revocation-{artefact}", label="e2e", env=POLLER, tls_dir=pki.dir)
    demo.cp.bind(demo.admin_token, demo.user_id, pki.pem("demo-card"))
    yield demo
    demo.cp.stop()


@pytest.fixture(scope="module")
def proxy(deploy, own_cp):
    snapshot = filterconfig.snapshot(own_cp.public_key["public_key_pem"], own_cp.proxy_credential,
                                     authority=f"127.0.0.1:{own_cp.cp.port}")
    deployment = deploy("revocation", filterconfig.render(filterconfig.policy(), snapshot=snapshot),
                        control_plane_port=own_cp.cp.port)
    wait_for_snapshot(deployment)
    return deployment


def make_crl(pki, number: int, revoked: list[int], this_update: dt.datetime, next_update: dt.datetime) -> bytes:
    """A CRL of the dev PIV issuing CA, DER, signed with its key."""
    ca = load_issuer(pki.dir, "piv-issuing-ca")
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.name)
               .last_update(this_update).next_update(next_update)
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False))
    for serial in revoked:
        entry = (x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(this_update)
                 .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False).build())
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def upload(own_cp, crl: bytes) -> dict:
    request = urllib.request.Request(own_cp.cp.url + "/api/v1/admin/crls", data=crl, method="POST")
    request.add_header("Authorization", f"Bearer {own_cp.admin_token}")
    request.add_header("Content-Type", "application/pkix-crl")
    with urllib.request.urlopen(request, timeout=10, context=own_cp.cp.ssl_context) as r:
        return json.loads(r.read())


def until(proxy, card, status: int, reason: str | None, timeout: float = 15) -> None:
    def answered():
        answer = proxy.client.get("/mtls/hello", card=card)
        return (answer.status, answer.reason) == (status, reason) or None

    wait_until(answered, timeout, f"/mtls/hello to answer {status} {reason}", interval=0.05)


class Point:
    """A CRL distribution point on a free loopback port."""

    def __init__(self):
        self.crl = b""
        point = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the standard library's name)
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", str(len(point.crl)))
                self.end_headers()
                self.wfile.write(point.crl)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/piv-issuing-ca.crl"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_cas_own_crl_refuses_through_envoy(proxy, own_cp, pki):
    cp, token = own_cp.cp, own_cp.admin_token
    card = pki.card("demo-card")
    until(proxy, card, 200, None)
    ca_pem = pki.pem("piv-issuing-ca").decode()
    ca = cp.api("POST", "/api/v1/admin/cas", token, {"certificate_pem": ca_pem, "require_fresh_crl": False})
    ca_path = f"/api/v1/admin/cas/{ca['key_id']}"
    serial = x509.load_pem_x509_certificate(pki.pem("demo-card")).serial_number
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

    # An uploaded CRL listing the demo card: refused by the filter.
    taken = upload(own_cp, make_crl(pki, 1, [serial, 0x7777], now - dt.timedelta(minutes=5), now + dt.timedelta(days=7)))
    assert (taken["changed"], taken["added"]) == (True, 2)
    until(proxy, card, 401, "certificate_revoked")
    # Another card of the same CA is not on it.
    until(proxy, pki.card("cac"), 403, "card_not_enrolled")

    # A CRL served over HTTP, fetched by the poller: the card is released, and from now on the
    # CA requires a fresh CRL, with one second of grace past nextUpdate.
    point = Point()
    stale_at = time.time() + 8
    point.crl = make_crl(pki, 2, [0x7777], now - dt.timedelta(seconds=1),
                         dt.datetime.fromtimestamp(stale_at - 1, dt.timezone.utc).replace(microsecond=0))
    cp.api("PATCH", ca_path, token, {"require_fresh_crl": True, "grace_period_seconds": 1, "crl_urls": [point.url]})
    until(proxy, card, 200, None, timeout=6)
    fetched = cp.api("GET", ca_path, token)
    assert fetched["crl"]["crl_number"] == "2" and fetched["crl"]["source"] == "fetch", fetched
    assert fetched["fetches"][0]["last_result"] in ("updated", "unchanged"), fetched

    # The server goes away; past nextUpdate plus grace no fresh CRL is held: fail closed.
    point.stop()
    until(proxy, card, 401, "revocation_unknown", timeout=stale_at - time.time() + 10)
    assert time.time() >= stale_at - 1
    failing = cp.api("GET", ca_path, token)
    assert failing["crl"]["status"] == "stale", failing
    wait_until(lambda: cp.api("GET", ca_path, token)["fetches"][0]["failures"] >= 1 or None, 10, "a failed fetch recorded")
    status, _, metrics = cp.request("GET", "/metrics")
    assert status == 200
    assert f'certbind_ca_crl_fresh{{ca="{ca["key_id"]}"'.encode() in metrics
