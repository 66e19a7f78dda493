"""Checks every verb runs on its arguments before any work: local paths only, no empty text."""

from __future__ import annotations

import re
from pathlib import Path

from damo_cli.errors import UsageError

# `scheme://host/...`; a Path argument arrives with the `//` collapsed to `/`. Two letters at least, so a Windows
# drive (`C:/videos`) is still a path.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def local_path(path: Path) -> Path:
    """`path` itself, or a `UsageError` when it is a URL (http://, rtsp://, s3://...): damo reads local files only."""
    if _URL.match(str(path)) and not path.exists():
        raise UsageError("URLs are not supported: download the video first")
    return path


def local_paths(paths: list[Path]) -> list[Path]:
    return [local_path(p) for p in paths]


def nonblank(text: str, what: str) -> str:
    """`text`, or a `UsageError` saying `what` is empty when it is empty or only whitespace."""
    if not text.strip():
        raise UsageError(f"the {what} is empty")
    return text
