"""A real TLS client for the end-to-end suite: Python's ssl presenting real client
certificates, and raw requests for spellings http.client would tidy up."""

from __future__ import annotations

import json
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Answer:
    """What came back: an HTTP answer, or the TLS layer's refusal (`tls_refused`)."""

    status: int = 0
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    tls_refused: str = ""

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def reason(self) -> str | None:
        """The filter's machine-readable refusal reason (problem+json), if any."""
        if self.headers.get("content-type", "").startswith("application/problem+json"):
            return self.json().get("reason")
        return None

    def upstream_headers(self) -> dict[str, list[str]]:
        """The headers the echo upstream received, by lowercase name."""
        seen: dict[str, list[str]] = {}
        for name, value in self.json()["headers"]:
            seen.setdefault(name.lower(), []).append(value)
        return seen

    def identity(self) -> dict[str, str]:
        """The x-dm-* headers the upstream received (the filter's trusted identity)."""
        return {k: v[0] for k, v in self.upstream_headers().items() if k.startswith("x-dm-")}

    def __repr__(self) -> str:
        if self.tls_refused:
            return f"Answer(tls_refused={self.tls_refused!r})"
        return f"Answer({self.status}, reason={self.reason!r}, body={self.body[:300]!r})"


class Client:
    def __init__(self, port: int, ca: Path, host: str = "localhost", tls: bool = True):
        self.port, self.ca, self.host, self.tls = port, ca, host, tls

    def context(self, card: tuple[Path, Path] | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if card:
            context.load_cert_chain(str(card[0]), str(card[1]))
        return context

    def raw(self, request: bytes, card: tuple[Path, Path] | None = None, timeout: float = 10) -> Answer:
        """Sends `request` as written (one HTTP/1.1 request, `Connection: close` expected)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                if not self.tls:
                    if card:
                        raise ValueError("a plain-HTTP listener cannot be shown a client certificate")
                    return _exchange(sock, request)
                with self.context(card).wrap_socket(sock, server_hostname=self.host) as tls:
                    data = _exchange_bytes(tls, request)
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
            return Answer(tls_refused=f"{type(e).__name__}: {e}")
        if not data:
            return Answer(tls_refused="connection closed without an answer")
        return parse_http(data)


    def get(self, path: str, card: tuple[Path, Path] | None = None, headers: list[tuple[str, str]] | None = None,
            token: str | None = None, method: str = "GET") -> Answer:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Connection: close"]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        for name, value in headers or []:
            lines.append(f"{name}: {value}")
        return self.raw(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), card)


def parse_http(data: bytes) -> Answer:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    return Answer(status=status, headers=headers, body=body)


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


def _exchange_bytes(sock, request: bytes) -> bytes:
    """Sends the request and reads one answer: up to its Content-Length when it has one
    (Envoy holds a closing connection open for its delayed-close timeout), else to EOF."""
    sock.sendall(request)
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = _content_length(head)
            if length is not None and len(body) >= length:
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return None


def _exchange(sock, request: bytes) -> Answer:
    return parse_http(_exchange_bytes(sock, request))
