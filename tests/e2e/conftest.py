"""The end-to-end suite's stack: a development PKI, a control plane with a SoftHSM2 token,
the echo upstream, and Envoys started per scenario with the built filter. Every process is
started here and stopped here; logs go to target/e2e/logs/ and are kept when a test fails."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(HERE)]

from client import Client  # noqa: E402
from devstack import controlplane, envoy, filterconfig, pki as devpki, tokens  # noqa: E402
from devstack.procs import Process, free_port, wait_until  # noqa: E402

RUN_DIR = ROOT / "target" / "e2e"


def pytest_sessionstart(session):
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0:
        shutil.rmtree(RUN_DIR / "logs", ignore_errors=True)
    else:
        print(f"\ne2e: logs kept in {RUN_DIR / 'logs'}")


@dataclass
class Pki:
    dir: Path

    def card(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"

    def pem(self, name: str) -> bytes:
        return (self.dir / f"{name}.crt").read_bytes()

    def fingerprint(self, name: str) -> str:
        return tokens.fingerprint_hex(self.pem(name))

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def envoy_files(self) -> dict[str, Path]:
        """The files a shipped Envoy configuration names (envoy.SHIPPED_FILES), from this PKI."""
        return devpki.envoy_files(self.dir)

    def email_card(self, name: str, email: str) -> tuple[Path, Path]:
        """A card of the dev PIV CA whose only address is `email` (certificate, key)."""
        return devpki.email_card(self.dir, name, email)

    def card_files(self, count: int, prefix: str) -> list[tuple[Path, Path]]:
        """`count` cards of the dev CA (one key shared by them all), each certificate in a file
        of its own under RUN_DIR named `prefix-<i>.crt`: (certificate, key) pairs for curl."""
        bundle = devpki.card_set(self.dir, count)
        key = self.dir / f"cards-{count}.key"
        paths = []
        for i, pem in enumerate(devpki.split_pem(bundle)):
            path = RUN_DIR / f"{prefix}-{i}.crt"
            path.write_bytes(pem)
            paths.append((path, key))
        return paths


@pytest.fixture(scope="session")
def logs() -> Path:
    return RUN_DIR / "logs"


@pytest.fixture(scope="session")
def pki() -> Pki:
    devpki.generate(RUN_DIR / "pki")
    return Pki(RUN_DIR / "pki")


@pytest.fixture(scope="session")
def issuer() -> tokens.Issuer:
    return tokens.Issuer(RUN_DIR)


@dataclass
class Demo(controlplane.Demo):
    def snapshot_source(self, **control_plane) -> dict:
        """The plugin configuration's `snapshot`: this control plane's key pinned, fetched
        through the Envoy cluster `certbind_control_plane`."""
        return filterconfig.snapshot(self.public_key["public_key_pem"], self.proxy_credential,
                                     authority=f"127.0.0.1:{self.cp.port}", **control_plane)


@pytest.fixture(scope="session")
def demo(pki, issuer, logs, artefact) -> Demo:
    """A control plane with a signing key in SoftHSM2, the demo org and user, a super-admin
    token, the demo card bound and the demo issuer registered for the platform (so that
    `bearer` routes, which have no certificate to name an org, accept its tokens). One per
    artefact: what one artefact's run changes there is not the other's starting point."""
    name = "control-plane" if artefact == "wasm" else f"control-plane-{artefact}"
    started = controlplane.start_demo(RUN_DIR / name, logs, org="demo", user="jane", label="e2e", name=name,
                                      tls_dir=pki.dir)
    demo = Demo(**vars(started))
    demo.cp.bind(demo.admin_token, demo.user_id, pki.pem("demo-card"))
    demo.cp.register_issuer(demo.admin_token, tokens.ISSUER, [tokens.AUDIENCE], issuer.jwks(), scope="platform")
    yield demo
    demo.cp.stop()


@pytest.fixture(scope="session")
def echo_port(logs) -> int:
    process = Process("echo", [sys.executable, "-m", "devstack.echo"], logs, cwd=ROOT / "scripts").start()

    def port():
        for line in process.log_text().splitlines():
            if line.startswith("echo listening on"):
                return int(line.rsplit(":", 1)[1])
        return None

    yield wait_until(port, 10, "the echo upstream", alive=process)
    process.stop()


@dataclass
class Deployment:
    proxy: envoy.Envoy
    client: Client
    port: int
    artefact: str = "wasm"


# Where Envoy's /stats/prometheus names the filter's metrics: it drops the wasm filter's
# namespace (`wasmcustom`), not the dynamic module's (the same name, as `metrics_namespace`).
PROMETHEUS_PREFIX = {"wasm": "", "native": "envoy_wasmcustom_"}


def prometheus(deployment: Deployment, family: str) -> dict[str, int]:
    """The filter's metrics `certbind_<family>_…` in Envoy's /stats/prometheus, named as the
    wasm filter's are there."""
    text = deployment.proxy.admin("/stats/prometheus")
    prefix = re.escape(PROMETHEUS_PREFIX[deployment.artefact])
    return {m.group(1): int(m.group(2))
            for m in re.finditer(rf"^{prefix}(certbind_{family}_[a-z_]+)\{{\}} (\d+)$", text, re.M)}


