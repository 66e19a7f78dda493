"""`damo bench`: measure damo on the machine at hand, each figure beside a baseline measured in the same run.

- index throughput (video seconds per wall second) on a generated 720p clip, beside a naive pipeline (decode every
  frame, then subsample) and beside the decode-only floor of the same frames (`indexing`);
- `damo ask` latency, cold and warm, in-process and as the CLI (`asking`);
- `damo search` latency p50/p95 at 10k / 100k / 1M synthetic moments, IVF beside exact, with IVF's recall@10
  (`searching`, built on `damo_cli.store.bench`);
- peak RSS of `damo index` on a 30-minute video beside the same on one minute of it (`indexing`).

`run_bench(BenchConfig.full())` returns a `BenchReport` (figures, machine, sizes, stage times).
"""

from damo_cli.bench.report import BenchReport, Figure
from damo_cli.bench.run import BenchConfig, run_bench

__all__ = ["BenchConfig", "BenchReport", "Figure", "run_bench"]
