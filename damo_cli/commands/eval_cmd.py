"""`damo eval`: score a predictions file against ground truth, beside trivial baselines, with the protocol printed."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from damo_cli.commands.inputs import local_path

if TYPE_CHECKING:  # numpy-heavy; imported when the verb runs so `damo --help` stays fast
    from damo_cli.evaluation.report import EvalReport


class DatasetChoice(StrEnum):
    auto = "auto"
    charades = "charades"
    activitynet = "activitynet"
    qvhighlights = "qvhighlights"


def evaluate(
    predictions: Path | None = typer.Option(
        None,
        "--predictions",
        "-p",
        help="Predictions, JSON Lines: {qid, pred_relevant_windows: list of (start, end, score)} or {qid, answer}.",
    ),
    gt: Path = typer.Option(
        ...,
        "--gt",
        help="Ground truth, JSON Lines: {qid, vid, query, duration, relevant_windows: list of (start, end)}.",
    ),
    dataset: DatasetChoice = typer.Option(
        DatasetChoice.auto,
        "--dataset",
        help="Protocol; auto = QVHighlights when saliency scores are present, else grounding (R1@m, mIoU).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random-window baseline."),
    strict: bool = typer.Option(
        False, "--strict", help="Fail if a GT query has no prediction (default: score it as a miss and report it)."
    ),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="Also score the trivial baselines."),
    videos: Path | None = typer.Option(
        None, "--videos", help="Run a model over this folder of videos (with --model) instead of reading predictions."
    ),
    model: str | None = typer.Option(None, "--model", help="Model to run: a card name (damo-tiny) or a model folder."),
    llm: bool = typer.Option(True, "--llm/--no-llm", help="Model runs: also ask the LLM and parse its answers."),
    device: str = typer.Option("auto", "--device", help="Model runs: auto, cpu, cuda, cuda:N or mps."),
    save_predictions: Path | None = typer.Option(
        None, "--save-predictions", help="Model runs: write each predictor's predictions (JSON Lines) here."
    ),
    search: bool = typer.Option(
        False, "--search", help="Model runs: score 'damo search' over a library of every video the GT names instead."
    ),
    answers: bool = typer.Option(
        False,
        "--answers",
        help="Model runs: --gt is a questions file (qid, vid, question, keywords); score 'damo ask' answers to its "
        "open questions by keyword match.",
    ),
) -> None:
    """Score predictions against ground truth (R1@m, mIoU; QVHighlights mAP/HIT@1), beside trivial baselines.

    With --videos DIR --model NAME the model itself runs over the videos through the code `damo ask` runs: the
    moments `ask` returns, the per-time head alone, the zero-shot bridge alone, and (--llm) the LLM's text answers
    (parse failures reported), all beside the baselines in one report. With --search, `damo search` is scored over a
    library of all the videos: the right video at rank 1, and the right window (IoU >= 0.5) at rank 1.
    """
    if videos is not None or model is not None:
        if videos is not None:
            local_path(videos)
        if videos is None or model is None:
            from damo_cli.errors import EvaluationError

            raise EvaluationError("a model run needs both --videos DIR and --model NAME")
        if answers:
            _answers_run(videos, gt, model, device, llm, json_output, save_predictions)
        elif search:
            _search_run(videos, gt, model, device, json_output, save_predictions)
        else:
            _model_run(videos, gt, model, llm, device, seed, json_output, save_predictions)
        return
    if predictions is None:
        from damo_cli.errors import EvaluationError

        raise EvaluationError("give --predictions FILE, or --videos DIR with --model NAME")
    from damo_cli.evaluation.report import run_evaluation

    report = run_evaluation(predictions, gt, dataset.value, seed=seed, strict=strict, with_baselines=baselines)
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        render(report, Console())


def render(report: EvalReport, console: Console) -> None:
    """Metric table (model beside baselines), coverage line and the protocol block."""
    cov = report.coverage
    names = list(report.baselines)
    table = Table(title=f"damo eval: {report.protocol.dataset}, {cov.queries} queries", title_justify="left")
    table.add_column("metric")
    table.add_column("model", justify="right", style="bold")
    for name in names:
        table.add_column(name, justify="right", style="dim")
    from damo_cli.evaluation.report import headline

    base = {name: headline(m) for name, m in report.baselines.items()}
    for key, value in report.headline().items():
        table.add_row(key, f"{value:.2f}", *(_fmt(base[n].get(key)) for n in names))
    console.print(table)

    style = "yellow" if cov.misses else "green"
    line = f"scored {cov.queries - cov.misses}/{cov.queries} queries; misses (IoU 0): {cov.misses}"
    if cov.misses:
        line += f" ({len(cov.missing)} without a prediction, {len(cov.empty)} without a usable window)"
    if report.dropped_windows:
        line += f"; {report.dropped_windows} invalid windows dropped"
    if report.answer_lines:
        line += f"; {report.answer_lines} free-text answers parsed"
    console.print(line, style=style, markup=False)

    proto = Table(title="protocol", title_justify="left", show_header=False, box=None, padding=(0, 1))
    proto.add_column(style="cyan")
    proto.add_column(overflow="fold")
    for label, value in report.protocol.rows():
        proto.add_row(label, value)
    for name in names:
        proto.add_row(f"baseline {name}", report.baseline_notes.get(name, ""))
    console.print(proto)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _model_run(
    videos: Path, gt: Path, model: str, llm: bool, device: str, seed: int, json_output: bool, save: Path | None
) -> None:
    from damo_cli.device import resolve_device
    from damo_cli.evaluation.model_run import run_model
    from damo_cli.evaluation.report import headline

    console = Console(stderr=True)
    with console.status("running the model") as status:

        def progress(vid: str, done: int, total: int) -> None:
            status.update(f"video {done}/{total} ({vid})")

        run = run_model(videos, gt, model, resolve_device(device), with_llm=llm, seed=seed, progress=progress)
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        for name, rows in run.predictions.items():
            path = save / f"predictions-{name.replace('+', '-')}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if json_output:
        out = {name: report.to_json() for name, report in run.reports.items()}
        out["per_kind"] = run.per_kind
        out["llm_parse_failure_rate"] = run.parse_failure_rate
        out["seconds"] = {k: round(v, 1) for k, v in run.timings.items()}
        typer.echo(json.dumps(out, indent=2))
        return
    first = next(iter(run.reports.values()))
    names = list(first.baselines)
    out_console = Console()
    table = Table(title=f"damo eval: model {model} on {first.coverage.queries} queries", title_justify="left")
    table.add_column("metric")
    for name in run.reports:
        table.add_column(name, justify="right", style="bold")
    for name in names:
        table.add_column(name, justify="right", style="dim")
    base = {name: headline(m) for name, m in first.baselines.items()}
    rows = {name: report.headline() for name, report in run.reports.items()}
    for key in first.headline():
        table.add_row(key, *(f"{rows[n][key]:.2f}" for n in run.reports), *(_fmt(base[n].get(key)) for n in names))
    out_console.print(table)
    kinds = Table(title="R1@0.5 / mIoU per query kind", title_justify="left")
    kinds.add_column("kind")
    kinds.add_column("queries", justify="right")
    for name in run.per_kind:
        kinds.add_column(name, justify="right")
    for kind, values in next(iter(run.per_kind.values())).items():
        kinds.add_row(kind, str(values["n"]), *(
            f"{run.per_kind[n][kind]['R1@0.5']:.1f} / {run.per_kind[n][kind]['mIoU']:.1f}" for n in run.per_kind
        ))  # fmt: skip
    out_console.print(kinds)
    if run.parse_failure_rate is not None:
        out_console.print(
            f"LLM answers: {run.answers}, with no parsable moment: {run.parse_failures} "
            f"({run.parse_failure_rate:.1f} %, scored as misses)", markup=False
        )  # fmt: skip
    proto = Table(title="protocol", title_justify="left", show_header=False, box=None, padding=(0, 1))
    proto.add_column(style="cyan")
    proto.add_column(overflow="fold")
    source = run.reports.get("llm", first)
    for label, value in source.protocol.rows():
        proto.add_row(label, value)
    proto.add_row("ask", "the moments 'damo ask VIDEO QUERY' returns (pipeline.ask.question_moments)")
    proto.add_row("head / bridge", "per-time head alone / zero-shot bridge alone, decoded by localize, top-5")
    for name in names:
        proto.add_row(f"baseline {name}", first.baseline_notes.get(name, ""))
    proto.add_row("seconds", ", ".join(f"{k} {v:.0f}" for k, v in run.timings.items()))
    out_console.print(proto)


def _save_rows(path: Path, rows: list[dict]) -> None:
    """--save-predictions: one JSON object per line, beside the run's other outputs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _answers_run(
    videos: Path, questions: Path, model: str, device: str, llm: bool, json_output: bool, save: Path | None
) -> None:
    from damo_cli.device import resolve_device
    from damo_cli.evaluation.model_run import ANSWER_PREDICTORS, run_answers

    console = Console(stderr=True)
    with console.status("asking") as status:

        def progress(vid: str, done: int, total: int) -> None:
            status.update(f"video {done}/{total} ({vid})")

        run = run_answers(videos, questions, model, resolve_device(device), with_llm=llm, progress=progress)
    if save is not None:
        _save_rows(save / "answers.jsonl", run.rows)
    if json_output:
        typer.echo(json.dumps(run.to_json(), indent=2))
        return
    table = Table(title=f"damo ask: model {model}, {run.questions} open questions", title_justify="left")
    table.add_column("predictor")
    table.add_column("names the expected thing (%)", justify="right", style="bold")
    table.add_column("bare time ranges", justify="right")
    for name in run.keyword_match:
        table.add_row(name, f"{run.keyword_match[name]:.2f}", str(run.time_range_only[name]))
    out = Console()
    out.print(table)
    for name in run.keyword_match:
        out.print(f"{name}: {ANSWER_PREDICTORS[name]}", markup=False, style="dim")
    out.print(f"seconds: {run.seconds:.0f}", style="dim")


