"""The `damo` command as a user meets it: its verbs, its one-line errors, doctor and models."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from damo_cli.device import resolve_device
from damo_cli.errors import DamoError


def damo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "damo_cli", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_every_verb():
    result = damo("--help")
    assert result.returncode == 0
    for verb in (
        "ask",
        "index",
        "search",
        "finetune",
        "train",
        "eval",
        "data",
        "models",
        "doctor",
        "probe",
        "transcribe",
    ):
        assert verb in result.stdout


@pytest.mark.parametrize("verb", ["ask", "index", "search", "finetune", "train", "eval", "data", "models", "doctor"])
def test_every_verb_has_help(verb):
    result = damo(verb, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


def test_bad_input_gives_one_line_and_no_traceback(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    for path in (tmp_path / "missing.mp4", fake, tmp_path):
        result = damo("probe", str(path))
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("damo: error:"), result.stderr
        assert str(path.name) in lines[0]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (no traceback, no usage block)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("search", ""),
        ("search", "   "),
        ("search", "\t\n"),
        ("ask", "clip.mp4", ""),
        ("ask", "clip.mp4", "   "),
    ],
)
def test_empty_query_or_question_is_a_usage_error(args, tmp_path):
    result = damo(*args, "--library", str(tmp_path)) if args[0] == "search" else damo(*args)
    what = "search query" if args[0] == "search" else "question"
    assert result.returncode == 2
    assert one_error_line(result) == f"damo: error: the {what} is empty"


URL_LINE = "damo: error: URLs are not supported: download the video first"


@pytest.mark.parametrize(
    "args",
    [
        ("ask", "http://host/x.mp4", "what happens?"),
        ("ask", "https://host/x.mp4", "   "),  # the URL is named first, whatever else is wrong
        ("index", "https://example.com/videos/a.mp4"),
        ("index", "s3://bucket/videos"),
        ("probe", "rtsp://camera.local/stream"),
        ("transcribe", "ftp://host/talk.mp4"),
        ("finetune", "https://host/clips"),
        ("train", "--stage", "1", "--data", "s3://bucket/composed"),
        ("eval", "--gt", "gt.jsonl", "--videos", "http://host/videos", "--model", "damo-tiny"),
    ],
)
def test_a_url_for_a_video_is_refused_in_one_line(args):
    result = damo(*args)
    assert result.returncode == 2
    assert one_error_line(result) == URL_LINE


def test_an_existing_file_whose_path_looks_like_a_url_is_read_as_a_file(tmp_path):
    (tmp_path / "clips:").mkdir()
    (tmp_path / "clips:" / "a.mp4").write_text("not a video")
    result = subprocess.run(
        [sys.executable, "-m", "damo_cli", "probe", "clips://a.mp4"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 2 and URL_LINE not in result.stderr
    assert one_error_line(result).startswith("damo: error:") and "a.mp4" in result.stderr


def test_doctor_is_green_offline():
    result = damo("doctor", "--json")
    report = json.loads(result.stdout)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert result.returncode == 0 and report["ok"], failed
    names = {c["name"] for c in report["checks"]}
    assert {"device", "damo-tiny visual", "damo-tiny audio", "damo-tiny text", "damo-tiny llm"} <= names
    weights = next(c for c in report["checks"] if c["name"] == "damo-tiny DaMO weights")
    assert "trained through stage 4, sha256 verified" in weights["detail"]


def test_doctor_catches_damaged_trained_weights(tmp_path):
    import shutil

    from damo_cli.cards import models_dir

    cards = tmp_path / "models"
    shutil.copytree(models_dir(), cards)
    weights = cards / "damo-tiny" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte
    weights.write_bytes(bytes(data))
    result = subprocess.run(
        [sys.executable, "-m", "damo_cli", "doctor", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "DAMO_MODELS_DIR": str(cards)},
        timeout=300,
    )
    report = json.loads(result.stdout)
    check = next(c for c in report["checks"] if c["name"] == "damo-tiny DaMO weights")
    assert result.returncode == 1 and not check["ok"] and "sha256" in check["detail"] and check["fix"]


def test_doctor_explains_how_to_fix_a_missing_model():
    result = damo("doctor", "--model", "damo-7b", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1 and not report["ok"]
    missing = [c for c in report["checks"] if not c["ok"]]
    assert missing and all(c["fix"] for c in missing)


def test_models_list_reports_damo_tiny_ready():
    result = damo("models", "list", "--json")
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) >= {"damo-tiny", "damo-base", "damo-7b"}
    assert rows["damo-tiny"]["ready"] and rows["damo-tiny"]["offline"]
    assert not rows["damo-7b"]["offline"]


def test_unknown_model_is_a_clear_error():
    result = damo("doctor", "--model", "no-such-model", "--json")
    report = json.loads(result.stdout)
    assert any("unknown model 'no-such-model'" in c["detail"] for c in report["checks"])


def test_device_choice():
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(DamoError, match="unknown device"):
        resolve_device("tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(DamoError, match="no CUDA GPU"):
            resolve_device("cuda")
