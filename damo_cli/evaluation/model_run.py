"""Run a DaMO model over a folder of videos and score it against their ground truth, in one pass.

Three predictors are scored side by side, with the trivial baselines of `baselines.py` in the same report:
- `head`: the per-time head (stage 1) decoded by `damo_cli.model.localize.localize` (top-5 ranked moments);
- `head+speech`: the same, except that a query asking what someone says ("... say '...'") takes the transcript
  segment whose words match it (`speech_moments`), when one does; Whisper's transcript of the video, not labels;
- `llm`: the LLM's free-text answer to the query as a question (soft prompt + transcript + question, greedy), parsed
  by `damo_cli.timestamps.parse_moments`; an answer with no parsable moment is a miss, and the failure rate is
  reported.

Features come from the training feature cache (the same frozen encoders and frame sampling as `damo index`), so a
second run over the same videos only pays for the model.
"""

from __future__ import annotations

import hashlib
import json
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

PREDICTORS = ("head", "head+speech", "llm")


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
    from damo_cli.encoders.loader import load_backbone
    from damo_cli.model.damo import Conversation, TranscriptLine
    from damo_cli.model.load import load_damo
    from damo_cli.model.localize import localize, speech_moments
    from damo_cli.timestamps import parse_moments
    from damo_cli.training.datasets import find_video
    from damo_cli.training.features import FeatureExtractor

    gt = load_gt(gt_path)
    kinds = _kinds(gt_path)
    by_vid: dict[str, list[GTQuery]] = {}
    for q in gt:
        if q.vid is None:
            raise EvaluationError(f"{gt_path.name}: qid {q.qid} has no 'vid': model runs need it to find the video")
        by_vid.setdefault(q.vid, []).append(q)
    paths = {}
    for vid in by_vid:
        path = find_video(Path(videos_dir), vid)
        if path is None:
            raise EvaluationError(f"video '{vid}' of {gt_path.name} not found in {videos_dir}")
        paths[vid] = path
    timings: dict[str, float] = {}
    started = time.perf_counter()
    loaded = load_damo(model, device, llm=with_llm)
    damo, card = loaded.model, loaded.card
    config = damo.config
    extractor = FeatureExtractor(card, config, device, transcribe=True)
    text = load_backbone(card, "text", device)
    timings["load"] = time.perf_counter() - started

    sets = {name: PredictionSet() for name in PREDICTORS if with_llm or name != "llm"}
    raw: dict[str, list[dict[str, Any]]] = {name: [] for name in sets}
    failures = answers = 0
    for index, (vid, queries) in enumerate(by_vid.items()):
        t0 = time.perf_counter()
        features = extractor.extract(paths[vid])
        timings["features"] = timings.get("features", 0.0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            fused = damo.fuse_video(_to(features.to_clip(config), device), duration=features.duration)
        steps, spans = fused.step_embeddings.cpu(), fused.step_spans.cpu()
        vectors = text.encode([q.query for q in queries])
        for q, vector in zip(queries, vectors, strict=True):
            moments = localize(steps, spans, vector, k=5)
            _add(sets["head"], raw["head"], q, moments)
            spoken = speech_moments(features.transcript, q.query)
            _add(sets["head+speech"], raw["head+speech"], q, spoken[:5] if spoken else moments)
        timings["head"] = timings.get("head", 0.0) + time.perf_counter() - t0
        if with_llm:
            t0 = time.perf_counter()
            transcript = [TranscriptLine(s.start, s.end, s.text) for s in features.transcript if s.text.strip()]
            with torch.no_grad():
                prompt = damo.video_prompt(fused)  # (1, P, H)
                for start in range(0, len(queries), llm_batch):
                    chunk = queries[start : start + llm_batch]
                    conversations = [Conversation.ask(q.query, transcript) for q in chunk]
                    out = damo.generate(prompt.expand(len(chunk), -1, -1), conversations)
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
            progress(vid, index + 1, len(by_vid))

    fps = config.video.sample_fps
    side = card.backbone("visual").params.get("image_size", 224)
    sampling = (f"{fps:g} fps, {side}x{side}; windows {config.video.window_seconds:g} s, overlap "
                f"{config.video.window_overlap_seconds:g} s; per-time step = {config.conv_stride} frames")  # fmt: skip
    reports = {}
    for name, preds in sets.items():
        reports[name] = evaluate_records(
            gt, preds, split=split_id(gt_path), dataset="auto", seed=seed, frame_sampling=sampling,
            prompt_hash=prompt_hash(damo) if name == "llm" else None,
            parser_name=PARSER_NAME if name == "llm" else "n/a (structured windows)",
            model_fingerprint=f"{card.name} {loaded.fingerprint}" + ("" if loaded.trained else " (UNTRAINED)"),
        )  # fmt: skip
    per_kind = {name: _per_kind(gt, preds, kinds) for name, preds in sets.items()}
    return ModelRun(reports, per_kind, failures, answers, timings, raw)


def _to(clip: Any, device: str) -> Any:
    from damo_cli.model.damo import ClipFeatures

    if device == "cpu":
        return clip
    return ClipFeatures(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(clip).items()})


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
