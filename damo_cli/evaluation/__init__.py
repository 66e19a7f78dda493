"""Evaluation: temporal grounding (Charades-STA / ActivityNet), the QVHighlights protocol, baselines, protocol record.

Entry points: `run_evaluation(predictions_path, gt_path, dataset)` for files, `evaluate_records(...)` for in-memory
predictions; both return an `EvalReport`. Inference code must not need this package.
"""

from damo_cli.evaluation.grounding import grounding_scores, temporal_iou
from damo_cli.evaluation.protocol import Protocol
from damo_cli.evaluation.records import EvaluationError, GTQuery, Prediction, PredictionSet, load_gt, load_predictions
from damo_cli.evaluation.report import EvalReport, evaluate_records, run_evaluation

__all__ = [
    "EvalReport",
    "EvaluationError",
    "GTQuery",
    "Prediction",
    "PredictionSet",
    "Protocol",
    "evaluate_records",
    "grounding_scores",
    "load_gt",
    "load_predictions",
    "run_evaluation",
    "temporal_iou",
]
