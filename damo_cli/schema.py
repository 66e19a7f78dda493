"""The one annotation schema (docs/architecture.md §4): records, reading, validation, and finding a clip's video.

Grounding annotations are JSON Lines, one query per line:
`{"qid", "vid", "query", "duration", "relevant_windows": [[start, end], ...]}` (+ optional QVHighlights
`relevant_clip_ids` / `saliency_scores`, and what `damo data compose` adds: "kind", "split", "event"). `damo eval
--gt`, `damo data augment` and `damo train` / `damo finetune` all read it here; each states which fields it needs
(`Rules`), nothing else differs.

Every problem is one `SchemaError` line that names the file and the line: "data/x.jsonl line 12: start 5 s is not
before end 3 s". A verb passes its own subclass (`error=`) so its exit code stays its own: `damo eval` raises
`EvaluationFileError` (exit 5), the data and training verbs `AnnotationError` (exit 7); all are `SchemaError`s.

This module sits low in the import order: the standard library, numpy and `damo_cli.errors` only, so training and
evaluation both use it without importing each other. The composition plan (`videos.jsonl` of `damo data compose`:
segments, overlays, speech and sounds per video) is a construction record, not annotations, and is not read here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from damo_cli.errors import SchemaError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts")
DURATION_EPS = 1e-6  # seconds: a window may start this close to the video's end

Window = tuple[float, float]


class TranscriptLine(NamedTuple):
    """A line of words with times: said ("speech"), written on screen ("screen") or a sound event in words
    ("sound"). What the library stores, the LLM's prompt reads and `damo ask` quotes; Whisper's own output, with
    word times, is `encoders.audio.TranscriptSegment`."""

    start: float
    end: float
    text: str
    source: str = "speech"


def temporal_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of windows `a[..., :2]` and `b[..., :2]` (broadcasting), hull denominator.

    Two identical zero-length windows score 1 (they are the same moment); NaN windows (padding, misses) score 0.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    s1, e1, s2, e2 = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    inter = np.clip(np.minimum(e1, e2) - np.maximum(s1, s2), 0.0, None)
    hull = np.maximum(e1, e2) - np.minimum(s1, s2)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(hull > 0, inter / np.where(hull > 0, hull, 1.0), (s1 == s2) & (e1 == e2))
    return np.nan_to_num(np.asarray(iou, dtype=float), nan=0.0)


@dataclass(frozen=True)
class Rules:
    """What a reader needs of each line (the defaults are the full §4 schema, as `damo data augment` reads it)."""

    require_qid: bool = True  # else a missing qid becomes "<vid>-<line>"
    require_vid: bool = True
    require_query: bool = True
    require_duration: bool = True
    aliases: bool = False  # accept "video" for "vid" and "start" / "end" for one window (hand-written clips)
    zero_length: bool = True  # a window may start where it ends
    inside_duration: bool = False  # a window must start before the video's end
    unique_qids: bool = True


@dataclass(frozen=True)
class Annotation:
    """One line of an annotation file. `saliency` is (len(clip_ids), annotators) or None."""

    qid: int | str
    vid: str  # "" when the line names no video (ground truth may leave it out)
    query: str
    windows: tuple[Window, ...]
    duration: float | None = None
    line: int = 0
    kind: str = ""
    events: tuple[str, ...] = ()
    split: str | None = None
    clip_ids: np.ndarray | None = None
    saliency: np.ndarray | None = None

    @property
    def key(self) -> str:
        """The qid as text, so 12 and "12" match across files."""
        return str(self.qid)


def where(path: Path | str, number: int) -> str:
    """How every message names a place: "data/x.jsonl line 12"."""
    return f"{path} line {number}"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_text(path: Path, what: str = "annotation", error: type[SchemaError] = SchemaError) -> str:
    path = Path(path)
    if not path.exists():
        raise error(f"{what} file not found: {path}")
    if not path.is_file():
        raise error(f"{what} path is not a file: {path}")
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: tolerate a BOM from spreadsheet exports
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"cannot read {what} file {path}: {err}") from err


def iter_jsonl(
    path: Path, what: str = "annotation", error: type[SchemaError] = SchemaError
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for every non-blank line; errors name the file and line."""
    text = read_text(path, what, error)
    # split on "\n" only: str.splitlines() would also break on U+2028 etc., which JSON allows inside strings
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise error(f"{where(path, number)}: not valid JSON ({err.msg})") from err
        if not isinstance(obj, dict):
            raise error(f"{where(path, number)}: expected a JSON object, got {type(obj).__name__}")
        yield number, obj


def check_window(
    start: float, end: float, at: str, error: type[SchemaError] = SchemaError, zero_length: bool = False
) -> Window:
    """A window in seconds: finite, starting at 0 or later, ending after (or, with `zero_length`, at) its start."""
    if not (math.isfinite(start) and math.isfinite(end)):
        raise error(f"{at}: start and end must be finite")
    if start < 0:
        raise error(f"{at}: start {start:g} s is negative")
    if end < start or (end == start and not zero_length):
        raise error(f"{at}: start {start:g} s is not before end {end:g} s")
    return start, end


