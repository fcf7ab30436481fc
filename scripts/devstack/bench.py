"""The end-to-end benchmark: requests/s and p50/p99 latency through a real Envoy 1.40
(`--concurrency 1`) driven by wrk, for Envoy alone, the minimal proxy-wasm guest (read one
header, add four), the pass-through guest, and certbind in `mtls` and
`bearer_plus_mtls_required` (warm) and with 3,000 and 30,000 distinct cards in rotation, and the
same for the dynamic module beside its own baselines (a module that does nothing, and a
pass-through module making its calls, both over certbind's ABI module);
variants alternate, round after round, in one run, first at saturation (8 connections: requests/s
and Envoy's CPU per request), then with one request in flight (the latency a filter adds, with
nothing queued). Then revocation propagation through Envoy: a revoke's 200 from the API to the
filter's refusal, over at least 100 revokes.

    python -m devstack.bench REPORT.md      (scripts/bench-e2e.sh builds and runs it)

Settings: CERTBIND_BENCH_SECONDS (per wrk run, default 5), CERTBIND_BENCH_ROUNDS (default 7;
with 3, two runs of the gateway benchmark differed by more than 5 %),
CERTBIND_BENCH_REVOKES (default 100), CERTBIND_BENCH_COMPARE (another build of certbind_filter.wasm:
its warm `mtls` and token variants run beside this build's, to weigh a change)."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from . import envoy, filterconfig, pki as devpki, tokens
from .controlplane import ControlPlane, start_demo
from .procs import Stack, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "target" / "bench-e2e"
LUA = Path(__file__).with_name("rotate.lua")
CERTBIND_ROUTES = [
    {"path": "/enrolled/*", "mode": "mtls", "require_enrolled_card": True},
    {"path": "/required/*", "mode": "bearer_plus_mtls_required"},
]


def xfcc(pem: bytes) -> str:
    """The element a TLS-terminating Envoy writes for this certificate."""
    return f'Hash={tokens.fingerprint_hex(pem)};Cert="{urllib.parse.quote(pem.decode(), safe="")}"'


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children (NGINX's master and workers)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def wrk_run(port: int, path: str, seconds: int, connections: int = 8, script: Path | None = None,
            env: dict | None = None) -> dict:
    """One wrk run (-t1) against http://127.0.0.1:port/path: requests/s, p50 and p99 in µs, and
    the number of requests; fails when any answer was not 2xx."""
    script_args = ["-s", str(script)] if script else []
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *script_args,
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr}")
    text = out.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} requests to {path} were refused:\n{text}")

    def percentile(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M).groups()
        return float(value) * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]

    requests = int(re.search(r"(\d+) requests in", text).group(1))
    return {"rate": rate, "p50": percentile("50"), "p99": percentile("99"), "requests": requests}


def wrk(port: int, path: str, xfcc_file: Path, seconds: int, bearer: str = "", pid: int | None = None,
        connections: int = 8) -> dict:
    cpu_before = cpu_seconds(pid) if pid else 0.0
    result = wrk_run(port, path, seconds, connections, LUA,
                     {"CERTBIND_XFCC_FILE": str(xfcc_file), "CERTBIND_BEARER": bearer})
    # Envoy's own CPU time per request: what the filter costs, whatever else runs on the machine.
    result["cpu"] = (cpu_seconds(pid) - cpu_before) * 1e6 / max(result["requests"], 1) if pid else float("nan")
    return result


def settings() -> tuple[int, int, int]:
    """Seconds per wrk run, rounds, revokes (CERTBIND_BENCH_SECONDS, _ROUNDS, _REVOKES)."""
    return (int(os.environ.get("CERTBIND_BENCH_SECONDS", 5)), int(os.environ.get("CERTBIND_BENCH_ROUNDS", 7)),
            int(os.environ.get("CERTBIND_BENCH_REVOKES", 100)))


def fresh_state(work: Path) -> tuple[Path, Path]:
    """Under `work`: the development PKI (kept between runs, with its card sets) and a new
    logs directory and control plane state."""
    shutil.rmtree(work / "logs", ignore_errors=True)
    shutil.rmtree(work / "control-plane", ignore_errors=True)
    devpki.generate(work / "pki")
    return work / "pki", work / "logs"


def main() -> int:
    report = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "bench-report-e2e.md"
    seconds, rounds, revokes = settings()
    pki_dir, logs = fresh_state(WORK)
    print("bench-e2e: card sets (kept in target/bench-e2e/pki)", flush=True)
    sets = {n: devpki.card_set(pki_dir, n) for n in (3000, 30000, revokes + 10)}
    demo_pem = (pki_dir / "demo-card.crt").read_bytes()
    files = {}
    for name, pems in (("one", [demo_pem]), ("3000", devpki.split_pem(sets[3000])),
                       ("30000", devpki.split_pem(sets[30000]))):
        files[name] = WORK / f"xfcc-{name}.txt"
        files[name].write_text("".join(xfcc(p) + "\n" for p in pems))
    issuer = tokens.Issuer(WORK)
    bound_token = issuer.mint(subject="bench", cert_pem=demo_pem, ttl=24 * 3600)

    with Stack() as stack:
        demo = start_demo(WORK / "control-plane", logs, org="bench", user="bench", label="bench", tls_dir=pki_dir)
        cp, key, user, admin, credential = demo.cp, demo.public_key, demo.user_id, demo.admin_token, demo.proxy_credential
        stack.add(cp.stop)
        cp.bind(admin, user, demo_pem)
        # The org's own issuer: every token here is bound to a card of that org.
        cp.register_issuer(admin, tokens.ISSUER, [tokens.AUDIENCE], issuer.jwks(), scope="org")

        certbind_config = filterconfig.render(
            filterconfig.policy(source={"kind": "xfcc", "trust": "trusted_proxies"}, trusted_proxies=["127.0.0.1/32"],
                                routes=CERTBIND_ROUTES, default_mode="mtls"),
            snapshot=filterconfig.snapshot(key["public_key_pem"], credential, authority=f"127.0.0.1:{cp.port}"))
        wasm = envoy.WASM_DIR
        # The baselines in the filter's place: none, and guests that ignore their configuration.
        builds = {
            "none": None,
            "minimal": envoy.Filter("{}", artefact="wasm", module=wasm / "certbind_minimal_guest.wasm", name="minimal"),
            "passthrough": envoy.Filter("{}", artefact="wasm", module=wasm / "certbind_passthrough_guest.wasm",
                                        name="passthrough"),
            "certbind": envoy.Filter(certbind_config, artefact="wasm"),
            # The same filter as an Envoy dynamic module (target/native/libcertbind.so), and its
            # baselines over the same ABI module: one that does nothing, one that makes its calls.
            "native": envoy.Filter(certbind_config, artefact="native"),
            "native-noop": envoy.Filter("{}", artefact="native", module=envoy.NATIVE_DIR / "libcertbind_noop_module.so",
                                        name="certbind_noop_module"),
            "native-passthrough": envoy.Filter("{}", artefact="native",
                                               module=envoy.NATIVE_DIR / "libcertbind_passthrough_module.so",
                                               name="certbind_passthrough_module"),
        }
        compare = os.environ.get("CERTBIND_BENCH_COMPARE")
        if compare:
            builds["compare"] = envoy.Filter(certbind_config, artefact="wasm", module=Path(compare).resolve())
        ports, pids = {}, {}
        for name, certbind in builds.items():
            listen, admin_port = free_port(), free_port()
            config = envoy.render("bench.yaml", WORK / f"envoy-{name}.yaml", certbind=certbind, admin_port=admin_port,
                                  listen_port=listen, control_plane_port=cp.port, **devpki.envoy_files(pki_dir))
            proxy = envoy.Envoy(config, logs, name=f"envoy-{name}", admin_port=admin_port, log_level="warn").start()
            stack.add(proxy.stop)
            ports[name] = listen
            pids[listen] = proxy.process.popen.pid
        certbind_port = ports["certbind"]
        wait_until(lambda: http_status(certbind_port, "/enrolled/x", xfcc(demo_pem)) == 200, 30,
                   "certbind to hold the snapshot")
        wait_until(lambda: http_status(ports["native"], "/enrolled/x", xfcc(demo_pem)) == 200, 30,
                   "the dynamic module to hold the snapshot")

        variants = [
            ("Envoy, no filter", ports["none"], "/bench", "one", ""),
            ("minimal guest (read 1 header, add 4)", ports["minimal"], "/bench", "one", ""),
            ("pass-through guest", ports["passthrough"], "/bench", "one", ""),
            ("certbind `mtls`, warm (bound card)", certbind_port, "/enrolled/x", "one", ""),
            ("certbind `bearer_plus_mtls_required`, warm token", certbind_port, "/required/x", "one", bound_token),
            ("certbind `mtls`, 3,000 cards in rotation", certbind_port, "/bench", "3000", ""),
            ("certbind `mtls`, 30,000 cards in rotation", certbind_port, "/bench", "30000", ""),
            (NATIVE_NOOP, ports["native-noop"], "/bench", "one", ""),
            (NATIVE_PASSTHROUGH, ports["native-passthrough"], "/bench", "one", ""),
            (NATIVE_MTLS, ports["native"], "/enrolled/x", "one", ""),
            (NATIVE_TOKEN, ports["native"], "/required/x", "one", bound_token),
            (NATIVE_ROTATION, ports["native"], "/bench", "30000", ""),
        ]
        if compare:
            wait_until(lambda: http_status(ports["compare"], "/enrolled/x", xfcc(demo_pem)) == 200, 30,
                       "the other build to hold the snapshot")
            variants += [("other build: `mtls`, warm", ports["compare"], "/enrolled/x", "one", ""),
                         ("other build: `bearer_plus_mtls_required`, warm token", ports["compare"], "/required/x", "one",
                          bound_token)]
        print(f"bench-e2e: {rounds} rounds × {len(variants)} variants × {seconds} s", flush=True)
        for _, port, path, cards, bearer in variants:  # warm-up: caches, connections, JIT
            wrk(port, path, files[cards], 2, bearer, pids[port])
        results: dict[str, list[dict]] = {v[0]: [] for v in variants}
        for r in range(rounds):
            for name, port, path, cards, bearer in variants:
                results[name].append(wrk(port, path, files[cards], seconds, bearer, pids[port]))
                last = results[name][-1]
                print(f"  round {r + 1}: {name}: {last['rate']:.0f} req/s, Envoy CPU {last['cpu']:.1f} µs/request", flush=True)

        # Latency a filter adds is read with one request in flight: at saturation, p99 is mostly
        # time queued behind the requests before it, which restates the throughput difference.
        latency_variants = [v for i, v in enumerate(variants)
                            if i < 5 or v[0] in NATIVE_LATENCY or v[0].startswith("other build")]
        print(f"bench-e2e: latency, one request in flight: {rounds} rounds × {len(latency_variants)} variants", flush=True)
        latency: dict[str, list[dict]] = {v[0]: [] for v in latency_variants}
        for r in range(rounds):
            for name, port, path, cards, bearer in latency_variants:
                latency[name].append(wrk(port, path, files[cards], seconds, bearer, pids[port], connections=1))
                last = latency[name][-1]
                print(f"  round {r + 1}: {name}: p50 {last['p50']:.0f} µs, p99 {last['p99']:.0f} µs", flush=True)

        print(f"bench-e2e: revocation propagation over {revokes} revokes", flush=True)
        delays = revocation(cp, admin, user, devpki.split_pem(sets[revokes + 10])[:revokes],
                            lambda pem: http_status(certbind_port, "/enrolled/x", xfcc(pem)))

    write_report(report, results, variants, latency, delays, seconds, rounds)
    print(f"bench-e2e: report in {report}")
    return 0


NATIVE_MTLS = "dynamic module `mtls`, warm (bound card)"
NATIVE_TOKEN = "dynamic module `bearer_plus_mtls_required`, warm token"
NATIVE_ROTATION = "dynamic module `mtls`, 30,000 cards in rotation"
NATIVE_NOOP = "do-nothing module (dynamic module floor)"
NATIVE_PASSTHROUGH = "pass-through module"
NATIVE_LATENCY = (NATIVE_NOOP, NATIVE_PASSTHROUGH, NATIVE_MTLS, NATIVE_TOKEN)


def http_status(port: int, path: str, xfcc_value: str | None = None) -> int:
    """The status of one plain-HTTP GET to 127.0.0.1:port (0 when nothing answered), with the
    XFCC element `xfcc_value` if given."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"x-forwarded-client-cert": xfcc_value} if xfcc_value is not None else {}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        connection.close()


