"""Three control-plane replicas on one real PostgreSQL behind a real Envoy balancer
(envoy/examples/control-plane-balancer.yaml, health-checked on /readyz), under a steady write
load through the balancer and a fleet of simulated proxies long-polling through it. One
replica is killed with SIGKILL mid-load, then a second, then both are started again;
PostgreSQL is restarted once. Afterwards: every write that got a 2xx is in the database and
in the snapshot (and every acknowledged revoke in neither); the versions every proxy took are
strictly increasing; no version was served as two byte strings; every proxy and every replica
converged to one final version. And a real Envoy with the certbind filter, fetching its
snapshots through the balancer, keeps admitting the enrolled card through both kills and
refuses it once it is revoked through the one replica left."""

from __future__ import annotations

import hashlib
import json
import threading
import time

from conftest import RUN_DIR, Deployer, artefacts, wait_for_snapshot
from devstack import envoy, filterconfig
from devstack.controlplane import synthetic_card
from devstack.procs import wait_until
from devstack.replicas import Client, Fleet

PROXIES = 8
WRITERS = 3


def card(n: int) -> dict:
    return synthetic_card("fleet-e2e", n)


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.bound: set[str] = set()      # binds acknowledged and not since sent for revocation
        self.revoked: set[str] = set()    # revokes acknowledged
        self.refused = 0                  # writes not acknowledged (503s, resets)


def writer(client: Client, token: str, user: str, ledger: Ledger, stop: threading.Event, first: int):
    mine: list[str] = []
    for i in range(first, first + 1_000_000):
        if stop.is_set():
            return
        try:
            if i % 4 == 3 and mine:
                fp = mine.pop(0)
                with ledger.lock:
                    ledger.bound.discard(fp)  # unknown until the answer comes
                status, _, _ = client.request("DELETE", f"/api/v1/admin/smartcards/{fp}", token)
                with ledger.lock:
                    if status == 200:
                        ledger.revoked.add(fp)
                    else:
                        ledger.refused += 1
            else:
                fp = card(i)["fingerprint"]
                status, _, _ = client.request("POST", "/api/v1/admin/smartcards", token, {"user_id": user, **card(i)})
                with ledger.lock:
                    if status == 201:
                        ledger.bound.add(fp)
                        mine.append(fp)
                    else:
                        ledger.refused += 1
        except OSError:
            with ledger.lock:
                ledger.refused += 1
        time.sleep(0.02)


class Proxy:
    """Long-polls through the balancer from the version it holds, as the filter does."""

    def __init__(self):
        self.held = 0
        self.taken: list[int] = []
        self.bodies: dict[int, str] = {}
        self.errors = 0


def proxy_loop(client: Client, credential: str, proxy: Proxy, stop: threading.Event):
    while not stop.is_set():
        try:
            status, headers, body = client.request("GET", f"/api/v1/snapshot?after_version={proxy.held}&wait=2",
                                                   credential)
        except OSError:
            proxy.errors += 1
            time.sleep(0.05)
            continue
        if status == 200:
            version = int(headers["x-certbind-snapshot-version"])
            proxy.taken.append(version)
            proxy.bodies[version] = hashlib.sha256(body).hexdigest()
            proxy.held = max(proxy.held, version)
        elif status != 304:
            proxy.errors += 1
            time.sleep(0.05)


def enforcer(deployment, card, answers: list, stop: threading.Event):
    """The filter's decisions on the enrolled card, ten a second."""
    while not stop.is_set():
        answer = deployment.client.get("/mtls/hello", card=card)
        answers.append((answer.status, answer.reason))
        time.sleep(0.1)


