"""From a data folder to a trained stage: read annotations, cache features, split, build the model, train, export.

`damo train` and `damo finetune` are thin wrappers around `prepare_videos`, `build_model`, `train_stage` and
`export_model_dir`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from damo_cli.cards import ModelCard
from damo_cli.data.errors import DataError
from damo_cli.integrity import atomic_dir, sha256_file
from damo_cli.model.checkpoint import MANIFEST_FILE, WEIGHTS_FILE, load_checkpoint, read_manifest
from damo_cli.model.config import DamoConfig
from damo_cli.model.damo import DamoModel
from damo_cli.model.load import MODEL_DIR_CARD
from damo_cli.pipeline.features import FeatureExtractor
from damo_cli.training.datasets import TrainVideo, lm_examples, load_videos, read_annotations, resolve_videos
from damo_cli.training.trainer import StageData, StageSettings, TextTable, Trainer, class_table

Progress = Callable[[int, int, str], None]


def prepare_videos(
    folder: Path,
    card: ModelCard,
    config: DamoConfig,
    device: str = "cpu",
    transcribe: bool = False,
    progress: Progress | None = None,
    limit: int | None = None,
) -> list[TrainVideo]:
    """Validated annotations -> videos with cached frozen features (computed on first use).

    Composed datasets bring their constructed transcripts (transcripts.jsonl), so training prompts show what was
    said without running ASR; with `transcribe`, Whisper's transcript is cached too and used where none is given.
    """
    folder = Path(folder)
    rows, source = read_annotations(folder)
    found = resolve_videos(folder, rows, source)
    videos = load_videos(folder, rows, found)
    if limit is not None:
        videos = videos[:limit]
    extractor = FeatureExtractor(card, config, device, transcribe=transcribe)
    out: list[TrainVideo] = []
    for index, video in enumerate(videos):
        video.features = extractor.extract(video.path)
        if not video.transcript and video.features.transcript:
            video.transcript = [(line.start, line.end, line.text) for line in video.features.transcript]
        out.extend(split_long(video, config.video.window_seconds, config.video.window_overlap_seconds))
        if progress is not None:
            progress(index + 1, len(videos), video.vid)
    return out


def prepare_folders(
    folders: Sequence[Path],
    card: ModelCard,
    config: DamoConfig,
    device: str = "cpu",
    transcribe: bool = False,
    progress: Progress | None = None,
) -> list[TrainVideo]:
    """Several data folders as one training set (`prepare_videos` on each). A video id found in two folders is
    refused before any feature is computed: examples and validation find their clips by id."""
    owner: dict[str, Path] = {}
    for folder in map(Path, folders):
        rows, _ = read_annotations(folder)
        for vid in sorted({row.vid for row in rows}):
            if vid in owner:
                raise DataError(f"video id {vid!r} is in both {owner[vid]} and {folder}; train on one of them")
            owner[vid] = folder
    videos: list[TrainVideo] = []
    for folder in map(Path, folders):

        def tell(done: int, total: int, vid: str, folder: Path = folder) -> None:
            if progress is not None:
                progress(done, total, f"{folder.name}/{vid}")

        videos += prepare_videos(folder, card, config, device, transcribe=transcribe, progress=tell)
    return videos


def split_long(video: TrainVideo, window: float, overlap: float) -> list[TrainVideo]:
    """A video longer than the model's window becomes one training clip per inference window (times absolute);
    a query goes to every window that holds all of its moments (one longer than a window cannot be learned)."""
    from dataclasses import replace

    from damo_cli.model.damo import plan_windows

    if video.duration <= window:
        return [video]
    out = []
    for start, end in plan_windows(video.duration, window, overlap):
        inside = [q for q in video.queries if all(start <= s and e <= end for s, e in q.windows)]
        if not inside:
            continue
        signatures = {
            sig: [(max(s, start), min(e, end)) for s, e in wins if e > start and s < end]
            for sig, wins in video.signature_windows.items()
        }
        transcript = [line for line in video.transcript if line[1] > start and line[0] < end]
        out.append(
            replace(video, vid=f"{video.vid}@{start:g}", queries=inside, signature_windows=signatures,
                    transcript=transcript, window=(start, end))
        )  # fmt: skip
    return out


def split_videos(
    videos: Sequence[TrainVideo], val_fraction: float, seed: int
) -> tuple[list[TrainVideo], list[TrainVideo]]:
    """Whole videos to validation (never queries of a training video), deterministic from the seed."""
    if not 0 <= val_fraction < 1:
        raise DataError("the validation fraction must be in [0, 1)")
    count = int(round(len(videos) * val_fraction))
    if val_fraction > 0 and len(videos) > 1:
        count = max(1, count)
    order = np.random.default_rng([seed, 11]).permutation(len(videos))
    val = {int(i) for i in order[:count]}
    return [v for i, v in enumerate(videos) if i not in val], [v for i, v in enumerate(videos) if i in val]


def stage_data(train: list[TrainVideo], val: list[TrainVideo], stage: int, seed: int, max_val: int = 24) -> StageData:
    data = StageData(train, val)
    if stage >= 2:
        data.examples = lm_examples(train, stage, seed)
        examples = lm_examples(val, stage, seed + 1)
        picked = np.random.default_rng([seed, 13]).permutation(len(examples))[:max_val]
        data.val_examples = [examples[int(i)] for i in sorted(picked)]
        if not data.examples:
            raise DataError(
                f"stage {stage} has no training conversations in this data (stage 2 needs composed videos with "
                "their construction record, videos.jsonl)"
            )
    return data


def text_table(card: ModelCard, device: str = "cpu") -> TextTable:
    from damo_cli.encoders.loader import load_backbone

    encoder = load_backbone(card, "text", device)
    return TextTable(encoder.encode)


def build_model(
    card: ModelCard, config: DamoConfig, init: Path | None, with_llm: bool, device: str = "cpu", seed: int = 0
) -> DamoModel:
    """A seeded DaMO model, the LLM attached (stages 2-4, or to load a checkpoint with LoRA), then `init` loaded."""
    torch.manual_seed(seed)
    damo = DamoModel(config)
    if init is not None and read_manifest(init).stage >= 3:
        with_llm = True  # its LoRA tensors need the adapters to load into
    if with_llm:
        from damo_cli.encoders.loader import load_backbone

        llm, tokenizer = load_backbone(card, "llm", "cpu")
        damo.attach_llm(llm, tokenizer)
    if init is not None:
        load_checkpoint(damo, init, card, allow_card_edits=True)
    return damo.to(device)


def default_init(run_dir: Path, stage: int) -> Path | None:
    """The previous stage's final checkpoint in the same run folder (None for stage 1)."""
    if stage == 1:
        return None
    previous = Path(run_dir) / f"stage{stage - 1}" / "final"
    if not (previous / MANIFEST_FILE).is_file():
        raise DataError(
            f"stage {stage} starts from stage {stage - 1}'s weights: train stage {stage - 1} into {run_dir} first "
            "(or pass --init CHECKPOINT)"
        )
    return previous


