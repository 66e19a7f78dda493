"""The one annotation schema (damo_cli/schema.py): every reader's errors name the file and the line, and each verb
keeps its exit code (damo eval 5, damo data augment / damo finetune 7)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from damo_cli import schema
from damo_cli.data.errors import AnnotationError, DataError
from damo_cli.errors import EvaluationError, EvaluationFileError, SchemaError

GOOD = {"qid": 1, "vid": "a", "query": "a dog runs", "duration": 10, "relevant_windows": [[1, 2]]}
BAD_LINES = [
    ("{oops", "line 2: not valid JSON"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "query"} | {"qid": 2}), "line 2: needs a non-empty 'query'"),
    (json.dumps(GOOD | {"qid": 2, "relevant_windows": [[5, 3]]}), "line 2: start 5 s is not before end 3 s"),
    (json.dumps(GOOD | {"qid": 2, "duration": 0}), "line 2: 'duration' must be a positive number"),
    (json.dumps(GOOD), r"line 2: duplicate qid 1 \(first on line 1\)"),
]


def damo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "damo_cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def _write(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_verb_errors_are_schema_errors_with_their_own_exit_codes() -> None:
    assert issubclass(EvaluationFileError, SchemaError) and issubclass(EvaluationFileError, EvaluationError)
    assert issubclass(AnnotationError, SchemaError) and issubclass(AnnotationError, DataError)
    assert (EvaluationFileError.exit_code, AnnotationError.exit_code) == (5, 7)


@pytest.mark.parametrize(("second", "message"), BAD_LINES)
def test_bad_lines_name_the_file_as_given_and_the_line(tmp_path: Path, second: str, message: str) -> None:
    path = _write(tmp_path / "data" / "x.jsonl", json.dumps(GOOD), second)
    with pytest.raises(SchemaError, match=rf"^{re.escape(str(path))} {message}"):
        schema.read_annotations(path)


def test_rules_say_what_a_reader_needs(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.jsonl", json.dumps({"video": "a", "query": "q", "start": 1, "end": 2}))
    with pytest.raises(SchemaError, match="line 1: needs 'vid', the video's name"):
        schema.read_annotations(path)
    loose = schema.Rules(require_qid=False, require_duration=False, aliases=True)
    (row,) = schema.read_annotations(path, loose)
    assert (row.qid, row.vid, row.windows, row.duration, row.line) == ("a-1", "a", ((1.0, 2.0),), None, 1)
    with pytest.raises(EvaluationFileError, match="annotation file has no annotations"):
        schema.read_annotations(_write(tmp_path / "empty.jsonl", ""), error=EvaluationFileError)


def test_find_video_is_below_training_and_evaluation(tmp_path: Path) -> None:
    video = tmp_path / "videos" / "a.mp4"
    video.parent.mkdir()
    video.write_bytes(b"x")
    assert schema.find_video(tmp_path, "a") == video and schema.find_video(tmp_path, "b") is None


# ------------------------------------------------------------------------------------ through the real CLI verbs


def test_damo_eval_gt_errors_name_the_file_and_line_and_exit_5(tmp_path: Path) -> None:
    preds = _write(tmp_path / "p.jsonl", json.dumps({"qid": 1, "pred_relevant_windows": [[1, 2]]}))
    for second, message in (BAD_LINES[0], BAD_LINES[2], BAD_LINES[3]):  # a query is optional in ground truth
        gt = _write(tmp_path / "gt.jsonl", json.dumps(GOOD), second)
        result = damo("eval", "-p", str(preds), "--gt", "gt.jsonl", cwd=tmp_path)
        assert result.returncode == 5, result.stderr
        assert result.stderr.count("\n") == 1 and f"gt.jsonl {message.replace(chr(92), '')}" in result.stderr
    assert gt.exists()


def test_damo_data_augment_errors_name_the_file_and_line_and_exit_7(tmp_path: Path) -> None:
    for second, message in BAD_LINES:
        _write(tmp_path / "data" / "x.jsonl", json.dumps(GOOD), second)
        result = damo("data", "augment", "data/x.jsonl", "out.jsonl", "--templates-only", cwd=tmp_path)
        assert result.returncode == 7, result.stderr
        assert f"data/x.jsonl {message.replace(chr(92), '')}" in result.stderr and "Traceback" not in result.stderr


def test_damo_finetune_errors_name_the_file_and_line_and_exit_7(tmp_path: Path) -> None:
    cases = [
        ('{"vid": "c", "query": "a cat", "relevant_windows": [[1, 2]]}', "line 1: video 'c' not found"),
        ('{"vid": "c", "query": "a cat", "relevant_windows": [[5, 3]]}', "line 1: start 5 s is not before end 3 s"),
        ("[1, 2]", "line 1: expected a JSON object, got list"),
    ]
    for line, message in cases:
        _write(tmp_path / "clips" / "annotations.jsonl", line)
        result = damo("finetune", "clips", "--align-steps", "1", "--qa-steps", "1", cwd=tmp_path)
        assert result.returncode == 7, result.stderr
        assert f"clips/annotations.jsonl {message}" in result.stderr and "Traceback" not in result.stderr