def revocation(cp: ControlPlane, admin: str, user: str, cards: list[bytes], status) -> list[float]:
    """Binds every card, then revokes them one at a time, each 1.5 s after the previous one
    reached the decision (as isolated revokes arrive: through the outstanding long-poll);
    seconds from the API's 200 to the 403. `status(pem)`: the status a request with that card
    gets."""
    for pem in cards:
        cp.bind(admin, user, pem)
    wait_until(lambda: status(cards[-1]) == 200, 30, "the last bind to reach the decision")
    delays = []
    for pem in cards:
        time.sleep(1.5)
        cp.revoke(admin, tokens.fingerprint_hex(pem))
        acknowledged = time.monotonic()
        wait_until(lambda: status(pem) == 403, 30, "a revoke to reach the decision", interval=0.002)
        delays.append(time.monotonic() - acknowledged)
    return delays


def propagation_line(delays: list[float], where: str, refusal: str) -> str:
    """The report's sentence on revocation propagation: p50, p99 and max of `delays`."""
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"Revocation propagation {where} ({len(delays)} revokes, the API's 200 to {refusal}): "
            f"p50 {statistics.median(delays) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms "
            "(target p99 ≤ 1 s).")


def verdict(value: float, target: float) -> str:
    return f"{value:.2f}× (target ≥ {target:.2f}×: {'met' if value >= target else 'NOT met'})"