def train_stage(
    damo: DamoModel,
    card: ModelCard,
    settings: StageSettings,
    data: StageData,
    text: TextTable,
    run_dir: Path,
    device: str = "cpu",
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    classes = class_table(text) if settings.weights.bridge > 0 else None
    for video in [*data.train, *data.val]:
        text.add([q.query for q in video.queries] + video.captions)
    trainer = Trainer(damo, card, settings, data, text, run_dir, device, classes=classes, progress=progress)
    return trainer.run(resume=resume)


def export_model_dir(checkpoint: Path, card: ModelCard, out_dir: Path, notes: dict[str, Any] | None = None) -> Path:
    """A model directory for `--model PATH`: the card (as card.toml) beside a copy of the checkpoint."""
    import shutil

    manifest = read_manifest(checkpoint)
    if sha256_file(Path(checkpoint) / WEIGHTS_FILE) != manifest.weights_sha256:
        raise DataError(f"{checkpoint}: weights do not match their manifest")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MODEL_DIR_CARD).is_file():
        raise DataError(f"{out_dir} exists and is not a DaMO model directory; choose another path")
    with atomic_dir(out_dir) as tmp:
        shutil.copyfile(Path(checkpoint) / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
        shutil.copyfile(Path(checkpoint) / MANIFEST_FILE, tmp / MANIFEST_FILE)
        (tmp / MODEL_DIR_CARD).write_text(_card_without_weights(card), encoding="utf-8")
        if notes:
            (tmp / "training.json").write_text(json.dumps(notes, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _card_without_weights(card: ModelCard) -> str:
    """The card's text minus a [weights] table (a model directory's weights are the checkpoint beside it)."""
    lines = card.path.read_text(encoding="utf-8").splitlines(keepends=True)
    out: list[str] = []
    skipping = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            skipping = stripped == "[weights]"
        if not skipping:
            out.append(line)
    return "".join(out)
