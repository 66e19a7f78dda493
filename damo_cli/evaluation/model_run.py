"""Run a DaMO model over a folder of videos and score it against their ground truth, in one pass.

Every video goes through the code `damo ask` runs (`Analyser` + the analysis cache: the same frozen features,
windows, bridge and transcript), and these predictors are scored side by side, with the trivial baselines of
`baselines.py` in the same report:
- `ask`: exactly the moments `damo ask VIDEO QUERY` returns (`pipeline.ask.question_moments`: the same
  question-to-query step, transcript phrase matching, head + bridge mix and fallbacks);
- `head`: the trained per-time head alone, decoded by `damo_cli.model.localize.localize` (top-5);
- `bridge`: the zero-shot bridge alone (ImageNet classes -> text space; no trained weights), decoded the same way;
- `llm` (with --llm): the LLM's free-text answer to the query as a question (soft prompt + transcript + question,
  greedy), parsed by `damo_cli.timestamps.parse_moments`; an answer with no parsable moment is a miss.

`run_search` scores `damo search` instead: the query's video indexed with all the others into one library, the
right video at rank 1, and the right window (IoU >= 0.5) at rank 1.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from damo_cli.errors import EvaluationError
from damo_cli.evaluation.protocol import split_id
from damo_cli.evaluation.records import PARSER_NAME, GTQuery, Prediction, PredictionSet, load_gt
from damo_cli.evaluation.report import EvalReport, evaluate_records

PREDICTORS = ("ask", "head", "bridge", "llm")


@dataclass
class ModelRun:
    reports: dict[str, EvalReport]  # per predictor (each carries the same baselines)
    per_kind: dict[str, dict[str, dict[str, float]]]  # predictor -> kind -> {"R1@0.5", "mIoU", "n"}
    parse_failures: int = 0
    answers: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def parse_failure_rate(self) -> float | None:
        return 100.0 * self.parse_failures / self.answers if self.answers else None


def _kinds(gt_path: Path) -> dict[str, str]:
    out = {}
    for line in gt_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            out[str(obj.get("qid"))] = str(obj.get("kind") or "all")
    return out


def prompt_hash(damo: Any) -> str:
    """sha256 prefix of what shapes the LLM's input: system prompt, chat template, transcript budget, answer length."""
    settings = damo.config.prompt
    template = getattr(damo.tokenizer, "chat_template", "") or ""
    text = json.dumps([settings.system, template, settings.max_transcript_tokens, settings.max_new_tokens])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _videos_of(gt: Sequence[GTQuery], gt_path: Path, videos_dir: Path) -> dict[str, tuple[Path, list[GTQuery]]]:
    from damo_cli.schema import find_video

    by_vid: dict[str, list[GTQuery]] = {}
    for q in gt:
        if q.vid is None:
            raise EvaluationError(f"{gt_path.name}: qid {q.qid} has no 'vid': model runs need it to find the video")
        by_vid.setdefault(q.vid, []).append(q)
    out = {}
    for vid, queries in by_vid.items():
        path = find_video(Path(videos_dir), vid)
        if path is None:
            raise EvaluationError(f"video '{vid}' of {gt_path.name} not found in {videos_dir}")
        out[vid] = (path, queries)
    return out


