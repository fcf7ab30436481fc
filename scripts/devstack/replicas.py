"""Control-plane replicas on one PostgreSQL behind an Envoy balancer, as the e2e fleet test and
the failover benchmark start them: a PostgreSQL server of their own (scripts/postgres-test.sh
in a directory of its own, stopped and started again on its port), replicas sharing one
SoftHSM2 token and key, and envoy/examples/control-plane-balancer.yaml with this stack's
files and ports."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import private
from .controlplane import ControlPlane, Demo
from .envoy import Envoy
from .procs import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
BALANCER = ROOT / "envoy" / "examples" / "control-plane-balancer.yaml"
PG_SCRIPT = ROOT / "scripts" / "postgres-test.sh"
# The example's replica ports, listener port and admin port, in that order.
BALANCER_PORTS = (8080, 8081, 8082, 8090, 9903)


class Postgres:
    """A PostgreSQL server in `directory`, not the one other tests share."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.env = {"CERTBIND_PG_DIR": str(directory), "PATH": "/usr/bin:/bin:/usr/local/bin:/usr/sbin:/sbin"}
        out = self.run("start")
        self.url = re.search(r"export CERTBIND_TEST_POSTGRES_URL=(\S+)", out).group(1)

    def run(self, command: str) -> str:
        """`start`, `halt` (stopped, its port kept), `clean`."""
        done = subprocess.run([str(PG_SCRIPT), command], capture_output=True, text=True, env=self.env)
        if done.returncode != 0:
            raise RuntimeError(f"postgres-test.sh {command}: {done.stderr}")
        return done.stdout


class Client:
    """HTTPS through the balancer, one connection per request (a kept connection would die
    with the replica it reached)."""

    def __init__(self, port: int, ca: Path):
        self.port = port
        self.context = ssl.create_default_context(cafile=str(ca))

    def request(self, method: str, path: str, token: str, body: dict | None = None,
                timeout: float = 15) -> tuple[int, dict, bytes]:
        connection = http.client.HTTPSConnection("localhost", self.port, context=self.context, timeout=timeout)
        try:
            headers = {"Authorization": f"Bearer {token}"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            connection.request(method, path, body=data, headers=headers)
            answer = connection.getresponse()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        finally:
            connection.close()


def render_balancer(out: Path, tls_dir: Path, ports: list[int], listen: int, admin: int) -> Path:
    """The balancer example with the PKI in `tls_dir` and these ports."""
    text = BALANCER.read_text()
    for name in ("server.crt", "server.key", "ca.crt"):
        text = text.replace(f'"/etc/certbind/control-plane/{name}"', f'"{tls_dir / name}"')
    for shipped, here in zip(BALANCER_PORTS, (*ports, listen, admin)):
        text, n = re.subn(rf"port_value: {shipped}\b", f"port_value: {here}", text)
        if n != 1:
            raise RuntimeError(f"the balancer example names port {shipped} {n} times")
    private.write(out, text)
    return out


@dataclass
class Fleet:
    """Replicas on `postgres` (all of them started), the balancer in front, an org with a user
    and a super-admin token, proxy credentials, and the signing key's public key."""

    postgres: Postgres
    replicas: list[ControlPlane]
    ports: list[int]
    balancer: Envoy
    client: Client
    token: str
    org_id: str
    user_id: str
    public_key: dict
    credentials: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, work: Path, logs: Path, tls_dir: Path, *, proxies: int = 0,
              postgres_dir: Path | None = None) -> "Fleet":
        """Three replicas (the example balances three), `proxies` proxy credentials; the
        database server's files in `postgres_dir` (a directory its own user can reach; under
        `work` by default)."""
        replicas = 3
        shutil.rmtree(work, ignore_errors=True)
        postgres = Postgres(postgres_dir or work / "postgres")
        first = ControlPlane(work / "replica-a", logs, tls_dir=tls_dir)
        first.env["CERTBIND_DATABASE_URL"] = postgres.url
        first.init_hsm()
        public_key = first.key_init()
        org = first.cli("org", "create", "fleet")
        user = first.cli("user", "create", "--org", org, "fleet-user")
        token = first.cli("token", "create", "--org", org, "--super-admin", "--label", "fleet")
        credentials = [first.proxy_credential(f"edge-{i}") for i in range(proxies)]
        # One database, one signing key (the token's files, shared).
        planes = [first]
        for i in range(1, replicas):
            plane = ControlPlane(work / f"replica-{chr(ord('a') + i)}", logs, tls_dir=tls_dir)
            plane.env = dict(first.env)
            planes.append(plane)
        ports = [free_port() for _ in planes]
        fleet = cls(postgres, planes, ports, None, None, token, org, user, public_key, credentials)  # type: ignore[arg-type]
        for i in range(replicas):
            fleet.restart(i)
        listen, admin = free_port(), free_port()
        config = render_balancer(work / "balancer.yaml", tls_dir, ports, listen, admin)
        fleet.balancer = Envoy(config, logs, name="fleet-balancer", admin_port=admin).start()
        fleet.client = Client(listen, tls_dir / "ca.crt")
        wait_until(lambda: fleet.client.request("GET", "/readyz", "")[0] == 200, 30, "the balancer to reach a replica")
        return fleet

    @property
    def port(self) -> int:
        return self.client.port

    def demo(self) -> Demo:
        """The fleet as one control plane's demo: replica a for the command line, the
        balancer's address for everyone else, the first proxy credential."""
        return Demo(self.replicas[0], self.public_key, self.org_id, self.user_id, self.token, self.credentials[0])

    def kill(self, i: int) -> None:
        """SIGKILL: nothing is flushed, no shutdown runs."""
        process = self.replicas[i].process
        assert process is not None and process.popen is not None
        process.popen.kill()
        process.popen.wait()

    def restart(self, i: int) -> None:
        self.replicas[i].start(f"127.0.0.1:{self.ports[i]}", name=f"fleet-replica-{chr(ord('a') + i)}")

    def stop(self) -> None:
        if self.balancer is not None:
            self.balancer.stop()
        for replica in self.replicas:
            replica.stop()
        self.postgres.run("clean")
