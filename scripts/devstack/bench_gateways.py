"""The end-to-end benchmark of certbind-authz behind each real gateway (NGINX `auth_request`,
Traefik `forwardAuth`, Envoy `ext_authz` over HTTP and gRPC), every gateway started from its
shipped configuration (scripts/devstack/gateways.py). Per gateway, three variants alternate,
round after round, in one run:

- the gateway alone: mTLS, no authorizer (the same file with the authorization step off);
- a trivial authorizer (`allow_all`, authz/examples/allow_all.rs): 200 / OK to every check
  over the same protocol and transport, the floor any external authorizer pays;
- certbind-authz deciding a warm `mtls` card (the bound demo card on `/mtls/`);
- for Envoy, also certbind's wasm filter in place of ext_authz in the same file (the gRPC one:
  the same listener, TLS and connection manager), deciding the same card inside Envoy.

wrk cannot present a client certificate, so it drives a client-side NGINX (one worker) that
holds kept-alive mTLS connections to the gateway with the demo card; the application is the
same NGINX answering 200. That helper's cost is the same for every variant, and the CPU per
request is read for the gateway's and the authorizer's processes alone (/proc). Then
revocation propagation through NGINX: a revoke's 200 from the API to the gateway's 403.

    python -m devstack.bench_gateways REPORT.md      (scripts/bench-e2e.sh runs it)

Settings: CERTBIND_BENCH_SECONDS (per wrk run, default 5), CERTBIND_BENCH_ROUNDS (default 7;
with 3, two runs of the gateway benchmark differed by more than 5 %),
CERTBIND_BENCH_REVOKES (default 100)."""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from pathlib import Path


from . import envoy, filterconfig, gateways, pki as devpki, private
from .bench import fresh_state, http_status, propagation_line, revocation, settings, tree_cpu_seconds, wrk_run
from .controlplane import start_demo
from .procs import Process, Stack, cargo_binary, free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "target" / "bench-gateways"
PATH = "/mtls/bench"
VARIANTS = ("alone", "trivial", "certbind")
# The wasm filter beside ext_authz: in the gRPC file, whose listener is the HTTP one's too.
WASM_BESIDE = "envoy_grpc"
NAMES = {"nginx": "NGINX auth_request", "traefik": "Traefik forwardAuth", "envoy_http": "Envoy ext_authz HTTP",
         "envoy_grpc": "Envoy ext_authz gRPC"}

# The authorization step taken out of each shipped file, for the gateway alone.
WITHOUT_AUTHORIZER = {
    "nginx": {"auth_request /_certbind/authz;": "auth_request off;"},
    "traefik": {"middlewares: [certbind-clear, certbind-client-cert, certbind-authz]":
                "middlewares: [certbind-clear, certbind-client-cert]"},
    **{kind: {"route: {cluster: application}":
              "route: {cluster: application}\n                typed_per_filter_config:\n"
              "                  envoy.filters.http.ext_authz:\n"
              "                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n"
              "                    disabled: true"} for kind in ("envoy_http", "envoy_grpc")},
}


def shipped_filter_entry(shipped: Path, name: str) -> str:
    """The entry of the HTTP filter `name` in a shipped Envoy file, as written there (from its
    `- name:` line to the next entry of the same list): what a variant replaces, read from the
    file itself so the two cannot drift."""
    lines = shipped.read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.strip() == f"- name: {name}")
    indent = lines[first].index("-")
    end = next(i for i in range(first + 1, len(lines))
               if lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) <= indent)
    return "".join(lines[first:end])


def with_wasm_filter(control_plane_port: int, configuration: str) -> dict[str, str]:
    """The replacements that put certbind's wasm filter where ext_authz is, and the cluster it
    fetches its snapshot through (the bench's control plane speaks plain HTTP on loopback)."""
    # The entry as envoy/templates/dev.yaml writes it, at the same depth of the filter list.
    wasm = envoy.filter_entry("dev.yaml", envoy.Filter(configuration, artefact="wasm"))
    cluster = ("  - name: certbind_control_plane\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n"
               "      cluster_name: certbind_control_plane\n      endpoints:\n      - lb_endpoints:\n"
               "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: "
               + str(control_plane_port) + "}}}\n")
    ext_authz = shipped_filter_entry(gateways.SHIPPED[WASM_BESIDE][0], "envoy.filters.http.ext_authz")
    return {ext_authz: wasm, "  clusters:\n": "  clusters:\n" + cluster}


