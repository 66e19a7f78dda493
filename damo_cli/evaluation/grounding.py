"""Temporal grounding metrics for Charades-STA / ActivityNet-style data (docs/architecture.md §6).

IoU = intersection / (max end - min start). The denominator is the hull of the two windows, which equals the usual
union when they overlap and is larger when they are disjoint; either way a disjoint pair scores 0, so R1@m and mIoU are
the same as with the usual union whenever the windows overlap.

R1@m: the top-1 predicted window has IoU >= m with the ground truth; mIoU: mean top-1 IoU. Both are over ALL
ground-truth queries: a query with no prediction, or whose answer gave no usable window, scores IoU 0. When a query has
several GT windows, its IoU is the best one over them. Numbers are reported in percent, rounded to 2 decimals; `>= m`
allows 1e-9 of floating-point slack so that an IoU that is exactly m on paper (e.g. 0.7) is not lost to rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from damo_cli.evaluation.records import Coverage, GTQuery, PredictionSet
from damo_cli.schema import temporal_iou  # noqa: F401 - re-exported: evaluation's public metric

R1_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
IOU_RULE = "IoU = intersection / (max end - min start); best GT window per query; misses count as IoU 0"


def pad_windows(windows: Sequence[np.ndarray]) -> np.ndarray:
    """Stack ragged (k_i, 2) window lists into (n, max k, 2), padding with NaN (which scores IoU 0)."""
    width = max((len(w) for w in windows), default=1) or 1
    out = np.full((len(windows), width, 2), np.nan)
    for i, w in enumerate(windows):
        out[i, : len(w)] = np.asarray(w, dtype=float)[:, :2]
    return out


def best_iou(top1: np.ndarray, gt_padded: np.ndarray) -> np.ndarray:
    """IoU of each query's top-1 window (n, 2; NaN = miss) with its best GT window (n, k, 2)."""
    return temporal_iou(top1[:, None, :], gt_padded).max(axis=1)


@dataclass(frozen=True)
class GroundingScores:
    """R1@m (percent) per threshold, mIoU (percent), and the per-query IoUs they come from."""

    r1: dict[float, float]
    miou: float
    ious: np.ndarray

    def as_dict(self) -> dict[str, float]:
        out = {f"R1@{m:g}": v for m, v in self.r1.items()}
        out["mIoU"] = self.miou
        return out


def grounding_scores(ious: np.ndarray, thresholds: Sequence[float] = R1_THRESHOLDS) -> GroundingScores:
    """R1@m and mIoU in percent, rounded to 2 decimals, from per-query top-1 IoUs (misses already 0)."""
    ious = np.asarray(ious, dtype=float)
    if ious.size == 0:
        raise ValueError("no queries to score")
    # a tiny tolerance so that an IoU of exactly m computed in floating point (e.g. 0.7 as 0.6999999) counts as >= m
    r1 = {float(m): round(float(np.mean(ious >= m - 1e-9)) * 100, 2) for m in thresholds}
    return GroundingScores(r1=r1, miou=round(float(ious.mean()) * 100, 2), ious=ious)


def top1_windows(gt: Sequence[GTQuery], preds: PredictionSet) -> np.ndarray:
    """(n, 2) top-1 predicted window per GT query, in GT order; NaN rows where there is none (a miss)."""
    out = np.full((len(gt), 2), np.nan)
    for i, q in enumerate(gt):
        p = preds.by_key.get(q.key)
        if p is not None and p.top1 is not None:
            out[i] = p.top1
    return out


def evaluate_grounding(
    gt: Sequence[GTQuery],
    preds: PredictionSet,
    coverage: Coverage,
    thresholds: Sequence[float] = R1_THRESHOLDS,
) -> dict[str, Any]:
    """Score predictions against GT: `{"R1@0.3": ..., "R1@0.5": ..., "R1@0.7": ..., "mIoU": ..., "counts": ...}`."""
    ious = best_iou(top1_windows(gt, preds), pad_windows([q.windows for q in gt]))
    result: dict[str, Any] = dict(grounding_scores(ious, thresholds).as_dict())
    result["counts"] = coverage.as_dict()
    return result
