"""The configurations the repository ships for users to copy, started by the development stack
and the end-to-end suite with only their values changed: each shipped value is named, must be
in the file as shipped, and is replaced by the one given. A file that drifted from its renderer
fails here rather than starting half-changed."""

from __future__ import annotations

import re
from pathlib import Path


def ports(text: str, by_shipped: dict[int, int]) -> str:
    """Every shipped port number (a whole number, not part of an address or a longer number)
    replaced in one pass, so that a new port equal to another shipped one is not replaced
    again."""
    if not by_shipped:
        return text
    numbers = {str(old): str(new) for old, new in by_shipped.items()}
    return re.sub(rf"(?<![\d.])({'|'.join(numbers)})(?!\d)", lambda m: numbers[m.group(1)], text)


def replace_once(text: str, old: str, new: str, source: Path | str) -> str:
    if text.count(old) != 1:
        raise ValueError(f"{source} does not contain `{old}` exactly once")
    return text.replace(old, new)


def no_leftovers(text: str, shipped: list[str], source: Path | str) -> None:
    leftover = [value for value in shipped if value in text]
    if leftover:
        raise ValueError(f"{source}: {leftover} left in place")
