"""The speed work changes no result beyond a stated tolerance: a library indexed with the fast paths (EfficientNet and
MiniLM on ONNX Runtime, the spoken language named from the feature states) answers searches as one indexed with the
reference paths (PyTorch, transformers, faster-whisper's own language detection): the same video and moment first
for every query, its times within one step (0.5 s at damo-tiny's 2 fps), its score within 0.02."""

from __future__ import annotations

from pathlib import Path

import pytest

import damo_cli
from damo_cli.encoders import text as text_module
from damo_cli.encoders import visual as visual_module
from damo_cli.encoders.audio import WhisperBackbone

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
VIDEOS = [EXAMPLES / "slides_music.mp4", EXAMPLES / "bunny_speech.mp4"]
QUERIES = ["quarterly results", "music is playing", "ask not what your country can do for you", "a rabbit in a meadow"]
STEP = 0.5


def _index_and_search(home: Path, library: Path, monkeypatch: pytest.MonkeyPatch) -> list[list]:
    monkeypatch.setenv("DAMO_HOME", str(home))  # its own feature cache: nothing is shared between the two runs
    session = damo_cli.load("damo-tiny", device="cpu")
    report = session.index(VIDEOS, library=library)
    assert len(report.indexed) == len(VIDEOS) and not report.failed
    return [session.search(q, k=3, library=library) for q in QUERIES]


def test_fast_paths_give_the_reference_paths_search_hits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _index_and_search(tmp_path / "fast-home", tmp_path / "fast-library", monkeypatch)
    with monkeypatch.context() as reference:
        reference.setattr(visual_module, "_onnx_session", lambda *args: None)  # PyTorch eager
        reference.setattr(text_module, "_onnx_session", lambda *args: None)  # transformers
        reference.delattr(WhisperBackbone, "add_language_scores")  # faster-whisper detects the language itself
        slow = _index_and_search(tmp_path / "slow-home", tmp_path / "slow-library", reference)
    for query, ours, theirs in zip(QUERIES, fast, slow, strict=True):
        assert ours and theirs, query
        a, b = ours[0], theirs[0]
        assert a.path.name == b.path.name, (query, a, b)
        assert abs(a.start - b.start) <= STEP and abs(a.end - b.end) <= STEP, (query, a, b)
        assert abs(a.score - b.score) <= 0.02, (query, a.score, b.score)
        assert (a.text or "") == (b.text or ""), query  # the same transcript line or on-screen text is quoted
