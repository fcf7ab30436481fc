"""The replicas benchmark: three control-plane replicas (the optimised build) on one PostgreSQL
behind the Envoy balancer example (devstack.replicas), everything through the balancer over
TLS on loopback.

- A replica killed (SIGKILL) under proxies long-polling and changes every 250 ms: the longest
  time any proxy went without an answered fetch (balancer health check included), and the
  propagation of the changes made from the kill on (from a change's 2xx to each proxy
  holding its version), p50/p99 — against the same measures over the seconds before the kill,
  the baseline of the same run.
- Bind throughput with three replicas against one (the other two stopped), each over the same
  seconds with the same writers, and where its time goes: each process's CPU seconds per bind
  (every replica, PostgreSQL's server and backends, the balancer, the writers) from /proc, the
  machine's busy share of its cores over the phase from /proc/stat, and what PostgreSQL's
  backends were doing (pg_stat_activity sampled: waiting on the version row's lock, waiting
  on the replica inside a transaction, flushing a commit, running).

    python -m devstack.bench_failover WORK_DIR [--throughput-only]

prints a Markdown report. `make bench` runs it (scripts/bench.sh); `--throughput-only` runs
the throughput phase alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from . import pki as devpki
from .controlplane import synthetic_card
from .procs import wait_until
from .replicas import Fleet

PROXIES = 40
WRITERS = 8
THROUGHPUT_SECONDS = 6.0
BEFORE_KILL = 4.0
AFTER_KILL = 6.0
CHANGE_EVERY = 0.25
TARGET_GAP_S = 2.0
TARGET_PROPAGATION_P99_S = 2.0
TARGET_SPEEDUP = 1.5


def card(n: int) -> dict:
    return synthetic_card("bench-failover", n)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_EVERY_S = 0.05


def process_ticks(pid: int) -> tuple[int, int, int] | None:
    """(utime + stime, the waited-for children's cutime + cstime, parent pid) of a live process,
    every thread included; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it are plain numbers.
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]), int(fields[1])


def tree_ticks(root: int) -> int | None:
    """CPU ticks of `root` and its children: the live ones, and through the root's cutime
    those it has already reaped (PostgreSQL's backends come and go with connections)."""
    own = process_ticks(root)
    if own is None:
        return None
    total = own[0] + own[1]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != root:
            child = process_ticks(int(entry))
            if child is not None and child[2] == root:
                total += child[0]
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, all) ticks over every core since boot, from /proc/stat's first line; idle and
    iowait are the not-busy ones."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


