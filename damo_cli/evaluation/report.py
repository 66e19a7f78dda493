"""One evaluation run: read GT and predictions, pick the protocol, score the model and the baselines, report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damo_cli.evaluation import grounding, qvhighlights
from damo_cli.evaluation.baselines import baseline_predictions
from damo_cli.evaluation.protocol import Protocol, split_id
from damo_cli.evaluation.records import (
    PARSER_NAME,
    Coverage,
    EvaluationError,
    GTQuery,
    PredictionSet,
    load_gt,
    load_predictions,
    match,
)

DATASETS: tuple[str, ...] = ("auto", "charades", "activitynet", "qvhighlights")


@dataclass
class EvalReport:
    """Scores of the model and of each baseline, with the protocol and the coverage (misses) behind them."""

    protocol: Protocol
    metrics: dict[str, Any]  # grounding: R1@m / mIoU; QVHighlights: the official structure (brief + sections)
    coverage: Coverage
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline_notes: dict[str, str] = field(default_factory=dict)
    dropped_windows: int = 0
    answer_lines: int = 0

    def headline(self) -> dict[str, float]:
        """The flat metric -> value mapping shown in tables (the `brief` block for QVHighlights)."""
        return headline(self.metrics)

    def to_json(self) -> dict[str, Any]:
        """Model metrics at the top level (QVHighlights: exactly the official keys), then counts/protocol/baselines."""
        out = dict(self.metrics)
        out["counts"] = {
            **out.get("counts", {}),
            "dropped_windows": self.dropped_windows,
            "answer_lines": self.answer_lines,
        }
        out["protocol"] = self.protocol.as_dict()
        out["baselines"] = {
            name: {"method": self.baseline_notes.get(name, ""), **{k: v for k, v in m.items() if k != "counts"}}
            for name, m in self.baselines.items()
        }
        return out


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    if "brief" in metrics:
        return dict(metrics["brief"])
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def resolve_dataset(dataset: str, gt: Sequence[GTQuery], preds: PredictionSet) -> str:
    """`auto` means QVHighlights when either side carries saliency, else the generic grounding protocol."""
    if dataset not in DATASETS:
        raise EvaluationError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if dataset != "auto":
        return dataset
    if preds.has_saliency or any(q.saliency is not None for q in gt):
        return "qvhighlights"
    return "grounding"


def score(dataset: str, gt: Sequence[GTQuery], preds: PredictionSet, coverage: Coverage) -> dict[str, Any]:
    """Metrics of one prediction set under the resolved dataset's protocol."""
    if dataset == "qvhighlights":
        return qvhighlights.evaluate_qvhighlights(gt, preds, coverage)
    return grounding.evaluate_grounding(gt, preds, coverage)


def evaluate_records(
    gt: Sequence[GTQuery],
    preds: PredictionSet,
    *,
    split: str,
    dataset: str = "auto",
    seed: int = 0,
    strict: bool = False,
    with_baselines: bool = True,
    frame_sampling: str | None = None,
    prompt_hash: str | None = None,
    parser_name: str | None = None,
    model_fingerprint: str | None = None,
) -> EvalReport:
    """Score in-memory records (the entry point for code that runs a model and keeps its predictions in memory)."""
    coverage = match(gt, preds, strict=strict)
    resolved = resolve_dataset(dataset, gt, preds)
    is_qvh = resolved == "qvhighlights"
    protocol = Protocol(
        dataset=resolved,
        split=split,
        iou_rule=qvhighlights.IOU_RULE if is_qvh else grounding.IOU_RULE,
        r1_thresholds=qvhighlights.IOU_THRESHOLDS if is_qvh else grounding.R1_THRESHOLDS,
        frame_sampling=frame_sampling,
        prompt_hash=prompt_hash,
        parser=parser_name or (PARSER_NAME if preds.answer_lines else None),
        model_fingerprint=model_fingerprint,
    )
    report = EvalReport(
        protocol=protocol,
        metrics=score(resolved, gt, preds, coverage),
        coverage=coverage,
        dropped_windows=preds.dropped_windows,
        answer_lines=preds.answer_lines,
    )
    if with_baselines:
        with_saliency = is_qvh and any(q.saliency is not None for q in gt)
        sets, notes = baseline_predictions(gt, seed=seed, with_saliency=with_saliency)
        full = Coverage(queries=len(gt), missing=(), empty=())
        report.baselines = {name: score(resolved, gt, s, full) for name, s in sets.items()}
        report.baseline_notes = notes
    return report


def run_evaluation(
    predictions: Path,
    gt: Path,
    dataset: str = "auto",
    *,
    seed: int = 0,
    strict: bool = False,
    with_baselines: bool = True,
    parser: Callable[[str], list[tuple[float, float]]] | None = None,
    frame_sampling: str | None = None,
    prompt_hash: str | None = None,
    parser_name: str | None = None,
    model_fingerprint: str | None = None,
) -> EvalReport:
    """Score a predictions JSON Lines file against a GT JSON Lines file (see `records` for both formats)."""
    if dataset not in DATASETS:  # fail before reading large files
        raise EvaluationError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    for path, what in ((predictions, "predictions"), (gt, "ground-truth")):
        if not path.exists():  # both checked before either is parsed, so the first error is the real one
            raise EvaluationError(f"{what} file not found: {path}")
    gt_queries = load_gt(gt)
    preds = load_predictions(predictions, parser=parser, durations={q.key: q.duration for q in gt_queries})
    if parser is not None and parser_name is None:
        parser_name = f"{getattr(parser, '__module__', '?')}.{getattr(parser, '__qualname__', repr(parser))}"
    return evaluate_records(
        gt_queries,
        preds,
        split=split_id(gt),
        dataset=dataset,
        seed=seed,
        strict=strict,
        with_baselines=with_baselines,
        frame_sampling=frame_sampling,
        prompt_hash=prompt_hash,
        parser_name=parser_name,
        model_fingerprint=model_fingerprint,
    )
