"""Output writers, one class per format, so every verb prints transcripts and found moments the same way."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Protocol, TextIO

from damo_cli.encoders.audio import TranscriptSegment


def srt_time(seconds: float) -> str:
    """SubRip time: HH:MM:SS,mmm."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


class TranscriptWriter(Protocol):
    def write(self, segments: Sequence[TranscriptSegment], out: TextIO) -> None: ...


class TextWriter:
    """One line per segment: `[  5.2 s →   8.9 s] text`."""

    def write(self, segments: Sequence[TranscriptSegment], out: TextIO) -> None:
        for seg in segments:
            out.write(f"[{seg.start:6.1f} s → {seg.end:6.1f} s] {seg.text}\n")


class SrtWriter:
    def write(self, segments: Sequence[TranscriptSegment], out: TextIO) -> None:
        for number, seg in enumerate(segments, start=1):
            out.write(f"{number}\n{srt_time(seg.start)} --> {srt_time(seg.end)}\n{seg.text}\n\n")


class JsonLinesWriter:
    """One JSON object per segment, with word timings."""

    def write(self, segments: Sequence[TranscriptSegment], out: TextIO) -> None:
        for seg in segments:
            out.write(json.dumps(asdict(seg), ensure_ascii=False) + "\n")


TRANSCRIPT_WRITERS: dict[str, type[TranscriptWriter]] = {"text": TextWriter, "srt": SrtWriter, "jsonl": JsonLinesWriter}


class Hit(Protocol):
    """A found moment (damo_cli.pipeline.search.SearchHit): the video, its stretch, the score, what matched."""

    path: Path
    start: float
    end: float
    score: float
    text: str | None


class HitWriter(Protocol):
    def write(self, hits: Sequence[Hit], out: TextIO) -> None: ...


class HitSrtWriter:
    """One subtitle per moment, best first: `video.mp4 (0.83): what was said, shown or heard`."""

    def write(self, hits: Sequence[Hit], out: TextIO) -> None:
        for number, hit in enumerate(hits, start=1):
            label = f"{hit.path.name} ({hit.score:.2f})" + (f": {hit.text}" if hit.text else "")
            out.write(f"{number}\n{srt_time(hit.start)} --> {srt_time(hit.end)}\n{label}\n\n")


HIT_WRITERS: dict[str, type[HitWriter]] = {"srt": HitSrtWriter}
