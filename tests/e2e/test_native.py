"""The dynamic module's own contract with Envoy 1.40: every callback it imports is one the
Envoy binary exports, Envoy reports its ABI version as matched (and a module of another
version fails that check), a configuration it refuses is refused with the member named, and a
panic in the request path refuses that request with 503 while Envoy stays up."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, demo_identity
from devstack import envoy, filterconfig

# The module with its test hooks (scripts/e2e.sh builds it beside the real one).
TEST_MODULE_DIR = ROOT / "target" / "native-test"
PANIC_HEADER = "x-certbind-test-panic"


@pytest.fixture(autouse=True)
def native_only(artefact):
    """This module is about the dynamic module alone: the suite's wasm run skips it."""
    if artefact != "native":
        pytest.skip("the dynamic module's own contract")


def envoy_executable() -> Path:
    """The ELF executable of the pip-installed Envoy (the venv's `envoy` is a Python launcher)."""
    package = importlib.import_module("envoy")
    return Path(package.__file__).resolve().parent / "_bin" / "envoy"


def dynamic_symbols(path: Path, *, defined: bool) -> set[str]:
    which = "--defined-only" if defined else "--undefined-only"
    out = subprocess.run(["nm", "-D", which, str(path)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def test_every_callback_the_module_imports_is_exported_by_envoy():
    imported = {s for s in dynamic_symbols(envoy.NATIVE_DIR / "libcertbind.so", defined=False)
                if s.startswith("envoy_dynamic_module_callback_")}
    # The request path reads and rewrites headers and answers locally: those at least.
    assert {"envoy_dynamic_module_callback_http_get_headers", "envoy_dynamic_module_callback_http_add_header",
            "envoy_dynamic_module_callback_http_send_response"} <= imported, imported
    exported = dynamic_symbols(envoy_executable(), defined=True)
    assert sorted(imported - exported) == []


def abi_verdict(log: str) -> tuple[str, str] | None:
    """The ABI version Envoy read from the module and whether it was its own (`matched`)."""
    found = re.search(r"Dynamic module ABI version (\S+) (matched|is deprecated)", log)
    return (found.group(1), found.group(2)) if found else None


def test_envoy_reports_the_modules_abi_version_matched(deploy, pki, demo, issuer):
    deployment = deploy("abi-matched", filterconfig.render(filterconfig.policy(), demo_identity(pki, demo, issuer)))
    assert abi_verdict(deployment.proxy.process.log_text()) == ("v0.2.0", "matched")


def test_a_module_of_another_abi_version_fails_the_check(deploy, pki, demo, issuer):
    config = filterconfig.render(filterconfig.policy(), demo_identity(pki, demo, issuer))
    deployment = deploy("abi-other", envoy.Filter(config, artefact="native", module=TEST_MODULE_DIR / "libcertbind.so"),
                        env={"CERTBIND_TEST_ABI_VERSION": "v0.1.0"})
    assert abi_verdict(deployment.proxy.process.log_text()) == ("v0.1.0", "is deprecated")


def test_a_malformed_configuration_is_refused_with_the_member_named(deploy, pki, demo, issuer):
    policy = filterconfig.policy(routes=[{"path": "/*", "mode": "sometimes"}])
    with pytest.raises(RuntimeError, match="exited while waiting"):
        deploy("malformed", filterconfig.render(policy, demo_identity(pki, demo, issuer)))
    log = deploy.started[-1].process.log_text()
    assert "certbind: configuration refused: policy.routes[0].mode: unknown variant `sometimes`" in log, log


def test_a_panic_refuses_the_request_and_envoy_stays_up(deploy, pki, demo, issuer):
    config = filterconfig.render(filterconfig.policy(), demo_identity(pki, demo, issuer))
    deployment = deploy("panic", envoy.Filter(config, artefact="native", module=TEST_MODULE_DIR / "libcertbind.so"))
    token = issuer.mint(cert_pem=pki.pem("demo-card"))
    for _ in range(3):
        answer = deployment.client.get("/api/execute", card=pki.card("demo-card"), token=token,
                                       headers=[(PANIC_HEADER, "1")])
        assert (answer.status, answer.reason) == (503, "identity_unavailable"), answer
    assert deployment.proxy.process.alive()
    answer = deployment.client.get("/api/execute", card=pki.card("demo-card"), token=token)
    assert answer.status == 200, answer
    assert "certbind: panic in request headers; failing closed" in deployment.proxy.process.log_text()
