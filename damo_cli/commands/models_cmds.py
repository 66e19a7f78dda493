"""`damo models ...`: the model cards, whether each is ready offline, and one-time preparation of derived weights."""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Model cards: list them, show one, prepare derived weights.", no_args_is_help=True)


@app.command("list")
def list_models(json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the model cards and whether each one's backbones are ready offline."""
    from damo_cli.cards import list_cards
    from damo_cli.encoders.readiness import card_status

    rows = []
    for card in list_cards():
        statuses = card_status(card)
        rows.append(
            {
                "name": card.name,
                "offline": card.offline,
                "ready": all(s.ready for s in statuses),
                "description": card.description,
                "missing": [{"backbone": s.role, "detail": s.detail, "fix": s.fix} for s in statuses if not s.ready],
            }
        )
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="damo models")
    for column in ("name", "ready", "backbones", "description"):
        table.add_column(column)
    for row in rows:
        ready = "[green]ready[/]" if row["ready"] else "[yellow]not ready[/]"
        source = "packaged (offline)" if row["offline"] else "Hugging Face hub"
        table.add_row(row["name"], ready, source, row["description"])
    console = Console()
    console.print(table)
    for row in rows:
        for miss in row["missing"]:
            if row["offline"]:
                console.print(f"  {row['name']}/{miss['backbone']}: {miss['detail']} -> fix: {miss['fix']}")


@app.command("prepare")
def prepare(
    name: str = typer.Argument("damo-tiny", help="Model card to prepare."),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto."),
) -> None:
    """Verify a card's weights and build its derived caches once (assembled Whisper, LLM as safetensors)."""
    from damo_cli.cards import load_card
    from damo_cli.device import resolve_device
    from damo_cli.encoders import loader

    card = load_card(name)
    resolved = resolve_device(device)
    console = Console(stderr=True)
    for role in ("visual", "audio", "text", "llm"):
        start = time.perf_counter()
        with console.status(f"loading {role} backbone"):
            loader.load_backbone(card, role, resolved)
        typer.echo(f"{role:<7} ready in {time.perf_counter() - start:.2f} s")