def wasm_targets(certbind_mtls: dict, certbind_token: dict, passthrough: dict) -> str:
    """The wasm filter's own targets, against the pass-through guest that makes its calls."""
    return (f"The wasm filter against the pass-through guest: `mtls` warm {verdict(certbind_mtls['rate'] / passthrough['rate'], 0.90)}, "
            f"`bearer_plus_mtls_required` {verdict(certbind_token['rate'] / passthrough['rate'], 0.85)}.")


def native_lines(med: dict, none: dict, certbind_mtls: dict, certbind_token: dict) -> str:
    """The dynamic module against its floors, the wasm filter and Envoy with no filter; and of
    Envoy's CPU per request over no filter, how much the do-nothing module (the dynamic-module
    filter itself), the calls certbind makes (the pass-through module) and certbind's own work
    take."""
    native_mtls, native_token = med[NATIVE_MTLS], med[NATIVE_TOKEN]
    noop, passthrough = med[NATIVE_NOOP], med[NATIVE_PASSTHROUGH]
    floor, calls = noop["cpu"] - none["cpu"], passthrough["cpu"] - noop["cpu"]

    def split(variant: dict) -> str:
        added = variant["cpu"] - none["cpu"]
        own = variant["cpu"] - passthrough["cpu"]
        share = (floor + calls) / added if added > 0 else float("nan")
        return (f"{added:+.1f} µs: the dynamic-module filter itself {floor:+.1f}, certbind's calls {calls:+.1f}, "
                f"certbind's own work {own:+.1f} (the floor, filter and calls, is {share:.0%} of it)")

    return "\n".join([
        "### The dynamic module", "",
        f"The same filter as an Envoy dynamic module, same run: `mtls` warm "
        f"{verdict(native_mtls['rate'] / passthrough['rate'], 0.95)} the pass-through module, "
        f"{verdict(native_mtls['rate'] / certbind_mtls['rate'], 1.6)} the wasm filter's requests/s, "
        f"{verdict(native_mtls['rate'] / none['rate'], 0.85)} Envoy with no filter; `bearer_plus_mtls_required` "
        f"{verdict(native_token['rate'] / none['rate'], 0.80)} no filter, "
        f"{native_token['rate'] / certbind_token['rate']:.2f}× the wasm filter. 30,000 cards in rotation "
        f"{verdict(med[NATIVE_ROTATION]['rate'] / native_mtls['rate'], 0.90)} its warm single card. "
        f"By CPU per request (what a saturated core would give): `mtls` {none['cpu'] / native_mtls['cpu']:.2f}× no "
        f"filter, {passthrough['cpu'] / native_mtls['cpu']:.2f}× the pass-through module, "
        f"{certbind_mtls['cpu'] / native_mtls['cpu']:.2f}× the wasm filter; token {none['cpu'] / native_token['cpu']:.2f}× "
        "no filter.", "",
        f"Envoy CPU per request over no filter, `mtls`: {split(native_mtls)}; with a token: {split(native_token)}. "
        f"The wasm filter: {certbind_mtls['cpu'] - none['cpu']:+.1f} µs in `mtls`, "
        f"{certbind_token['cpu'] - none['cpu']:+.1f} µs with a token. The do-nothing module runs at "
        f"{noop['rate'] / none['rate']:.2f}× no filter and the pass-through module at "
        f"{passthrough['rate'] / none['rate']:.2f}×: the most a module making certbind's calls can reach here.",
    ])


