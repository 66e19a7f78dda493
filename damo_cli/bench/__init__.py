"""`damo bench`: measure damo on the machine at hand, each figure beside a baseline measured in the same run.

- index throughput (video seconds per wall second) on a generated 720p clip, beside a naive pipeline (decode every
  frame, then subsample) and beside the decode-only floor of the same frames (`indexing`);
- `damo ask` latency, cold and warm, in-process and as the CLI (`asking`);
- `damo search` latency p50/p95 at 10k / 100k / 1M synthetic moments, IVF beside exact, with IVF's recall@10
  (`searching`, built on `store_vectors`);
- peak RSS of `damo index` on a 30-minute video beside the same on one minute of it (`indexing`).
- `damo index --ray` on a local 2-worker Ray instance beside one process, same files (`scaling`; needs the ray extra).

`run_bench(BenchConfig.full())` returns a `BenchReport` (figures, machine, sizes, stage times).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from damo_cli.bench.report import BenchReport, Figure
    from damo_cli.bench.run import BenchConfig, run_bench

__all__ = ["BenchConfig", "BenchReport", "Figure", "run_bench"]


def __getattr__(name: str) -> Any:  # noqa: ANN401
    """Exports load on first use, so `python -m damo_cli.bench.store_vectors` runs without the rest of the bench."""
    if name in ("BenchReport", "Figure"):
        from damo_cli.bench import report

        return getattr(report, name)
    if name in ("BenchConfig", "run_bench"):
        from damo_cli.bench import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
