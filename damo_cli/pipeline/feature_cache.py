"""Analysed videos cached on disk, keyed by content key + analyser fingerprint, so `ask` on an indexed video (or a
second `ask`) skips decoding and encoding. One .npz per video, written atomically; a damaged file is ignored."""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from damo_cli.encoders.audio import TranscriptSegment, Word
from damo_cli.encoders.screen_text import ScreenText
from damo_cli.encoders.sounds import SoundEvent
from damo_cli.integrity import atomic_path
from damo_cli.paths import cache_dir
from damo_cli.pipeline.analyse import Analyser, VideoAnalysis
from damo_cli.store import content_key as store_content_key

_ARRAYS = (
    "step_spans", "fused", "bridge", "fusion_tokens", "window_spans", "frame_times", "class_index", "class_prob",
    "colour_times", "colour_shares",
)  # fmt: skip


def _file(content_key: str, fingerprint: str) -> Path:
    return cache_dir() / "analyses" / fingerprint / f"{content_key.replace(':', '-')}.npz"


def save(analysis: VideoAnalysis, content_key: str, fingerprint: str) -> Path:
    target = _file(content_key, fingerprint)
    meta = {
        "duration": analysis.duration,
        "has_audio": analysis.has_audio,
        "transcript": [asdict(seg) for seg in analysis.transcript],
        "screen_text": [asdict(line) for line in analysis.screen_text],
        "sounds": [asdict(event) for event in analysis.sounds],
    }
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, meta=np.array(json.dumps(meta)), **{k: getattr(analysis, k) for k in _ARRAYS})
    return target


def load(path: Path, content_key: str, fingerprint: str) -> VideoAnalysis | None:
    source = _file(content_key, fingerprint)
    if not source.is_file():
        return None
    try:
        with np.load(source, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in _ARRAYS}
        transcript = [
            TranscriptSegment(s["start"], s["end"], s["text"], [Word(**w) for w in s["words"]])
            for s in meta["transcript"]
        ]
        screen = [ScreenText(**line) for line in meta["screen_text"]]
        events = [SoundEvent(**event) for event in meta["sounds"]]
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return None  # damaged or from an older layout: analyse again
    return VideoAnalysis(
        path=Path(path),
        duration=meta["duration"],
        has_audio=meta["has_audio"],
        transcript=transcript,
        screen_text=screen,
        sounds=events,
        **arrays,
    )


def load_or_analyse(analyser: Analyser, path: Path, content_key: str | None = None) -> tuple[VideoAnalysis, bool]:
    """What `damo ask` does before it answers: (the cached analysis of this content and model, True), or (a new
    analysis, saved for next time, False)."""
    key = content_key or store_content_key(path)
    analysis = load(path, key, analyser.fingerprint)
    if analysis is not None:
        return analysis, True
    analysis = analyser.analyse(path)
    save(analysis, key, analyser.fingerprint)
    return analysis, False