def write_report(report: Path, results, variants, latency, delays, seconds: int, rounds: int) -> None:
    med = {name: {k: statistics.median(r[k] for r in runs) for k in ("rate", "p50", "p99", "cpu")} for name, runs in results.items()}
    none, minimal, passthrough = (med[variants[i][0]] for i in range(3))
    lines = [
        "## End to end through Envoy 1.40 (wrk, `--concurrency 1`)", "",
        f"{rounds} rounds of {seconds} s per variant, alternating; medians. wrk -t1 -c8 over plain HTTP from "
        "127.0.0.1, the client certificate as a trusted hop's XFCC (`trusted_proxies: 127.0.0.1/32`); Envoy answers "
        "with a direct response (no upstream). Ratios are requests/s against each baseline; "
        "\"+µs\" is the added time per request over the minimal guest (1/rate difference); p50/p99 here are "
        "at saturation, mostly queueing (the latency a filter adds is in the next table). Envoy CPU is the "
        "proxy process's user + system time per request (/proc), which other load on the machine does not inflate; "
        "\"CPU × minimal\" is the minimal guest's CPU per request over the variant's (the requests/s ratio a saturated "
        "core would give).", "",
        "| variant | req/s | p50 µs | p99 µs | × no filter | × minimal | × pass-through | +µs over minimal | "
        "+p99 µs over minimal | Envoy CPU µs/req | CPU × minimal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, *_ in variants:
        m = med[name]
        lines.append(f"| {name} | {m['rate']:.0f} | {m['p50']:.0f} | {m['p99']:.0f} | {m['rate'] / none['rate']:.2f} | "
                     f"{m['rate'] / minimal['rate']:.2f} | {m['rate'] / passthrough['rate']:.2f} | "
                     f"{1e6 / m['rate'] - 1e6 / minimal['rate']:+.1f} | {m['p99'] - minimal['p99']:+.0f} | "
                     f"{m['cpu']:.1f} | {minimal['cpu'] / m['cpu']:.2f} |")
    certbind_mtls, certbind_token = med[variants[3][0]], med[variants[4][0]]
    lines += ["", "Where Envoy's CPU per request goes, over the minimal guest: the host calls certbind makes "
              f"(the pass-through guest makes the same ones with no logic) {passthrough['cpu'] - minimal['cpu']:+.1f} µs; "
              f"certbind's own work in the VM (certbind − pass-through) {certbind_mtls['cpu'] - passthrough['cpu']:+.1f} µs "
              f"in `mtls`, {certbind_token['cpu'] - passthrough['cpu']:+.1f} µs with a token. The pass-through guest alone "
              f"runs at {passthrough['rate'] / minimal['rate']:.2f}× the minimal guest: the least a filter making "
              "certbind's calls (all headers, the peer address, one remove, its identity headers, the clock, a counter) "
              "can reach here.", ""]
    lat = {name: {k: statistics.median(r[k] for r in runs) for k in ("p50", "p99")} for name, runs in latency.items()}
    floor = lat[variants[1][0]]
    lines += ["### Latency with one request in flight (wrk -c1)", "",
              f"{rounds} rounds of {seconds} s per variant, alternating; medians. With nothing queued, the difference "
              "from the minimal guest is the time the filter adds to a request (target: ≤ 50 µs added p99).", "",
              "| variant | p50 µs | p99 µs | +p50 µs over minimal | +p99 µs over minimal |",
              "|---|---:|---:|---:|---:|"]
    for name, m in lat.items():
        lines.append(f"| {name} | {m['p50']:.0f} | {m['p99']:.0f} | {m['p50'] - floor['p50']:+.0f} | "
                     f"{m['p99'] - floor['p99']:+.0f} |")
    warm = med[variants[3][0]]["rate"]
    lines += ["", f"Rotation against the warm single card: 3,000 cards {med[variants[5][0]]['rate'] / warm:.2f}×, "
              f"30,000 cards {med[variants[6][0]]['rate'] / warm:.2f}× (target at 3,000: ≥ 0.90×).", ""]
    lines += [wasm_targets(certbind_mtls, certbind_token, passthrough), "",
              native_lines(med, none, certbind_mtls, certbind_token), ""]
    if delays:
        lines += [propagation_line(delays, "through Envoy", "the filter's 403"), ""]
    report.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
