"""`damo finetune DIR`: adapt a trained DaMO model to a folder of the user's annotated videos.

The folder holds the videos (or a videos/ subfolder) and `annotations.jsonl` (schema: docs/architecture.md §4; `vid`
names the video file, with or without its extension) or `annotations.csv` with columns video, query, start, end.
Every row is checked before any training: a missing video, start >= end, or a window outside the video is a one-line
error naming the file and line.

Schedule (short, CPU-sized): stage 1 (fuser + per-time head against the frozen text encoder: grounding and search)
then stage 3 (grounded QA, LoRA on the frozen LLM, with the fuser and projector), starting from the base model's
trained weights. The result is a model directory (card.toml + checkpoint) that every `--model PATH` accepts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from damo_cli.data.errors import DataError
from damo_cli.model.config import DamoConfig
from damo_cli.model.load import resolve_model
from damo_cli.paths import cache_dir
from damo_cli.training.run import (
    Progress,
    build_model,
    export_model_dir,
    prepare_videos,
    split_videos,
    stage_data,
    text_table,
    train_stage,
)
from damo_cli.training.trainer import STAGE_DEFAULTS, StageSettings


def finetune_folder(
    folder: Path,
    out: Path,
    base: str = "damo-tiny",
    align_steps: int = 150,
    qa_steps: int = 40,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
    on_features: Progress | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Validate, cache features, train stages 1 and 3, write the model directory `out`; returns (out, summary)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    card, checkpoint, _ = resolve_model(base)
    config = DamoConfig.from_card(card)
    started = time.perf_counter()
    videos = prepare_videos(folder, card, config, device, transcribe=True, progress=on_features)
    feature_seconds = time.perf_counter() - started
    if len(videos) < 2:
        raise DataError(f"{folder}: fine-tuning needs at least 2 annotated videos (found {len(videos)})")
    train, val = split_videos(videos, 0.2 if len(videos) >= 5 else 0.0, seed)
    key = hashlib.sha256(f"{folder.resolve()}|{base}".encode()).hexdigest()[:12]
    run_dir = cache_dir() / "finetune" / key
    shutil.rmtree(run_dir, ignore_errors=True)  # a fine-tune is short: it starts over rather than resuming
    damo = build_model(card, config, checkpoint, with_llm=True, device=device, seed=seed)
    text = text_table(card, device)
    batch = max(1, min(8, len(train)))
    align = replace(STAGE_DEFAULTS[1], steps=align_steps, batch_size=batch, learning_rate=2e-4, seed=seed,
                    warmup_steps=max(1, align_steps // 10), eval_every=max(1, align_steps // 3),
                    checkpoint_every=max(1, align_steps))  # fmt: skip
    qa = replace(STAGE_DEFAULTS[3], steps=qa_steps, batch_size=max(1, min(4, len(train))), seed=seed,
                 warmup_steps=max(1, qa_steps // 10), eval_every=max(1, qa_steps // 2),
                 checkpoint_every=max(1, qa_steps), log_every=max(1, min(5, qa_steps)))  # fmt: skip
    summaries = []
    for settings in (align, qa):
        settings = _fit(settings, train)
        data = stage_data(train, val, settings.stage, seed)
        summaries.append(
            train_stage(damo, card, settings, data, text, run_dir, device, resume=False, progress=progress)
        )
    notes = {
        "base": base,
        "folder": str(folder.resolve()),
        "videos": len({v.vid.split("@")[0] for v in videos}),
        "train_clips": len(train),
        "val_clips": len(val),
        "queries": sum(len(v.queries) for v in videos),
        "feature_seconds": round(feature_seconds, 1),
        "stages": summaries,
    }
    export_model_dir(run_dir / "stage3" / "final", card, out, notes)
    for name in ("curves.png",):
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, Path(out) / name)
    (Path(out) / "training.json").write_text(json.dumps(notes, indent=2) + "\n", encoding="utf-8")
    return Path(out), notes


def _fit(settings: StageSettings, train: list[Any]) -> StageSettings:
    """Batch no larger than the data (a handful of clips still trains)."""
    items = len(train) if settings.stage == 1 else max(1, sum(len(v.queries) for v in train))
    return replace(settings, batch_size=max(1, min(settings.batch_size, items)))
