"""Training examples per stage, built from a folder of videos + grounding annotations and the cached features.

A data folder holds `annotations.jsonl` (schema: docs/architecture.md §4) or `annotations.csv` (video, query, start,
end) and the videos (`videos/<vid>.*`, `<vid>.*`, or the path a `video` field names). Composed datasets (`damo data
compose`) also have `videos.jsonl` (the construction record) and `transcripts.jsonl`; from them come *signatures*:
which queries of different videos mean the same thing (the same footage, overlay, phrase or sound kind), so a query's
negatives in other videos of a batch are real negatives, and captions / answers made from the construction. Without
them a query's signature is its normalised text, and labels come from its own video only.

Per stage (what the model is asked, all labels from annotations or construction, never from a model):
1. video-text alignment: every query of a video with its GT windows (per-step InfoNCE and per-(query, step) labels);
   a caption of the whole clip (the source descriptions in order) for the clip embedding.
2. representation bridging: "what is shown / what appears on screen / what do you hear / what is said?" with
   answers written from the construction record (composed data only).
3. temporal perception: "when ...?" -> "From 12.0 s to 15.5 s." (format_moments), one question per example, plus
   the single-turn items of `damo data augment` ("how long", "what happens at") when the folder has them;
4. dialogue: 2-3 grounded turns about one video in one conversation, plus the augmented multi-turn dialogues.
Augmented items are read from `augmented.jsonl` (or `dialogues.jsonl`) in the data folder.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from damo_cli.data.errors import AnnotationError, DataError
from damo_cli.schema import Annotation, Rules, check_window, find_video
from damo_cli.schema import read_annotations as read_schema
from damo_cli.schema import where as schema_where
from damo_cli.timestamps import format_moments

DURATION_SLACK = 0.5  # seconds an annotated end may pass the probed duration (rounding of container durations)


# what training needs of a line: a video, a query and windows; qid and duration are optional, a hand-written clip may
# say "video" for "vid" and "start" / "end" for one window, and a window must last (start < end)
TRAIN_RULES = Rules(require_qid=False, require_duration=False, aliases=True, zero_length=False, unique_qids=False)


@dataclass
class QueryItem:
    qid: str
    query: str
    windows: list[tuple[float, float]]
    kind: str
    signature: str


@dataclass
class TrainVideo:
    vid: str
    path: Path
    duration: float
    queries: list[QueryItem]
    signature_windows: dict[str, list[tuple[float, float]]]  # every event of the video by signature
    captions: list[str] = field(default_factory=list)  # whole-clip descriptions (stage 1 clip embedding)
    transcript: list[tuple[float, float, str]] = field(default_factory=list)  # what the prompt shows
    plan: dict[str, Any] | None = None
    dialogues: list[list[tuple[str, str]]] = field(default_factory=list)  # from `damo data augment`
    features: Any = None  # pipeline.features.VideoFeatures
    window: tuple[float, float] | None = None  # a long video's clip: the inference window it stands for

    def clip(self, config: Any) -> Any:
        """ClipFeatures (B = 1) of this training clip (its window of a long video, times kept absolute)."""
        clip = self.features.to_clip(config)
        if self.window is None:
            return clip
        piece = clip.window(self.window[0], self.window[1], config.audio_window_seconds)
        if piece is None:
            raise DataError(f"{self.vid}: no frames in its window {self.window}")
        return piece


# ----------------------------------------------------------------------------------------------- reading annotations


def read_annotations(folder: Path) -> tuple[list[Annotation], Path]:
    """annotations.jsonl (preferred) or annotations.csv of `folder`; structural errors name the line."""
    jsonl, csv_path = folder / "annotations.jsonl", folder / "annotations.csv"
    if jsonl.is_file():
        return _read_jsonl(jsonl), jsonl
    if csv_path.is_file():
        return _read_csv(csv_path), csv_path
    raise AnnotationError(f"{folder}: no annotations.jsonl or annotations.csv")


def _read_jsonl(path: Path) -> list[Annotation]:
    rows = read_schema(path, TRAIN_RULES, AnnotationError, "annotation")
    return [replace(row, qid=str(row.qid)) for row in rows]


def _read_csv(path: Path) -> list[Annotation]:
    rows: list[Annotation] = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        missing = [c for c in ("video", "query", "start", "end") if c not in header]
        if missing:
            raise AnnotationError(f"{schema_where(path, 1)}: the header needs columns video, query, start, end "
                                  f"(missing {', '.join(missing)})")  # fmt: skip
        for number, raw in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
            where = schema_where(path, number)
            if not any(row.values()):
                continue
            if not row["video"] or not row["query"]:
                raise AnnotationError(f"{where}: 'video' and 'query' must not be empty")
            try:
                start, end = float(row["start"]), float(row["end"])
            except ValueError as err:
                raise AnnotationError(f"{where}: start and end must be numbers of seconds") from err
            window = _check_window(start, end, where)
            vid = row["video"]
            rows.append(Annotation(f"{Path(vid).stem}-{number}", vid, row["query"], (window,), line=number))
    if not rows:
        raise AnnotationError(f"annotation file has no annotations: {path}")
    return rows


def _check_window(start: float, end: float, where: str) -> tuple[float, float]:
    return check_window(start, end, where, AnnotationError)


def resolve_videos(
    folder: Path, rows: Sequence[Annotation], source: Path, durations: dict[str, float] | None = None
) -> dict[str, tuple[Path, float]]:
    """Every row's video file and duration; a missing file or a window past the end is an error naming the line."""
    from damo_cli.errors import MediaError
    from damo_cli.media import probe

    found: dict[str, tuple[Path, float]] = {}
    for row in rows:
        where = schema_where(source, row.line)
        if row.vid not in found:
            path = find_video(folder, row.vid)
            if path is None:
                raise AnnotationError(f"{where}: video '{row.vid}' not found in {folder} (or its videos/ folder)")
            if durations is not None and row.vid in durations:
                duration = durations[row.vid]
            else:
                try:
                    duration = float(probe(path).duration)
                except MediaError as err:
                    raise AnnotationError(f"{where}: {err}") from err
            found[row.vid] = (path, duration)
        duration = found[row.vid][1]
        for start, end in row.windows:
            if start >= duration or end > duration + DURATION_SLACK:
                raise AnnotationError(
                    f"{where}: window {start:g}-{end:g} s is outside the video '{row.vid}' ({duration:.1f} s long)"
                )
    return found


