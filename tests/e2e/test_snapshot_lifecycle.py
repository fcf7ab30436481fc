"""The identity snapshot through a real Envoy: binds and revokes made through the API reach
the filter (revocation propagation measured), the last good snapshot stays in force while
the control plane is down or serves a tampered snapshot, and two workers share one fetch."""

from __future__ import annotations

import statistics
import time

import pytest

from conftest import RUN_DIR, snapshot_version, wait_for_snapshot
from devstack import filterconfig
from devstack.controlplane import start_demo
from devstack.procs import wait_until
from fake_control_plane import FakeControlPlane

REVOKES = 20


@pytest.fixture(scope="module")
def cards(pki):
    """Cards of their own for this module, one file each, none bound yet."""
    return pki.card_files(40, "lifecycle-card")


@pytest.fixture(scope="module")
def own_cp(logs, pki, artefact):
    """A control plane of this module's own, so that stopping it disturbs no other module."""
    demo = start_demo(RUN_DIR / f"control-plane-lifecycle-{artefact}", logs, org="lifecycle", user="pat",
                      name=f"control-plane-lifecycle-{artefact}", label="e2e", tls_dir=pki.dir)
    yield {"cp": demo.cp, "key": demo.public_key, "org": demo.org_id, "user": demo.user_id,
           "admin": demo.admin_token, "proxy": demo.proxy_credential}
    demo.cp.stop()


def snapshot_config(own_cp, port: int, **control_plane) -> str:
    return filterconfig.render(filterconfig.policy(), snapshot=filterconfig.snapshot(
        own_cp["key"]["public_key_pem"], own_cp["proxy"], authority=f"127.0.0.1:{port}", **control_plane))


@pytest.fixture(scope="module")
def proxy(deploy, own_cp):
    cp = own_cp["cp"]
    deployment = deploy("lifecycle", snapshot_config(own_cp, cp.port), control_plane_port=cp.port)
    wait_for_snapshot(deployment)
    return deployment


def fp(card) -> str:
    from devstack.tokens import fingerprint_hex

    return fingerprint_hex(card[0].read_bytes())


def until_status(proxy, card, status: int, timeout: float = 10) -> float:
    """Seconds until /mtls/ answers `status` for `card` (polled every 5 ms)."""
    start = time.monotonic()
    wait_until(lambda: proxy.client.get("/mtls/hello", card=card).status == status, timeout,
               f"/mtls/hello to answer {status}", interval=0.005)
    return time.monotonic() - start


