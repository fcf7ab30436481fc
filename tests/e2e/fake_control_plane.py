"""A stand-in for the control plane's snapshot route, in front of the real one: it relays
full snapshots (counting them), or serves a tampered copy of the newest one, so the suite can
watch what the filter does with each. It speaks as the real one does: HTTPS with the
development PKI's server certificate when the real one does."""

from __future__ import annotations

import re
import ssl
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FULL = "application/vnd.certbind.snapshot"


class FakeControlPlane:
    def __init__(self, upstream, credential: str):
        """`upstream`: the real control plane (`devstack.controlplane.ControlPlane`)."""
        self.upstream, self.credential = upstream, credential
        self.tamper = False
        self.served: list[tuple[int, int]] = []  # (status, version) of every answer
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - the base class's name
                status, version, body = fake.answer(self.headers.get("If-None-Match"))
                with fake.lock:
                    fake.served.append((status, version))
                self.send_response(status)
                if status == 200:
                    self.send_header("Content-Type", FULL)
                    self.send_header("ETag", f'"{version}"')
                    self.send_header("X-Certbind-Snapshot-Version", str(version))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if upstream.tls_dir is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(upstream.tls_dir / "server.crt", upstream.tls_dir / "server.key")
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def latest(self) -> tuple[int, bytes]:
        request = urllib.request.Request(self.upstream.url + "/api/v1/snapshot", headers={
            "Authorization": f"Bearer {self.credential}", "Accept": FULL})
        with urllib.request.urlopen(request, timeout=10, context=self.upstream.ssl_context) as r:
            return _version(r.headers["ETag"]), r.read()

    def answer(self, if_none_match: str | None) -> tuple[int, int, bytes]:
        version, body = self.latest()
        held = _version(if_none_match) if if_none_match else -1
        if held >= version:
            time.sleep(0.2)  # a short long-poll: nothing new
            return 304, held, b""
        if self.tamper:
            damaged = bytearray(body)
            damaged[-1] ^= 0x01  # a byte of the last section: its digest no longer matches
            return 200, version, bytes(damaged)
        return 200, version, body

    def full_answers(self) -> int:
        with self.lock:
            return sum(1 for status, _ in self.served if status == 200)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _version(etag: str) -> int:
    """The version an ETag names (`"7"`, or `"v7-…"`)."""
    match = re.search(r"\d+", etag)
    return int(match.group(0)) if match else 0
