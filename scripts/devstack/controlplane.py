"""The certbind control plane for the development stack: its SoftHSM2 token and signing key
(scripts/softhsm-init.sh), its SQLite database, its command line, and the admin API.
`start_demo` is the start-up every driver shares (`make run`, the e2e suite, the benchmarks)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import private
from .procs import Process, cargo_binary, wait_until

ROOT = Path(__file__).resolve().parents[2]


def certbind_binary() -> Path:
    return cargo_binary("certbind", "CERTBIND_BIN", "certbind-control-plane")


def synthetic_card(label: str, n: int) -> dict:
    """A binding given by fields (no certificate), the `n`th of a set named `label`: what the
    load tests and benchmarks bind by the thousand."""
    return {
        "fingerprint": hashlib.sha256(f"{label}-{n}".encode()).hexdigest(),
        "subject_dn": f"CN={label.upper()}.{n},O=U.S. Government,C=US",
        "issuer_dn": f"CN={label} CA,O=U.S. Government,C=US",
        "serial": f"0x{n + 1:x}",
        "not_before": "2025-01-15T00:00:00Z",
        "not_after": "2028-01-15T00:00:00Z",
    }


class ApiError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body}")
        self.status, self.body = status, body


class ControlPlane:
    """One control plane with its state in `state_dir` (database, token, logs). With `tls_dir`
    (a development PKI, `devstack.pki`) it serves HTTPS with that PKI's `server.crt` and is
    trusted through its `ca.crt`; without, plain HTTP (`--plain-http`), for drivers that speak
    nothing else (the headless benchmark's callout bridge)."""

    def __init__(self, state_dir: Path, log_dir: Path, *, binary: Path | None = None, tls_dir: Path | None = None):
        self.state = state_dir
        private.directory(self.state)
        self.log_dir = log_dir
        self.binary = binary or certbind_binary()
        self.env = {"CERTBIND_DATABASE_URL": f"sqlite://{self.state / 'certbind.db'}", "RUST_LOG": "info,sqlx=warn"}
        self.tls_dir = tls_dir
        self.ssl_context: ssl.SSLContext | None = None
        if tls_dir is not None:
            self.env["CERTBIND_TLS_CERTIFICATE_FILE"] = str(tls_dir / "server.crt")
            self.env["CERTBIND_TLS_KEY_FILE"] = str(tls_dir / "server.key")
            self.ssl_context = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
        self.process: Process | None = None
        self.url = ""
        # The snapshot version the last change through the API committed (its
        # `certbind-snapshot-version` header): a proxy holding it has seen that change.
        self.last_version = 0

    def init_hsm(self) -> None:
        """A SoftHSM2 token under state/softhsm (reused when present) and its environment."""
        out = subprocess.run([str(ROOT / "scripts" / "softhsm-init.sh")], capture_output=True, text=True,
                             env={"SOFTHSM_DIR": str(self.state / "softhsm"), "PATH": "/usr/bin:/bin:/usr/local/bin"})
        if out.returncode != 0:
            raise RuntimeError(f"softhsm-init.sh failed:\n{out.stderr}")
        for line in out.stdout.splitlines():
            m = re.fullmatch(r"export (\w+)=(.*)", line)
            if m:
                # printf %q quoting: the values here are plain paths and words.
                self.env[m.group(1)] = m.group(2).strip("'")

    def cli(self, *args: str) -> str:
        out = subprocess.run([str(self.binary), *args], capture_output=True, text=True,
                             env={**_base_env(), **self.env}, cwd=self.state)
        if out.returncode != 0:
            raise RuntimeError(f"certbind {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
        return out.stdout.strip()

    def proxy_credential(self, label: str = "envoy") -> str:
        """A proxy credential (`certbind token create --proxy`): it reads the snapshot and
        nothing else, and belongs to no org."""
        return self.cli("token", "create", "--proxy", "--label", label)

    def key_init(self) -> dict:
        """Creates the signing key unless it exists; its public key (PEM and JWK) for pinning."""
        return json.loads(self.cli("key", "init"))

    def start(self, listen: str = "127.0.0.1:0", name: str = "control-plane") -> "ControlPlane":
        plain = [] if self.tls_dir is not None else ["--plain-http"]
        self.process = Process(name, [str(self.binary), "serve", *plain, "--listen", listen], self.log_dir,
                               env=self.env, cwd=self.state).start()

        def listening():
            m = re.search(r"certbind listening on (https?://\S+)", self.process.log_text())
            return m.group(1) if m else None

        self.url = wait_until(listening, 60, "the control plane to listen", alive=self.process)
        if self.url.startswith("https://") != (self.tls_dir is not None):
            raise RuntimeError(f"the control plane listens on {self.url}, expected {'HTTPS' if self.tls_dir else 'plain HTTP'}")
        return self

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def request(self, method: str, path: str, token: str | None = None, body: dict | None = None,
                headers: dict | None = None, timeout: float = 10) -> tuple[int, dict, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def api(self, method: str, path: str, token: str, body: dict | None = None, ok=(200, 201, 204)) -> dict:
        status, headers, raw = self.request(method, path, token, body)
        if status not in ok:
            raise ApiError(status, raw.decode(errors="replace"))
        version = {k.lower(): v for k, v in headers.items()}.get("certbind-snapshot-version")
        if version is not None:
            self.last_version = max(self.last_version, int(version))
        return json.loads(raw) if raw else {}

    def bind(self, token: str, user_id: str, cert_pem: bytes) -> dict:
        return self.api("POST", "/api/v1/admin/smartcards", token,
                        {"user_id": user_id, "certificate_pem": cert_pem.decode()})

    def bind_all(self, token: str, user_id: str, cert_pems: list[bytes]) -> None:
        """Binds many cards to one user over one kept-alive connection (thousands take seconds,
        not a connection each)."""
        host, port = self.url.split("://", 1)[1].rsplit(":", 1)
        if self.ssl_context is not None:
            connection = http.client.HTTPSConnection(host, int(port), timeout=30, context=self.ssl_context)
        else:
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        try:
            for pem in cert_pems:
                body = json.dumps({"user_id": user_id, "certificate_pem": pem.decode()})
                connection.request("POST", "/api/v1/admin/smartcards", body, headers)
                answer = connection.getresponse()
                raw = answer.read()
                if answer.status != 201:
                    raise ApiError(answer.status, raw.decode(errors="replace"))
                version = answer.getheader("certbind-snapshot-version")
                if version is not None:
                    self.last_version = max(self.last_version, int(version))
        finally:
            connection.close()

    def revoke(self, token: str, fingerprint: str) -> dict:
        return self.api("DELETE", f"/api/v1/admin/smartcards/{fingerprint}", token)

    def register_issuer(self, token: str, issuer: str, audiences: list[str], jwks: dict, *,
                        scope: str = "platform") -> dict:
        """A token issuer. `platform` (super-admin tokens only) applies to every token, on
        `bearer` routes too; `org` only to tokens presented with a certificate of the token's
        org."""
        return self.api("POST", "/api/v1/admin/issuers", token,
                        {"issuer": issuer, "audiences": audiences, "jwks": jwks, "scope": scope})


@dataclass
class Demo:
    """A started control plane and the accounts it was given."""

    cp: ControlPlane
    public_key: dict  # `certbind key init`: the signing key's PEM and JWK, for pinning
    org_id: str
    user_id: str
    admin_token: str  # super-admin, of `org_id`
    proxy_credential: str


def start_demo(state: Path, logs: Path, *, org: str, user: str, email: str | None = None,
               listen: str = "127.0.0.1:0", name: str = "control-plane", remember: Path | None = None,
               label: str = "devstack", env: dict | None = None, tls_dir: Path | None = None) -> Demo:
    """A control plane in `state`: its SoftHSM2 token and signing key, an org with one user, a
    super-admin token and a proxy credential, then the service on `listen`, over HTTPS with
    the development PKI in `tls_dir` (plain HTTP without). With `remember`, the accounts are
    kept in that file (mode 0600) and reused by the next call. `env` adds settings
    (CERTBIND_*) to the service's environment."""
    cp = ControlPlane(state, logs, tls_dir=tls_dir)
    cp.env.update(env or {})
    cp.init_hsm()
    public_key = cp.key_init()
    if remember is not None and remember.exists():
        accounts = json.loads(remember.read_text())
    else:
        org_id = cp.cli("org", "create", org)
        user_id = cp.cli("user", "create", "--org", org_id, *(["--email", email] if email else []), user)
        accounts = {
            "org_id": org_id,
            "user_id": user_id,
            "admin_token": cp.cli("token", "create", "--org", org_id, "--super-admin", "--label", label),
            "proxy_credential": cp.proxy_credential(),
        }
        if remember is not None:
            # Created 0600: the file holds the admin token and the proxy credential.
            private.write(remember, json.dumps(accounts, indent=2) + "\n")
    cp.start(listen, name=name)
    return Demo(cp, public_key, accounts["org_id"], accounts["user_id"], accounts["admin_token"],
                accounts["proxy_credential"])


def _base_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("CERTBIND_")}
