"""Output writers (damo_cli/writers.py): one class per format; `damo search --srt` prints through one."""

from __future__ import annotations

import io
from pathlib import Path

from typer.testing import CliRunner

from damo_cli.pipeline.search import SearchHit
from damo_cli.writers import HIT_WRITERS, HitSrtWriter, srt_time

HITS = [
    SearchHit(Path("/videos/garden.mp4"), 12.04, 14.5, 0.8349, "the dog jumps"),
    SearchHit(Path("/videos/talk.mkv"), 3661.2, 3665.0, 0.41, None),
]
EXPECTED = (
    "1\n00:00:12,040 --> 00:00:14,500\ngarden.mp4 (0.83): the dog jumps\n\n"
    "2\n01:01:01,200 --> 01:01:05,000\ntalk.mkv (0.41)\n\n"
)


def test_srt_time() -> None:
    assert srt_time(0) == "00:00:00,000"
    assert srt_time(-1) == "00:00:00,000"
    assert srt_time(3723.4567) == "01:02:03,457"


def test_hits_as_subrip() -> None:
    out = io.StringIO()
    HitSrtWriter().write(HITS, out)
    assert out.getvalue() == EXPECTED
    assert HIT_WRITERS["srt"] is HitSrtWriter


def test_search_srt_prints_through_the_writer(monkeypatch) -> None:  # noqa: ANN001
    from damo_cli.cli import app
    from damo_cli.commands import library_cmds

    monkeypatch.setattr(library_cmds, "_search_on_server", lambda *args: list(HITS))
    result = CliRunner().invoke(app, ["search", "a dog", "--srt"])
    assert result.exit_code == 0, result.output
    assert result.stdout == EXPECTED
