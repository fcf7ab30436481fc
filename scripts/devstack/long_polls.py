"""A fleet of simulated proxies long-polling one control plane over loopback: one connection
and one snapshot long-poll each, every proxy with a credential of its own. Used by the
control plane's test of ten thousand long-polls (it runs this module as a child process, so
the two ends' sockets do not share one process's file limit) and by the fleet benchmark.

    python -m devstack.long_polls HOST:PORT AFTER_VERSION WAIT < credentials

reads one proxy credential a line, opens every long-poll
(`GET /api/v1/snapshot?after_version=AFTER_VERSION&wait=WAIT`), prints `sent N` once all N
requests are written, then, once all are answered, one JSON line: each answer's status,
snapshot version (null on a 304) and the wall-clock time it arrived (ns since the epoch).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Callable

# Connections being opened at once: the listener's accept queue holds about a thousand.
OPENING = 256


async def long_poll(host: str, port: int, path: str, credential: str, opening: asyncio.Semaphore,
                    sent: asyncio.Event, counter: list[int], total: int) -> dict:
    async with opening:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write((f"GET {path} HTTP/1.1\r\nhost: {host}:{port}\r\nconnection: close\r\n"
                      f"authorization: Bearer {credential}\r\n\r\n").encode())
        await writer.drain()
    counter[0] += 1
    if counter[0] == total:
        sent.set()
    raw = await reader.read()
    arrived = time.time_ns()
    writer.close()
    head, _, _ = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else 0
    version = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-certbind-snapshot-version" and status == 200:
            version = int(value.strip())
    return {"status": status, "version": version, "arrived_ns": arrived}


async def fleet(address: str, after_version: int, wait: int, credentials: list[str],
                on_sent: Callable[[], None] = lambda: None) -> list[dict]:
    """Every long-poll's answer; `on_sent` is called once all requests are written."""
    host, _, port = address.rpartition(":")
    path = f"/api/v1/snapshot?after_version={after_version}&wait={wait}"
    opening, sent, counter = asyncio.Semaphore(OPENING), asyncio.Event(), [0]
    polls = [asyncio.create_task(long_poll(host, int(port), path, c, opening, sent, counter, len(credentials)))
             for c in credentials]

    async def announce() -> None:
        await sent.wait()
        on_sent()

    announcing = asyncio.create_task(announce())
    answers = await asyncio.gather(*polls)
    await announcing
    return answers


def main() -> int:
    address, after_version, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    credentials = [line.strip() for line in sys.stdin if line.strip()]
    answers = asyncio.run(fleet(address, after_version, wait, credentials,
                                lambda: print(f"sent {len(credentials)}", flush=True)))
    print(json.dumps(answers), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