def test_three_replicas_behind_envoy_survive_kills_and_a_database_restart(pki, echo_port, logs):
    fleet = Fleet.start(RUN_DIR / "fleet", logs, pki.dir, proxies=PROXIES + 1)
    client, token, user, replicas = fleet.client, fleet.token, fleet.user_id, fleet.replicas
    credentials, filter_credential = fleet.credentials[:PROXIES], fleet.credentials[PROXIES]
    # The filter's Envoy, its control plane cluster pointed at the balancer.
    deployer = Deployer(pki, echo_port, logs, fleet.port, artefacts()[0])
    enforcing = threading.Event()
    try:
        card = pki.card("demo-card")
        status, _, raw = client.request("POST", "/api/v1/admin/smartcards", token,
                                        {"user_id": user, "certificate_pem": pki.pem("demo-card").decode()})
        assert status == 201, raw
        shipped = envoy.Filter(pinned_key=fleet.public_key["public_key_pem"], env_keys=(filterconfig.CREDENTIAL_ENV,))
        filtered = deployer("fleet-filter", shipped, env={filterconfig.CREDENTIAL_ENV: filter_credential})
        wait_for_snapshot(filtered)
        wait_until(lambda: filtered.client.get("/mtls/hello", card=card).status == 200, 15, "the card to be admitted")
        ledger, stop = Ledger(), threading.Event()
        decisions: list = []
        proxies = [Proxy() for _ in credentials]
        threads = [threading.Thread(target=writer, args=(client, token, user, ledger, stop, w * 100_000))
                   for w in range(WRITERS)]
        threads += [threading.Thread(target=proxy_loop, args=(client, c, p, stop)) for c, p in zip(credentials, proxies)]
        enforcing_thread = threading.Thread(target=enforcer, args=(filtered, card, decisions, enforcing))
        for t in (*threads, enforcing_thread):
            t.start()
        try:
            time.sleep(2)
            fleet.kill(0)   # SIGKILL, mid-load
            time.sleep(2)
            fleet.kill(1)
            time.sleep(1)
            enforcing.set()
            enforcing_thread.join()
            assert decisions and all(status == 200 for status, _ in decisions), \
                [d for d in decisions if d[0] != 200][:5]
            # The revoke, through the balancer to the one replica left, reaches the filter.
            status, _, raw = client.request("DELETE", f"/api/v1/admin/smartcards/{pki.fingerprint('demo-card')}", token)
            assert status == 200, raw
            wait_until(lambda: filtered.client.get("/mtls/hello", card=card).reason == "card_not_enrolled", 15,
                       "the filter to refuse the revoked card")
            fleet.restart(0)
            fleet.restart(1)
            time.sleep(2)
            fleet.postgres.run("halt")
            time.sleep(1)
            fleet.postgres.run("start")
            time.sleep(4)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)

        with ledger.lock:
            bound, revoked = set(ledger.bound), set(ledger.revoked)
        assert len(bound) > 20, f"too few acknowledged binds ({len(bound)}, {ledger.refused} refused)"

        # Every replica and every proxy converge on one final version.
        def final():
            versions = set()
            for replica in replicas:
                status, headers, _ = replica.request("GET", "/api/v1/snapshot", credentials[0])
                if status != 200:
                    return None
                versions.add(int(headers["x-certbind-snapshot-version"]))
            return versions.pop() if len(versions) == 1 else None

        final_version = wait_until(final, 30, "the replicas to serve one version")
        status, headers, body = client.request("GET", "/api/v1/snapshot", credentials[0])
        assert status == 200 and int(headers["x-certbind-snapshot-version"]) == final_version

        # Every acknowledged write is in the database and in the snapshot.
        stored = set()
        cursor = None
        while True:
            path = "/api/v1/admin/smartcards?limit=500" + (f"&cursor={cursor}" if cursor else "")
            status, _, raw = client.request("GET", path, token)
            assert status == 200, raw
            page = json.loads(raw)
            stored |= {item["fingerprint"] for item in page["items"]}
            cursor = page.get("next_cursor")
            if not cursor:
                break
        assert bound <= stored, f"acknowledged binds missing: {sorted(bound - stored)[:5]}"
        assert not (revoked & stored), f"acknowledged revokes present: {sorted(revoked & stored)[:5]}"
        for fp in bound:
            assert bytes.fromhex(fp) in body, f"bound card {fp} is not in the final snapshot"
        for fp in revoked:
            assert bytes.fromhex(fp) not in body, f"revoked card {fp} is still in the final snapshot"

        # What the proxies saw: strictly increasing versions, one byte string per version,
        # and each one at the final version in the end.
        seen: dict[int, str] = {}
        for i, proxy in enumerate(proxies):
            assert proxy.taken == sorted(set(proxy.taken)), f"proxy {i} saw versions go down: {proxy.taken}"
            for version, digest in proxy.bodies.items():
                assert seen.setdefault(version, digest) == digest, f"version {version} served as two byte strings"
            assert len(proxy.taken) >= 3, f"proxy {i} took too few versions: {proxy.taken}"
        seen.setdefault(final_version, hashlib.sha256(body).hexdigest())
        assert seen[final_version] == hashlib.sha256(body).hexdigest()
        for i, (credential, proxy) in enumerate(zip(credentials, proxies)):
            status, headers, _ = client.request("GET", f"/api/v1/snapshot?after_version={proxy.held}&wait=5", credential)
            now = proxy.held if status == 304 else int(headers["x-certbind-snapshot-version"])
            assert now == final_version, f"proxy {i} holds {now}, not {final_version}"
    finally:
        enforcing.set()
        deployer.stop()
        fleet.stop()
