"""The shipped deployment examples (envoy/examples/), held to what they say: neither carries
the proxy credential in the filter's configuration; each names the environment variable that
holds it, and says where it comes from (a Kubernetes Secret, NGINX's `env`). Their filter
configurations run in the real filter, in a real Envoy, with the credential in the
environment alone: the filter fetches and verifies snapshots and Envoy's admin endpoint
prints nothing of it. The Envoy configurations are checked by `envoy --mode validate`: the
Kubernetes example's control plane cluster, as Envoy Gateway adds it (the gateway's client
certificate included), with the filter as Envoy Gateway renders it and the stats tags its
EnvoyProxy merges into the bootstrap, and every configuration in envoy/templates/ as shipped, its filter
document included."""

import json
import os
import re
import urllib.error
import urllib.request

import pytest

from conftest import ROOT, RUN_DIR, wait_for_snapshot
from devstack import envoy, filterconfig, gateways, private
from devstack.procs import Process, free_port, wait_until

EXAMPLES = ROOT / "envoy" / "examples"
KUBERNETES = EXAMPLES / "kubernetes" / "envoy-gateway.yaml"
NGINX = EXAMPLES / "nginx" / "nginx.conf"


def kubernetes_filter_config() -> dict:
    """The EnvoyExtensionPolicy's `config`: written as JSON, from `config: {` to its closing
    brace at the same indentation."""
    text = KUBERNETES.read_text()
    found = re.search(r"^( +)config: (\{.*?^\1\})$", text, re.S | re.M)
    assert found, "no `config: {…}` in the Kubernetes example"
    return json.loads(found.group(2))


def nginx_filter_config() -> dict:
    """The `proxy_wasm certbind '…'` argument, with NGINX's escapes (`\\\\`) undone."""
    found = re.search(r"proxy_wasm certbind '(.*?)';", NGINX.read_text(), re.S)
    assert found, "no `proxy_wasm certbind '…';` in the NGINX example"
    return json.loads(found.group(1).replace("\\\\", "\\"))


def kubernetes_host_keys() -> list[str]:
    found = re.search(r"^ +env:\n +hostKeys: \[([^\]]*)\]$", KUBERNETES.read_text(), re.M)
    assert found, "the Wasm entry passes no environment variable to the filter's VM"
    return [key.strip() for key in found.group(1).split(",")]


EXAMPLE_CONFIGS = {"kubernetes": kubernetes_filter_config, "nginx": nginx_filter_config}


def credential_env(config: dict) -> str:
    control_plane = config["snapshot"]["control_plane"]
    assert "credential" not in control_plane, control_plane
    return control_plane["credential_env"]


def test_no_example_carries_the_proxy_credential():
    for path in (KUBERNETES, NGINX):
        # In no spelling: no `credential` member, JSON or YAML, anywhere in the file.
        assert not re.search(r"""["']?\bcredential["']?\s*:""", path.read_text()), path
    name = credential_env(kubernetes_filter_config())
    # Kubernetes: the Wasm entry hands the VM that variable, and the Envoy container gets it
    # from a Secret.
    assert kubernetes_host_keys() == [name]
    text = KUBERNETES.read_text()
    secret = re.search(rf"- name: {name}\n +valueFrom:\n +secretKeyRef: \{{name: ([\w-]+), key: (\w+)\}}", text)
    assert secret, f"no EnvoyProxy env entry maps {name} from a Secret"
    assert "kind: EnvoyProxy" in text and "parametersRef: {group: gateway.envoyproxy.io, kind: EnvoyProxy" in text
    assert f"create secret generic {secret.group(1)}" in text, "the Secret's making is not shown"
    # NGINX: `env` keeps the variable for the workers, where the filter reads it.
    name = credential_env(nginx_filter_config())
    assert re.search(rf"^env {name};$", NGINX.read_text(), re.M), f"no `env {name};` in the NGINX example"


