"""The control plane requiring client certificates from proxies (`tls.client_ca_file`), and
Envoy presenting one on its control-plane cluster as the shipped envoy/templates/dev.yaml
does: the proxy with the certificate of the proxies' CA holds the snapshot; one without a
certificate, or with one of another CA, is refused in the handshake and never gets one, and
neither does any other client."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from conftest import RUN_DIR, snapshot_version, wait_for_snapshot
from devstack import envoy, filterconfig
from devstack.controlplane import start_demo

FETCH_FAILURES = "wasmcustom.certbind.snapshot.fetch_failures"
CLUSTER_TLS_ERRORS = "cluster.certbind_control_plane.ssl.connection_error"


@pytest.fixture(scope="module")
def strict_cp(logs, pki, artefact):
    """A control plane that accepts only connections with a certificate of the proxies' CA
    (one per artefact the suite runs, each with its own state)."""
    name = f"control-plane-client-ca-{artefact}"
    demo = start_demo(RUN_DIR / name, logs, org="strict", user="sam", name=name, label="e2e", tls_dir=pki.dir,
                      env={"CERTBIND_TLS_CLIENT_CA_FILE": str(pki.dir / "proxy-ca.crt")})
    yield demo
    demo.cp.stop()


def deploy_shipped(deploy, strict_cp, name: str, **variation):
    """dev.yaml as shipped, with this control plane's port and pinned key."""
    certbind = envoy.Filter(pinned_key=strict_cp.public_key["public_key_pem"], env_keys=(filterconfig.CREDENTIAL_ENV,))
    return deploy(name, certbind, control_plane_port=strict_cp.cp.port,
                  env={filterconfig.CREDENTIAL_ENV: strict_cp.proxy_credential}, **variation)


def test_a_proxy_with_the_proxies_ca_certificate_holds_the_snapshot(deploy, strict_cp):
    deployment = deploy_shipped(deploy, strict_cp, "client-ca-proxy")
    assert wait_for_snapshot(deployment) > 0
    assert deployment.proxy.stats(CLUSTER_TLS_ERRORS).get(CLUSTER_TLS_ERRORS, 0) == 0


@pytest.mark.parametrize("variation", ["no_certificate", "another_ca"])
def test_a_proxy_without_the_proxies_ca_certificate_is_refused_at_tls(deploy, strict_cp, pki, variation):
    values = ({"without_proxy_certificate": True} if variation == "no_certificate"
              # A client certificate (clientAuth) of a CA the control plane does not trust.
              else {"proxy_cert": pki.dir / "untrusted-card.crt", "proxy_key": pki.dir / "untrusted-card.key"})
    deployment = deploy_shipped(deploy, strict_cp, f"client-ca-{variation}", **values)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and deployment.proxy.stats(FETCH_FAILURES).get(FETCH_FAILURES, 0) < 2:
        time.sleep(0.2)
    stats = deployment.proxy.stats()
    assert stats.get(FETCH_FAILURES, 0) >= 2, stats.get(FETCH_FAILURES)
    # Envoy counts the handshake the control plane ended on the cluster's TLS stats.
    assert stats.get(CLUSTER_TLS_ERRORS, 0) >= 1, {k: v for k, v in stats.items() if "certbind_control_plane.ssl" in k}
    assert snapshot_version(deployment) == 0
    answer = deployment.client.get("/mtls/probe")
    assert (answer.status, answer.reason) == (503, "identity_unavailable"), answer


def test_a_client_without_a_certificate_is_refused_in_the_handshake(strict_cp, pki):
    """Any client, not only a proxy: the snapshot and the admin API alike are behind the
    handshake, so no token is read before it."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    with socket.create_connection(("127.0.0.1", strict_cp.cp.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError) as refused:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                # TLS 1.3: the server's refusal of the (absent) certificate arrives after the
                # client's side of the handshake is done, with the first read.
                tls.sendall(b"GET /api/v1/snapshot HTTP/1.1\r\nHost: localhost\r\n\r\n")
                tls.recv(1)
    assert refused.value.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED", refused.value
