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
from damo_cli.writers import AnswerWriter, HitJsonWriter, HitSrtWriter, HitTableWriter

MODEL_OPTION = typer.Option("damo-tiny", "--model", help="Model card name or trained model folder.")
DEVICE_OPTION = typer.Option("auto", "--device", help="cpu, cuda, mps or auto (cuda > mps > cpu).")
LIBRARY_OPTION = typer.Option(None, "--library", help="Library folder (default: damo's data folder).")
VERBOSE_OPTION = typer.Option(
    False, "--verbose", help="Say on stderr whether a running `damo serve` or this process does the work."
)


def index(
    paths: list[Path] = typer.Argument(None, help="Videos or folders (walked recursively)."),
    model: str = MODEL_OPTION,
    device: str = DEVICE_OPTION,
    extensions: str = typer.Option(
        "mp4,m4v,mov,mkv,webm,avi,mpg,mpeg,wmv,flv,3gp,ts,mts,m2ts", "--ext", help="Video extensions to pick up."
    ),
    workers: int = typer.Option(
        None,
        "--workers",
        min=1,
        help="Processes that decode and encode in parallel (default 1); with --ray, Ray actors (default: one per CPU, "
        "or per GPU, of the cluster).",
    ),
    ray_address: str = typer.Option(
        None,
        "--ray",
        help="Decode and encode on a Ray cluster: its address (HOST:PORT), or auto (RAY_ADDRESS, a cluster started "
        "on this machine, else a local one). Needs pip install 'damo-cli[ray]'.",
    ),
    library_dir: Path = LIBRARY_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print one JSON summary object."),
    stats: bool = typer.Option(False, "--stats", help="Show what the library holds, then exit."),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Move a damaged library aside (kept, never deleted), start a fresh one, index PATHS."
    ),
) -> None:
    """Decode, encode and store videos for search; unchanged files are skipped, moved files are not re-encoded."""
    from damo_cli.api import load
    from damo_cli.store import Library

    paths = local_paths(paths or [])
    if stats:
        _print_stats(Library.open(library_dir, create=False), json_output)
        return
    if not paths:
        raise DamoError("give at least one video or folder to index (or --stats)")
    plan = None
    if ray_address is not None:
        from damo_cli.pipeline.ray_index import RayPlan, require_ray

        require_ray()  # one line before anything loads when the extra is missing
        plan = RayPlan(nonblank(ray_address, "--ray address").strip(), actors=workers, device=device)
    console = Console(stderr=True)
    if rebuild:
        library, aside = Library.quarantine_and_recreate(library_dir)
        if aside:
            console.print(f"moved the old library aside to {aside}")
    else:
        library = Library.open(library_dir)
    with console.status("loading the model"):
        session = load(model, device)
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
        report = session.index(paths, library, extensions=exts, workers=workers or 1, on_event=on_event, ray=plan)
    if json_output:
        typer.echo(json.dumps(report.to_json()))
    else:
        console.print(
            f"indexed {len(report.indexed)}, unchanged {len(report.skipped)}, moved {len(report.moved)}, "
            f"failed {len(report.failed)}" + (f", forgot {len(report.removed)} deleted" if report.removed else "")
        )


def _print_stats(library, json_output: bool) -> None:  # noqa: ANN001 - Library
    if json_output:
        from damo_cli.api import library_stats

        typer.echo(json.dumps(library_stats(library), indent=2))
        return
    st = library.stats()
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
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Find ranked moments across the indexed library (what is seen, what is said, transcript words)."""
    nonblank(query, "search query")
    hits = _search_on_server(query, k, path_filter, model, device, library_dir, _say(verbose))
    if hits is None:
        from damo_cli.api import load
        from damo_cli.store import Library

        library = Library.open(library_dir, create=False)
        session = load(model, device)
        _say(verbose)(_evidence_line(session))
        hits = session.search(query, k, library, path_filter)
    if clip_dir is not None:
        from damo_cli.pipeline.clips import export_clips

        for clip in export_clips(hits, clip_dir):
            Console(stderr=True).print(f"clip: {clip}", highlight=False)
    if json_output:
        HitJsonWriter().write([h.to_json() for h in hits], sys.stdout)
    elif srt:
        HitSrtWriter().write(hits, sys.stdout)
    else:
        HitTableWriter(query).write(hits, sys.stdout)


def ask(
    video: Path = typer.Argument(..., help="Video file to ask about."),
    question: str = typer.Argument(..., help="Question, e.g. 'when does the dog jump?'."),
    model: str = MODEL_OPTION,
    device: str = DEVICE_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print exactly one JSON object."),
    verbose: bool = VERBOSE_OPTION,
) -> None:
    """Answer a question about a video, with the moment(s) that support the answer."""
    from damo_cli.media import probe

    local_path(video)
    nonblank(question, "question")
    probe(video)  # bad input fails here, in one line, before any model loads
    from damo_cli.server import client

    reply = client.ask(video, question, model=model, device=device, say=_say(verbose))
    if reply is not None:  # a running `damo serve` answered
        _print_answer(reply["result"], client.exact_moments(reply), json_output)
        return
    from damo_cli.api import load

    console = Console(stderr=True)
    with console.status("loading the model"):
        session = load(model, device)
    _say(verbose)(_evidence_line(session))
    result = session.ask(video, question, status=console.status)
    _print_answer(result.to_json(), result.moments, json_output)


def _print_answer(payload: dict, moments: list[tuple[float, float, float]], json_output: bool) -> None:
    AnswerWriter(as_json=json_output).write(payload, moments, sys.stdout)


def _search_on_server(
    query: str, k: int, path_filter: str | None, model: str, device: str, library_dir: Path | None, say
) -> list | None:  # noqa: ANN001 - say: a line for --verbose
    """The hits a running `damo serve` finds (as `SearchHit`s, times and scores unrounded), or None: search here."""
    from damo_cli.server import client

    reply = client.search(query, k, path_filter, model=model, device=device, library=library_dir, say=say)
    if reply is None:
        return None
    from damo_cli.pipeline.search import SearchHit

    return [SearchHit(*hit) for hit in client.exact_hits(reply)]


def _evidence_line(session) -> str:  # noqa: ANN001 - damo_cli.api.Session, imported lazily
    """What carries what is seen, for --verbose: the trained per-time head, or only the card's zero-shot channel."""
    from damo_cli.pipeline.zero_shot import zero_shot_kind

    model, channel = session.model, zero_shot_kind(session.model.card)
    which = f"model {model.name} on {session.device}"
    if model.trained:
        return f"{which}: trained DaMO weights, beside the zero-shot channel ({channel})"
    return f"{which}: no trained DaMO weights; what is seen comes from the zero-shot channel ({channel})"


def _say(verbose: bool):  # noqa: ANN202 - a line for --verbose
    def say(line: str) -> None:
        if verbose:
            typer.echo(f"damo: {line}", err=True)

    return say
