"""Processes of the development stack: started with their output in a log file, stopped with
SIGTERM (then SIGKILL), waited for by a condition. Nothing here outlives its owner: a Stack
stops whatever it started, in reverse order, whatever happened."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

from . import private


def cargo_binary(name: str, override: str, package: str) -> Path:
    """A binary of this workspace: the one the environment variable `override` names (a
    benchmark names the optimised build), else what `cargo build` made, else the release build."""
    root = Path(__file__).resolve().parents[2]
    if os.environ.get(override):
        return Path(os.environ[override]).resolve()  # the services run from directories of their own
    for profile in ("debug", "release"):
        candidate = root / "target" / profile / name
        if candidate.exists():
            return candidate
    raise RuntimeError(f"no {name} binary: build it with `cargo build -p {package}`")


def free_port() -> int:
    """A port the kernel considers free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Process:
    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict | None = None, cwd: Path | None = None):
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        private.directory(log_dir)
        self.log = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self.offset = 0

    def start(self) -> "Process":
        handle = os.fdopen(os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, private.FILE_MODE), "ab")
        # The log keeps earlier runs; this run's output starts here.
        self.offset = handle.tell()
        # Own process group, so Ctrl-C in the terminal reaches only the supervisor, which
        # then stops each child in order.
        self.popen = subprocess.Popen(self.argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env={**os.environ, **(self.env or {})}, cwd=self.cwd, start_new_session=True)
        handle.close()
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_text(self) -> str:
        """This run's output so far."""
        try:
            with open(self.log, "rb") as f:
                f.seek(self.offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def kill(self) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait(5)


def wait_until(condition: Callable[[], object], timeout: float, what: str, *, interval: float = 0.05,
               alive: Process | None = None):
    """Polls `condition` until it is truthy; fails naming `what` (and the process log's tail
    when the process died meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if alive is not None and not alive.alive():
            raise RuntimeError(f"{alive.name} exited while waiting for {what}; its log ({alive.log}):\n"
                               + alive.log_text()[-4000:])
        if time.monotonic() > deadline:
            tail = f"\n{alive.name}'s log ({alive.log}):\n{alive.log_text()[-4000:]}" if alive else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")
        time.sleep(interval)


class Stack:
    """Stops everything it started, last first."""

    def __init__(self):
        self.stoppers: list[Callable[[], None]] = []

    def add(self, stop: Callable[[], None]) -> None:
        self.stoppers.append(stop)

    def close(self) -> None:
        while self.stoppers:
            stop = self.stoppers.pop()
            try:
                stop()
            except Exception as e:  # keep stopping the rest
                print(f"stack: stopping failed: {e}")

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
