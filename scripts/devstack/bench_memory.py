"""The memory benchmark: Envoy 1.40's resident memory at `--concurrency 4` holding a signed
snapshot of 1 M bindings, with certbind's dynamic module (one verified copy per process, shared
by the workers) and with the wasm filter (a copy in each worker's VM), against an Envoy with no
filter, in one run, rounds alternating. The snapshot is synthetic (the test key, synthetic
cards: `cargo run -p certbind-tests --example synthetic_snapshot`) and served the way the
control plane serves it, over TLS with the long-poll answered 304 when nothing changed.

    python -m devstack.bench_memory REPORT.md      (scripts/bench-e2e.sh runs it)

Settings: CERTBIND_BENCH_BINDINGS (default 1000000), CERTBIND_BENCH_MEMORY_ROUNDS (default 2)."""

from __future__ import annotations

import json
import os
import ssl
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import envoy, filterconfig, pki as devpki
from .bench import ROOT, http_status, xfcc
from .procs import Stack, free_port, wait_until

WORK = ROOT / "target" / "bench-memory"
CONCURRENCY = 4
SNAPSHOT_TYPE = "application/vnd.certbind.snapshot"
# Memory target: the module's process over an empty Envoy, against the snapshot's size.
TARGET_RATIO = 1.3


class SnapshotServer:
    """One signed snapshot (version 1) at every path, over HTTPS with the development PKI's
    server certificate; a fetch naming that version waits (the long-poll) and is answered 304."""

    def __init__(self, body: bytes, pki_dir: Path):
        self.body = body
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - the base class's name
                if self.headers.get("If-None-Match") == '"1"':
                    time.sleep(10)
                    self.send_response(304)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", SNAPSHOT_TYPE)
                self.send_header("ETag", '"1"')
                self.send_header("X-Certbind-Snapshot-Version", "1")
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki_dir / "server.crt", pki_dir / "server.key")
        self.http.socket = context.wrap_socket(self.http.socket, server_side=True)
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.http.shutdown()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def settled_rss(pid: int, timeout: float = 60) -> int:
    """RSS once three samples a second apart agree within 1 %."""
    samples = [rss_bytes(pid)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1)
        samples.append(rss_bytes(pid))
        last = samples[-3:]
        if len(last) == 3 and max(last) - min(last) <= 0.01 * max(last):
            return last[-1]
    return samples[-1]


def every_worker_holds_it(port: int, element: str) -> bool:
    """Requests on 32 new connections, spread over the workers, are each decided with the
    snapshot: the card is not in it (403), never 503 for want of one."""
    return all(http_status(port, "/enrolled/x", element) == 403 for _ in range(32))