def with_this_stack(config: dict, demo) -> dict:
    """The example's filter configuration with the deployment's own placeholders (the pinned
    key, where the control plane is) replaced by this stack's; the policy and the credential's
    source are the example's."""
    config = json.loads(json.dumps(config))
    snapshot = config["snapshot"]
    snapshot["pinned_keys"] = [demo.public_key["public_key_pem"]]
    snapshot["control_plane"].update(cluster="certbind_control_plane", authority=f"127.0.0.1:{demo.cp.port}")
    return config


@pytest.mark.parametrize("example", sorted(EXAMPLE_CONFIGS))
def test_an_example_filter_configuration_reads_the_credential_from_the_environment(deploy, demo, example):
    config = with_this_stack(EXAMPLE_CONFIGS[example](), demo)
    name = credential_env(config)
    deployment = deploy(f"example-{example}", json.dumps(config), env={name: demo.proxy_credential})
    assert wait_for_snapshot(deployment) > 0
    pages = "\n".join(deployment.proxy.admin(page) for page in ("/config_dump", "/config_dump?include_eds"))
    assert name in pages, "the dump does not show the filter's VM configuration"
    assert demo.proxy_credential not in pages


def block_under(text: str, key: str) -> str:
    """The YAML block under the one line `key:` (every following line indented deeper)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == f"{key}:"]
    assert len(starts) == 1, f"{key}: appears {len(starts)} times"
    indent = len(lines[starts[0]]) - len(lines[starts[0]].lstrip())
    block = []
    for line in lines[starts[0] + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        block.append(line)
    depth = min(len(line) - len(line.lstrip()) for line in block if line.strip())
    return "\n".join(line[depth:] for line in block)


def kubernetes_bootstrap_merge() -> str:
    """The EnvoyProxy's `bootstrap.value`: the YAML Envoy Gateway merges into its bootstrap."""
    found = re.search(r"^( +)value: \|\n((?:\1  .*\n)+)", KUBERNETES.read_text(), re.M)
    assert found, "no `bootstrap: {type: Merge, value: |…}` in the Kubernetes example"
    depth = len(found.group(1)) + 2
    return "".join(line[depth:] + "\n" for line in found.group(2).splitlines())


def shipped_stats_config() -> str:
    """The `stats_config` block of the shipped single-proxy configuration."""
    found = re.search(r"^stats_config:\n(?:  .*\n)+", (envoy.TEMPLATES / "dev.yaml").read_text(), re.M)
    assert found, "no stats_config in dev.yaml"
    return found.group(0)


def indented(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line if line else line for line in text.splitlines())


def test_the_kubernetes_examples_envoy_configuration_validates(demo, pki):
    # The cluster the EnvoyPatchPolicy adds, and the filter as Envoy Gateway renders the
    # EnvoyExtensionPolicy (its `env.hostKeys` as the VM's host_env_keys, `config` as the
    # plugin configuration), in one bootstrap.
    cluster = block_under(KUBERNETES.read_text(), "value")
    assert cluster.startswith("name: certbind_control_plane"), cluster
    # The placeholder CA (the one that issued the control plane's server certificate) is
    # this stack's, so that Envoy can load it.
    cluster, replaced = re.subn(r"trusted_ca: \{inline_string: \"[^\"]*\"\}", f'trusted_ca: {{filename: "{pki.ca}"}}', cluster)
    assert replaced == 1, cluster
    # The gateway's client certificate, where the EnvoyProxy mounts it: this stack's proxy's.
    files = pki.envoy_files()
    for mounted, ours in (("tls.crt", files["proxy_cert"]), ("tls.key", files["proxy_key"])):
        cluster, replaced = re.subn(rf"\{{filename: /etc/certbind/control-plane/{re.escape(mounted)}\}}", f'{{filename: "{ours}"}}', cluster)
        assert replaced == 1, cluster
    # The stats tags merged into Envoy Gateway's bootstrap are the shipped configurations'.
    merged = kubernetes_bootstrap_merge()
    assert merged == shipped_stats_config(), merged
    config = with_this_stack(kubernetes_filter_config(), demo)
    certbind = envoy.Filter(json.dumps(config), env_keys=tuple(kubernetes_host_keys()))
    bootstrap = f"""{merged}static_resources:
  listeners:
  - name: https
    address: {{socket_address: {{address: 127.0.0.1, port_value: 8443}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: https
          route_config: {{virtual_hosts: [{{name: all, domains: ["*"], routes: [{{match: {{prefix: "/"}}, direct_response: {{status: 200}}}}]}}]}}
{envoy.filter_block("dev.yaml", certbind)}  clusters:
  - {indented(cluster, 4).lstrip()}
"""
    path = RUN_DIR / "example-kubernetes-bootstrap.yaml"
    private.write(path, bootstrap)
    # Envoy starts the filter while validating: without the credential in its environment the
    # filter refuses its configuration, and Envoy the bootstrap.
    assert credential_env(config) not in os.environ
    with pytest.raises(RuntimeError, match="is not set in the plugin's VM"):
        envoy.validate(path)
    envoy.validate(path, env={credential_env(config): demo.proxy_credential})


