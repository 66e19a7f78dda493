"""`damo train` (the four DaMO stages) and `damo finetune` (adapt a trained model to a folder of annotated clips).

Both run through accelerate: `damo train ...` on a CPU or one GPU, and the same command under
`accelerate launch -m damo_cli train ...` on several GPUs (each process takes its share of every batch).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from damo_cli.commands.inputs import local_path, local_paths


def _threads() -> None:
    """DAMO_THREADS caps torch's CPU threads (one thread was 5-15x faster for small models on a busy 2-core box)."""
    value = os.environ.get("DAMO_THREADS")
    if value:
        import torch

        torch.set_num_threads(max(1, int(value)))


def train(
    stage: int = typer.Option(..., "--stage", min=1, max=4, help="1 alignment, 2 bridging, 3 grounded QA, 4 dialogue."),
    card: str = typer.Option("damo-tiny", "--card", help="Model card to train (its [model] section sizes the model)."),
    data: list[Path] = typer.Option(
        ...,
        "--data",
        metavar="DIR",
        help="Folder with videos and annotations.jsonl (e.g. from 'damo data compose'); repeat to train on several.",
    ),
    run_dir: Path | None = typer.Option(
        None, "--run-dir", help="Where stages, logs, checkpoints and curves go (default: <first data dir>/runs/<card>)."
    ),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Optimiser steps (default per stage)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Clips / conversations per step."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (default: 5e-4 stage 1, 2e-4 after)."),
    init: Path | None = typer.Option(
        None, "--init", help="Checkpoint to start from (default: the previous stage's final one in the run dir)."
    ),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of videos held out for validation."),
    seed: int = typer.Option(0, "--seed", help="Seeds the init, the data order and dropout."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    resume: bool = typer.Option(True, "--resume/--restart", help="Continue from the stage's last checkpoint."),
    transcribe: bool = typer.Option(
        False, "--transcribe", help="Also cache Whisper transcripts (composed data brings its own)."
    ),
    export: Path | None = typer.Option(
        None, "--export", help="Also write the stage's weights as a model directory (for --model PATH)."
    ),
) -> None:
    """Train one DaMO stage on cached frozen-encoder features; resumable, logged, with a curves plot."""
    from dataclasses import replace

    from damo_cli.cards import load_card
    from damo_cli.device import resolve_device
    from damo_cli.model.config import DamoConfig
    from damo_cli.training.run import (
        build_model,
        default_init,
        export_model_dir,
        prepare_folders,
        split_videos,
        stage_data,
        text_table,
        train_stage,
    )
    from damo_cli.training.trainer import STAGE_DEFAULTS

    local_paths(data)
    _threads()
    console = Console(stderr=True)
    model_card = load_card(card)
    config = DamoConfig.from_card(model_card)
    device = resolve_device(device)
    run_dir = run_dir or Path(data[0]) / "runs" / model_card.name
    start = init or default_init(run_dir, stage)
    with console.status("reading annotations and caching features") as status:

        def progress(done: int, total: int, vid: str) -> None:
            status.update(f"features {done}/{total} ({vid})")

        videos = prepare_folders(data, model_card, config, device, transcribe=transcribe, progress=progress)
    train_videos, val_videos = split_videos(videos, val_fraction, seed)
    defaults = STAGE_DEFAULTS[stage]
    settings = replace(
        defaults,
        steps=steps or defaults.steps,
        batch_size=batch_size or defaults.batch_size,
        learning_rate=lr or defaults.learning_rate,
        seed=seed,
    )
    console.print(
        f"stage {stage}: {len(train_videos)} training / {len(val_videos)} validation clips, {settings.steps} steps "
        f"of {settings.batch_size}, lr {settings.learning_rate:g}, on {device}; run folder {run_dir}"
    )
    damo = build_model(model_card, config, start, with_llm=stage >= 2, device=device, seed=seed)
    data_for_stage = stage_data(train_videos, val_videos, stage, seed)
    text = text_table(model_card, device)
    summary = train_stage(damo, model_card, settings, data_for_stage, text, run_dir, device, resume=resume)
    if summary:
        _print_summary(summary, Console())
        final = run_dir / f"stage{stage}" / "final"
        typer.echo(f"weights: {final}\ncurves: {run_dir / 'curves.png'}")
        if export is not None:
            export_model_dir(final, model_card, export, {"stage": stage, "summary": summary})
            typer.echo(f"model directory: {export} (use --model {export})")


def _print_summary(summary: dict, console: Console) -> None:
    table = Table(title=f"stage {summary['stage']}", title_justify="left")
    table.add_column("steps", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("train clips", justify="right")
    final = summary.get("final_val", {})
    metrics = [k for k in ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "lm_loss") if k in final]
    for key in metrics:
        table.add_column(f"val {key}", justify="right")
    table.add_row(
        str(summary["steps"]), f"{summary['seconds']:.0f}", str(summary["train_videos"]),
        *(f"{final[k]:.2f}" if isinstance(final[k], float) else str(final[k]) for k in metrics),
    )  # fmt: skip
    console.print(table)


def finetune(
    folder: Path = typer.Argument(..., help="Folder of clips with annotations.jsonl or annotations.csv."),
    model: str = typer.Option("damo-tiny", "--model", help="Base model: a card name or a model directory."),
    out: Path | None = typer.Option(None, "--out", help="Model directory to write (default: <folder>/damo-finetuned)."),
    align_steps: int = typer.Option(150, "--align-steps", min=1, help="Stage-1 (grounding alignment) steps."),
    qa_steps: int = typer.Option(40, "--qa-steps", min=1, help="Stage-3 (grounded QA, LoRA) steps."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    seed: int = typer.Option(0, "--seed", help="Seeds the data order, the validation split and dropout."),
) -> None:
    """Adapt a trained model to a folder of annotated clips (LoRA + fuser); writes a model directory for --model.

    annotations.jsonl: one {"vid", "query", "relevant_windows": [[start, end], ...]} per line (vid = video file name,
    with or without extension); or annotations.csv with columns video, query, start, end (seconds). A bad row (missing
    video, start >= end, window outside the video) stops with an error naming its line.
    """
    from damo_cli.device import resolve_device
    from damo_cli.training.finetune import finetune_folder

    local_path(folder)
    _threads()
    console = Console(stderr=True)
    device = resolve_device(device)
    target = out or Path(folder) / "damo-finetuned"

    def progress(done: int, total: int, vid: str) -> None:  # no live display here: training shows its own bars
        if done == total or done % 10 == 0:
            console.print(f"features {done}/{total} ({vid})")

    path, notes = finetune_folder(Path(folder), target, model, align_steps, qa_steps, device, seed,
                                  progress=True, on_features=progress)  # fmt: skip
    for summary in notes["stages"]:
        _print_summary(summary, Console())
    typer.echo(f"model directory: {path}\nuse it with: --model {path}")
