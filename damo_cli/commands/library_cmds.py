"""`damo index`, `damo search`, `damo ask`: the main job."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from damo_cli.commands.inputs import local_path, local_paths, nonblank
from damo_cli.errors import DamoError

MODEL_OPTION = typer.Option("damo-tiny", "--model", help="Model card name or trained model folder.")
DEVICE_OPTION = typer.Option("auto", "--device", help="cpu, cuda, mps or auto (cuda > mps > cpu).")
LIBRARY_OPTION = typer.Option(None, "--library", help="Library folder (default: damo's data folder).")


def index(
    paths: list[Path] = typer.Argument(None, help="Videos or folders (walked recursively)."),
    model: str = MODEL_OPTION,
    device: str = DEVICE_OPTION,
    extensions: str = typer.Option(
        "mp4,m4v,mov,mkv,webm,avi,mpg,mpeg,wmv,flv,3gp,ts,mts,m2ts", "--ext", help="Video extensions to pick up."
    ),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes that decode and encode in parallel."),
    library_dir: Path = LIBRARY_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print one JSON summary object."),
    stats: bool = typer.Option(False, "--stats", help="Show what the library holds, then exit."),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Move a damaged library aside (kept, never deleted), start a fresh one, index PATHS."
    ),
) -> None:
    """Decode, encode and store videos for search; unchanged files are skipped, moved files are not re-encoded."""
    from damo_cli.device import resolve_device
    from damo_cli.pipeline.indexer import Indexer
    from damo_cli.store import Library

    paths = local_paths(paths or [])
    if stats:
        _print_stats(Library.open(library_dir, create=False), json_output)
        return
    if not paths:
        raise DamoError("give at least one video or folder to index (or --stats)")
    console = Console(stderr=True)
    if rebuild:
        library, aside = Library.quarantine_and_recreate(library_dir)
        if aside:
            console.print(f"moved the old library aside to {aside}")
    else:
        library = Library.open(library_dir)
    resolved = resolve_device(device)
    with console.status("loading the model"):
        indexer = Indexer(model, resolved, library, workers)
    exts = [e.strip() for e in extensions.split(",") if e.strip()]
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=json_output or not console.is_terminal,
    )
    marks = {"indexed": "[green]✓ indexed[/]", "skipped": "[dim]· unchanged[/]", "moved": "[cyan]↷ moved[/]"}

    def on_event(kind: str, path: Path, detail: str) -> None:
        if kind == "found":
            progress.update(task, total=int(detail))
            return
        if kind == "start":
            progress.update(task, description=f"indexing {path.name}")
            return
        if kind == "failed":
            line = f"[red]✗ failed[/] {path}: {detail}"
        else:
            line = f"{marks[kind]} {path}" + (f" ({detail})" if kind == "moved" else "")
        progress.advance(task)
        if not json_output:
            console.print(line, highlight=False)

    with progress:
        task = progress.add_task("scanning", total=None)
        report = indexer.run(paths, exts, on_event)
    if json_output:
        typer.echo(json.dumps(report.to_json()))
    else:
        console.print(
            f"indexed {len(report.indexed)}, unchanged {len(report.skipped)}, moved {len(report.moved)}, "
            f"failed {len(report.failed)}" + (f", forgot {len(report.removed)} deleted" if report.removed else "")
        )


def _print_stats(library, json_output: bool) -> None:  # noqa: ANN001 - Library
    st = library.stats()
    if json_output:
        payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(st).items()}
        payload["last_indexed"] = st.last_indexed.isoformat() if st.last_indexed else None
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"damo library ({st.root})", show_header=False)
    table.add_column("")
    table.add_column("")
    table.add_row("videos", f"{st.videos} ({st.total_duration_s / 60:.1f} min)")
    table.add_row("moments", ", ".join(f"{c} {n}" for c, n in st.moments_by_channel.items()) or "0")
    table.add_row("transcript lines", str(st.transcript_lines))
    table.add_row("on-screen text lines", str(st.screen_text_lines))
    table.add_row("failures", str(st.failures))
    table.add_row("size on disk", f"{st.size_bytes / 1e6:.1f} MB")
    table.add_row("models", ", ".join(f"{fp} ({n})" for fp, n in st.fingerprints.items()) or "-")
    table.add_row("last indexed", st.last_indexed.strftime("%Y-%m-%d %H:%M") if st.last_indexed else "never")
    Console().print(table)


def search(
    query: str = typer.Argument(..., help="What to look for, e.g. 'someone opens a door'."),
    k: int = typer.Option(10, "-k", min=1, help="How many moments."),
    path_filter: str = typer.Option(None, "--path", help="Only videos under this folder or matching this glob."),
    model: str = MODEL_OPTION,
    device: str = DEVICE_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print a JSON array."),
    srt: bool = typer.Option(False, "--srt", help="Print the moments as SubRip subtitles."),
    clip_dir: Path = typer.Option(None, "--clip", help="Export each moment as a playable clip into this folder."),
    library_dir: Path = LIBRARY_OPTION,
) -> None:
    """Find ranked moments across the indexed library (what is seen, what is said, transcript words)."""
    from damo_cli.device import resolve_device
    from damo_cli.encoders.loader import load_backbone
    from damo_cli.pipeline.analyse import Analyser
    from damo_cli.pipeline.loading import load_model
    from damo_cli.pipeline.search import search_library
    from damo_cli.store import Library

    nonblank(query, "search query")
    library = Library.open(library_dir, create=False)
    resolved = resolve_device(device)
    loaded = load_model(model, resolved)
    text = load_backbone(loaded.card, "text", resolved)
    hits = search_library(
        library, query, text.encode([query])[0], Analyser.fingerprint_of(loaded), loaded.trained, k, path_filter
    )
    if clip_dir is not None:
        from damo_cli.pipeline.clips import export_clips

        for clip in export_clips(hits, clip_dir):
            Console(stderr=True).print(f"clip: {clip}", highlight=False)
    if json_output:
        typer.echo(json.dumps([h.to_json() for h in hits], ensure_ascii=False))
    elif srt:
        from damo_cli.writers import srt_time

        for number, hit in enumerate(hits, start=1):
            label = f"{hit.path.name} ({hit.score:.2f})" + (f": {hit.text}" if hit.text else "")
            sys.stdout.write(f"{number}\n{srt_time(hit.start)} --> {srt_time(hit.end)}\n{label}\n\n")
    else:
        if not hits:
            Console().print("no moments found")
            return
        table = Table(title=f"damo search: {query}")
        for column in ("#", "video", "moment", "score", "said, shown or heard"):
            table.add_column(column, overflow="fold")
        for rank, hit in enumerate(hits, start=1):
            table.add_row(
                str(rank), str(hit.path), f"{hit.start:.1f}–{hit.end:.1f} s", f"{hit.score:.2f}", hit.text or ""
            )
        Console().print(table)


def ask(
    video: Path = typer.Argument(..., help="Video file to ask about."),
    question: str = typer.Argument(..., help="Question, e.g. 'when does the dog jump?'."),
    model: str = MODEL_OPTION,
    device: str = DEVICE_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print exactly one JSON object."),
) -> None:
    """Answer a question about a video, with the moment(s) that support the answer."""
    from damo_cli.device import resolve_device
    from damo_cli.media import probe
    from damo_cli.pipeline import feature_cache
    from damo_cli.pipeline.analyse import Analyser
    from damo_cli.pipeline.ask import answer_question
    from damo_cli.pipeline.loading import load_model
    from damo_cli.store import content_key

    local_path(video)
    nonblank(question, "question")
    probe(video)  # bad input fails here, in one line, before any model loads
    resolved = resolve_device(device)
    console = Console(stderr=True)
    with console.status("loading the model"):
        analyser = Analyser(load_model(model, resolved), resolved)
    key = content_key(video)
    analysis = feature_cache.load(video, key, analyser.fingerprint)
    if analysis is None:
        with console.status("watching and listening"):
            analysis = analyser.analyse(video)
        feature_cache.save(analysis, key, analyser.fingerprint)
    with console.status("thinking"):
        result = answer_question(analyser, analysis, question, resolved)
    result.video = video.expanduser().absolute()
    if json_output:
        typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
        return
    out = Console()
    out.print(result.answer)
    for start, end, score in result.moments:
        out.print(f"  {start:7.1f} s → {end:7.1f} s   score {score:.2f}")
