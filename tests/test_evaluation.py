"""Evaluation: IoU, R1/mIoU, misses, the QVHighlights protocol (reproduced against the official numbers), baselines,
and the `damo eval` verb."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from damo_cli.commands import eval_cmd
from damo_cli.evaluation import EvaluationError, load_gt, run_evaluation, temporal_iou
from damo_cli.evaluation.baselines import baseline_predictions, centre_windows, random_windows
from damo_cli.evaluation.grounding import evaluate_grounding, grounding_scores
from damo_cli.evaluation.qvhighlights import detection_ap, saliency_ap
from damo_cli.evaluation.records import match

SHARED = Path(__file__).resolve().parents[2] / "shared"
QVH = SHARED / "data" / "qvhighlights"
CHARADES = SHARED / "data" / "charades_sta" / "charades_test_release.jsonl"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("eval")(eval_cmd.evaluate)

    @app.callback()
    def _root() -> None:  # a callback keeps "eval" a sub-command, as in the real app
        """test app"""

    return app


# ---------------------------------------------------------------- IoU


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 10], [5, 15], 5 / 15),  # partial overlap: 5 s shared, hull 15 s
        ([0, 2], [5, 8], 0.0),  # disjoint
        ([0, 10], [2, 4], 0.2),  # containment: 2 / 10
        ([2, 4], [0, 10], 0.2),
        ([0, 5], [5, 10], 0.0),  # touching at one instant
        ([3.5, 7.5], [3.5, 7.5], 1.0),  # identical
        ([4, 4], [4, 4], 1.0),  # identical zero-length: the same moment
        ([4, 4], [0, 10], 0.0),  # a point inside a window has no extent
    ],
)
def test_temporal_iou_hand_cases(a: list[float], b: list[float], expected: float) -> None:
    assert float(temporal_iou(np.array(a), np.array(b))) == pytest.approx(expected)


def test_temporal_iou_broadcasts_and_zeroes_nan() -> None:
    preds = np.array([[0.0, 10.0], [np.nan, np.nan]])
    gts = np.array([[[0.0, 10.0], [20.0, 30.0]]])  # (1, 2, 2) against (2, 1, 2)
    out = temporal_iou(preds[:, None, :], gts)
    assert out.shape == (2, 2)
    assert out.tolist() == [[1.0, 0.0], [0.0, 0.0]]


times = st.integers(min_value=0, max_value=36_000).map(lambda t: t / 10)  # one-decimal seconds, as damo writes them
windows = st.tuples(times, times).map(sorted)


@given(windows, windows)
def test_temporal_iou_properties(a: list[float], b: list[float]) -> None:
    ab = float(temporal_iou(np.array(a), np.array(b)))
    ba = float(temporal_iou(np.array(b), np.array(a)))
    assert ab == ba
    assert 0.0 <= ab <= 1.0
    assert (ab == 1.0) == (a == b)


# ---------------------------------------------------------------- grounding R1 / mIoU


@pytest.fixture()
def small_set(tmp_path: Path) -> tuple[Path, Path]:
    gt = write_jsonl(
        tmp_path / "gt.jsonl",
        [
            {"qid": 1, "vid": "a", "query": "q1", "duration": 30, "relevant_windows": [[10, 20]]},
            {"qid": 2, "vid": "a", "query": "q2", "duration": 30, "relevant_windows": [[0, 10]]},
            {"qid": 3, "vid": "b", "query": "q3", "duration": 30, "relevant_windows": [[0, 10]]},
            {"qid": 4, "vid": "b", "query": "q4", "duration": 30, "relevant_windows": [[5, 25]]},
            {"qid": 5, "vid": "c", "query": "q5", "duration": 30, "relevant_windows": [[0, 6], [20, 30]]},
        ],
    )
    preds = write_jsonl(
        tmp_path / "preds.jsonl",
        [
            # top-1 by score is [10, 20] (IoU 1) although listed second
            {"qid": 1, "pred_relevant_windows": [[0, 5, 0.1], [10, 20, 0.9]]},
            {"qid": "2", "pred_relevant_windows": [[0, 5]]},  # IoU 0.5; a string qid matches the int one
            {"qid": 3, "pred_relevant_windows": [[5, 15, 1.0]]},  # IoU 5 / 15
            {"qid": 4, "pred_relevant_windows": [[30, 12, 1.0]]},  # end before start: dropped -> miss
            # qid 5 has no prediction line -> miss
        ],
    )
    return gt, preds


def test_r1_miou_on_hand_made_set(small_set: tuple[Path, Path]) -> None:
    gt, preds = small_set
    report = run_evaluation(preds, gt, "charades", with_baselines=False)
    # IoUs: 1, 0.5, 1/3, 0, 0 -> R1@0.3 = 3/5, R1@0.5 = 2/5, R1@0.7 = 1/5, mIoU = (1 + 0.5 + 1/3) / 5
    m = report.metrics
    assert m["R1@0.3"] == 60.0
    assert m["R1@0.5"] == 40.0
    assert m["R1@0.7"] == 20.0
    assert m["mIoU"] == pytest.approx(round((1 + 0.5 + 1 / 3) / 5 * 100, 2))
    assert m["counts"] == {"queries": 5, "scored": 3, "missing_prediction": 1, "no_valid_window": 1}
    assert report.dropped_windows == 1
    assert report.protocol.dataset == "charades"
    assert report.protocol.split.startswith("gt.jsonl@sha256:")
    assert report.protocol.model_fingerprint is None


def test_r1_thresholds_are_inclusive() -> None:
    scores = grounding_scores(np.array([0.3, 0.5, 0.7, 0.69]))
    assert scores.r1 == {0.3: 100.0, 0.5: 75.0, 0.7: 25.0}
    assert scores.miou == pytest.approx(54.75)


def test_strict_makes_missing_predictions_an_error(small_set: tuple[Path, Path]) -> None:
    gt, preds = small_set
    with pytest.raises(EvaluationError, match="no prediction"):
        run_evaluation(preds, gt, strict=True, with_baselines=False)


def test_answer_lines_go_through_the_parser(tmp_path: Path, small_set: tuple[Path, Path]) -> None:
    gt, _ = small_set
    preds = write_jsonl(
        tmp_path / "answers.jsonl",
        [{"qid": 1, "answer": "10-20"}, {"qid": 2, "answer": "I cannot tell."}],
    )

    def parse(text: str) -> list[tuple[float, float]]:
        parts = text.split("-")
        return [(float(parts[0]), float(parts[1]))] if len(parts) == 2 else []

    report = run_evaluation(preds, gt, "charades", parser=parse, with_baselines=False)
    assert report.metrics["R1@0.7"] == 20.0  # only qid 1 hits
    assert report.metrics["counts"]["no_valid_window"] == 1  # the unparsable answer
    assert report.metrics["counts"]["missing_prediction"] == 3
    assert report.answer_lines == 2
    assert report.protocol.parser is not None and "parse" in report.protocol.parser


def test_answer_lines_with_the_project_parser(tmp_path: Path, small_set: tuple[Path, Path]) -> None:
    pytest.importorskip("damo_cli.timestamps")
    gt, _ = small_set
    preds = write_jsonl(
        tmp_path / "answers.jsonl",
        [
            {"qid": 1, "answer": "It happens from 10.0 s to 20.0 s."},
            {"qid": 2, "answer": "from 0 s to 45 s"},  # ends past the 30 s video: rejected with the GT duration
        ],
    )
    report = run_evaluation(preds, gt, "charades", with_baselines=False)
    assert report.metrics["R1@0.7"] == 20.0
    assert report.metrics["counts"]["no_valid_window"] == 1
    assert report.protocol.parser == "damo_cli.timestamps.parse_moments"


# ---------------------------------------------------------------- QVHighlights protocol


def test_detection_ap_hand_cases() -> None:
    gt = np.array([[0.0, 10.0]])
    # a false positive ranked above the hit: precision 1/2 at full recall
    assert detection_ap(gt, np.array([[20, 30, 0.9], [0, 10, 0.8]]))[0] == pytest.approx(0.5)
    # a duplicate of the hit is a false positive after it: AP stays 1
    assert detection_ap(gt, np.array([[0, 10, 0.9], [0, 10, 0.8]]))[0] == pytest.approx(1.0)
    # two GT windows, one found: recall 1/2 at precision 1
    two = np.array([[0.0, 10.0], [20.0, 30.0]])
    assert detection_ap(two, np.array([[0, 10, 1.0]]))[0] == pytest.approx(0.5)
    # IoU 5/15 < 0.5: no hit at any threshold
    assert detection_ap(gt, np.array([[5, 15, 1.0]])).tolist() == [0.0] * 10


def test_detection_ap_equal_iou_takes_the_later_gt_window() -> None:
    # [1, 11] overlaps both GT windows with IoU 9/11; like the reference, it takes the later one, leaving [0, 10] to
    # the exact second prediction: AP 1 at m <= 0.8, and 0.25 above (where 9/11 fails) -> mean 0.775.
    # Taking the first window instead would give 0.625.
    ap = detection_ap(np.array([[0.0, 10.0], [2.0, 12.0]]), np.array([[1, 11, 0.9], [0, 10, 0.8]]))
    assert ap.mean() == pytest.approx(0.775)


def test_saliency_ap_hand_cases() -> None:
    assert saliency_ap(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.1])) == pytest.approx((1 + 2 / 3) / 2)
    # tied scores are one operating point: precision 1/2, not 1 as a list order would give
    assert saliency_ap(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert saliency_ap(np.array([0, 0]), np.array([0.5, 0.1])) == 0.0
    assert saliency_ap(np.array([1, 1]), np.array([0.5, 0.1])) == 1.0


def _leaves(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.skipif(not QVH.is_dir(), reason=f"shared QVHighlights fixtures not found at {QVH}")
def test_qvhighlights_reproduces_official_metrics() -> None:
    official = json.loads((QVH / "sample_val_preds_metrics_raw.json").read_text())
    report = run_evaluation(
        QVH / "sample_val_preds.jsonl", QVH / "highlight_val_release.jsonl", "auto", with_baselines=False
    )
    assert report.protocol.dataset == "qvhighlights"
    ours = _leaves(report.metrics)
    expected = _leaves(official)
    missing = sorted(set(expected) - set(ours))
    assert not missing, f"keys not produced: {missing}"
    deviations = {k: abs(ours[k] - v) for k, v in expected.items()}
    worst = max(deviations, key=deviations.__getitem__)
    assert deviations[worst] <= 0.01, f"{worst}: ours {ours[worst]} vs official {expected[worst]}"
    assert list(report.metrics["brief"]) == list(official["brief"])


def _qvh_small(tmp_path: Path) -> tuple[Path, Path]:
    gt = write_jsonl(
        tmp_path / "qvh_gt.jsonl",
        [
            {
                "qid": 7,
                "vid": "v",
                "query": "a dog jumps",
                "duration": 20,
                "relevant_windows": [[2, 12]],  # exactly 10 s: the short bucket (0, 10], not middle
                "relevant_clip_ids": [1, 2, 3, 4, 5],
                "saliency_scores": [[4, 2, 1], [4, 4, 1], [3, 4, 2], [2, 1, 0], [1, 1, 1]],
            },
            {
                "qid": 8,
                "vid": "v",
                "query": "a cat sleeps",
                "duration": 20,
                "relevant_windows": [[0, 4], [8, 20]],
                "relevant_clip_ids": [0, 1, 4, 5, 6],
                "saliency_scores": [[4, 4, 4], [3, 3, 3], [2, 2, 2], [1, 1, 1], [0, 0, 0]],
            },
        ],
    )
    preds = write_jsonl(
        tmp_path / "qvh_preds.jsonl",
        [
            {
                "qid": 7,
                "pred_relevant_windows": [[2, 12, 0.9], [0, 20, 0.3]],
                "pred_saliency_scores": [0, 1, 5, 2, 0, 0, 0, 0, 0, 0],
            },
            {"qid": 8, "pred_relevant_windows": [[8, 20, 0.8]], "pred_saliency_scores": [9] + [0] * 9},
        ],
    )
    return gt, preds


def test_qvhighlights_small_set_by_hand(tmp_path: Path) -> None:
    gt, preds = _qvh_small(tmp_path)
    m = run_evaluation(preds, gt, "auto", with_baselines=False).metrics
    assert m["full"]["MR-R1"]["0.5"] == 100.0
    # qid 7: AP 1; qid 8: one of two GT windows found at rank 1 -> AP 0.5
    assert m["full"]["MR-mAP"]["average"] == 75.0
    # short: qid 7 (its 10 s window) AP 1, qid 8 (only its [0, 4] window, which [8, 20] misses) AP 0
    assert m["short"]["MR-mAP"]["average"] == 50.0
    assert m["short"]["MR-R1"]["0.5"] == 50.0
    assert m["middle"]["MR-mAP"]["average"] == 100.0  # only qid 8's 12 s window
    assert "long" not in m and "MR-long-mAP" not in m["brief"]
    # Hit1 at VeryGood: qid 7's top clip 2 has scores [4, 4, 1] (hit); qid 8's clip 0 [4, 4, 4] (hit)
    assert m["HL-min-VeryGood"]["HL-Hit1"] == 100.0
    assert m["brief"]["HL-min-VeryGood-Hit1"] == 100.0


# ---------------------------------------------------------------- baselines


def test_baseline_windows_shapes() -> None:
    d = np.array([10.0, 30.0, 100.0])
    r1, r2 = random_windows(d, seed=3), random_windows(d, seed=3)
    assert np.array_equal(r1, r2)
    assert (r1[:, 0] <= r1[:, 1]).all() and (r1[:, 0] >= 0).all() and (r1[:, 1] <= d).all()
    c = centre_windows(d, 0.2)
    assert np.allclose(c, [[4, 6], [12, 18], [40, 60]])


@pytest.mark.skipif(not CHARADES.is_file(), reason=f"shared Charades-STA fixture not found at {CHARADES}")
def test_baselines_on_charades_match_a_plain_loop() -> None:
    gt = load_gt(CHARADES)
    sets, notes = baseline_predictions(gt, seed=0)
    # whole-video R1@0.3 and mIoU, computed by a plain loop with the hull IoU and each query's best GT window
    hits, total = 0, 0.0
    for q in gt:
        best = 0.0
        for s, e in q.windows.tolist():
            inter = max(0.0, min(e, q.duration) - max(s, 0.0))
            hull = max(e, q.duration) - min(s, 0.0)
            best = max(best, inter / hull)
        hits += best >= 0.3
        total += best
    whole = evaluate_grounding(gt, sets["whole"], match(gt, sets["whole"]))
    assert whole["R1@0.3"] == round(hits / len(gt) * 100, 2)
    assert whole["mIoU"] == pytest.approx(total / len(gt) * 100, abs=0.006)
    assert whole["counts"]["scored"] == len(gt)
    assert "seed 0" in notes["random"]


# ---------------------------------------------------------------- the CLI verb


@pytest.mark.skipif(not CHARADES.is_file(), reason=f"shared Charades-STA fixture not found at {CHARADES}")
def test_cli_json_grounding_on_charades(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in CHARADES.read_text().splitlines()[:200]]
    gt = write_jsonl(tmp_path / "gt.jsonl", rows)
    preds = write_jsonl(
        tmp_path / "p.jsonl", [{"qid": r["qid"], "pred_relevant_windows": [r["relevant_windows"][0]]} for r in rows]
    )
    result = CliRunner().invoke(cli(), ["eval", "-p", str(preds), "--gt", str(gt), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {k: out[k] for k in ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")} == {
        "R1@0.3": 100.0,
        "R1@0.5": 100.0,
        "R1@0.7": 100.0,
        "mIoU": 100.0,
    }
    assert set(out["baselines"]) == {"random", "centre", "whole"}
    assert out["baselines"]["whole"]["R1@0.3"] < 100.0
    assert out["protocol"]["dataset"] == "grounding"
    assert out["protocol"]["r1_thresholds"] == [0.3, 0.5, 0.7]
    assert out["protocol"]["prompt_hash"] is None


def test_cli_json_qvhighlights_shape(tmp_path: Path) -> None:
    gt, preds = _qvh_small(tmp_path)
    result = CliRunner().invoke(cli(), ["eval", "--predictions", str(preds), "--gt", str(gt), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    official = ["brief", "HL-min-Fair", "HL-min-Good", "HL-min-VeryGood", "full", "middle", "short"]
    assert list(out)[: len(official)] == official  # the official sections, in the official (sorted) order
    assert set(out) - set(official) == {"counts", "protocol", "baselines"}
    assert set(out["full"]) == {"MR-mAP", "MR-R1"}
    assert set(out["HL-min-Good"]) == {"HL-mAP", "HL-Hit1"}
    assert out["protocol"]["dataset"] == "qvhighlights"
    assert "brief" in out["baselines"]["random"] and "method" in out["baselines"]["random"]


def test_cli_table_prints_baselines_and_protocol(small_set: tuple[Path, Path]) -> None:
    gt, preds = small_set
    result = CliRunner().invoke(cli(), ["eval", "-p", str(preds), "--gt", str(gt)])
    assert result.exit_code == 0, result.output
    for text in ("R1@0.5", "random", "centre", "whole", "protocol", "gt.jsonl@sha256:", "misses (IoU 0): 2"):
        assert text in result.stdout


def test_cli_bad_line_names_its_number(tmp_path: Path, small_set: tuple[Path, Path]) -> None:
    gt, _ = small_set
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": 1, "pred_relevant_windows": [[10, 20]]}\n\n{"qid": 2, "pred_rel\n', encoding="utf-8")
    result = CliRunner().invoke(cli(), ["eval", "-p", str(bad), "--gt", str(gt)])
    assert result.exit_code != 0
    assert isinstance(result.exception, EvaluationError)
    message = str(result.exception)
    assert "bad.jsonl line 3" in message and "\n" not in message


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ([{"qid": 99, "pred_relevant_windows": [[0, 1]]}], "not in the ground truth: 99"),
        ([{"qid": 1}], "line 1: needs 'pred_relevant_windows' or 'answer'"),
        ([{"qid": 1, "pred_relevant_windows": [[0, "x"]]}], "line 1: every window"),
        ([{"qid": 1, "pred_relevant_windows": []}, {"qid": 1, "pred_relevant_windows": []}], "line 2: duplicate qid"),
    ],
)
def test_prediction_errors(
    tmp_path: Path, small_set: tuple[Path, Path], rows: list[dict[str, Any]], needle: str
) -> None:
    gt, _ = small_set
    with pytest.raises(EvaluationError, match=needle):
        run_evaluation(write_jsonl(tmp_path / "p.jsonl", rows), gt, with_baselines=False)


def test_missing_file_is_one_line_error(tmp_path: Path, small_set: tuple[Path, Path]) -> None:
    gt, _ = small_set
    with pytest.raises(EvaluationError, match="predictions file not found"):
        run_evaluation(tmp_path / "nope.jsonl", gt)