def parse_qid(obj: dict[str, Any], at: str, error: type[SchemaError] = SchemaError) -> int | str:
    if "qid" not in obj or obj["qid"] is None:
        raise error(f"{at}: no 'qid'")
    qid = obj["qid"]
    if isinstance(qid, bool) or not isinstance(qid, int | str):
        raise error(f"{at}: 'qid' must be an integer or a string")
    return qid


def parse_annotation(
    obj: dict[str, Any], number: int, at: str, rules: Rules = Rules(), error: type[SchemaError] = SchemaError
) -> Annotation:
    """One annotation object, checked against `rules`; `at` names the file and line in every message."""
    vid = obj.get("vid", obj.get("video")) if rules.aliases else obj.get("vid")
    if not isinstance(vid, str) or not vid:
        if rules.require_vid:
            name = "'vid' (or 'video')" if rules.aliases else "'vid'"
            raise error(f"{at}: needs {name}, the video's name")
        vid = ""
    qid = parse_qid(obj, at, error) if rules.require_qid or obj.get("qid") is not None else f"{vid}-{number}"
    query = obj.get("query")
    if not isinstance(query, str) or not query.strip():
        if rules.require_query:
            raise error(f"{at}: needs a non-empty 'query'")
        query = ""
    duration = obj.get("duration")
    if duration is not None or rules.require_duration:
        if not is_number(duration) or not math.isfinite(duration) or duration <= 0:
            raise error(f"{at}: 'duration' must be a positive number of seconds")
        duration = float(duration)
    raw = obj.get("relevant_windows")
    if raw is None and rules.aliases and "start" in obj and "end" in obj:
        raw = [[obj["start"], obj["end"]]]
    if not isinstance(raw, list) or not raw:
        alias = " (or 'start' and 'end')" if rules.aliases else ""
        raise error(f"{at}: needs 'relevant_windows' [[start, end], ...]{alias}")
    windows = []
    for w in raw:
        if not isinstance(w, list) or len(w) != 2 or not all(is_number(x) for x in w):
            raise error(f"{at}: every window must be [start, end] in seconds, got {w!r}")
        start, end = check_window(float(w[0]), float(w[1]), at, error, rules.zero_length)
        if rules.inside_duration and duration is not None and start >= duration + DURATION_EPS:
            raise error(f"{at}: window {start:g}-{end:g} s starts after the video's end ({duration:g} s)")
        windows.append((start, end))
    clip_ids, saliency = _saliency(obj, at, error)
    events = obj.get("event", []) or []
    return Annotation(
        qid=qid,
        vid=vid,
        query=query.strip(),
        windows=tuple(windows),
        duration=duration,
        line=number,
        kind=str(obj.get("kind", "") or ""),
        events=tuple(str(e) for e in (events if isinstance(events, list) else [events])),
        split=obj.get("split") if isinstance(obj.get("split"), str) else None,
        clip_ids=clip_ids,
        saliency=saliency,
    )


def _saliency(obj: dict[str, Any], at: str, error: type[SchemaError]) -> tuple[np.ndarray | None, np.ndarray | None]:
    if "saliency_scores" not in obj and "relevant_clip_ids" not in obj:
        return None, None
    ids, scores = obj.get("relevant_clip_ids"), obj.get("saliency_scores")
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise error(f"{at}: 'relevant_clip_ids' must be a list of clip indices (0, 1, ...)")
    matrix = float_array(scores)  # one numpy conversion instead of a Python check per score
    if matrix is None or matrix.ndim != 2 or len(matrix) != len(ids) or matrix.shape[1] == 0:
        raise error(f"{at}: 'saliency_scores' must hold one equal-length list of annotator scores per relevant clip id")
    if not ids:
        return None, None
    return np.asarray(ids, dtype=int), matrix


def float_array(value: Any) -> np.ndarray | None:
    """`value` as a finite float array, or None if it is not a (nested) list of numbers."""
    if not isinstance(value, list):
        return None
    try:
        arr = np.asarray(value, dtype=float)  # rejects strings and ragged lists; None becomes NaN, caught below
    except (TypeError, ValueError):
        return None
    return arr if np.isfinite(arr).all() else None


def read_annotations(
    path: Path,
    rules: Rules = Rules(),
    error: type[SchemaError] = SchemaError,
    what: str = "annotation",
    limit: int | None = None,
) -> list[Annotation]:
    """Every annotation of a JSON Lines file, in file order (the first `limit` with `limit`)."""
    path = Path(path)
    rows: list[Annotation] = []
    seen: dict[str, int] = {}
    for number, obj in iter_jsonl(path, what, error):
        if limit is not None and len(rows) >= limit:
            break
        at = where(path, number)
        row = parse_annotation(obj, number, at, rules, error)
        if rules.unique_qids:
            if row.key in seen:  # ids of what is made from a line derive from its qid
                raise error(f"{at}: duplicate qid {row.qid!r} (first on line {seen[row.key]})")
            seen[row.key] = number
        rows.append(row)
    if not rows:
        raise error(f"{what} file has no annotations: {path}")
    return rows


def find_video(folder: Path, name: str) -> Path | None:
    """The video an annotation names: a path relative to the folder, or <name>.* in the folder or its videos/."""
    folder = Path(folder)
    for base in (folder, folder / "videos"):
        if (base / name).is_file():
            return base / name
    for base in (folder / "videos", folder):
        for suffix in VIDEO_SUFFIXES:
            candidate = base / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None
