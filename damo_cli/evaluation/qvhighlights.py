"""The QVHighlights standalone evaluation protocol (moment retrieval + highlight detection), from its definition.

Moment retrieval (MR), per length bucket `full`, and `short` / `middle` / `long` (a GT window of length l is in a bucket
when lo < l <= hi with (0, 10], (10, 30], (30, inf); within a bucket only its GT windows count and queries with none are
dropped; predictions are untouched):
- `MR-R1@m`: the top-1 predicted window is matched to the GT window it overlaps best (ordinary IoU; the first one on
  ties), then scored with the hull IoU (intersection / (max end - min start)) against m. Percent of queries.
- `MR-mAP@m`: per query, ActivityNet-style detection AP of its first 10 ranked windows (best score first, file order
  on ties) against all its GT windows: each prediction in turn takes the free GT window it overlaps most (ordinary IoU)
  if that IoU >= m, else it is a false positive; then all-point interpolated AP (precision made non-increasing, summed
  over recall steps). Mean over queries; `average` = mean over m in 0.5:0.05:0.95.

Highlight detection (HL), at three saliency levels "Fair" / "Good" / "VeryGood" = score >= 2 / 3 / 4 on the 0-4 scale
(the "min" in the key names is this minimum score, applied to each annotator's scores separately; clips outside
`relevant_clip_ids` score 0; 2-second clips, int(duration / 2) of them):
- `HL-Hit1`: the clip with the highest predicted saliency (the first on ties) is a hit if ANY annotator rates it at or
  above the level. Percent of queries.
- `HL-mAP`: per query and per annotator, AP of clips ranked by predicted saliency against that annotator's binary
  labels (`saliency_ap`: tied scores form one operating point); mean over annotators and queries. Predicted saliency
  longer than the clip count is cut; shorter is padded with 0 (the reference script's rule).

All numbers are percent rounded to 2 decimals; averages are taken before rounding. One deviation from the reference
script, which refuses such input: a GT query with no prediction (or no usable window / saliency) scores 0 and is
counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from damo_cli.evaluation.grounding import temporal_iou
from damo_cli.evaluation.records import Coverage, GTQuery, PredictionSet

IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
MAX_PRED_WINDOWS = 10
LENGTH_BUCKETS: dict[str, tuple[float, float]] = {
    "short": (0.0, 10.0),
    "middle": (10.0, 30.0),
    "long": (30.0, float("inf")),
}
SALIENCY_LEVELS: dict[str, float] = {"Fair": 2.0, "Good": 3.0, "VeryGood": 4.0}
IOU_RULE = (
    "MR-R1: top-1 vs its best-overlapping GT window, IoU = inter / (max end - min start); "
    "MR-mAP: ordinary IoU, first 10 ranked windows, all-point AP at 0.5:0.05:0.95; HL: 2 s clips, levels >= 2/3/4"
)


def _pct(x: float) -> float:
    return round(float(x) * 100, 2)


def _key(m: float) -> str:
    return f"{m:g}"


def union_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(n, m) ordinary IoU, intersection / (len1 + len2 - intersection), of windows `pred` (n, 2) and `gt` (m, 2)."""
    p = np.asarray(pred, dtype=float)[:, None, :2]
    g = np.asarray(gt, dtype=float)[None, :, :2]
    inter = np.clip(np.minimum(p[..., 1], g[..., 1]) - np.maximum(p[..., 0], g[..., 0]), 0.0, None)
    union = (p[..., 1] - p[..., 0]) + (g[..., 1] - g[..., 0]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> np.ndarray | float:
    """All-point interpolated AP per row of (t, k) precision / recall curves (one 1-D curve gives a float).

    The curve is closed with (recall 0, precision 0) and (recall 1, precision 0), precision at recall r becomes the best
    precision at any recall >= r, and AP is the area under that step curve.
    """
    prec = np.atleast_2d(np.asarray(precision, dtype=float))
    rec = np.atleast_2d(np.asarray(recall, dtype=float))
    zeros, ones = np.zeros((len(prec), 1)), np.ones((len(prec), 1))
    prec = np.hstack([zeros, prec, zeros])
    rec = np.hstack([zeros, rec, ones])
    envelope = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
    ap = np.sum(np.diff(rec, axis=1) * envelope[:, 1:], axis=1)  # steps with no recall gain add 0
    return ap if np.ndim(precision) > 1 else float(ap[0])


def _ap_from_ious(ious: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Detection AP per threshold from the (k ranked predictions, g GT windows) IoU matrix."""
    k, g = ious.shape
    if k == 0 or g == 0:
        return np.zeros(len(thresholds))
    clears = ious[None, :, :] >= thresholds[:, None, None]  # (t, k, g)
    if g == 1:
        # one GT window: only the first prediction that clears the threshold is a true positive
        hit = clears[:, :, 0]
        tp = hit & (np.cumsum(hit, axis=1) == 1)
    else:
        taken = np.zeros((len(thresholds), g), dtype=bool)
        tp = np.zeros((len(thresholds), k), dtype=bool)
        for i in range(k):
            free = clears[:, i, :] & ~taken
            # the free GT window with the highest IoU; on equal IoU the later window, as the reference's reversed
            # ascending sort orders them
            score = np.where(free, ious[i][None, :], -np.inf)
            j = g - 1 - np.argmax(score[:, ::-1], axis=1)
            hit = free.any(axis=1)
            taken[np.flatnonzero(hit), j[hit]] = True
            tp[:, i] = hit
    tp_cum = np.cumsum(tp, axis=1, dtype=float)
    return np.asarray(interpolated_ap(tp_cum / np.arange(1, k + 1), tp_cum / g))


def detection_ap(gt_windows: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] = IOU_THRESHOLDS) -> np.ndarray:
    """AP per IoU threshold of ranked windows `pred` (k, >= 2 columns; best first) against `gt_windows` (g, 2)."""
    pred = np.asarray(pred, dtype=float).reshape(-1, np.shape(pred)[-1] if np.ndim(pred) > 1 else 2)
    gt_windows = np.asarray(gt_windows, dtype=float).reshape(-1, 2)
    return _ap_from_ious(union_iou(pred, gt_windows), np.asarray(thresholds, dtype=float))


def _evaluate_mr(gt: Sequence[GTQuery], preds: PredictionSet) -> tuple[dict[str, Any], dict[str, int]]:
    """`{bucket: {"MR-mAP": ..., "MR-R1": ...}}` for `full` and every non-empty length bucket, plus query counts."""
    thr = np.asarray(IOU_THRESHOLDS)
    buckets: dict[str, tuple[float, float]] = {"full": (-np.inf, np.inf), **LENGTH_BUCKETS}
    ap_rows: dict[str, list[np.ndarray]] = {name: [] for name in buckets}
    # per bucket: (top-1 window, its best-matching GT window) pairs; NaN rows for queries with no prediction
    r1_pairs: dict[str, list[np.ndarray]] = {name: [] for name in buckets}
    for q in gt:
        p = preds.by_key.get(q.key)
        ranked = p.windows[:MAX_PRED_WINDOWS] if p is not None else np.zeros((0, 3))
        ious = union_iou(ranked, q.windows)  # (k, g), computed once and sliced per bucket
        lengths = q.windows[:, 1] - q.windows[:, 0]
        for name, (lo, hi) in buckets.items():
            cols = np.flatnonzero((lengths > lo) & (lengths <= hi))
            if not len(cols):
                continue  # the query has no GT window of this length: not part of the bucket
            ap_rows[name].append(_ap_from_ious(ious[:, cols], thr))
            if len(ranked):
                best = cols[int(np.argmax(ious[0, cols]))]  # argmax: the first GT window on ties
                r1_pairs[name].append(np.concatenate([ranked[0, :2], q.windows[best]]))
            else:
                r1_pairs[name].append(np.full(4, np.nan))
    out: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for name in buckets:
        if not ap_rows[name]:
            continue
        ap = np.mean(np.stack(ap_rows[name]), axis=0)
        pairs = np.stack(r1_pairs[name])
        r1 = temporal_iou(pairs[:, :2], pairs[:, 2:])  # NaN pairs (misses) score 0
        mr_map = {_key(m): _pct(v) for m, v in zip(IOU_THRESHOLDS, ap, strict=True)}
        mr_map["average"] = _pct(ap.mean())
        out[name] = {"MR-mAP": mr_map, "MR-R1": {_key(m): _pct(np.mean(r1 >= m)) for m in IOU_THRESHOLDS}}
        counts[f"MR-{name}"] = len(r1)
    return out, counts


def saliency_ap(labels: np.ndarray, scores: np.ndarray) -> np.ndarray | float:
    """Highlight AP of 0/1 clip `labels` (n,) or (n, columns) given predicted clip `scores` (n,), per column.

    Clips with equal scores form one operating point, as on a precision-recall curve over distinct score thresholds.
    At each threshold that recalls at least one more positive, take the interpolated precision (the best precision at
    that recall or higher); AP is the plain mean of these. A column with every clip positive scores 1, with none 0.
    Without ties this is the usual all-point AP.
    """
    lab = np.asarray(labels, dtype=float)
    single = lab.ndim == 1
    lab = lab.reshape(len(lab), -1)
    positives = lab.sum(axis=0)
    if len(lab) == 0:
        ap = np.zeros(lab.shape[1])
    else:
        s = np.asarray(scores, dtype=float)
        order = np.argsort(-s, kind="stable")
        ranked_scores = s[order]
        group_end = np.flatnonzero(np.r_[ranked_scores[1:] != ranked_scores[:-1], True])  # last clip of each tie group
        tp = np.cumsum(lab[order], axis=0)[group_end]  # (groups, columns)
        precision = tp / (group_end + 1)[:, None]
        envelope = np.maximum.accumulate(precision[::-1], axis=0)[::-1]
        gained = np.diff(tp, axis=0, prepend=0.0) > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = (envelope * gained).sum(axis=0) / gained.sum(axis=0)
        ap = np.where(positives == 0, 0.0, np.where(positives == len(lab), 1.0, ap))
    return float(ap[0]) if single else ap


def _evaluate_hl(gt: Sequence[GTQuery], preds: PredictionSet) -> dict[str, Any]:
    """`{"HL-min-<level>": {"HL-mAP", "HL-Hit1"}}` over GT queries that carry saliency annotations."""
    levels = np.asarray(list(SALIENCY_LEVELS.values()))
    hits: list[np.ndarray] = []  # per query: (levels,)
    aps: list[np.ndarray] = []  # per query: (levels, annotators)
    for q in gt:
        full = q.saliency_full()
        if full is None:
            continue
        positive = full[:, None, :] >= levels[None, :, None]  # (clips, levels, annotators)
        n_clips, n_levels, n_ann = positive.shape
        p = preds.by_key.get(q.key)
        if p is None or p.saliency is None or not len(p.saliency):
            hits.append(np.zeros(n_levels))
            aps.append(np.zeros((n_levels, n_ann)))
            continue
        top = int(np.argmax(p.saliency))  # the first clip on ties
        hits.append(positive[top].any(axis=1).astype(float) if top < n_clips else np.zeros(n_levels))
        scores = np.zeros(n_clips)
        n = min(len(p.saliency), n_clips)
        scores[:n] = p.saliency[:n]
        aps.append(np.asarray(saliency_ap(positive.reshape(n_clips, -1), scores)).reshape(n_levels, n_ann))
    hit = np.mean(np.stack(hits), axis=0)
    # mean over annotators then queries; the same as the reference only when all queries have as many annotators
    ap = np.mean(np.stack([a.mean(axis=1) for a in aps]), axis=0)
    return {
        f"HL-min-{name}": {"HL-mAP": _pct(ap[i]), "HL-Hit1": _pct(hit[i])} for i, name in enumerate(SALIENCY_LEVELS)
    }


def evaluate_qvhighlights(gt: Sequence[GTQuery], preds: PredictionSet, coverage: Coverage) -> dict[str, Any]:
    """Official-structure metrics: `brief`, then `HL-min-<level>` and `full`/`long`/`middle`/`short`, sorted by name.

    HL sections appear only when the GT has saliency and some prediction has `pred_saliency_scores`; a length bucket
    with no GT window is left out. `counts` (not in the reference output) says how many queries were scored, missed,
    and how many each section used.
    """
    detailed, query_counts = _evaluate_mr(gt, preds)
    hl_gt = [q for q in gt if q.saliency is not None]
    has_hl = preds.has_saliency and bool(hl_gt)
    if has_hl:
        detailed.update(_evaluate_hl(hl_gt, preds))
        query_counts["HL"] = len(hl_gt)

    full = detailed["full"]
    brief: dict[str, float] = {
        "MR-full-R1@0.5": full["MR-R1"]["0.5"],
        "MR-full-R1@0.7": full["MR-R1"]["0.7"],
        "MR-full-mAP": full["MR-mAP"]["average"],
        "MR-full-mAP@0.5": full["MR-mAP"]["0.5"],
        "MR-full-mAP@0.75": full["MR-mAP"]["0.75"],
    }
    for name in ("long", "middle", "short"):  # the reference's brief lists MR keys in sorted order
        if name in detailed:
            brief[f"MR-{name}-mAP"] = detailed[name]["MR-mAP"]["average"]
    if has_hl:
        for level in SALIENCY_LEVELS:
            brief[f"HL-min-{level}-mAP"] = detailed[f"HL-min-{level}"]["HL-mAP"]
            brief[f"HL-min-{level}-Hit1"] = detailed[f"HL-min-{level}"]["HL-Hit1"]

    result: dict[str, Any] = {"brief": brief}
    result.update(sorted(detailed.items()))
    result["counts"] = {**coverage.as_dict(), "queries_per_section": query_counts}
    return result