def run_model(
    videos_dir: Path,
    gt_path: Path,
    model: str,
    device: str = "cpu",
    with_llm: bool = True,
    seed: int = 0,
    llm_batch: int = 8,
    progress: Callable[[str, int, int], None] | None = None,
) -> ModelRun:
    from damo_cli.model.damo import Conversation, TranscriptLine
    from damo_cli.model.localize import decode_curve, localize
    from damo_cli.pipeline import feature_cache
    from damo_cli.pipeline.analyse import Analyser
    from damo_cli.pipeline.ask import question_moments
    from damo_cli.pipeline.loading import load_model
    from damo_cli.pipeline.zero_shot import own_query
    from damo_cli.timestamps import parse_moments

    gt = load_gt(gt_path)
    kinds = _kinds(gt_path)
    videos = _videos_of(gt, gt_path, videos_dir)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    loaded = load_model(model, device)
    analyser = Analyser(loaded, device)
    card, config = loaded.card, loaded.damo.config
    llm_damo = None
    if with_llm:
        from damo_cli.model.load import load_damo

        llm_damo = load_damo(model, device, llm=True).model
    timings["load"] = time.perf_counter() - started

    names = [name for name in PREDICTORS if with_llm or name != "llm"]
    sets = {name: PredictionSet() for name in names}
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in sets}
    failures = answers = 0
    for index, (vid, (path, queries)) in enumerate(videos.items()):
        t0 = time.perf_counter()
        analysis, _ = feature_cache.load_or_analyse(analyser, path)
        timings["features"] = timings.get("features", 0.0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        vectors = analyser.text.encode([q.query for q in queries])
        for q, vector in zip(queries, vectors, strict=True):
            _add(sets["ask"], raw["ask"], q, question_moments(analyser, analysis, q.query))
            _add(sets["head"], raw["head"], q, localize(analysis.fused, analysis.step_spans, vector, k=5))
            own = own_query(analyser.zero_shot, q.query)  # a hub card's tower: its own query vector
            bridge = decode_curve(analysis.bridge @ (own[0] if own else vector), analysis.step_spans, k=5)
            _add(sets["bridge"], raw["bridge"], q, bridge)
        timings["moments"] = timings.get("moments", 0.0) + time.perf_counter() - t0
        if llm_damo is not None:
            t0 = time.perf_counter()
            transcript = [TranscriptLine(s.start, s.end, s.text) for s in analysis.transcript if s.text.strip()]
            with torch.no_grad():
                fusion = torch.from_numpy(analysis.fusion_tokens).to(device)
                spans = torch.from_numpy(analysis.window_spans).float().to(device)
                prompt = llm_damo.soft_prompt(fusion[None], spans[None])  # (1, P, H)
                for start in range(0, len(queries), llm_batch):
                    chunk = queries[start : start + llm_batch]
                    conversations = [Conversation.ask(q.query, transcript) for q in chunk]
                    out = llm_damo.generate(prompt.expand(len(chunk), -1, -1), conversations)
                    for q, answer in zip(chunk, out.texts, strict=True):
                        parsed = parse_moments(answer, q.duration)
                        answers += 1
                        failures += not parsed
                        rows = [[s, e, float(len(parsed) - i)] for i, (s, e) in enumerate(parsed)]
                        windows = np.asarray(rows, dtype=float).reshape(-1, 3)
                        sets["llm"].by_key[q.key] = Prediction(q.key, windows, source="answer")
                        raw["llm"].append({"qid": q.qid, "answer": answer})
            sets["llm"].answer_lines = answers
            timings["llm"] = timings.get("llm", 0.0) + time.perf_counter() - t0
        if progress is not None:
            progress(vid, index + 1, len(videos))

    fps = config.video.sample_fps
    side = card.backbone("visual").params.get("image_size", 224)
    sampling = (f"{fps:g} fps, {side}x{side}; windows {config.video.window_seconds:g} s, overlap "
                f"{config.video.window_overlap_seconds:g} s; per-time step = {config.conv_stride} frames")  # fmt: skip
    reports = {}
    for name, preds in sets.items():
        reports[name] = evaluate_records(
            gt, preds, split=split_id(gt_path), dataset="auto", seed=seed, frame_sampling=sampling,
            prompt_hash=prompt_hash(llm_damo) if name == "llm" else None,
            parser_name=PARSER_NAME if name == "llm" else "n/a (structured windows)",
            model_fingerprint=f"{card.name} {loaded.fingerprint}" + ("" if loaded.trained else " (UNTRAINED)"),
        )  # fmt: skip
    per_kind = {name: _per_kind(gt, preds, kinds) for name, preds in sets.items()}
    return ModelRun(reports, per_kind, failures, answers, timings, raw)


@dataclass
class SearchRun:
    """`damo search` over a library of every evaluated video: one row per query."""

    queries: int
    video_top1: float  # % of queries whose rank-1 result is in the right video
    window_top1: float  # % whose rank-1 result is in the right video at IoU >= 0.5 with a true window
    video_top5: float  # % with the right video among the first five results
    chance_video_top1: float  # % a random pick of one of the library's videos would get
    zero_shot_video_top1: float  # the same search without the trained head (bridge + transcript), same library
    zero_shot_window_top1: float
    videos: int
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in vars(self).items() if k != "rows"}


