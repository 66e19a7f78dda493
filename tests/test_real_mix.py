"""`damo data compose-real`: training videos cut from hand-labelled real clips, labels shifted to where each clip
plays, train split only. Uses two train clips of ../shared (skips where it is absent)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from damo_cli.data.errors import DataError
from damo_cli.data.real_mix import compose_real_mix, load_real_clips
from damo_cli.media.audio import load_audio
from damo_cli.media.probe import probe

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "data" / "real-clips"
CLIPS = ROOT.parent / "shared" / "data" / "real-clips" / "clips"
pytestmark = pytest.mark.skipif(not CLIPS.is_dir(), reason="../shared is absent")
SILENT = "sample-videos__want.mkv"  # 1.57 s, no audio track
SPOKEN = "c3d__v_ApplyEyeMakeup_g01_c01.avi"  # 6.56 s, a woman talking


def _moments(tmp_path: Path, files: tuple[str, ...], split: str = "train") -> Path:
    rows = [json.loads(line) for line in (LABELS / "moments-train.jsonl").read_text(encoding="utf-8").splitlines()]
    chosen = [dict(r, split=split) for r in rows if r["vid"] in files]
    path = tmp_path / "moments.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in chosen), encoding="utf-8")
    return path


def test_real_mix_plays_clips_in_turn_with_their_moments_shifted_and_their_sound(tmp_path):
    clips = load_real_clips(_moments(tmp_path, (SILENT, SPOKEN)), CLIPS, LABELS / "labels.jsonl")
    out = compose_real_mix(tmp_path / "mix", clips, count=4, seed=0, max_clips=2)
    videos = [json.loads(line) for line in (out / "clips.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    originals = {c.file: c for c in clips}
    assert any(len(v["clips"]) == 2 for v in videos)
    for video in videos:
        path = out / "videos" / f"{video['vid']}.mp4"
        info = probe(path)
        assert (info.width, info.height) == (320, 180) and info.has_audio
        assert abs(info.duration - video["duration"]) < 0.15
        audio = load_audio(path)
        for part in video["clips"]:
            clip = originals[part["file"]]
            assert abs((part["end"] - part["start"]) - clip.duration) < 0.1
            # every hand-written moment of the clip, moved to where the clip plays in this video
            mine = [r for r in rows if r["vid"] == video["vid"] and r["source"] == clip.file]
            for query, (a, b), _ in clip.moments:
                want = [round(part["start"] + a, 2), round(min(part["start"] + b, part["end"]), 2)]
                assert any(r["query"] == query and r["relevant_windows"][0] == pytest.approx(want, abs=0.02)
                           for r in mine), (query, want)  # fmt: skip
            # the clip's summary spans the whole clip
            assert any(r["query"] == clip.summary and r["relevant_windows"][0] == pytest.approx(
                [part["start"], part["end"]], abs=0.02) for r in mine)  # fmt: skip
            sound = audio[int(part["start"] * 16000) + 800 : int(part["end"] * 16000) - 800]
            rms = float(np.sqrt(np.mean(sound**2)))
            assert (rms < 1e-3) if clip.file == SILENT else (rms > 1e-2), (clip.file, rms)
    qa = [json.loads(line) for line in (out / "augmented.jsonl").read_text().splitlines()]
    answers = {t["turns"][1]["content"].lower() for t in qa}
    assert any("eyeshadow" in a or "makeup" in a or "eye" in a for a in answers)


def test_real_mix_refuses_dev_clips_and_a_clip_that_changed(tmp_path):
    with pytest.raises(DataError, match="not in the train split"):
        load_real_clips(_moments(tmp_path, (SILENT,), split="dev"), CLIPS)
    moments = _moments(tmp_path, (SILENT,))
    rows = [dict(json.loads(line), sha256="0" * 64) for line in moments.read_text().splitlines()]
    moments.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match="does not match the sha256"):
        load_real_clips(moments, CLIPS)


def test_compose_real_cli_writes_a_training_folder_and_refuses_a_full_one(tmp_path):
    moments = _moments(tmp_path, (SILENT,))
    cmd = [sys.executable, "-m", "damo_cli", "data", "compose-real", str(tmp_path / "mix"), "--moments", str(moments),
           "--clips", str(CLIPS), "--count", "1"]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "1 video(s) from 1 real clips" in first.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "not empty" in again.stderr and "Traceback" not in again.stderr
