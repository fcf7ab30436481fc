"""The certbind control plane for the development stack: its SoftHSM2 token and signing key
(scripts/softhsm-init.sh), its SQLite database, its command line, and the admin API."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from .procs import Process, wait_until

ROOT = Path(__file__).resolve().parents[2]


def certbind_binary() -> Path:
    for profile in ("debug", "release"):
        candidate = ROOT / "target" / profile / "certbind"
        if candidate.exists():
            return candidate
    raise RuntimeError("no certbind binary: build it with `cargo build -p certbind-control-plane`")


class ApiError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body}")
        self.status, self.body = status, body


class ControlPlane:
    """One control plane with its state in `state_dir` (database, token, logs)."""

    def __init__(self, state_dir: Path, log_dir: Path, *, binary: Path | None = None):
        self.state = state_dir
        self.state.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self.binary = binary or certbind_binary()
        self.env = {"CERTBIND_DATABASE_URL": f"sqlite://{self.state / 'certbind.db'}", "RUST_LOG": "info,sqlx=warn"}
        self.process: Process | None = None
        self.url = ""

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

    def proxy_credential(self, org: str) -> str:
        """A proxy credential (`certbind token create --proxy`): it reads the snapshot and
        nothing else."""
        try:
            return self.cli("token", "create", "--org", org, "--proxy", "--label", "envoy")
        except RuntimeError as e:
            # A control plane from before proxy credentials serves the snapshot to anyone.
            if "--proxy" not in str(e):
                raise
            return "no-proxy-credentials-in-this-control-plane"

    def key_init(self) -> dict:
        """Creates the signing key unless it exists; its public key (PEM and JWK) for pinning."""
        return json.loads(self.cli("key", "init"))

    def start(self, listen: str = "127.0.0.1:0", name: str = "control-plane") -> "ControlPlane":
        self.process = Process(name, [str(self.binary), "serve", "--listen", listen], self.log_dir,
                               env=self.env, cwd=self.state).start()

        def listening():
            m = re.search(r"certbind listening on (http://\S+)", self.process.log_text())
            return m.group(1) if m else None

        self.url = wait_until(listening, 60, "the control plane to listen", alive=self.process)
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
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def api(self, method: str, path: str, token: str, body: dict | None = None, ok=(200, 201, 204)) -> dict:
        status, _, raw = self.request(method, path, token, body)
        if status not in ok:
            raise ApiError(status, raw.decode(errors="replace"))
        return json.loads(raw) if raw else {}

    def bind(self, token: str, user_id: str, cert_pem: bytes) -> dict:
        return self.api("POST", "/api/v1/admin/smartcards", token,
                        {"user_id": user_id, "certificate_pem": cert_pem.decode()})

    def revoke(self, token: str, fingerprint: str) -> dict:
        return self.api("DELETE", f"/api/v1/admin/smartcards/{fingerprint}", token)


def _base_env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("CERTBIND_")}
