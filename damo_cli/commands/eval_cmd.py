"""`damo eval`: score a predictions file against ground truth, beside trivial baselines, with the protocol printed."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # numpy-heavy; imported when the verb runs so `damo --help` stays fast
    from damo_cli.evaluation.report import EvalReport


class DatasetChoice(StrEnum):
    auto = "auto"
    charades = "charades"
    activitynet = "activitynet"
    qvhighlights = "qvhighlights"


def evaluate(
    predictions: Path = typer.Option(
        ...,
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
) -> None:
    """Score predictions against ground truth (R1@m, mIoU; QVHighlights mAP/HIT@1), beside trivial baselines."""
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
