"""`make run`: the whole development stack in the foreground, until Ctrl-C.

State lives under .dev/ (git-ignored) and is reused by the next run: the PKI, the SoftHSM2
token and signing key, the SQLite database, the demo org, user and admin token, the demo
issuer's key. Ports: Envoy https://localhost:8443 (admin 127.0.0.1:9901), the control plane
http://127.0.0.1:8080; override with CERTBIND_DEV_HTTPS_PORT, CERTBIND_DEV_ADMIN_PORT,
CERTBIND_DEV_CONTROL_PLANE_PORT.

CERTBIND_DEV_REPLICAS=3 runs three control-plane replicas on a PostgreSQL of their own (under
.dev/fleet and .run/dev-postgres, started afresh each run) behind the Envoy balancer example
(envoy/examples/control-plane-balancer.yaml), and the filter fetches through the balancer:
kill a replica (`kill -9` one of the `certbind serve` processes) and the filter carries on.

CERTBIND_GATEWAY=nginx or traefik (or envoy_http, envoy_grpc: Envoy's ext_authz) puts that
gateway on the HTTPS port instead, started from its shipped configuration (gateways/,
envoy/ext-authz/) with only paths and ports changed, in front of certbind-authz on
127.0.0.1:9191 (gRPC 9192; CERTBIND_DEV_AUTHZ_PORT, CERTBIND_DEV_AUTHZ_GRPC_PORT).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from . import envoy, filterconfig, gateways, pki, private, tokens
from .controlplane import ApiError, start_demo
from .replicas import Fleet
from .procs import Process, Stack, port_open, wait_until

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".dev"


def port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def remembered_accounts() -> Path:
    """.dev/demo.json: the demo org, user, super-admin token and proxy credential, created by
    the first run. A file from before it held the admin token takes it from .dev/admin-token."""
    path = STATE / "demo.json"
    if path.exists():
        accounts = json.loads(path.read_text())
        if "admin_token" not in accounts and (STATE / "admin-token").exists():
            accounts["admin_token"] = (STATE / "admin-token").read_text().strip()
            private.write(path, json.dumps(accounts, indent=2) + "\n")
    return path


def ensure(call, *ok_statuses: int):
    """Runs an API call whose 'already done' answer (409) is as good as success."""
    try:
        return call()
    except ApiError as e:
        if e.status in ok_statuses:
            return None
        raise


def main() -> int:
    https_port = port("CERTBIND_DEV_HTTPS_PORT", 8443)
    admin_port = port("CERTBIND_DEV_ADMIN_PORT", 9901)
    cp_port = port("CERTBIND_DEV_CONTROL_PLANE_PORT", 8080)
    gateway = os.environ.get("CERTBIND_GATEWAY", "envoy")
    if gateway != "envoy" and gateway not in gateways.KINDS:
        print(f"run: CERTBIND_GATEWAY={gateway}: one of envoy (the wasm filter, the default), "
              f"{', '.join(gateways.KINDS)}", file=sys.stderr)
        return 1
    authz_ports = gateways.Ports(listen=https_port, authz=port("CERTBIND_DEV_AUTHZ_PORT", 9191),
                                 authz_grpc=port("CERTBIND_DEV_AUTHZ_GRPC_PORT", 9192), admin=admin_port,
                                 ping=port("CERTBIND_DEV_PING_PORT", 8082))
    wanted = [https_port, admin_port, cp_port]
    if gateway != "envoy":
        wanted += [authz_ports.authz, authz_ports.authz_grpc] + ([authz_ports.ping] if gateway == "traefik" else [])
    for p in wanted:
        if port_open(p):
            print(f"run: port {p} is already in use (another `make run`?); stop it or set the "
                  "CERTBIND_DEV_*_PORT variables", file=sys.stderr)
            return 1
    private.directory(STATE)
    logs = STATE / "logs"
    pki_dir = STATE / "pki"
    pki.generate(pki_dir)
    issuer = tokens.Issuer(STATE)

    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    with Stack() as stack:
        if os.environ.get("CERTBIND_DEV_REPLICAS", "1") == "3":
            # PostgreSQL's files where its own user can reach them (.dev/ is the owner's alone).
            fleet = Fleet.start(STATE / "fleet", logs, pki_dir, proxies=1, postgres_dir=ROOT / ".run" / "dev-postgres")
            stack.add(fleet.stop)
            # Fetches and the API through the balancer; any replica may be killed.
            demo, cp_port, cp_url, watched = fleet.demo(), fleet.port, f"https://localhost:{fleet.port}", fleet.balancer.process
        else:
            demo = start_demo(STATE / "control-plane", logs, org="demo", user="jane", email="jane.demo@example.mil",
                              listen=f"127.0.0.1:{cp_port}", remember=remembered_accounts(), label="make run",
                              tls_dir=pki_dir)
            stack.add(demo.cp.stop)
            cp_url, watched = demo.cp.url, demo.cp.process
        cp, key, admin_token = demo.cp, demo.public_key, demo.admin_token
        private.write(STATE / "admin-token", admin_token + "\n")

        demo_pem = (pki_dir / "demo-card.crt").read_bytes()
        ensure(lambda: cp.bind(admin_token, demo.user_id, demo_pem), 409)
        # A platform issuer: `/public/` (bearer, no card) accepts platform issuers only.
        ensure(lambda: cp.register_issuer(admin_token, tokens.ISSUER, [tokens.AUDIENCE], issuer.jwks(),
                                          scope="platform"), 409)

        echo = Process("echo", [sys.executable, "-m", "devstack.echo"], logs, cwd=ROOT / "scripts").start()
        stack.add(echo.stop)
        echo_port = int(wait_until(lambda: _echo_port(echo), 10, "the echo upstream", alive=echo))

        if gateway == "envoy":
            children = start_envoy(stack, demo, key, pki_dir, logs, https_port, admin_port, cp_port, echo_port)
            where = f"Envoy         https://localhost:{https_port}   (admin http://127.0.0.1:{admin_port})"
            stats = f"curl -s http://127.0.0.1:{admin_port}/stats/prometheus | grep certbind"
        else:
            authz_ports.application = echo_port
            children = start_gateway(stack, gateway, demo, key, pki_dir, logs, cp_port, authz_ports)
            where = (f"{gateway:<13} https://localhost:{https_port}   (certbind-authz http://127.0.0.1:{authz_ports.authz}"
                     f"{f', gRPC 127.0.0.1:{authz_ports.authz_grpc}' if gateway == 'envoy_grpc' else ''})")
            stats = f"curl -s http://127.0.0.1:{authz_ports.authz}/metrics | grep certbind"

        print(instructions(https_port, where, stats, cp_url, key.get("key_id", "?")), flush=True)
        children = [watched, echo, *children]
        while not stopping:
            dead = [c for c in children if c is not None and not c.alive()]
            if dead:
                print(f"run: {dead[0].name} exited; its log is {dead[0].log}", file=sys.stderr)
                return 1
            time.sleep(0.3)
        print(f"\nrun: stopping {'Envoy' if gateway == 'envoy' else gateway + ', certbind-authz'}, the echo upstream "
              "and the control plane", flush=True)
    return 0


def start_envoy(stack: Stack, demo, key: dict, pki_dir: Path, logs: Path, https_port: int, admin_port: int,
                cp_port: int, echo_port: int) -> list[Process]:
    """Envoy with the filter (the wasm filter, or the dynamic module with CERTBIND_FILTER=native),
    from the shipped envoy/templates/dev.yaml with only its paths, ports and pinned key changed.
    The filter fetches the signed snapshot from the control plane
    through the cluster `certbind_control_plane` and believes it only under the pinned key.
    The proxy credential reaches it in Envoy's environment, not in a configuration Envoy's
    admin endpoint would print."""
    rendered = envoy.render(
        "dev.yaml", STATE / "envoy.yaml", admin_port=admin_port, listen_port=https_port, echo_port=echo_port,
        control_plane_port=cp_port, **pki.envoy_files(pki_dir),
        certbind=envoy.Filter(pinned_key=key["public_key_pem"], env_keys=(filterconfig.CREDENTIAL_ENV,)))
    private.write(STATE / "filter-config.json", json.dumps(envoy.filter_document(rendered), indent=2) + "\n")
    proxy = envoy.Envoy(rendered, logs, admin_port=admin_port,
                        env={filterconfig.CREDENTIAL_ENV: demo.proxy_credential}).start()
    stack.add(proxy.stop)
    return [proxy.process]


def start_gateway(stack: Stack, kind: str, demo, key: dict, pki_dir: Path, logs: Path, cp_port: int,
                  ports: gateways.Ports) -> list[Process]:
    """certbind-authz with the same policy and snapshot as the filter, the certificate source
    `kind` forwards, and `kind` in front of it. The service fetches the snapshot from the
    control plane itself; the proxy credential is in its environment, not in its file."""
    snapshot = filterconfig.snapshot(key["public_key_pem"], None, cluster=f"127.0.0.1:{cp_port}",
                                     authority=f"127.0.0.1:{cp_port}", credential_env=filterconfig.CREDENTIAL_ENV)
    config = gateways.write_authz_config(STATE / "authz-config.json", kind, snapshot=snapshot)
    authz = gateways.Authz(config, logs, ports, env={filterconfig.CREDENTIAL_ENV: demo.proxy_credential},
                           control_plane_ca=pki_dir / "ca.crt").start()
    stack.add(authz.stop)
    wait_until(authz.ready, 15, "certbind-authz to hold a snapshot", alive=authz.process)
    started = gateways.start(kind, STATE / "gateway", logs, pki_dir, ports)
    stack.add(started.stop)
    return [authz.process, started.process]


def _echo_port(echo: Process):
    for line in echo.log_text().splitlines():
        if line.startswith("echo listening on"):
            return line.rsplit(":", 1)[1]
    return None


def instructions(https_port: int, where: str, stats: str, cp_url: str, key_id: str) -> str:
    base = f"https://localhost:{https_port}"
    card = "--cert .dev/pki/demo-card.crt --key .dev/pki/demo-card.key"
    return f"""