class CpuMeter:
    """The CPU every process of the benchmark spends between `start` and `stop`."""

    def __init__(self, fleet: Fleet, postmaster: int):
        def pid(process) -> int | None:
            return process.popen.pid if process is not None and process.alive() else None

        self.roots: dict[str, tuple[int | None, bool]] = {
            **{f"replica {chr(ord('a') + i)}": (pid(r.process), False) for i, r in enumerate(fleet.replicas)},
            "PostgreSQL (server and its backends)": (postmaster, True),
            "Envoy (the balancer)": (pid(fleet.balancer.process), False),
            f"load generator ({WRITERS} writer threads, Python)": (os.getpid(), False),
        }

    def read(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for name, (pid, tree) in self.roots.items():
            if pid is None:
                out[name] = None
            elif tree:
                out[name] = tree_ticks(pid)
            else:
                ticks = process_ticks(pid)
                out[name] = None if ticks is None else ticks[0]
        return out

    def start(self) -> None:
        self.before, self.machine_before, self.wall_before = self.read(), machine_ticks(), time.monotonic()

    def stop(self) -> "CpuUse":
        after, (busy, total), wall = self.read(), machine_ticks(), time.monotonic()
        seconds = {name: None if after[name] is None or self.before[name] is None
                   else (after[name] - self.before[name]) / TICKS for name in after}
        return CpuUse(seconds, (busy - self.machine_before[0]) / TICKS, (total - self.machine_before[1]) / TICKS,
                      wall - self.wall_before)


class CpuUse:
    def __init__(self, seconds: dict[str, float | None], busy: float, total: float, wall: float):
        self.seconds, self.busy, self.total, self.wall = seconds, busy, total, wall

    @property
    def ours(self) -> float:
        return sum(v for v in self.seconds.values() if v is not None)


class BackendSampler:
    """What the database's client backends are doing, sampled every SAMPLE_EVERY_S by one
    psql session of its own (psql's \\watch): state and wait event, counted. Its backend's CPU,
    one small query a sample, counts under PostgreSQL's."""

    # One 'sample' row per sample, so samples with no busy backend are counted too.
    QUERY = ("SELECT 'sample' UNION ALL SELECT state || ' / ' || coalesce(wait_event_type || ':' || wait_event, 'on CPU') "
             "FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
             "AND datname = current_database() AND state <> 'idle'")

    def __init__(self, url: str, out: Path):
        self.url, self.out = url, out
        self.popen: subprocess.Popen | None = None

    def start(self) -> None:
        psql = shutil.which("psql")
        if psql is None:
            return
        # \watch repeats the query in the buffer it ends, so both go in one script line.
        script = self.out.with_suffix(".sql")
        script.write_text(f"{self.QUERY} \\watch {SAMPLE_EVERY_S}\n")
        with open(self.out, "wb") as handle:
            self.popen = subprocess.Popen([psql, "-X", "-At", "-d", self.url, "-f", str(script)],
                                          stdout=handle, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def stop(self) -> Counter | None:
        """Each state / wait event's count, and 'sample' the number of samples."""
        if self.popen is None:
            return None
        self.popen.terminate()
        self.popen.wait(5)
        return Counter(line for line in self.out.read_text().splitlines() if line)


def binds(fleet: Fleet, seconds: float, first: int) -> int:
    stop, counts = threading.Event(), [0] * WRITERS

    def write(w: int):
        n = first + w * 1_000_000
        while not stop.is_set():
            status, _, _ = fleet.client.request("POST", "/api/v1/admin/smartcards", fleet.token,
                                                {"user_id": fleet.user_id, **card(n)})
            n += 1
            if status == 201:
                counts[w] += 1

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts)


def measured_binds(fleet: Fleet, seconds: float, first: int, postmaster: int,
                   samples: Path) -> tuple[int, CpuUse, Counter | None]:
    meter, sampler = CpuMeter(fleet, postmaster), BackendSampler(fleet.postgres.url, samples)
    sampler.start()
    meter.start()
    count = binds(fleet, seconds, first)
    use = meter.stop()
    return count, use, sampler.stop()


class Watch:
    """One proxy: when each fetch was answered, and when it first held each version."""

    def __init__(self):
        self.answered: list[float] = []
        self.held_at: list[tuple[float, int]] = []
        self.held = 0


def poll(fleet: Fleet, credential: str, watch: Watch, stop: threading.Event):
    while not stop.is_set():
        try:
            status, headers, _ = fleet.client.request("GET", f"/api/v1/snapshot?after_version={watch.held}&wait=1",
                                                      credential, timeout=5)
        except OSError:
            time.sleep(0.01)
            continue
        now = time.monotonic()
        if status in (200, 304):
            watch.answered.append(now)
        if status == 200:
            watch.held = max(watch.held, int(headers["x-certbind-snapshot-version"]))
            watch.held_at.append((now, watch.held))
        elif status != 304:
            time.sleep(0.01)


def postmaster_pid(fleet: Fleet) -> int:
    """The PostgreSQL server's pid, the first line of its data directory's postmaster.pid."""
    return int((fleet.postgres.directory / "data" / "postmaster.pid").read_text().split()[0])


def main() -> int:
    work = Path(sys.argv[1]).resolve()  # the database server runs from a directory of its own
    throughput_only = "--throughput-only" in sys.argv[2:]
    tls_dir = work / "pki"
    devpki.generate(tls_dir)
    fleet = Fleet.start(work / "fleet", work / "logs", tls_dir, proxies=PROXIES)
    try:
        # Throughput: three replicas, then one (two stopped and out of the balancer).
        postmaster = postmaster_pid(fleet)
        three, three_use, three_waits = measured_binds(fleet, THROUGHPUT_SECONDS, 0, postmaster,
                                                       work / "backends-three.txt")
        for i in (1, 2):
            fleet.replicas[i].stop()
        time.sleep(1.5)  # the health checks take them out
        one, one_use, one_waits = measured_binds(fleet, THROUGHPUT_SECONDS, 50_000_000, postmaster,
                                                 work / "backends-one.txt")
        if throughput_only:
            report_throughput(three, three_use, three_waits, one, one_use, one_waits)
            return 0
        for i in (1, 2):
            fleet.restart(i)
        wait_until(lambda: all(r.request("GET", "/readyz")[0] == 200 for r in fleet.replicas), 30, "the replicas")
        time.sleep(1.5)

        # Failover: proxies long-polling, a change every 250 ms, replica a killed.
        stop = threading.Event()
        watches = [Watch() for _ in fleet.credentials]
        threads = [threading.Thread(target=poll, args=(fleet, c, w, stop)) for c, w in zip(fleet.credentials, watches)]
        for t in threads:
            t.start()
        changes: list[tuple[float, int]] = []
        start = time.monotonic()
        killed_at = None
        n = 90_000_000
        while time.monotonic() - start < BEFORE_KILL + AFTER_KILL:
            if killed_at is None and time.monotonic() - start >= BEFORE_KILL:
                fleet.kill(0)
                killed_at = time.monotonic()
            status, headers, _ = fleet.client.request("POST", "/api/v1/admin/smartcards", fleet.token,
                                                      {"user_id": fleet.user_id, **card(n)})
            n += 1
            if status == 201:
                changes.append((time.monotonic(), int(headers["certbind-snapshot-version"])))
            time.sleep(CHANGE_EVERY)
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join()
    finally:
        fleet.stop()

    def gaps(after: float, before: float) -> float:
        longest = 0.0
        for w in watches:
            times = [t for t in w.answered if after <= t <= before]
            edges = [after, *times, before]
            longest = max(longest, max(b - a for a, b in zip(edges, edges[1:])))
        return longest

    def propagation(after: float, before: float) -> list[float]:
        out = []
        for at, version in changes:
            if not after <= at < before:
                continue
            for w in watches:
                reached = next((t for t, held in w.held_at if held >= version), None)
                if reached is not None:
                    out.append(max(0.0, reached - at))
        return out

    assert killed_at is not None
    end = killed_at + AFTER_KILL
    gap_before, gap_kill = gaps(start, killed_at), gaps(killed_at, end)
    before, during = propagation(start, killed_at), propagation(killed_at, end - 1)
    print("## Control-plane replicas behind the balancer")
    print()
    print(f"Three replicas (optimised build) on one PostgreSQL behind Envoy (envoy/examples/"
          f"control-plane-balancer.yaml, /readyz checked twice a second), TLS on loopback; {PROXIES} proxies "
          f"long-polling through it, a change every {CHANGE_EVERY * 1000:.0f} ms; replica a killed with SIGKILL. "
          f"Everything shares this machine's {__import__('os').cpu_count()} cores.")
    print()
    print("| measure | before the kill (baseline) | from the kill on | target |")
    print("|---|---|---|---|")
    print(f"| longest time a proxy went without an answered fetch | {gap_before * 1000:.0f} ms | "
          f"{gap_kill * 1000:.0f} ms | ≤ {TARGET_GAP_S * 1000:.0f} ms |")
    print(f"| change → proxy holds it, p50 | {percentile(before, 50) * 1000:.0f} ms | "
          f"{percentile(during, 50) * 1000:.0f} ms | |")
    print(f"| change → proxy holds it, p99 | {percentile(before, 99) * 1000:.0f} ms | "
          f"{percentile(during, 99) * 1000:.0f} ms | ≤ {TARGET_PROPAGATION_P99_S * 1000:.0f} ms |")
    print()
    report_throughput(three, three_use, three_waits, one, one_use, one_waits)
    ok = gap_kill <= TARGET_GAP_S and percentile(during, 99) <= TARGET_PROPAGATION_P99_S
    print()
    print(f"Failover targets {'met' if ok else 'NOT met'}; throughput target "
          f"{'met' if three / one >= TARGET_SPEEDUP else 'NOT met'}.")
    return 0


def report_throughput(three: int, three_use: CpuUse, three_waits: Counter | None,
                      one: int, one_use: CpuUse, one_waits: Counter | None) -> None:
    cores = os.cpu_count() or 1
    print("| binds through the balancer | binds/s | |")
    print("|---|---|---|")
    print(f"| one replica (baseline) | {one / one_use.wall:.0f} | |")
    print(f"| three replicas | {three / three_use.wall:.0f} | "
          f"{(three / three_use.wall) / (one / one_use.wall):.2f}× (target ≥ {TARGET_SPEEDUP}×) |")
    print()
    print(f"{WRITERS} writers, {THROUGHPUT_SECONDS:.0f} s each. Every bind is one PostgreSQL transaction "
          "(the row, the audit row, the snapshot log, the version bump, serialised on the version's row lock) "
          "and, on the replica that took it, one signature of a new snapshot version; on a machine whose cores "
          "the replicas, PostgreSQL, Envoy and the writers all share, more replicas add no CPU, so the ratio "
          "says what the shared commit and the shared cores allow here, not on separate hosts.")
    print()
    print("Where a bind's time goes: CPU milliseconds per bind of each process over the phase "
          "(/proc/PID/stat, every thread; PostgreSQL's backends and the server together), "
          "and the machine's cores busy over the phase (/proc/stat).")
    print()
    print("| process | one replica, ms CPU/bind | three replicas, ms CPU/bind |")
    print("|---|---|---|")

    def per_bind(use: CpuUse, name: str, count: int) -> str:
        value = use.seconds.get(name)
        return "stopped" if value is None else f"{value * 1000 / max(count, 1):.2f}"

    for name in three_use.seconds:
        print(f"| {name} | {per_bind(one_use, name, one)} | {per_bind(three_use, name, three)} |")
    print(f"| all of the above | {one_use.ours * 1000 / max(one, 1):.2f} | "
          f"{three_use.ours * 1000 / max(three, 1):.2f} |")
    print(f"| everything else on the machine (other work sharing it) | "
          f"{max(0.0, one_use.busy - one_use.ours) * 1000 / max(one, 1):.2f} | "
          f"{max(0.0, three_use.busy - three_use.ours) * 1000 / max(three, 1):.2f} |")
    print()
    print("| over the phase | one replica | three replicas |")
    print("|---|---|---|")
    print(f"| machine busy, share of its {cores} cores | {one_use.busy / one_use.total:.0%} | "
          f"{three_use.busy / three_use.total:.0%} |")
    print(f"| this benchmark's processes, cores used | {one_use.ours / one_use.wall:.2f} | "
          f"{three_use.ours / three_use.wall:.2f} |")
    print(f"| other work, cores used | {max(0.0, one_use.busy - one_use.ours) / one_use.wall:.2f} | "
          f"{max(0.0, three_use.busy - three_use.ours) / three_use.wall:.2f} |")
    if one_waits is not None and three_waits is not None:
        print()
        print(f"What PostgreSQL's busy client backends were doing, pg_stat_activity sampled every "
              f"{SAMPLE_EVERY_S * 1000:.0f} ms (share of backend samples; \"idle in transaction / "
              "Client:ClientRead\" is a transaction open while its replica works or the answer travels, "
              "Lock:transactionid / Lock:tuple the wait on the version row, IO:WALSync and LWLock:WALWrite "
              "the commit's flush):")
        print()
        print("| state / wait event | one replica | three replicas |")
        print("|---|---|---|")
        one_samples, three_samples = one_waits.pop("sample", 0), three_waits.pop("sample", 0)
        one_all, three_all = max(1, sum(one_waits.values())), max(1, sum(three_waits.values()))
        for key, _ in (one_waits + three_waits).most_common(8):
            print(f"| {key} | {one_waits[key] / one_all:.0%} | {three_waits[key] / three_all:.0%} |")
        print(f"| busy backends per sample, on average ({one_samples} and {three_samples} samples) | "
              f"{one_all / max(1, one_samples):.1f} | {three_all / max(1, three_samples):.1f} |")


if __name__ == "__main__":
    sys.exit(main())
