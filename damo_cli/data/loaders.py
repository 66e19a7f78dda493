"""Converters from public temporal-grounding annotations into the one JSON Lines schema of docs/architecture.md §4:

    {"qid", "vid", "query", "duration", "relevant_windows": [[s, e], ...]}  (+ optional "saliency_scores", ...)

- Charades-STA: text lines `vid start end##sentence`; durations come from a mapping or the Charades CSV
  (`id`, `length` columns). A video without a known duration gets its latest annotated end, and the report says so.
- QVHighlights: JSON Lines already in the schema; validated and passed through unchanged.
- ActivityNet Captions: one JSON object `{vid: {"duration", "timestamps": [[s, e], ...], "sentences": [...]}}`.

Every validation error is a `DataError` naming the file and the line (or, for ActivityNet's single JSON object, the
video and sentence). Windows that run past the video's end are clipped to it and counted in the report: the public
files contain some, and a window cannot be longer than the video it points into.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damo_cli.data.errors import AnnotationError, DataError
from damo_cli.integrity import atomic_path
from damo_cli.schema import read_text

FORMATS = ("charades", "qvhighlights", "activitynet")
_EPS = 1e-6


@dataclass
class ConversionReport:
    """What a conversion produced and what it had to decide on the user's behalf."""

    source: Path
    format: str
    queries: int = 0
    videos: int = 0
    guessed_durations: list[str] = field(default_factory=list)  # vids whose duration is their latest end
    clipped_windows: int = 0  # windows cut back to the video's duration

    def notes(self) -> list[str]:
        out = []
        if self.guessed_durations:
            shown = ", ".join(self.guessed_durations[:5]) + (" ..." if len(self.guessed_durations) > 5 else "")
            out.append(
                f"{len(self.guessed_durations)} video(s) had no known duration; used their latest annotated end "
                f"({shown})"
            )
        if self.clipped_windows:
            out.append(f"{self.clipped_windows} window(s) ended after their video and were clipped to its duration")
        return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _read_text(path: Path, what: str) -> str:
    """The file's text, or one DataError line (missing, a folder, unreadable): the schema module's reader."""
    return read_text(path, what, error=AnnotationError)


def _lines(text: str) -> Iterator[tuple[int, str]]:
    # "\n" only: str.splitlines() would also split on U+2028 and friends, which may sit inside a sentence
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield number, line


def _window(value: Any, where: str) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(_number(x) for x in value):
        raise DataError(f"{where}: a window must be [start, end] in seconds, got {value!r}")
    start, end = float(value[0]), float(value[1])
    if start < 0 or end < start:
        raise DataError(f"{where}: window [{start}, {end}] must have 0 <= start <= end")
    return [start, end]


def _clip_windows(windows: list[list[float]], duration: float, where: str, report: ConversionReport) -> None:
    for w in windows:
        if w[0] >= duration - _EPS and w[0] > 0:
            raise DataError(f"{where}: window [{w[0]}, {w[1]}] starts at or after the video's end ({duration} s)")
        if w[1] > duration + _EPS:
            w[1] = duration
            report.clipped_windows += 1


