"""What `damo bench` reports: figures, each beside a baseline measured in the same run, as a table or JSON."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Better = Literal["higher", "lower"]


@dataclass
class Figure:
    """One measured figure and the baseline it is read against.

    `ratio` is always value / baseline, computed here from the two measured numbers (never typed in), so the JSON
    can be checked; `better` says which way is good ("higher" for throughput and recall, "lower" for latency and
    memory), so a reader knows whether a ratio above 1 is a win.
    """

    key: str  # stable identifier, e.g. "index_rtf"
    label: str  # what a person reads in the table
    value: float
    unit: str
    baseline_label: str
    baseline: float | None
    better: Better
    detail: dict[str, Any] = field(default_factory=dict)  # how it was measured (sizes, counts, settings)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0 or not math.isfinite(self.baseline):
            return None
        return self.value / self.baseline

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "value": self.value,
            "unit": self.unit,
            "baseline_label": self.baseline_label,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "better": self.better,
            "detail": self.detail,
        }


@dataclass
class BenchReport:
    figures: list[Figure]
    machine: dict[str, Any]
    config: dict[str, Any]
    elapsed_s: float
    stage_s: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "figures": [f.to_json() for f in self.figures],
            "machine": self.machine,
            "config": self.config,
            "elapsed_s": round(self.elapsed_s, 1),
            "stage_s": {k: round(v, 1) for k, v in self.stage_s.items()},
        }


def format_number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    magnitude = abs(value)
    if magnitude >= 100:
        text = f"{value:,.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 0.01 or magnitude == 0:
        text = f"{value:.2f}"
    else:
        text = f"{value:.2g}"
    return f"{text} {unit}".strip() if unit else text


def span(seconds: float) -> str:
    """'30-min' or '40 s': a video length as a label."""
    if seconds >= 60 and abs(seconds / 60 - round(seconds / 60)) < 0.01:
        return f"{round(seconds / 60)}-min"
    return f"{seconds:.0f} s"


def render_table(report: BenchReport):  # noqa: ANN201 - rich.table.Table, imported lazily
    from rich.table import Table

    m = report.machine
    title = (
        f"damo bench — {m.get('cpu_model', '?')}, {m.get('cores', '?')} cores, "
        f"{m.get('ram_gb', '?')} GB RAM, torch threads {m.get('torch_threads', '?')}"
    )
    table = Table(title=title, caption=f"run took {report.elapsed_s:.0f} s; ratio = value / baseline")
    for column, justify in (("figure", "left"), ("value", "right"), ("baseline", "left"), ("ratio", "right")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for fig in report.figures:
        baseline = f"{format_number(fig.baseline, fig.unit)} ({fig.baseline_label})"
        ratio = "—" if fig.ratio is None else f"{fig.ratio:.3g}× ({fig.better} is better)"
        table.add_row(fig.label, format_number(fig.value, fig.unit), baseline, ratio)
    return table


# ------------------------------------------------------------------------------------------------- timing helpers


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """`with stopwatch() as took: ...; took()` -> seconds the block ran (perf_counter, wall time)."""
    start = time.perf_counter()
    end: list[float] = []
    try:
        yield lambda: (end[0] if end else time.perf_counter()) - start
    finally:
        end.append(time.perf_counter())


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds of a list of per-query wall times."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