class Deployer:
    """Starts Envoys for one test module and stops them all at its end."""

    def __init__(self, pki: Pki, echo_port: int, logs: Path, control_plane_port: int, artefact: str = "wasm"):
        self.pki, self.echo_port, self.logs, self.cp_port = pki, echo_port, logs, control_plane_port
        self.artefact = artefact
        self.started: list[envoy.Envoy] = []

    def __call__(self, name: str, filter_config: str | envoy.Filter | None, *, template: str = "dev.yaml", concurrency: int = 1,
                 wasm: Path | None = None, allow_expired: bool = False, envoy_defaults: bool = False,
                 forward_client_cert: str | None = None, tls: bool = True, upstream_http2: bool = False,
                 without_proxy_certificate: bool = False, env: dict | None = None, **values) -> Deployment:
        """`filter_config`: the filter's plugin configuration (JSON), or the filter block's
        values (the shipped document with this stack's pinned key), or None for no filter;
        `env`: variables of the Envoy process, each one the filter's VM may read when
        `filter_config` is a document. `wasm`: that build of the wasm filter, whatever artefact
        the module runs against."""
        listen_port, admin_port = free_port(), free_port()
        artefact = "wasm" if wasm is not None else self.artefact
        certbind = filter_config if isinstance(filter_config, envoy.Filter) else None
        if certbind is not None and certbind.artefact is None:
            certbind = dataclasses.replace(certbind, artefact=artefact)
        if isinstance(filter_config, str):
            certbind = envoy.Filter(filter_config, artefact=artefact, module=wasm, env_keys=tuple(env or ()))
        if certbind is not None:
            artefact = certbind.runs_as()
        settings = dict(admin_port=admin_port, listen_port=listen_port, echo_port=self.echo_port,
                        control_plane_port=self.cp_port, **self.pki.envoy_files())
        settings.update(values)
        config = envoy.render(template, RUN_DIR / f"{name}.yaml", certbind=certbind, allow_expired=allow_expired,
                              envoy_defaults=envoy_defaults, forward_client_cert=forward_client_cert,
                              upstream_http2=upstream_http2, without_proxy_certificate=without_proxy_certificate,
                              **settings)
        log_name = f"envoy-{name}" if artefact == "wasm" else f"envoy-{name}-{artefact}"
        proxy = envoy.Envoy(config, self.logs, name=log_name, concurrency=concurrency, admin_port=admin_port, env=env)
        self.started.append(proxy)
        proxy.start()
        return Deployment(proxy, Client(listen_port, self.pki.ca, tls=tls), listen_port, artefact)

    def stop(self) -> None:
        for proxy in self.started:
            proxy.stop()


def artefacts() -> list[str]:
    """What the suite runs certbind as: CERTBIND_FILTER (`wasm`, `native`, or both separated by
    a comma), both by default. Every test that deploys runs once per artefact."""
    chosen = [a.strip() for a in os.environ.get("CERTBIND_FILTER", ",".join(envoy.ARTEFACTS)).split(",") if a.strip()]
    unknown = [a for a in chosen if a not in envoy.ARTEFACTS]
    if unknown:
        raise ValueError(f"CERTBIND_FILTER: unknown artefact {unknown}; one of {', '.join(envoy.ARTEFACTS)}")
    return chosen


@pytest.fixture(scope="session", params=artefacts())
def artefact(request) -> str:
    """The artefact the Envoys run certbind as: the suite runs once per artefact, each run with
    a control plane of its own (see `demo`)."""
    return request.param


@pytest.fixture(scope="module")
def deploy(pki, echo_port, logs, demo, artefact):
    deployer = Deployer(pki, echo_port, logs, demo.cp.port, artefact)
    yield deployer
    deployer.stop()


def demo_identity(pki: Pki, demo: Demo, issuer: tokens.Issuer, **extra) -> dict:
    """The demo's identity data given inline: the bound demo card and the demo issuer."""
    return filterconfig.inline_identity(bindings=[(pki.fingerprint("demo-card"), demo.user_id, demo.org_id)],
                                        issuer_jwks=issuer.jwks(), **extra)


SNAPSHOT_VERSION = "wasmcustom.certbind.snapshot.version"


def snapshot_version(deployment: Deployment) -> int:
    return deployment.proxy.stats(SNAPSHOT_VERSION).get(SNAPSHOT_VERSION, 0)


def wait_for_snapshot(deployment: Deployment, version: int | None = None, timeout: float = 15) -> int:
    """Waits until the filter holds a verified snapshot (at least `version`) and answers a
    request that needs identity data with something other than 503; its version."""
    loads = "wasmcustom.certbind.snapshot.full_loads"

    def held():
        # The load first, then the version: read the other way round, a snapshot arriving
        # between the two reads would be seen loaded at version 0.
        if not deployment.proxy.stats(loads).get(loads):
            return None
        value = snapshot_version(deployment)
        if version is not None and value < version:
            return None
        answer = deployment.client.get("/mtls/probe")
        return (value,) if answer.reason != "identity_unavailable" else None

    return wait_until(held, timeout, f"the filter to hold snapshot version {version or 'any'}",
                      alive=deployment.proxy.process)[0]


@pytest.fixture(scope="module")
def dev(deploy, demo) -> Deployment:
    """The development deployment as `make run` starts it, the shipped envoy/templates/dev.yaml
    with its own filter document: the snapshot fetched from the control plane, verified
    against its pinned key, with the proxy credential in Envoy's environment rather than in
    its configuration."""
    shipped = envoy.Filter(pinned_key=demo.public_key["public_key_pem"], env_keys=(filterconfig.CREDENTIAL_ENV,))
    deployment = deploy("dev", shipped, env={filterconfig.CREDENTIAL_ENV: demo.proxy_credential})
    wait_for_snapshot(deployment)
    return deployment
