"""Files of the development stack that hold secrets — the filter and Envoy configurations
(the proxy credential), keys, tokens, the database — are created 0600 in directories 0700,
whatever the umask: another user on the host must not read what the admin API would refuse
them."""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def directory(path: Path) -> Path:
    """Creates `path` (and missing parents) and makes it 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.chmod(DIR_MODE)
    return path


def write(path: Path, data: str | bytes) -> Path:
    """Writes `data` to `path`, created 0600 before a byte is written (never a moment
    readable); a file already there is replaced, its old mode with it."""
    raw = data.encode() if isinstance(data, str) else data
    partial = path.with_name(path.name + ".partial")
    if partial.exists():
        partial.unlink()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
    os.replace(partial, path)
    return path