certbind is running (Ctrl-C stops everything; `make run` again reuses .dev/):
  {where}
  control plane {cp_url}   (snapshot signing key {key_id})
  logs          .dev/logs/

Try (every curl needs --cacert .dev/pki/ca.crt; the upstream echoes the headers it received):

  C="curl -s --cacert .dev/pki/ca.crt"
  # a card-only route without a card -> 401 certificate_missing
  $C {base}/mtls/hello
  # with the bound demo card -> 200, X-DM-User-Id / X-DM-Principal set by certbind
  $C {card} {base}/mtls/hello
  # an unbound card -> 403 card_not_enrolled
  $C --cert .dev/pki/unbound-card.crt --key .dev/pki/unbound-card.key {base}/mtls/hello
  # a spoofed identity header is stripped
  $C {card} -H 'X-DM-User-Id: admin' {base}/mtls/hello
  # card + token bound to it (RFC 8705 cnf.x5t#S256) -> 200
  TOKEN=$(make -s token)
  $C {card} -H "Authorization: Bearer $TOKEN" {base}/secure/hello
  # the same token with another card -> 401 sender_binding_mismatch
  $C --cert .dev/pki/unbound-card.crt --key .dev/pki/unbound-card.key -H "Authorization: Bearer $TOKEN" {base}/secure/hello
  # block the demo card (a lost card), then ask again -> 401 certificate_blocklisted on every route
  FP=$(openssl x509 -in .dev/pki/demo-card.crt -noout -fingerprint -sha256 | cut -d= -f2 | tr -d :)
  A="Authorization: Bearer $(cat .dev/admin-token)"
  curl -s --cacert .dev/pki/ca.crt -H "$A" -H 'Content-Type: application/json' -d "{{\\"fingerprint\\": \\"$FP\\"}}" {cp_url}/api/v1/admin/blocklist
  $C {card} {base}/mtls/hello
  # unbinding is not blocking: an unbound card is refused where enrolment is required
  # (403 card_not_enrolled on /mtls/) and accepted, under its certificate's principal, elsewhere
  curl -s --cacert .dev/pki/ca.crt -X DELETE -H "$A" {cp_url}/api/v1/admin/smartcards/$FP
  # the decision's counters
  {stats}
"""


if __name__ == "__main__":
    sys.exit(main())
