"""HTTP/2 for the end-to-end suite, with the `h2` package: an echo upstream speaking cleartext
HTTP/2 (as gRPC servers behind Envoy do) that answers with the headers and trailers it
received, and a TLS client that presents a card and sends request trailers."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events


def _pairs(headers) -> list[list[str]]:
    return [[_text(name), _text(value)] for name, value in headers]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


class H2Echo:
    """Cleartext HTTP/2 with prior knowledge on a free loopback port. Every stream is answered
    200 with JSON: `{"headers": [[name, value]…], "trailers": [[name, value]…]}`."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        streams: dict[int, dict] = {}
        with sock:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        streams[event.stream_id] = {"headers": _pairs(event.headers), "trailers": []}
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.TrailersReceived):
                        streams.setdefault(event.stream_id, {"headers": [], "trailers": []})["trailers"] = _pairs(event.headers)
                    elif isinstance(event, h2.events.StreamEnded):
                        body = json.dumps(streams.pop(event.stream_id, {})).encode()
                        conn.send_headers(event.stream_id, [(":status", "200"), ("content-type", "application/json"),
                                                            ("content-length", str(len(body)))])
                        conn.send_data(event.stream_id, body, end_stream=True)
                sock.sendall(conn.data_to_send())

    def stop(self) -> None:
        self.server.close()


@dataclass
class H2Answer:
    status: int = 0
    headers: dict = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def reason(self) -> str | None:
        if self.headers.get("content-type", "").startswith("application/problem+json"):
            return self.json().get("reason")
        return None


def request(port: int, ca: Path, card: tuple[Path, Path] | None, path: str, *, method: str = "POST",
            headers: list[tuple[str, str]] = (), body: bytes = b"", trailers: list[tuple[str, str]] = (),
            timeout: float = 10) -> H2Answer:
    """One HTTP/2 request over TLS (prior knowledge; Envoy's AUTO codec reads the preface),
    its trailers sent after the body."""
    context = ssl.create_default_context(cafile=str(ca))
    if card:
        context.load_cert_chain(str(card[0]), str(card[1]))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    answer = H2Answer()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", method), (":path", path), (":scheme", "https"),
                                   (":authority", "localhost"), *headers])
        if body:
            conn.send_data(stream, body)
        conn.send_headers(stream, list(trailers), end_stream=True)
        sock.sendall(conn.data_to_send())
        done = False
        while not done:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                    pairs = _pairs(event.headers)
                    answer.headers = {name: value for name, value in pairs}
                    answer.status = int(answer.headers.get(":status", "0"))
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                    answer.body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and event.stream_id == stream:
                    done = True
            sock.sendall(conn.data_to_send())
    return answer