# One worker each, as Envoy's --concurrency 1: the figures are per core.
ONE_WORKER = {"nginx": {"worker_processes auto;": "worker_processes 1;"}}


def helper_config(out: Path, pki_dir: Path, application_port: int, targets: dict[int, int], logs: Path) -> Path:
    """The client-side NGINX: for each (front port -> gateway port) a server that proxies to
    the gateway over kept-alive mTLS with the demo card, and the application answering 200."""
    servers = []
    for front, target in targets.items():
        servers.append(f"""
    upstream gateway_{front} {{ server 127.0.0.1:{target}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{front};
        location / {{
            proxy_pass https://gateway_{front};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host localhost;
            proxy_ssl_certificate {pki_dir}/demo-card.crt;
            proxy_ssl_certificate_key {pki_dir}/demo-card.key;
            proxy_ssl_trusted_certificate {pki_dir}/ca.crt;
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;
        }}
    }}""")
    text = f"""worker_processes 1;
pid {out.parent}/helper.pid;
error_log {logs}/bench-helper-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{application_port};
        location / {{ return 200 "ok\\n"; }}
    }}{"".join(servers)}
}}
"""
    private.write(out, text)
    return out


@dataclass
class Target:
    kind: str
    variant: str
    front: int
    gateway: gateways.Gateway
    authorizer: Process | None