def _search_run(videos: Path, gt: Path, model: str, device: str, json_output: bool, save: Path | None) -> None:
    from damo_cli.device import resolve_device
    from damo_cli.evaluation.model_run import run_search

    console = Console(stderr=True)
    with console.status("indexing the videos") as status:

        def progress(name: str, done: int, total: int) -> None:
            status.update(f"indexed {done}/{total} ({name})")

        run = run_search(videos, gt, model, resolve_device(device), progress=progress)
    if save is not None:
        _save_rows(save / "search.jsonl", run.rows)
    if json_output:
        typer.echo(json.dumps(run.to_json(), indent=2))
        return
    table = Table(title=f"damo search: model {model}, {run.queries} queries over {run.videos} videos",
                  title_justify="left")  # fmt: skip
    table.add_column("metric")
    table.add_column("search", justify="right", style="bold")
    table.add_column("zero-shot", justify="right", style="dim")
    table.add_column("random video", justify="right", style="dim")
    table.add_row("right video at rank 1 (%)", f"{run.video_top1:.2f}", f"{run.zero_shot_video_top1:.2f}",
                  f"{run.chance_video_top1:.2f}")  # fmt: skip
    table.add_row("right video in top 5 (%)", f"{run.video_top5:.2f}", "-", "-")
    table.add_row("right window at rank 1, IoU >= 0.5 (%)", f"{run.window_top1:.2f}",
                  f"{run.zero_shot_window_top1:.2f}", "-")  # fmt: skip
    Console().print("zero-shot: the same search without the trained head (bridge + transcript channels)", style="dim")
    Console().print(table)
