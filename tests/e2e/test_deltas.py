"""Snapshot deltas through a real Envoy: with a few thousand cards bound, a revoke reaches the
filter as a delta — the filter's `deltas_applied` counter in Envoy's /stats/prometheus moves,
no full snapshot is loaded, and the control plane served a few hundred bytes for it, not the
full snapshot's hundred and fifty thousand."""

from __future__ import annotations

import re
import time

import pytest

from conftest import RUN_DIR, prometheus, wait_for_snapshot
from devstack import filterconfig, pki as devpki, tokens
from devstack.controlplane import start_demo
from devstack.procs import wait_until

CARDS = 3000
# A revoke changes one binding: one bucket of the bindings section and the signed header. The
# delta chain carrying it is far below this; the full snapshot is about 52 bytes per card.
DELTA_BYTES_AT_MOST = 4096


@pytest.fixture(scope="module")
def bound(pki, logs, artefact):
    """A control plane of this module's own with CARDS cards bound to one user."""
    demo = start_demo(RUN_DIR / f"control-plane-deltas-{artefact}", logs, org="deltas", user="dana",
                      name=f"control-plane-deltas-{artefact}", label="e2e", tls_dir=pki.dir)
    bundle = devpki.card_set(pki.dir, CARDS)
    pems = devpki.split_pem(bundle)
    demo.cp.bind_all(demo.admin_token, demo.user_id, pems)
    yield demo, pems, pki.dir / f"cards-{CARDS}.key"
    demo.cp.stop()


@pytest.fixture(scope="module")
def proxy(deploy, bound):
    demo, _, _ = bound
    config = filterconfig.render(filterconfig.policy(), snapshot=filterconfig.snapshot(
        demo.public_key["public_key_pem"], demo.proxy_credential, authority=f"127.0.0.1:{demo.cp.port}"))
    deployment = deploy("deltas", config, control_plane_port=demo.cp.port)
    wait_for_snapshot(deployment, version=demo.cp.last_version, timeout=60)
    return deployment


def envoy_counters(deployment) -> dict[str, int]:
    return prometheus(deployment, "snapshot")


def served(cp) -> dict[str, int]:
    """The control plane's snapshot answers and their bytes by kind, and the version it serves."""
    status, _, body = cp.request("GET", "/metrics")
    assert status == 200, body
    text = body.decode()
    values = {"version": int(re.search(r"^certbind_snapshot_version (\d+)$", text, re.M).group(1))}
    for m in re.finditer(r'^certbind_snapshot_(answers|bytes)_total\{kind="(delta|full)"\} (\d+)$', text, re.M):
        values[f"{m.group(1)}_{m.group(2)}"] = int(m.group(3))
    return values


def settled(proxy, cp) -> None:
    """Waits until the control plane serves every change made so far and the filter holds
    that version: nothing is in transit when the counters are read."""
    def in_step():
        version = served(cp)["version"]
        return version >= cp.last_version and envoy_counters(proxy).get("certbind_snapshot_version") == version

    wait_until(in_step, 30, "the filter to hold the served version")


def test_a_revoke_at_thousands_of_bindings_is_a_small_delta(proxy, bound):
    demo, pems, key = bound
    card_path = RUN_DIR / "delta-card.crt"
    card_path.write_bytes(pems[CARDS // 2])
    card = (card_path, key)
    assert proxy.client.get("/mtls/hello", card=card).identity()["x-dm-user-id"] == demo.user_id
    # The filter holds the latest version and waits on a long-poll: what follows is the revoke's.
    settled(proxy, demo.cp)
    envoy_before, served_before = envoy_counters(proxy), served(demo.cp)
    assert served_before["answers_full"] >= 1, served_before
    full_bytes = served_before["bytes_full"] // served_before["answers_full"]
    assert full_bytes > CARDS * 52, served_before

    started = time.monotonic()
    demo.cp.revoke(demo.admin_token, tokens.fingerprint_hex(pems[CARDS // 2]))
    wait_until(lambda: proxy.client.get("/mtls/hello", card=card).reason == "card_not_enrolled", 15,
               "the revoke to reach the filter", interval=0.005)
    elapsed = time.monotonic() - started
    settled(proxy, demo.cp)

    envoy_after, served_after = envoy_counters(proxy), served(demo.cp)
    moved = {k: envoy_after[k] - envoy_before.get(k, 0) for k in envoy_after if envoy_after[k] != envoy_before.get(k, 0)}
    # One context fetched the delta and applied it; every other one (Envoy's main thread and
    # the workers each run one) applied the same delta from shared data. None loaded a full
    # snapshot, none refused anything.
    assert moved.get("certbind_snapshot_deltas_applied", 0) >= 1, moved
    assert moved["certbind_snapshot_deltas_applied"] == 1 + moved.get("certbind_snapshot_adopted_from_shared", 0), moved
    assert not [k for k in moved if k == "certbind_snapshot_full_loads" or k.startswith("certbind_snapshot_refused")], moved
    assert served_after["version"] > served_before["version"], (served_before, served_after)
    delta_answers = served_after["answers_delta"] - served_before["answers_delta"]
    delta_bytes = served_after["bytes_delta"] - served_before["bytes_delta"]
    assert delta_answers == 1, (served_before, served_after)
    assert served_after["answers_full"] == served_before["answers_full"], (served_before, served_after)
    assert 0 < delta_bytes <= DELTA_BYTES_AT_MOST, delta_bytes
    report = (f"revoke at {CARDS} bindings: delta {delta_bytes} bytes (full snapshot {full_bytes} bytes), "
              f"in force through Envoy after {elapsed * 1000:.0f} ms")
    print("\n" + report)
    (RUN_DIR / "delta-revoke.txt").write_text(report + "\n")
