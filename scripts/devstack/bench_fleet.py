"""The fleet benchmark: ten thousand proxies long-polling one control plane (the optimised
build, SoftHSM2 key, SQLite, started as the development stack starts it), each with a proxy
credential of its own, over loopback.

- Revoke → every waiting long-poll answered: from the moment the revoke is sent to each
  answer's arrival, p50 / p99 / max over every poll of every round; the baseline, measured
  in the same run, is one proxy alone answered by the same kind of change.
- Memory per waiting long-poll: the control plane's resident memory with every poll waiting,
  less its resident memory just before they were opened, over the number of polls; after a
  round not measured, so what a credential's first fetch costs once is not counted. Plain
  HTTP: a TLS session per connection adds rustls' own buffers.

    python -m devstack.bench_fleet WORK_DIR [PROXIES]

prints a Markdown report. `make bench` runs it (scripts/bench.sh).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import sys
import time
from pathlib import Path

from .controlplane import start_demo, synthetic_card
from .long_polls import fleet
from .procs import wait_until

PROXIES = 10_000
ROUNDS = 3
TARGET_P99_S = 1.0
TARGET_BYTES_PER_POLL = 16 * 1024


def card(n: int) -> dict:
    return synthetic_card("fleet-bench", n)


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert m, status
    return int(m.group(1)) * 1024


def waiting(cp) -> int:
    _, _, raw = cp.request("GET", "/metrics")
    m = re.search(r"^certbind_snapshot_long_polls (\d+)$", raw.decode(), re.M)
    return int(m.group(1)) if m else 0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def add_credentials(database: Path, count: int) -> list[str]:
    secrets = [f"cbp_fleet_bench_{i:06d}_{'x' * 32}" for i in range(count)]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with sqlite3.connect(database) as db:
        db.executemany("INSERT INTO proxy_credentials (id, token_hash, label, created_at) VALUES (?, ?, ?, ?)",
                       ((f"fleet-bench-{i:06d}", hashlib.sha256(s.encode()).hexdigest(), f"edge-{i}", now)
                        for i, s in enumerate(secrets)))
    return secrets


def one_round(cp, demo, credentials: list[str], change) -> tuple[list[float], int]:
    """Every credential long-polls from the served version; once all wait, `change()` (a
    bind or a revoke); each poll's latency from the change being sent, and the control
    plane's resident memory with all of them waiting."""
    _, headers, _ = cp.request("GET", "/api/v1/snapshot", demo.proxy_credential)
    held = int({k.lower(): v for k, v in headers.items()}["x-certbind-snapshot-version"])
    address = cp.url.split("://", 1)[1]
    measured: dict = {}

    async def run() -> list[dict]:
        loop = asyncio.get_running_loop()
        all_sent = asyncio.Event()
        polls = asyncio.create_task(fleet(address, held, 55, credentials, all_sent.set))
        await all_sent.wait()
        await loop.run_in_executor(None, lambda: wait_until(lambda: waiting(cp) >= len(credentials), 120,
                                                            "every long-poll to wait"))
        measured["rss"] = rss_bytes(cp.process.popen.pid)
        measured["sent_ns"] = time.time_ns()
        await loop.run_in_executor(None, change)
        return await polls

    answers = asyncio.run(run())
    assert all(a["status"] == 200 and a["version"] and a["version"] > held for a in answers), \
        [a for a in answers if a["status"] != 200][:3]
    return [(a["arrived_ns"] - measured["sent_ns"]) / 1e9 for a in answers], measured["rss"]


def main() -> int:
    work = Path(sys.argv[1])
    proxies = int(sys.argv[2]) if len(sys.argv) > 2 else PROXIES
    demo = start_demo(work / "state", work / "logs", org="fleet", user="fleet-user", label="fleet-bench")
    cp = demo.cp
    try:
        credentials = add_credentials(work / "state" / "certbind.db", proxies)
        token, user = demo.admin_token, demo.user_id
        changes = iter(range(1_000_000))

        def bind():
            """A card bound, and its snapshot signed: the next round's polls start from it."""
            n = next(changes)
            cp.api("POST", "/api/v1/admin/smartcards", token, {"user_id": user, **card(n)})
            cp.request("GET", f"/api/v1/snapshot?after_version={cp.last_version}&wait=10", demo.proxy_credential)
            return n

        def revoke(n: int):
            return lambda: cp.api("DELETE", f"/api/v1/admin/smartcards/{card(n)['fingerprint']}", token)

        # The baseline: one proxy alone.
        alone = []
        for _ in range(ROUNDS * 10):
            latencies, _ = one_round(cp, demo, credentials[:1], revoke(bind()))
            alone += latencies
        # A round not measured: what the first poll of each credential costs once (its
        # verification remembered, the database's pages read) is not memory per waiting poll.
        one_round(cp, demo, credentials, revoke(bind()))
        everyone, per_poll = [], []
        for _ in range(ROUNDS):
            n = bind()
            before = rss_bytes(cp.process.popen.pid)
            latencies, rss = one_round(cp, demo, credentials, revoke(n))
            everyone += latencies
            per_poll.append((rss - before) / proxies)
    finally:
        cp.stop()
    p99, alone_p99 = percentile(everyone, 99), percentile(alone, 99)
    bytes_per_poll = max(per_poll)
    rounds = ", ".join(f"{b / 1024:.1f}" for b in per_poll)
    print("## A fleet's long-polls on one control plane")
    print()
    print(f"{proxies:,} proxies, each with its own credential and one long-poll, on one control plane "
          f"(optimised build, SoftHSM2, SQLite), loopback; {ROUNDS} rounds, each answered by one revoke.")
    print()
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| revoke → every long-poll answered, p50 | {percentile(everyone, 50) * 1000:.0f} ms | |")
    print(f"| revoke → every long-poll answered, p99 | {p99 * 1000:.0f} ms | ≤ {TARGET_P99_S * 1000:.0f} ms |")
    print(f"| revoke → every long-poll answered, max | {max(everyone) * 1000:.0f} ms | |")
    print(f"| baseline: one proxy alone, p99 | {alone_p99 * 1000:.0f} ms | |")
    print(f"| p99 against the baseline | {p99 / alone_p99:.1f}× | |")
    print(f"| resident memory per waiting long-poll (largest of the rounds: {rounds} KiB) | "
          f"{bytes_per_poll / 1024:.1f} KiB | ≤ {TARGET_BYTES_PER_POLL // 1024} KiB |")
    print()
    ok = p99 <= TARGET_P99_S and bytes_per_poll <= TARGET_BYTES_PER_POLL
    print(f"Targets {'met' if ok else 'NOT met'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