SHIPPED_ENVOY = sorted(p.name for p in envoy.TEMPLATES.glob("*.yaml"))


@pytest.mark.parametrize("template", SHIPPED_ENVOY)
def test_every_shipped_envoy_configuration_validates(pki, demo, template):
    """Each file as a user copies it, with only its files, ports and the filter's pinned key
    made this stack's: Envoy loads the filter and hands it the file's own document, which the
    filter refuses unless every member is right (its proxy credential in the environment)."""
    shipped = (envoy.TEMPLATES / template).read_text()
    assert "${" not in shipped, "a placeholder where a value belongs"
    certbind = envoy.Filter(pinned_key=demo.public_key["public_key_pem"], env_keys=(filterconfig.CREDENTIAL_ENV,))
    values = dict(admin_port=9901, listen_port=8443, inner_port=8444, echo_port=9000, control_plane_port=demo.cp.port,
                  **pki.envoy_files())
    out = envoy.render(template, RUN_DIR / f"validate-{template}",
                       certbind=certbind if envoy.WASM_ENTRY in shipped else None, **values)
    envoy.validate(out, env={filterconfig.CREDENTIAL_ENV: demo.proxy_credential})


def test_the_shipped_filter_document_is_the_development_stacks():
    """dev.yaml's document is the policy the suite's scenarios start from (filterconfig), and
    the inner tier's the same behind a trusted edge: a scenario that passes here passes with
    the file a user copies."""
    placeholder = envoy.SHIPPED_PINNED_KEY
    dev = filterconfig.render(filterconfig.policy(), snapshot=filterconfig.snapshot(
        placeholder, None, authority="127.0.0.1:8080", credential_env=filterconfig.CREDENTIAL_ENV))
    assert envoy.filter_document("dev.yaml") == json.loads(dev)
    inner = filterconfig.render(
        filterconfig.policy(source={"kind": "xfcc", "trust": "trusted_proxies"}, trusted_proxies=["127.0.0.1/32"]),
        snapshot=filterconfig.snapshot(placeholder, None, authority="127.0.0.1:8080",
                                       credential_env=filterconfig.CREDENTIAL_ENV))
    assert envoy.filter_document("inner.yaml") == json.loads(inner)


def test_a_shipped_configuration_without_its_pinned_key_is_refused(pki, demo):
    """The placeholder is not a key: a file copied without its pinned key does not start."""
    out = envoy.render("dev.yaml", RUN_DIR / "validate-unpinned.yaml", admin_port=9901, listen_port=8443,
                       echo_port=9000, control_plane_port=demo.cp.port, **pki.envoy_files(),
                       certbind=envoy.Filter(json.dumps(envoy.filter_document("dev.yaml")),
                                             env_keys=(filterconfig.CREDENTIAL_ENV,)))
    with pytest.raises(RuntimeError, match="pinned_keys"):
        envoy.validate(out, env={filterconfig.CREDENTIAL_ENV: demo.proxy_credential})


BALANCER = EXAMPLES / "control-plane-balancer.yaml"


