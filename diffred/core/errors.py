"""Errors with one clear line: the bad value and the valid choices."""
from __future__ import annotations


class DiffredError(Exception):
    """Base class: user-facing errors printed as one line by the CLI."""


class AssetNotFound(DiffredError):
    """A dataset or model that is nowhere to be found (the message says where we looked)."""


class CacheWriteError(DiffredError):
    """The cache cannot be written (disk full, read-only, no permission); names the folder."""


def check_choice(what: str, value, choices) -> None:
    """Raise ``ValueError`` naming ``value`` and the valid ``choices`` unless it is one of them."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; valid choices: {', '.join(map(str, choices))}")