def validate_record(obj: Any, where: str, *, require_windows: bool = True) -> dict[str, Any]:
    """Check one annotation object against the schema; returns it unchanged (errors name `where`)."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    qid = obj.get("qid")
    if qid is None or isinstance(qid, bool) or not isinstance(qid, int | str):
        raise DataError(f"{where}: 'qid' must be an integer or a string")
    if not isinstance(obj.get("vid"), str) or not obj["vid"]:
        raise DataError(f"{where}: 'vid' must be a non-empty string")
    if not isinstance(obj.get("query"), str) or not obj["query"].strip():
        raise DataError(f"{where}: 'query' must be a non-empty string")
    duration = obj.get("duration")
    if not _number(duration) or duration <= 0:
        raise DataError(f"{where}: 'duration' must be a positive number of seconds")
    if "relevant_windows" in obj or require_windows:
        windows = obj.get("relevant_windows")
        if not isinstance(windows, list) or not windows:
            raise DataError(f"{where}: 'relevant_windows' must be a non-empty list of [start, end]")
        for w in windows:
            start, end = _window(w, where)
            if start >= duration + _EPS:
                raise DataError(f"{where}: window [{start}, {end}] starts after the video's end ({duration} s)")
    if "saliency_scores" in obj:
        scores, ids = obj["saliency_scores"], obj.get("relevant_clip_ids")
        if not isinstance(scores, list) or not all(
            isinstance(row, list) and row and all(_number(x) for x in row) for row in scores
        ):
            raise DataError(f"{where}: 'saliency_scores' must be a list of lists of numbers")
        if not isinstance(ids, list) or len(ids) != len(scores):
            raise DataError(f"{where}: 'relevant_clip_ids' must list one clip id per row of 'saliency_scores'")
    return obj


# ---------------------------------------------------------------------------------------------------------------------
# Charades-STA


def read_durations(path: Path) -> dict[str, float]:
    """Video durations from a CSV with an id column (`id` or `vid`) and a seconds column (`length` or `duration`),
    such as Charades_v1_test.csv."""
    text = _read_text(path, "durations CSV")
    reader = csv.DictReader(text.splitlines())
    fields = {name.strip().lower(): name for name in (reader.fieldnames or [])}
    id_col = fields.get("id") or fields.get("vid")
    len_col = fields.get("length") or fields.get("duration")
    if id_col is None or len_col is None:
        raise DataError(f"{path.name}: needs an 'id' (or 'vid') column and a 'length' (or 'duration') column")
    durations: dict[str, float] = {}
    for number, row in enumerate(reader, start=2):  # line 1 is the header
        vid, raw = (row.get(id_col) or "").strip(), (row.get(len_col) or "").strip()
        if not vid:
            continue
        try:
            value = float(raw)
        except ValueError as err:
            raise DataError(f"{path.name} line {number}: duration {raw!r} of {vid} is not a number") from err
        if not math.isfinite(value) or value <= 0:
            raise DataError(f"{path.name} line {number}: duration of {vid} must be positive, got {raw!r}")
        durations[vid] = value
    return durations


def parse_charades_line(line: str, where: str) -> tuple[str, float, float, str]:
    """`vid start end##sentence` -> (vid, start, end, sentence)."""
    head, sep, sentence = line.partition("##")
    if not sep:
        raise DataError(f"{where}: expected 'vid start end##sentence', found no '##'")
    parts = head.split()
    if len(parts) != 3:
        raise DataError(f"{where}: expected 'vid start end' before '##', got {head.strip()!r}")
    vid, start_text, end_text = parts
    try:
        start, end = float(start_text), float(end_text)
    except ValueError as err:
        raise DataError(f"{where}: start and end must be numbers, got {start_text!r} and {end_text!r}") from err
    if not (math.isfinite(start) and math.isfinite(end)):
        raise DataError(f"{where}: start and end must be finite")
    if start < 0 or end < start:
        raise DataError(f"{where}: window [{start}, {end}] must have 0 <= start <= end")
    sentence = sentence.strip()
    if not sentence:
        raise DataError(f"{where}: empty sentence after '##'")
    return vid, start, end, sentence


def convert_charades(
    path: Path, durations: Mapping[str, float] | None = None, *, qid_start: int = 0
) -> tuple[list[dict[str, Any]], ConversionReport]:
    """Charades-STA text -> records (qids count up from `qid_start`, in file order)."""
    report = ConversionReport(source=path, format="charades")
    rows: list[tuple[str, float, float, str, str]] = []
    for number, line in _lines(_read_text(path, "Charades-STA")):
        where = f"{path.name} line {number}"
        rows.append((*parse_charades_line(line, where), where))
    if not rows:
        raise DataError(f"{path.name}: no annotation lines")
    durations = dict(durations or {})
    latest: dict[str, float] = {}
    for vid, _s, end, _q, _w in rows:
        latest[vid] = max(latest.get(vid, 0.0), end)
    for vid in latest:
        if vid not in durations:
            durations[vid] = latest[vid]
            report.guessed_durations.append(vid)
    records = []
    for i, (vid, start, end, sentence, where) in enumerate(rows):
        duration = durations[vid]
        if duration <= 0:
            raise DataError(f"{where}: video {vid} has no positive duration (its windows all end at 0)")
        windows = [[start, end]]
        _clip_windows(windows, duration, where, report)
        records.append(
            {"qid": qid_start + i, "vid": vid, "query": sentence, "duration": duration, "relevant_windows": windows}
        )
    report.queries, report.videos = len(records), len(latest)
    return records, report


def _seconds(value: float) -> str:
    return f"{value:g}" if abs(value - round(value, 6)) < 1e-9 else repr(value)


def charades_lines(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Records -> Charades-STA lines (the first window of each; the format holds one window per line)."""
    lines = []
    for r in records:
        start, end = r["relevant_windows"][0]
        lines.append(f"{r['vid']} {_seconds(float(start))} {_seconds(float(end))}##{r['query']}")
    return lines


# ---------------------------------------------------------------------------------------------------------------------
# QVHighlights


