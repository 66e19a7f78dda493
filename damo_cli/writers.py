"""Output writers, one class per format, so every verb prints transcripts, found moments and answers the same way.

Light on purpose (the standard library; rich only inside the text writers): the quick lane to a running `damo serve`
(`damo_cli.server.quick`) prints through these same classes before anything heavy is imported."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

TYPE_CHECKING = False  # typing is not imported at run time: the quick lane prints through this module
if TYPE_CHECKING:
    from typing import Protocol, TextIO

    from damo_cli.encoders.audio import TranscriptSegment

    class TranscriptWriter(Protocol):
        def write(self, segments: Sequence[TranscriptSegment], out: TextIO) -> None: ...

    class Hit(Protocol):
        """A found moment (damo_cli.pipeline.search.SearchHit): the video, its stretch, the score, what matched."""

        path: Path
        start: float
        end: float
        score: float
        text: str | None

    class HitWriter(Protocol):
        def write(self, hits: Sequence[Hit], out: TextIO) -> None: ...


def srt_time(seconds: float) -> str:
    """SubRip time: HH:MM:SS,mmm."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


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
        from dataclasses import asdict

        for seg in segments:
            out.write(json.dumps(asdict(seg), ensure_ascii=False) + "\n")


TRANSCRIPT_WRITERS: dict[str, type[TranscriptWriter]] = {"text": TextWriter, "srt": SrtWriter, "jsonl": JsonLinesWriter}


class HitSrtWriter:
    """One subtitle per moment, best first: `video.mp4 (0.83): what was said, shown or heard`."""

    def write(self, hits: Sequence[Hit], out: TextIO) -> None:
        for number, hit in enumerate(hits, start=1):
            label = f"{hit.path.name} ({hit.score:.2f})" + (f": {hit.text}" if hit.text else "")
            out.write(f"{number}\n{srt_time(hit.start)} --> {srt_time(hit.end)}\n{label}\n\n")


class HitJsonWriter:
    """`damo search --json`: one JSON array of the hits' `to_json()` objects, on one line."""

    def write(self, hits: Sequence[dict], out: TextIO) -> None:
        out.write(json.dumps(list(hits), ensure_ascii=False) + "\n")


class HitTableWriter:
    """`damo search`'s table: rank, video, moment, score, and what was said, shown or heard there."""

    def __init__(self, query: str) -> None:
        self.query = query

    def write(self, hits: Sequence[Hit], out: TextIO) -> None:
        from rich.console import Console
        from rich.table import Table

        console = Console(file=out)
        if not hits:
            console.print("no moments found")
            return
        table = Table(title=f"damo search: {self.query}")
        for column in ("#", "video", "moment", "score", "said, shown or heard"):
            table.add_column(column, overflow="fold")
        for rank, hit in enumerate(hits, start=1):
            table.add_row(
                str(rank), str(hit.path), f"{hit.start:.1f}–{hit.end:.1f} s", f"{hit.score:.2f}", hit.text or ""
            )
        console.print(table)


HIT_WRITERS: dict[str, type[HitWriter]] = {"srt": HitSrtWriter}


class AnswerWriter:
    """`damo ask`: the answer, then each supporting moment with its score (times and scores unrounded); with
    `as_json`, exactly the one JSON object `AskResult.to_json()` gives."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def write(self, payload: dict, moments: Sequence[tuple[float, float, float]], out: TextIO) -> None:
        if self.as_json:
            out.write(json.dumps(payload, ensure_ascii=False) + "\n")
            return
        from rich.console import Console

        console = Console(file=out)
        console.print(payload["answer"])
        for start, end, score in moments:
            console.print(f"  {start:7.1f} s → {end:7.1f} s   score {score:.2f}")
