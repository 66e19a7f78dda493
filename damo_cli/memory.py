"""Handing freed heap memory back to the operating system between the pieces of a long video.

A 30-minute index allocates and frees frames, audio pieces and encoder states in two threads; glibc keeps most of
what is freed inside its heaps, so the resident size grew with the video's length although what is alive stays
about the same. `release_free_memory()` (glibc's `malloc_trim`) returns every whole free page; elsewhere (macOS,
musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any


@cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_free_memory() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