def main() -> int:
    report = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "bench-report-gateways.md"
    seconds, rounds, revokes = settings()
    pki_dir, logs = fresh_state(WORK)
    cards = devpki.split_pem(devpki.card_set(pki_dir, revokes + 10))[:revokes]
    card_key = pki_dir / f"cards-{revokes + 10}.key"

    with Stack() as stack:
        demo = start_demo(WORK / "control-plane", logs, org="bench", user="bench", label="bench")
        stack.add(demo.cp.stop)
        demo.cp.bind(demo.admin_token, demo.user_id, (pki_dir / "demo-card.crt").read_bytes())
        snapshot = filterconfig.snapshot(demo.public_key["public_key_pem"], demo.proxy_credential,
                                         cluster=f"127.0.0.1:{demo.cp.port}", authority=f"127.0.0.1:{demo.cp.port}")
        application = free_port()
        wasm_configuration = filterconfig.render(
            filterconfig.policy(), snapshot=filterconfig.snapshot(demo.public_key["public_key_pem"], demo.proxy_credential,
                                                                  authority=f"127.0.0.1:{demo.cp.port}"))

        trivial_ports = gateways.Ports()
        allow_all = cargo_binary("examples/allow_all", "CERTBIND_ALLOW_ALL_BIN", "certbind-authz --example allow_all")
        trivial = Process("allow-all", [str(allow_all), f"127.0.0.1:{trivial_ports.authz}",
                                        f"127.0.0.1:{trivial_ports.authz_grpc}", "1"], logs).start()
        stack.add(trivial.stop)
        wait_until(lambda: port_open(trivial_ports.authz) and port_open(trivial_ports.authz_grpc), 10,
                   "the trivial authorizer", alive=trivial)

        targets: list[Target] = []
        for kind in gateways.KINDS:
            ports = gateways.Ports(application=application)
            config = gateways.write_authz_config(WORK / kind / "authz.json", kind, snapshot=snapshot)
            authz = gateways.Authz(config, logs, ports, name=f"authz-{kind}", threads=1,
                                   binary=cargo_binary("certbind-authz", "CERTBIND_AUTHZ_BIN", "certbind-authz")).start()
            stack.add(authz.stop)
            for variant in (*VARIANTS, "wasm") if kind == WASM_BESIDE else VARIANTS:
                variant_ports = gateways.Ports(application=application, authz=ports.authz, authz_grpc=ports.authz_grpc)
                replace = dict(ONE_WORKER.get(kind, {}))
                if variant == "alone":
                    replace.update(WITHOUT_AUTHORIZER[kind])
                if variant == "wasm":
                    replace.update(with_wasm_filter(demo.cp.port, wasm_configuration))
                if variant == "trivial":
                    variant_ports.authz, variant_ports.authz_grpc = trivial_ports.authz, trivial_ports.authz_grpc
                started = gateways.start(kind, WORK / kind / variant, logs, pki_dir, variant_ports, replace=replace,
                                         name=f"{kind}-{variant}".replace("_", "-"),
                                         env={"GOMAXPROCS": "1"} if kind == "traefik" else None)
                stack.add(started.stop)
                authorizer = {"alone": None, "trivial": trivial, "certbind": authz.process, "wasm": None}[variant]
                targets.append(Target(kind, variant, free_port(), started, authorizer))

        helper = helper_config(WORK / "helper.conf", pki_dir, application, {t.front: t.gateway.port for t in targets},
                               logs)
        front = Process("bench-helper", [gateways.nginx_binary(), "-p", str(WORK), "-e",
                                         str(logs / "bench-helper-error.log"), "-c", str(helper), "-g", "daemon off;"],
                        logs).start()
        stack.add(front.stop)
        wait_until(lambda: all(port_open(t.front) for t in targets), 10, "the client-side NGINX", alive=front)
        for target in targets:
            wait_until(lambda: http_status(target.front, PATH) == 200, 30,
                       f"{target.kind} ({target.variant}) to answer 200")

        print(f"bench-gateways: {rounds} rounds × {len(targets)} variants × {seconds} s", flush=True)
        for target in targets:  # warm-up: connections, caches
            measure(target, 1)
        results: dict[tuple[str, str], list[dict]] = {(t.kind, t.variant): [] for t in targets}
        for r in range(rounds):
            for target in targets:
                result = measure(target, seconds)
                results[(target.kind, target.variant)].append(result)
                print(f"  round {r + 1}: {target.kind} {target.variant}: {result['rate']:.0f} req/s, gateway "
                      f"{result['gateway_cpu']:.1f} µs/req, authorizer {result['authorizer_cpu']:.1f} µs/req", flush=True)

        print(f"bench-gateways: revocation propagation through NGINX over {revokes} revokes", flush=True)
        nginx = next(t for t in targets if t.kind == "nginx" and t.variant == "certbind")
        card_files = []
        for i, pem in enumerate(cards):
            path = WORK / f"revoke-{i}.crt"
            path.write_bytes(pem)
            card_files.append(path)
        by_pem = dict(zip(cards, card_files))
        client = _client(nginx.gateway.port, pki_dir / "ca.crt")
        delays = revocation(demo.cp, demo.admin_token, demo.user_id, cards,
                            lambda pem: client.get("/mtls/revoke", card=(by_pem[pem], card_key)).status)

    write_report(report, results, delays, seconds, rounds)
    print(f"bench-gateways: report in {report}")
    return 0


def _client(port: int, ca: Path):
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from client import Client  # the end-to-end suite's TLS client, presenting real certificates

    return Client(port, ca)


def measure(target: Target, seconds: int) -> dict:
    """One wrk run through the helper to `target`, with the gateway's and the authorizer's CPU
    time per request."""
    gateway_pid = target.gateway.process.popen.pid
    authorizer_pid = target.authorizer.popen.pid if target.authorizer else None
    gateway_before = tree_cpu_seconds(gateway_pid)
    authorizer_before = tree_cpu_seconds(authorizer_pid) if authorizer_pid else 0.0
    result = wrk_run(target.front, PATH, seconds)
    requests = max(result["requests"], 1)
    result["gateway_cpu"] = (tree_cpu_seconds(gateway_pid) - gateway_before) * 1e6 / requests
    result["authorizer_cpu"] = ((tree_cpu_seconds(authorizer_pid) - authorizer_before) * 1e6 / requests
                                if authorizer_pid else 0.0)
    return result


