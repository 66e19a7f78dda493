"""Where damo keeps its state: `$DAMO_HOME` when set (tests, benchmarks), else platformdirs' user dirs.

Everything damo writes lives under `cache_dir()` (derived, rebuildable: assembled weights, features) or
`data_dir()` (the index and user state), or under a path the user named on the command line.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "damo"


def _home_override() -> Path | None:
    home = os.environ.get("DAMO_HOME")
    return Path(home).expanduser().resolve() if home else None


def cache_dir() -> Path:
    """Derived files that can always be rebuilt from installed packages (weights, feature caches)."""
    home = _home_override()
    path = home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """User state that cannot be rebuilt for free (the index, fine-tuned models)."""
    home = _home_override()
    path = home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def library_dir() -> Path:
    """The library `damo index` and `damo search` use when none is named (created when first written)."""
    return data_dir() / "library"


def weights_cache_dir() -> Path:
    path = cache_dir() / "weights"
    path.mkdir(parents=True, exist_ok=True)
    return path