def run_search(
    videos_dir: Path,
    gt_path: Path,
    model: str,
    device: str = "cpu",
    progress: Callable[[str, int, int], None] | None = None,
) -> SearchRun:
    """Index every video the ground truth names into one library (incremental: cached analyses are reused), then
    score `damo search QUERY` (the verb's own code: `search_library`) on every query."""
    from damo_cli.encoders.loader import load_backbone
    from damo_cli.paths import cache_dir
    from damo_cli.pipeline.analyse import Analyser
    from damo_cli.pipeline.indexer import Indexer
    from damo_cli.pipeline.loading import load_model
    from damo_cli.pipeline.search import search_library
    from damo_cli.pipeline.zero_shot import ImageTextTower, own_query, zero_shot_kind
    from damo_cli.store import Library

    gt = load_gt(gt_path)
    videos = _videos_of(gt, gt_path, videos_dir)
    paths = sorted({path.resolve() for path, _ in videos.values()})
    loaded = load_model(model, device)
    fingerprint = Analyser.fingerprint_of(loaded)
    name = hashlib.sha256(("\n".join(map(str, paths)) + fingerprint).encode()).hexdigest()[:12]
    library = Library.open(cache_dir() / "eval-libraries" / name)
    indexer = Indexer(model, device, library)
    done = 0

    def on_event(kind: str, path: Path, _detail: str) -> None:
        nonlocal done
        if kind in ("indexed", "skipped", "moved", "failed") and progress is not None:
            done += 1
            progress(path.name, done, len(paths))

    report = indexer.run(paths, on_event=on_event)
    if report.failed:
        raise EvaluationError(f"could not index {report.failed[0][0]}: {report.failed[0][1]}")
    text = load_backbone(loaded.card, "text", device)
    # a hub card's image-text tower is queried in its own space; the ImageNet bridge with the text vector
    tower = indexer.analyser.zero_shot if zero_shot_kind(loaded.card) == ImageTextTower.kind else None
    rows, video_hits, window_hits, top5, zs_video, zs_window = [], 0, 0, 0, 0, 0
    for vid, (path, queries) in videos.items():
        for q in queries:
            vector = text.encode([q.query])[0]
            own = own_query(tower, q.query) if tower is not None else None  # as `damo search` queries a tower
            zs_ok, zs_iou = _rank1(search_library(library, q.query, vector, fingerprint, False, 1, None, own), path, q)
            zs_video += zs_ok
            zs_window += zs_ok and zs_iou >= 0.5 - 1e-9
            hits = search_library(library, q.query, vector, fingerprint, loaded.trained, 5, None, own)
            video_ok, iou = _rank1(hits, path, q)
            video_hits += video_ok
            window_hits += video_ok and iou >= 0.5 - 1e-9
            top5 += any(h.path.resolve() == path.resolve() for h in hits)
            rows.append({"qid": q.qid, "vid": vid, "query": q.query, "top1_video_right": video_ok,
                         "top1_iou": round(iou, 4), "results": [h.to_json() for h in hits]})  # fmt: skip
    count = max(1, len(rows))
    return SearchRun(
        queries=len(rows),
        video_top1=100.0 * video_hits / count,
        window_top1=100.0 * window_hits / count,
        video_top5=100.0 * top5 / count,
        chance_video_top1=100.0 / max(1, len(paths)),
        zero_shot_video_top1=100.0 * zs_video / count,
        zero_shot_window_top1=100.0 * zs_window / count,
        videos=len(paths),
        rows=rows,
    )


def _rank1(hits: Sequence[Any], path: Path, q: GTQuery) -> tuple[bool, float]:
    """Whether the rank-1 search hit is in the query's video, and its IoU with the best true window (0 if not)."""
    if not hits or hits[0].path.resolve() != path.resolve():
        return False, 0.0
    from damo_cli.evaluation.grounding import temporal_iou

    return True, float(temporal_iou(np.asarray([hits[0].start, hits[0].end])[None], q.windows).max())


def _add(preds: PredictionSet, raw: list[dict[str, Any]], q: GTQuery, moments: Sequence[tuple[float, ...]]) -> None:
    windows = np.asarray([[m[0], m[1], m[2]] for m in moments], dtype=float).reshape(-1, 3)
    order = np.argsort(-windows[:, 2], kind="stable") if len(windows) else np.zeros(0, dtype=int)
    preds.by_key[q.key] = Prediction(q.key, windows[order])
    raw.append({"qid": q.qid, "pred_relevant_windows": [[round(a, 2), round(b, 2), round(c, 4)] for a, b, c in
                                                        windows[order].tolist()]})  # fmt: skip


def _per_kind(gt: Sequence[GTQuery], preds: PredictionSet, kinds: dict[str, str]) -> dict[str, dict[str, float]]:
    """R1@0.5 and mIoU per query kind (visual-scene, overlay, speech, sound), same IoU rule as the report."""
    from damo_cli.evaluation.grounding import best_iou, pad_windows, top1_windows

    ious = best_iou(top1_windows(gt, preds), pad_windows([q.windows for q in gt]))
    out: dict[str, list[float]] = {}
    for q, iou in zip(gt, ious, strict=True):
        out.setdefault(kinds.get(q.key, "all"), []).append(float(iou))
    return {
        kind: {"R1@0.5": round(float((np.asarray(v) >= 0.5 - 1e-9).mean()) * 100, 2),
               "mIoU": round(float(np.mean(v)) * 100, 2), "n": len(v)}
        for kind, v in sorted(out.items())
    }  # fmt: skip