def convert_qvhighlights(path: Path, *, require_windows: bool = True) -> tuple[list[dict[str, Any]], ConversionReport]:
    """QVHighlights JSON Lines: validated, passed through unchanged. qids must be unique."""
    report = ConversionReport(source=path, format="qvhighlights")
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    vids: set[str] = set()
    for number, line in _lines(_read_text(path, "QVHighlights")):
        where = f"{path.name} line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not valid JSON ({err.msg})") from err
        validate_record(obj, where, require_windows=require_windows)
        key = str(obj["qid"])
        if key in seen:
            raise DataError(f"{where}: duplicate qid {obj['qid']!r} (first on line {seen[key]})")
        seen[key] = number
        vids.add(obj["vid"])
        records.append(obj)
    if not records:
        raise DataError(f"{path.name}: no annotation lines")
    report.queries, report.videos = len(records), len(vids)
    return records, report


# ---------------------------------------------------------------------------------------------------------------------
# ActivityNet Captions


def convert_activitynet(path: Path, *, qid_start: int = 0) -> tuple[list[dict[str, Any]], ConversionReport]:
    """ActivityNet Captions JSON -> one record per (video, sentence), in file order."""
    report = ConversionReport(source=path, format="activitynet")
    text = _read_text(path, "ActivityNet Captions")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path.name} line {err.lineno}: not valid JSON ({err.msg})") from err
    if not isinstance(data, dict):
        raise DataError(f"{path.name}: expected one JSON object mapping video ids to annotations")
    records: list[dict[str, Any]] = []
    for vid, entry in data.items():
        where = f"{path.name} video {vid}"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object with duration, timestamps and sentences")
        duration = entry.get("duration")
        if not _number(duration) or duration <= 0:
            raise DataError(f"{where}: 'duration' must be a positive number of seconds")
        stamps, sentences = entry.get("timestamps"), entry.get("sentences")
        if not isinstance(stamps, list) or not isinstance(sentences, list):
            raise DataError(f"{where}: 'timestamps' and 'sentences' must be lists")
        if len(stamps) != len(sentences):
            raise DataError(f"{where}: {len(stamps)} timestamps but {len(sentences)} sentences")
        for i, (stamp, sentence) in enumerate(zip(stamps, sentences, strict=True)):
            at = f"{where} sentence {i}"
            window = _window(stamp, at)
            if not isinstance(sentence, str) or not sentence.strip():
                raise DataError(f"{at}: sentence must be a non-empty string")
            windows = [window]
            _clip_windows(windows, float(duration), at, report)
            records.append(
                {"qid": qid_start + len(records), "vid": vid, "query": sentence.strip(),
                 "duration": duration, "relevant_windows": windows}
            )  # fmt: skip
        report.videos += 1
    if not records:
        raise DataError(f"{path.name}: no annotated sentences")
    report.queries = len(records)
    return records, report


# ---------------------------------------------------------------------------------------------------------------------


def write_jsonl(records: Iterable[Mapping[str, Any]], out: Path) -> Path:
    """Write records as JSON Lines atomically (a reader never sees half a file)."""
    with atomic_path(Path(out)) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for r in records:
            handle.write(json.dumps(r, ensure_ascii=False) + "\n")
    return Path(out)


def convert(
    fmt: str,
    source: Path,
    out: Path,
    *,
    durations: Mapping[str, float] | Path | None = None,
    qid_start: int = 0,
) -> ConversionReport:
    """Convert `source` in `fmt` ("charades", "qvhighlights", "activitynet") into JSON Lines at `out`."""
    fmt = fmt.strip().lower().replace("-", "").replace("_", "")
    aliases = {
        "charadessta": "charades",
        "qvh": "qvhighlights",
        "anet": "activitynet",
        "activitynetcaptions": "activitynet",
    }
    fmt = aliases.get(fmt, fmt)
    source = Path(source)
    if fmt == "charades":
        mapping = read_durations(durations) if isinstance(durations, Path) else durations
        records, report = convert_charades(source, mapping, qid_start=qid_start)
    elif fmt == "qvhighlights":
        if durations is not None:
            raise DataError("QVHighlights lines carry their own durations; --durations does not apply")
        records, report = convert_qvhighlights(source)
    elif fmt == "activitynet":
        if durations is not None:
            raise DataError("ActivityNet Captions carries its own durations; --durations does not apply")
        records, report = convert_activitynet(source, qid_start=qid_start)
    else:
        raise DataError(f"unknown annotation format {fmt!r} (known: {', '.join(FORMATS)})")
    if Path(out).resolve() == source.resolve():
        raise DataError("the output file must differ from the input file")
    write_jsonl(records, out)
    return report
