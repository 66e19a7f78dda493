"""Shared fixtures. State isolation first: no test writes to the user's real cache or data folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# The whole session shares one DAMO_HOME so one-time conversions (SmolLM2 GGUF -> safetensors, ~20 s) happen once.
# It lives in the checkout (git-ignored) so repeated local runs reuse it; CI's clean clone builds it from scratch.
os.environ.setdefault("DAMO_HOME", str(REPO / ".damo-home"))


@pytest.fixture
def fresh_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DAMO_HOME for tests about building caches from nothing."""
    home = tmp_path_factory.mktemp("damo-home")
    monkeypatch.setenv("DAMO_HOME", str(home))
    return home
