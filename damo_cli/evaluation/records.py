"""Reading ground truth and predictions (JSON Lines, docs/architecture.md §4) into validated, typed records.

Ground truth, one query per line: `{"qid", "vid", "query", "duration", "relevant_windows": [[s, e], ...]}`
(+ optional `relevant_clip_ids` and `saliency_scores`, QVHighlights style: 2-second clips, one row of annotator scores
per relevant clip).

Predictions, one query per line, either structured
`{"qid", "pred_relevant_windows": [[s, e, score] or [s, e], ...]}` (+ optional `pred_saliency_scores`, one per clip)
or an LLM's free-text answer `{"qid", "answer": "from 24.3 s to 30.4 s"}`, turned into windows by the project's
timestamp parser (`damo_cli.timestamps.parse_moments`), imported only when such a line is met.

Structural problems (not JSON, not an object, no qid, windows that are not lists of numbers) are errors naming the line;
semantic ones in *predictions* (end before start, non-finite times) drop that window and are counted, because one bad
window from a model should cost that query, not the whole evaluation.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from damo_cli import schema
from damo_cli.errors import EvaluationError, EvaluationFileError

CLIP_SECONDS = 2.0  # QVHighlights saliency clips are 2 s long; clip i covers [2i, 2i + 2)
PARSER_NAME = "damo_cli.timestamps.parse_moments"


@dataclass(frozen=True)
class GTQuery:
    """One ground-truth query. `windows` is (k, 2) seconds; `saliency` is (len(clip_ids), annotators) or None."""

    key: str  # qid as text, so 12 and "12" match across files
    qid: int | str
    vid: str | None
    query: str
    duration: float
    windows: np.ndarray
    clip_ids: np.ndarray | None = None
    saliency: np.ndarray | None = None

    @property
    def num_clips(self) -> int:
        # int(duration / 2) as in the official protocol: a trailing partial clip is not scored
        return int(self.duration / CLIP_SECONDS)

    def saliency_full(self) -> np.ndarray | None:
        """(num_clips, annotators) scores with 0 for clips outside `relevant_clip_ids`, or None without saliency."""
        if self.saliency is None or self.clip_ids is None:
            return None
        full = np.zeros((max(self.num_clips, int(self.clip_ids.max(initial=-1)) + 1), self.saliency.shape[1]))
        full[self.clip_ids] = self.saliency
        return full[: self.num_clips]


@dataclass(frozen=True)
class Prediction:
    """One query's prediction: `windows` is (k, 3) = start, end, score, ranked best first (stable on ties)."""

    key: str
    windows: np.ndarray
    saliency: np.ndarray | None = None
    source: str = "windows"  # "windows" (structured) or "answer" (free text through the parser)
    dropped: int = 0  # windows dropped as invalid (end < start, non-finite)

    @property
    def top1(self) -> np.ndarray | None:
        return self.windows[0, :2] if len(self.windows) else None