# ------------------------------------------------------------------------------------------- open questions
@dataclass
class AnswersRun:
    """`damo ask` on open questions, scored by whether the answer names the expected thing (any of its keywords)."""

    questions: int
    keyword_match: dict[str, float]  # % of questions per predictor
    time_range_only: dict[str, int]  # answers that are a bare time range
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "keyword_match": {k: round(v, 2) for k, v in self.keyword_match.items()},
            "time_range_only": self.time_range_only,
            "seconds": round(self.seconds, 1),
        }


ANSWER_PREDICTORS = {
    "ask": "the answer 'damo ask VIDEO QUESTION' prints (pipeline.ask.answer_question)",
    "ask + LLM": "the same with the LLM writing open answers from the named evidence (kept when grounded in it)",
    "top class": "baseline: the most probable ImageNet class over the whole clip, alone",
    "top class, fixed colours": "baseline: the same, but colour questions answered 'blue, red and grey' (the "
    "commonest colours in the real train split's answers)",
}
FIXED_COLOURS = "blue, red and grey"


def keyword_hit(answer: str, keywords: Sequence[str]) -> bool:
    """Whether the answer names any keyword as a whole word or phrase (case-insensitive; CJK by substring)."""
    text = answer.lower()
    for keyword in keywords:
        word = keyword.lower().strip()
        if not word:
            continue
        if not word.isascii() and word in text:
            return True
        if re.search(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])", text):
            return True
    return False


def run_answers(
    videos_dir: Path,
    questions_path: Path,
    model: str,
    device: str = "cpu",
    with_llm: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> AnswersRun:
    """Every open question of a questions file (JSON Lines: qid, vid, question, keywords) through `damo ask`'s own
    code on the cached analysis, beside a top-class baseline and (`with_llm`) the same path with the LLM writing
    the open answers."""
    from damo_cli.encoders.visual import imagenet_class_names
    from damo_cli.pipeline import feature_cache
    from damo_cli.pipeline.analyse import Analyser
    from damo_cli.pipeline.ask import TIME_RANGE_ONLY, answer_question, is_temporal
    from damo_cli.pipeline.evidence import is_colour_question
    from damo_cli.pipeline.loading import load_model
    from damo_cli.schema import find_video

    rows_in = [json.loads(line) for line in questions_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows_in = [r for r in rows_in if not is_temporal(r["question"])]
    if not rows_in or any(not r.get("keywords") or not r.get("vid") for r in rows_in):
        raise EvaluationError(f"{questions_path.name}: every open question needs a 'vid' and 'keywords'")
    started = time.perf_counter()
    analyser = Analyser(load_model(model, device), device)
    names = imagenet_class_names()
    names_run = [name for name in ANSWER_PREDICTORS if with_llm or name != "ask + LLM"]
    hits = dict.fromkeys(names_run, 0)
    bare = dict.fromkeys(names_run, 0)
    rows = []
    by_vid: dict[str, list[dict[str, Any]]] = {}
    for r in rows_in:
        by_vid.setdefault(r["vid"], []).append(r)
    for index, (vid, questions) in enumerate(by_vid.items()):
        path = find_video(Path(videos_dir), vid)
        if path is None:
            raise EvaluationError(f"video '{vid}' of {questions_path.name} not found in {videos_dir}")
        analysis, _ = feature_cache.load_or_analyse(analyser, path)
        probs = np.zeros(len(names))
        np.add.at(probs, analysis.class_index.ravel(), analysis.class_prob.ravel())
        top_class = names[int(probs.argmax())] if len(analysis.frame_times) else ""
        for q in questions:
            answers = {
                "ask": answer_question(analyser, analysis, q["question"], device).answer,
                "top class": top_class,
                "top class, fixed colours": FIXED_COLOURS if is_colour_question(q["question"]) else top_class,
            }
            if with_llm:
                answers["ask + LLM"] = answer_question(analyser, analysis, q["question"], device, True).answer
            row = {"qid": q.get("qid"), "question": q["question"], "expected": q.get("answer"), "answers": answers}
            for name, answer in answers.items():
                hit = keyword_hit(answer, q["keywords"])
                hits[name] += hit
                bare[name] += bool(TIME_RANGE_ONLY.match(answer))
                row[f"hit: {name}"] = hit
            rows.append(row)
        if progress is not None:
            progress(vid, index + 1, len(by_vid))
    count = max(1, len(rows))
    return AnswersRun(
        questions=len(rows),
        keyword_match={name: 100.0 * n / count for name, n in hits.items()},
        time_range_only=bare,
        rows=rows,
        seconds=time.perf_counter() - started,
    )
