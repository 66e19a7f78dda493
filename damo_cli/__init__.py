"""damo: ask questions about your own videos and find the moments you ask for, offline (DaMO, arXiv 2506.11558).

As a library (docs/architecture.md §8): `session = damo_cli.load("damo-tiny")`, then `session.ask(video, question)`,
`session.search(query)` and `session.index(paths)`. Importing `damo_cli` imports nothing heavy (no torch).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing is ~10 ms of every `damo` start (the quick lane's budget)
__version__ = "0.1.0"
__all__ = ["Session", "__version__", "library_stats", "load"]

if TYPE_CHECKING:
    from typing import Any

    from damo_cli.api import Session, library_stats, load


def __getattr__(name: str) -> Any:
    """`damo_cli.load`, `damo_cli.Session`, `damo_cli.library_stats`: from `damo_cli.api`, imported on first use."""
    if name in ("Session", "load", "library_stats"):
        from damo_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'damo_cli' has no attribute {name!r}")