def test_bind_then_revoke_propagates(proxy, own_cp, cards):
    cp, admin, user = own_cp["cp"], own_cp["admin"], own_cp["user"]
    delays = []
    for card in cards[:REVOKES]:
        assert proxy.client.get("/mtls/hello", card=card).reason == "card_not_enrolled"
        cp.bind(admin, user, card[0].read_bytes())
        until_status(proxy, card, 200)
        answer = proxy.client.get("/mtls/hello", card=card)
        assert answer.identity()["x-dm-user-id"] == user
        started = time.monotonic()
        cp.revoke(admin, fp(card))
        until_status(proxy, card, 403)
        delays.append(time.monotonic() - started)
        assert proxy.client.get("/mtls/hello", card=card).reason == "card_not_enrolled"
    delays.sort()
    p50, p99 = statistics.median(delays), delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    print(f"\nrevocation through Envoy over {len(delays)} revokes: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    (RUN_DIR / "revocation-propagation.txt").write_text(f"{len(delays)} revokes p50_ms={p50 * 1000:.1f} p99_ms={p99 * 1000:.1f}\n")
    assert p99 < 2.0, delays


def test_control_plane_down_keeps_last_good_snapshot(proxy, own_cp, cards, artefact):
    cp, admin, user = own_cp["cp"], own_cp["admin"], own_cp["user"]
    card = cards[REVOKES]
    cp.bind(admin, user, card[0].read_bytes())
    until_status(proxy, card, 200)
    version = snapshot_version(proxy)
    cp.stop()
    try:
        time.sleep(3)  # fetches fail and back off meanwhile
        for _ in range(20):
            answer = proxy.client.get("/mtls/hello", card=card)
            assert answer.status == 200, answer
        assert proxy.client.get("/mtls/hello", card=cards[REVOKES + 1]).reason == "card_not_enrolled"
        assert snapshot_version(proxy) == version
    finally:
        cp.start(f"127.0.0.1:{cp.port}", name=f"control-plane-lifecycle-{artefact}")
    # Back up: a revoke made now arrives (after the fetch back-off).
    cp.revoke(admin, fp(card))
    until_status(proxy, card, 403, timeout=70)


@pytest.fixture(scope="module")
def fake(own_cp):
    server = FakeControlPlane(own_cp["cp"], own_cp["proxy"])
    yield server
    server.close()


def test_tampered_snapshot_is_refused_last_good_kept(deploy, own_cp, fake, cards):
    cp, admin, user = own_cp["cp"], own_cp["admin"], own_cp["user"]
    deployment = deploy("fake-cp", snapshot_config(own_cp, fake.port, long_poll_seconds=1),
                        control_plane_port=fake.port)
    version = wait_for_snapshot(deployment)
    card = cards[REVOKES + 2]
    fake.tamper = True
    cp.bind(admin, user, card[0].read_bytes())
    refused = "wasmcustom.certbind.snapshot.refused."
    wait_until(lambda: sum(deployment.proxy.stats(refused).values()), 15, "a refused snapshot")
    kinds = {k[len(refused):]: v for k, v in deployment.proxy.stats(refused).items() if v}
    assert set(kinds) <= {"bad_signature", "malformed"}, kinds
    assert snapshot_version(deployment) == version
    assert deployment.client.get("/mtls/hello", card=card).reason == "card_not_enrolled"
    fake.tamper = False
    until_status(deployment, card, 200, timeout=70)
    assert snapshot_version(deployment) > version
    deployment.proxy.stop()  # the next test counts the fake's answers alone


def test_two_workers_one_fetch_same_version(deploy, own_cp, fake, cards, artefact):
    cp, admin, user = own_cp["cp"], own_cp["admin"], own_cp["user"]
    fake.tamper = False
    deployment = deploy("two-workers", snapshot_config(own_cp, fake.port, long_poll_seconds=1),
                        control_plane_port=fake.port, concurrency=2)
    before = fake.full_answers()
    wait_for_snapshot(deployment)
    card = cards[REVOKES + 3]
    cp.bind(admin, user, card[0].read_bytes())
    until_status(deployment, card, 200)
    time.sleep(1.5)  # the other worker's tick (200 ms) has long passed
    # Each connection lands on one worker; many connections reach both.
    answers = [deployment.client.get("/mtls/hello", card=card).status for _ in range(40)]
    assert answers == [200] * 40
    workers = {k: v for k, v in deployment.proxy.stats("worker_").items()
               if k.endswith("downstream_cx_total") and k.startswith(f"listener.127.0.0.1_{deployment.port}.")}
    assert len([v for v in workers.values() if v]) == 2, workers
    # One full fetch per version, whatever the number of workers: the first one, then the bind's.
    assert fake.full_answers() - before == 2, [s for s in fake.served if s[0] == 200]
    adopted = deployment.proxy.stats("wasmcustom.certbind.snapshot.adopted_from_shared").get(
        "wasmcustom.certbind.snapshot.adopted_from_shared", 0)
    if artefact == "wasm":
        # The other worker's VM copied the fetching worker's snapshot from shared data.
        assert adopted >= 1
    else:
        # One snapshot for the process, held by every worker: nothing to copy.
        assert adopted == 0
    # A revoke reaches both workers: no connection, on either, is let through afterwards.
    cp.revoke(admin, fp(card))
    until_status(deployment, card, 403)
    time.sleep(1.5)
    answers = [deployment.client.get("/mtls/hello", card=card).reason for _ in range(40)]
    assert answers == ["card_not_enrolled"] * 40
    assert fake.full_answers() - before == 3, [s for s in fake.served if s[0] == 200]