# ----------------------------------------------------------------------------------------------- building videos


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).strip()


def _read_jsonl_by_vid(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            out[obj["vid"]] = obj
    return out


def event_signatures(plan: dict[str, Any]) -> dict[str, tuple[str, tuple[float, float]]]:
    """event id -> (signature, window) for every event of a composed video's construction record."""
    out: dict[str, tuple[str, tuple[float, float]]] = {}
    for seg in plan.get("segments", []):
        out[seg["id"]] = (f"scene:{seg['source']}", (seg["start"], seg["end"]))
    for o in plan.get("overlays", []):
        sig = f"word:{o['word']}" if o["kind"] == "word" else f"shape:{o['colour']}:{o['shape']}"
        out[o["id"]] = (sig, (o["start"], o["end"]))
    for sp in plan.get("speech", []):
        out[sp["id"]] = (f"speech:{sp['phrase']}", (sp["start"], sp["end"]))
    for so in plan.get("sounds", []):
        out[so["id"]] = (f"sound:{so['kind']}", (so["start"], so["end"]))
    return out


def load_videos(folder: Path, rows: Sequence[Annotation], found: dict[str, tuple[Path, float]]) -> list[TrainVideo]:
    """Group rows by video; attach construction records, captions, transcripts and dialogues where present."""
    plans = _read_jsonl_by_vid(folder / "videos.jsonl")
    transcripts = _read_jsonl_by_vid(folder / "transcripts.jsonl")
    dialogues = _read_dialogues(folder)
    descriptions = _footage_descriptions() if plans else {}
    videos: dict[str, TrainVideo] = {}
    for row in rows:
        path, duration = found[row.vid]
        video = videos.get(row.vid)
        if video is None:
            plan = plans.get(row.vid)
            video = TrainVideo(row.vid, path, duration, [], {}, plan=plan, dialogues=dialogues.get(row.vid, []))
            if plan is not None:
                for sig, window in event_signatures(plan).values():
                    video.signature_windows.setdefault(sig, []).append(window)
                video.captions = plan_captions(plan, descriptions)
            if row.vid in transcripts:
                video.transcript = [(s["start"], s["end"], s["text"]) for s in transcripts[row.vid]["segments"]]
            videos[row.vid] = video
        signature = f"text:{normalise(row.query)}"
        if video.plan is not None and row.events:
            sigs = {event_signatures(video.plan)[e][0] for e in row.events if e in event_signatures(video.plan)}
            if len(sigs) == 1:
                signature = sigs.pop()
        video.queries.append(QueryItem(row.qid, row.query, list(row.windows), row.kind, signature))
    for video in videos.values():
        for q in video.queries:  # a plain-text signature covers exactly its own windows
            video.signature_windows.setdefault(q.signature, []).extend(
                w for w in q.windows if w not in video.signature_windows.get(q.signature, [])
            )
        if not video.captions:
            video.captions = ["; ".join(q.query.rstrip("?") for q in video.queries)]
    return list(videos.values())


AUGMENTED_FILES = ("augmented.jsonl", "dialogues.jsonl")


def _read_dialogues(folder: Path) -> dict[str, list[list[tuple[str, str]]]]:
    """`damo data augment` items of the folder: {"vid", "turns": [{"role", "content"}, ...]} per line; malformed
    lines and conversations that do not alternate user / assistant are skipped."""
    out: dict[str, list[list[tuple[str, str]]]] = {}
    for name in AUGMENTED_FILES:
        path = folder / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                obj = json.loads(line)
                turns = [(str(t["role"]), str(t["content"])) for t in obj["turns"]]
                vid = str(obj["vid"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            roles = [role for role, _ in turns]
            if turns and len(turns) % 2 == 0 and roles == ["user", "assistant"] * (len(turns) // 2):
                out.setdefault(vid, []).append(turns)
    return out


def _footage_descriptions() -> dict[str, tuple[str, ...]]:
    from damo_cli.data import footage

    return {c.name: c.descriptions for c in footage.registry()}


def plan_captions(plan: dict[str, Any], descriptions: dict[str, tuple[str, ...]]) -> list[str]:
    """Captions of the whole clip: the scenes in order (one description each), one caption per description index."""
    count = max((len(d) for d in descriptions.values()), default=1)
    captions = []
    for k in range(count):
        parts = []
        for seg in plan["segments"]:
            if seg["source"] == "black":
                text = "a black screen"
            else:
                options = descriptions.get(seg["source"], (seg["source"],))
                text = options[k % len(options)]
            if not parts or parts[-1] != text:
                parts.append(text)
        captions.append(", then ".join(parts))
    return captions


# ----------------------------------------------------------------------------------------------- stage 1 labels


def coverage(spans: np.ndarray, windows: Sequence[tuple[float, float]]) -> np.ndarray:
    """(N, 2) step spans -> (N,) fraction of each step covered by the union of `windows`."""
    spans = np.asarray(spans, dtype=np.float64)
    out = np.zeros(len(spans))
    length = np.maximum(spans[:, 1] - spans[:, 0], 1e-6)
    for start, end in _merge(windows):
        out += np.clip(np.minimum(spans[:, 1], end) - np.maximum(spans[:, 0], start), 0.0, None)
    return np.clip(out / length, 0.0, 1.0)


def _merge(windows: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


# ----------------------------------------------------------------------------------------------- stages 2-4 text


def answer_for(windows: Sequence[tuple[float, float]]) -> str:
    text = format_moments(sorted((round(s, 1), round(e, 1)) for s, e in windows))
    return text[0].upper() + text[1:] + "."


def as_question(query: str) -> str:
    """A grounding query as a 'when' question ("a red circle" -> "When does this happen: a red circle?")."""
    q = query.strip()
    if q.endswith("?"):
        return q[0].upper() + q[1:]
    return f"When does this happen: {q}?"


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


_SOUND_WORDS = {
    "tone": "a steady beep",
    "beeps": "a series of quick beeps",
    "noise": "a burst of static noise",
    "sweep": "a rising whistle",
}


def describe_plan(plan: dict[str, Any], descriptions: dict[str, tuple[str, ...]], pick: int) -> list[tuple[str, str]]:
    """Stage-2 (question, answer) pairs written from a construction record."""
    pairs: list[tuple[str, str]] = []
    captions = plan_captions(plan, descriptions)
    caption = captions[pick % len(captions)]
    pairs.append(("What is shown in the video?", caption[0].upper() + caption[1:] + "."))
    overlays = []
    for o in plan.get("overlays", []):
        if o["kind"] == "word":
            overlays.append(f"the word {o['word']}")
        else:
            overlays.append(f"a {'moving ' if o['moving'] else ''}{o['colour']} {o['shape']}")
    answer = (_join(overlays) + " appear on screen.") if overlays else "Nothing is drawn over the picture."
    pairs.append(("What appears on screen over the picture?", answer[0].upper() + answer[1:]))
    sounds = [_SOUND_WORDS.get(s["kind"], s["kind"]) for s in plan.get("sounds", [])]
    speech = plan.get("speech", [])
    heard = sounds + (["someone speaking"] if speech else [])
    answer = ("You can hear " + _join(heard) + ".") if heard else "Only faint background noise."
    pairs.append(("What can you hear?", answer))
    if speech:
        said = _join([f"'{s['text']}'" for s in speech])
        pairs.append(("What is said in the video?", f"Someone says {said}."))
    return pairs


@dataclass
class LMExample:
    video: int  # index into the stage's video list
    turns: list[tuple[str, str]]


def lm_examples(videos: Sequence[TrainVideo], stage: int, seed: int) -> list[LMExample]:
    """Conversations for stages 2-4, deterministic from `seed`."""
    rng = np.random.default_rng(seed)
    descriptions = _footage_descriptions() if any(v.plan for v in videos) else {}
    out: list[LMExample] = []
    for index, video in enumerate(videos):
        if stage == 2:
            if video.plan is None:
                continue
            for question, answer in describe_plan(video.plan, descriptions, int(rng.integers(3))):
                out.append(LMExample(index, [("user", question), ("assistant", answer)]))
        elif stage == 3:
            for q in video.queries:
                out.append(LMExample(index, [("user", as_question(q.query)), ("assistant", answer_for(q.windows))]))
            out.extend(LMExample(index, turns) for turns in video.dialogues if len(turns) == 2)
        elif stage == 4:
            out.extend(LMExample(index, turns) for turns in video.dialogues if len(turns) > 2)
            queries = list(video.queries)
            order = [int(i) for i in rng.permutation(len(queries))]
            for start in range(0, len(order) - 1, 3):
                picked = [queries[i] for i in order[start : start + 3]]
                turns: list[tuple[str, str]] = []
                for n, q in enumerate(picked):
                    question = as_question(q.query) if n == 0 else _follow_up(q.query, rng)
                    turns += [("user", question), ("assistant", answer_for(q.windows))]
                out.append(LMExample(index, turns))
        else:
            raise DataError(f"stage {stage} has no conversations")
    return out


def _follow_up(query: str, rng: np.random.Generator) -> str:
    q = query.strip().rstrip("?")
    lead = ["And ", "What about: ", "Also, "][int(rng.integers(3))]
    if q.lower().startswith("when"):
        return f"{lead}{q[0].lower() + q[1:]}?"
    return f"{lead}when does this happen: {q}?"


def batches(count: int, batch_size: int, seed: int, epoch: int) -> Iterator[list[int]]:
    """Shuffled index batches of one epoch, deterministic from (seed, epoch); the last partial batch is dropped."""
    order = np.random.default_rng([seed, epoch]).permutation(count)
    for start in range(0, count - batch_size + 1, batch_size):
        yield [int(i) for i in order[start : start + batch_size]]