def main() -> int:
    report = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "bench-report-memory.md"
    bindings = int(os.environ.get("CERTBIND_BENCH_BINDINGS", 1_000_000))
    rounds = int(os.environ.get("CERTBIND_BENCH_MEMORY_ROUNDS", 2))
    WORK.mkdir(parents=True, exist_ok=True)
    pki_dir, logs = WORK / "pki", WORK / "logs"
    devpki.generate(pki_dir)
    snapshot_file, key_file = WORK / f"snapshot-{bindings}.bin", WORK / "pinned-key.pem"
    example = ROOT / "target" / "debug" / "examples" / "synthetic_snapshot"
    print(f"bench-memory: a signed snapshot of {bindings:,} bindings", flush=True)
    subprocess.run([str(example), str(bindings), str(snapshot_file), str(key_file)], check=True, stdout=subprocess.DEVNULL)
    body = snapshot_file.read_bytes()
    element = xfcc((pki_dir / "demo-card.crt").read_bytes())
    results: dict[str, list[int]] = {"none": [], "native": [], "wasm": []}
    heap: dict[str, list[int]] = {name: [] for name in results}
    kept: dict[str, list[int]] = {name: [] for name in results}
    with Stack() as stack:
        server = SnapshotServer(body, pki_dir)
        stack.add(server.stop)
        document = filterconfig.render(
            filterconfig.policy(source={"kind": "xfcc", "trust": "trusted_proxies"}, trusted_proxies=["127.0.0.1/32"],
                                routes=[{"path": "/enrolled/*", "mode": "mtls", "require_enrolled_card": True}],
                                default_mode="mtls"),
            snapshot=filterconfig.snapshot(key_file.read_text(), "memory-bench", authority=f"127.0.0.1:{server.port}"))
        for r in range(rounds):
            for name in results:
                certbind = None if name == "none" else envoy.Filter(document, artefact=name)
                listen, admin_port = free_port(), free_port()
                config = envoy.render("bench.yaml", WORK / f"envoy-{name}.yaml", certbind=certbind, admin_port=admin_port,
                                      listen_port=listen, control_plane_port=server.port, **devpki.envoy_files(pki_dir))
                proxy = envoy.Envoy(config, logs, name=f"envoy-memory-{name}", admin_port=admin_port,
                                    concurrency=CONCURRENCY, log_level="warn").start()
                try:
                    if certbind is not None:
                        wait_until(lambda: every_worker_holds_it(listen, element), 180,
                                   f"every worker of the {name} Envoy to hold the snapshot", interval=1,
                                   alive=proxy.process)
                    rss = settled_rss(proxy.process.popen.pid)
                    memory = json.loads(proxy.admin("/memory") or "{}")
                finally:
                    proxy.stop()
                results[name].append(rss)
                heap[name].append(int(memory.get("allocated", 0)))
                kept[name].append(int(memory.get("pageheap_free", 0)))
                print(f"  round {r + 1}: {name}: RSS {rss / 2**20:.1f} MiB, heap allocated "
                      f"{heap[name][-1] / 2**20:.1f} MiB, page heap free {kept[name][-1] / 2**20:.1f} MiB", flush=True)
    write_report(report, results, heap, kept, len(body), bindings, rounds)
    print(f"bench-memory: report in {report}")
    return 0


def write_report(report: Path, results: dict[str, list[int]], heap: dict[str, list[int]], kept: dict[str, list[int]],
                 snapshot_bytes: int, bindings: int, rounds: int) -> None:
    med = {name: statistics.median(values) for name, values in results.items()}
    live = {name: statistics.median(values) for name, values in heap.items()}
    free = {name: statistics.median(values) for name, values in kept.items()}
    mib = lambda b: f"{b / 2**20:.1f}"  # noqa: E731
    lines = [
        f"## Memory: Envoy 1.40 at `--concurrency {CONCURRENCY}` holding {bindings:,} bindings", "",
        f"Resident memory (VmRSS) once every worker decides with the snapshot ({mib(snapshot_bytes)} MiB signed), "
        f"{rounds} rounds alternating, medians; \"over empty\" is the difference from an Envoy with no filter, "
        "against the snapshot's size. \"Heap\" is what Envoy's allocator (tcmalloc, which the module's allocations go "
        "through too) reports in use (`/memory` `allocated`; V8 maps the wasm VMs' memory itself, outside it): RSS also "
        "holds pages freed but kept by the allocator (`pageheap_free`), such as Envoy's buffer of the fetched "
        f"snapshot: {mib(free['native'])} MiB with the module.", "",
        "| Envoy | RSS MiB | RSS over empty MiB | × snapshot | heap MiB | heap over empty × snapshot |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("none", "no filter"), ("native", "certbind dynamic module"), ("wasm", "certbind wasm filter")):
        over = med[name] - med["none"]
        lines.append(f"| {label} | {mib(med[name])} | {mib(over)} | {over / snapshot_bytes:.2f} | {mib(live[name])} | "
                     f"{(live[name] - live['none']) / snapshot_bytes:.2f} |")
    native = (med["native"] - med["none"]) / snapshot_bytes
    wasm = (med["wasm"] - med["none"]) / snapshot_bytes
    lines += ["", f"The dynamic module's RSS is {native:.2f}× the snapshot's size over an empty Envoy (target ≤ "
              f"{TARGET_RATIO:.1f}×: {'met' if native <= TARGET_RATIO else 'NOT met'}; its heap in use "
              f"{(live['native'] - live['none']) / snapshot_bytes:.2f}×); the wasm filter's {wasm:.2f}× "
              f"({CONCURRENCY} workers, a copy in each VM), {wasm / native:.1f}× the module's.", ""]
    report.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