@dataclass
class PredictionSet:
    """All predictions of one file, keyed by qid text, plus what was noticed while reading it."""

    by_key: dict[str, Prediction] = field(default_factory=dict)
    answer_lines: int = 0
    dropped_windows: int = 0

    @property
    def has_saliency(self) -> bool:
        return any(p.saliency is not None for p in self.by_key.values())


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _iter_jsonl(path: Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for every non-blank line; errors name the file and line."""
    return schema.iter_jsonl(path, what, EvaluationFileError)


def _qid(obj: dict[str, Any], where: str) -> tuple[str, int | str]:
    qid = schema.parse_qid(obj, where, EvaluationFileError)
    return str(qid), qid


def _number(value: Any) -> bool:
    return schema.is_number(value)


def _window_rows(value: Any, where: str, name: str, widths: tuple[int, ...]) -> list[list[float]]:
    if not isinstance(value, list):
        raise EvaluationFileError(f"{where}: '{name}' must be a list of windows")
    rows: list[list[float]] = []
    for w in value:
        if not isinstance(w, list) or len(w) not in widths or not all(_number(x) for x in w):
            shape = " or ".join(f"{n} numbers" for n in widths)
            raise EvaluationFileError(f"{where}: every window in '{name}' must be a list of {shape}, got {w!r}")
        rows.append([float(x) for x in w])
    return rows


# what ground truth needs of a line: qid, duration and windows (a window may be a point); vid and query are optional
GT_RULES = schema.Rules(require_vid=False, require_query=False)


def load_gt(path: Path) -> list[GTQuery]:
    """Read and validate a ground-truth JSON Lines file (order of lines is kept) through `damo_cli.schema`."""
    rows = schema.read_annotations(Path(path), GT_RULES, EvaluationFileError, "ground-truth")
    return [
        GTQuery(
            key=row.key,
            qid=row.qid,
            vid=row.vid or None,
            query=row.query,
            duration=float(row.duration or 0.0),
            windows=np.asarray(row.windows, dtype=float),
            clip_ids=row.clip_ids,
            saliency=row.saliency,
        )
        for row in rows
    ]


def _float_array(value: Any) -> np.ndarray | None:
    """`value` as a finite float array, or None if it is not a (nested) list of numbers."""
    return schema.float_array(value)


def _rank(rows: list[list[float]]) -> np.ndarray:
    """(k, 3) windows sorted by score, best first; a stable sort keeps the file's order among equal scores."""
    if not rows:
        return np.zeros((0, 3))
    arr = np.asarray(rows, dtype=float)
    if arr.shape[1] == 2:  # no scores: the listed order is the ranking
        arr = np.column_stack([arr, np.arange(len(arr), 0, -1, dtype=float)])
    order = np.argsort(-arr[:, 2], kind="stable")
    return arr[order]


def _valid(rows: list[list[float]]) -> list[list[float]]:
    return [r for r in rows if all(math.isfinite(x) for x in r) and r[1] >= r[0]]


def load_predictions(
    path: Path,
    parser: Callable[[str], list[tuple[float, float]]] | None = None,
    durations: dict[str, float] | None = None,
) -> PredictionSet:
    """Read a predictions JSON Lines file.

    `answer` lines go through `parser` when given, else through the project's `parse_moments`, which is also given
    the query's GT duration from `durations` (keyed by qid text) so that moments past the video's end are rejected
    by the same rule `damo ask` applies.
    """
    out = PredictionSet()
    default_parser: Callable[..., list[tuple[float, float]]] | None = None
    lines: dict[str, int] = {}
    for number, obj in _iter_jsonl(path, "predictions"):
        where = schema.where(path, number)
        key, qid = _qid(obj, where)
        if key in lines:
            raise EvaluationFileError(f"{where}: duplicate qid {qid!r} (first on line {lines[key]})")
        lines[key] = number
        if "pred_relevant_windows" in obj:
            rows = _window_rows(obj["pred_relevant_windows"], where, "pred_relevant_windows", (2, 3))
            source = "windows"
        elif "answer" in obj:
            if not isinstance(obj["answer"], str):
                raise EvaluationFileError(f"{where}: 'answer' must be a string")
            if parser is not None:
                moments = parser(obj["answer"])
            else:
                default_parser = default_parser or _default_parser(where)
                moments = default_parser(obj["answer"], (durations or {}).get(key))
            rows = [[float(s), float(e)] for s, e in moments]
            source = "answer"
            out.answer_lines += 1
        else:
            raise EvaluationFileError(f"{where}: needs 'pred_relevant_windows' or 'answer'")
        if len({len(r) for r in rows}) > 1:
            raise EvaluationFileError(f"{where}: windows mix [s, e] and [s, e, score]; score all or none")
        valid = _valid(rows)
        windows = _rank(valid)
        saliency = None
        if "pred_saliency_scores" in obj:
            saliency = _float_array(obj["pred_saliency_scores"])
            if saliency is None or saliency.ndim != 1:
                raise EvaluationFileError(
                    f"{where}: 'pred_saliency_scores' must be a list of numbers, one per 2 s clip"
                )
        dropped = len(rows) - len(valid)
        out.dropped_windows += dropped
        out.by_key[key] = Prediction(key=key, windows=windows, saliency=saliency, source=source, dropped=dropped)
    return out


def _default_parser(where: str) -> Callable[..., list[tuple[float, float]]]:
    # Imported here, not at module top: structured predictions must not depend on the parser module.
    try:
        from damo_cli.timestamps import parse_moments
    except ImportError as err:
        raise EvaluationError(
            f"{where}: an 'answer' line needs the timestamp parser ({PARSER_NAME}), which is not available: {err}"
        ) from err
    return parse_moments


@dataclass(frozen=True)
class Coverage:
    """How many GT queries had a usable prediction; the rest are scored as misses."""

    queries: int
    missing: tuple[str, ...]  # GT qids with no prediction line
    empty: tuple[str, ...]  # prediction present but no valid window (unparsable answer, all windows invalid)

    @property
    def misses(self) -> int:
        return len(self.missing) + len(self.empty)

    def as_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "scored": self.queries - self.misses,
            "missing_prediction": len(self.missing),
            "no_valid_window": len(self.empty),
        }


def match(gt: list[GTQuery], preds: PredictionSet, strict: bool = False) -> Coverage:
    """Check that predictions and GT refer to the same queries; extra predictions are an error, gaps are misses."""
    gt_keys = {q.key for q in gt}
    extra = [k for k in preds.by_key if k not in gt_keys]
    if extra:
        shown = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise EvaluationError(f"{len(extra)} prediction(s) for qids not in the ground truth: {shown}")
    missing = tuple(q.key for q in gt if q.key not in preds.by_key)
    if strict and missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise EvaluationError(f"{len(missing)} ground-truth queries have no prediction (--strict): {shown}")
    empty = tuple(q.key for q in gt if q.key in preds.by_key and not len(preds.by_key[q.key].windows))
    return Coverage(queries=len(gt), missing=missing, empty=empty)