def write_report(report: Path, results: dict, delays: list[float], seconds: int, rounds: int) -> None:
    med = {key: {k: statistics.median(r[k] for r in runs) for k in ("rate", "p50", "p99", "gateway_cpu", "authorizer_cpu")}
           for key, runs in results.items()}
    lines = [
        "## certbind-authz behind real gateways (wrk, one worker each)", "",
        f"{rounds} rounds of {seconds} s per variant, alternating; medians. wrk -t1 -c8 drives a client-side NGINX "
        "(one worker) that keeps mTLS connections to the gateway open with the bound demo card; the application is "
        "that NGINX answering 200. Each gateway runs its shipped configuration with one worker (NGINX "
        "`worker_processes 1`, Traefik GOMAXPROCS=1, Envoy `--concurrency 1`), the authorizers one thread. "
        "\"alone\": the same file with the authorization step off; \"trivial\": every check answered 200/OK by "
        "`allow_all` over the same transport; \"certbind\": certbind-authz deciding a warm `mtls` card. CPU is each "
        "process's user + system time per request (/proc); \"CPU × trivial\" is the gateway's plus the authorizer's "
        "CPU per request with the trivial authorizer over the variant's (the requests/s ratio two saturated cores "
        "would give, which other load on the machine does not disturb). \"wasm\": certbind's wasm filter in "
        "place of ext_authz in the gRPC file, deciding the same card inside Envoy.", "",
        "| gateway | variant | req/s | p50 µs | p99 µs | gateway CPU µs/req | authorizer CPU µs/req | × alone | × trivial "
        "| CPU × trivial |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary = []

    def cpu(m: dict) -> float:
        return m["gateway_cpu"] + m["authorizer_cpu"]

    for kind in gateways.KINDS:
        alone, trivial, certbind = (med[(kind, v)] for v in VARIANTS)
        for variant in (v for v in (*VARIANTS, "wasm") if (kind, v) in med):
            m = med[(kind, variant)]
            lines.append(f"| {NAMES[kind]} | {variant} | {m['rate']:.0f} | {m['p50']:.0f} | {m['p99']:.0f} | "
                         f"{m['gateway_cpu']:.1f} | {m['authorizer_cpu']:.1f} | {m['rate'] / alone['rate']:.2f} | "
                         f"{m['rate'] / trivial['rate']:.2f} | {cpu(trivial) / cpu(m):.2f} |")
        gap = 1e6 / certbind["rate"] - 1e6 / alone["rate"]
        floor = 1e6 / trivial["rate"] - 1e6 / alone["rate"]
        share = f"{floor / gap:.0%}" if 0 < floor <= gap else "all of it, within this run's noise"
        summary.append(f"- {NAMES[kind]}: certbind {certbind['rate'] / trivial['rate']:.2f}× the trivial authorizer "
                       f"in requests/s, {cpu(trivial) / cpu(certbind):.2f}× in CPU per request (target ≥ 0.90). "
                       f"certbind-authz's CPU {certbind['authorizer_cpu']:.1f} µs per warm check, "
                       f"the trivial authorizer's {trivial['authorizer_cpu']:.1f} µs over the same transport: the "
                       f"decision's own {certbind['authorizer_cpu'] - trivial['authorizer_cpu']:+.1f} µs (target ≤ 15 µs). "
                       f"Of the {gap:+.1f} µs per request from the gateway alone, the protocol's floor (the trivial "
                       f"authorizer) is {floor:+.1f} µs ({share}).")
        if (kind, "wasm") in med:
            wasm = med[(kind, "wasm")]
            summary.append(f"- certbind's wasm filter in the same Envoy: {wasm['rate'] / certbind['rate']:.2f}× "
                           f"certbind-authz over ext_authz gRPC in requests/s, {cpu(certbind) / cpu(wasm):.2f}× in CPU "
                           f"per request ({cpu(wasm):.1f} µs against {cpu(certbind):.1f} µs, Envoy's and the "
                           f"service's together); {wasm['rate'] / alone['rate']:.2f}× Envoy alone.")
    lines += ["", *summary, ""]
    if delays:
        lines += [propagation_line(delays, "through NGINX and certbind-authz", "NGINX's 403"), ""]
    report.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