def test_the_control_plane_balancer_example_validates(pki):
    """The balancer in front of the control plane's replicas, with its files this stack's:
    TLS on both sides, and `/readyz` as the replicas' health check."""
    text = BALANCER.read_text()
    assert "http_health_check: {path: /readyz}" in text
    files = {"/etc/certbind/control-plane/server.crt": pki.dir / "server.crt",
             "/etc/certbind/control-plane/server.key": pki.dir / "server.key",
             "/etc/certbind/control-plane/ca.crt": pki.ca}
    for shipped, here in files.items():
        assert f'"{shipped}"' in text, shipped
        text = text.replace(f'"{shipped}"', f'"{here}"')
    path = RUN_DIR / "example-control-plane-balancer.yaml"
    private.write(path, text)
    envoy.validate(path)


def nginx_control_plane_server() -> str:
    """The NGINX example's server block that carries the filter's fetches to the control plane."""
    found = re.search(r"^    server \{\n        listen 127\.0\.0\.1:8082;\n.*?^    \}$", NGINX.read_text(), re.S | re.M)
    assert found, "no server block on 127.0.0.1:8082 in the NGINX example"
    assert '"cluster": "127.0.0.1:8082"' in NGINX.read_text(), "the filter does not fetch through that block"
    return found.group(0)


def run_nginx_control_plane_server(pki, demo, logs, name: str, trusted_ca) -> tuple[Process, int]:
    """That block, with only its port, the control plane's address and its files made this
    stack's, in Debian's NGINX."""
    files = pki.envoy_files()
    port = free_port()
    block = nginx_control_plane_server()
    for shipped, ours in (("listen 127.0.0.1:8082;", f"listen 127.0.0.1:{port};"),
                          ("https://certbind-control-plane.example.mil:8443", f"https://127.0.0.1:{demo.cp.port}"),
                          ("proxy_ssl_name certbind-control-plane.example.mil;", "proxy_ssl_name localhost;"),
                          ("/etc/certbind/control-plane/ca.crt", str(trusted_ca)),
                          ("/etc/certbind/control-plane/proxy.crt", str(files["proxy_cert"])),
                          ("/etc/certbind/control-plane/proxy.key", str(files["proxy_key"]))):
        assert block.count(shipped) == 1, shipped
        block = block.replace(shipped, ours)
    run = RUN_DIR / name
    private.directory(run)
    temp = " ".join(f"{kind}_temp_path {run / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = run / "nginx.conf"
    # This run's log alone.
    (logs / (name + "-error.log")).unlink(missing_ok=True)
    private.write(config, f"""daemon off;
master_process off;
pid {run / "nginx.pid"};
error_log {logs / (name + "-error.log")} info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    {temp}
{block}
}}
""")
    process = Process(name, [gateways.nginx_binary(), "-p", str(run), "-e", str(logs / (name + "-error.log")),
                             "-c", str(config)], logs).start()
    wait_until(lambda: _port_open(port), 15, f"{name} listening", alive=process)
    return process, port


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def fetch_snapshot(port: int, credential: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/snapshot",
                                     headers={"Authorization": f"Bearer {credential}"})
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            assert answer.read(), "an empty snapshot"
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def test_the_nginx_examples_control_plane_block_fetches_over_verified_tls(pki, demo, logs):
    """The block the filter fetches through reaches the control plane over TLS, presenting the
    proxy's client certificate, and refuses a control plane its CA did not issue."""
    process, port = run_nginx_control_plane_server(pki, demo, logs, "nginx-example-cp", pki.ca)
    try:
        assert fetch_snapshot(port, demo.proxy_credential) == 200
    finally:
        process.stop()
    # Another CA than the one that issued the control plane's certificate: NGINX refuses the
    # handshake and the fetch gets no snapshot.
    other_ca = ROOT / "tests" / "pki" / "root-ca.pem"
    process, port = run_nginx_control_plane_server(pki, demo, logs, "nginx-example-cp-other-ca", other_ca)
    try:
        assert fetch_snapshot(port, demo.proxy_credential) == 502
        assert "upstream SSL certificate verify error" in (logs / "nginx-example-cp-other-ca-error.log").read_text()
    finally:
        process.stop()
