"""`damo bench`: measure index throughput, ask and search latency and peak memory here, each beside a baseline."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console


def bench(
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object (figures, machine, sizes)."),
    quick: bool = typer.Option(
        False, "--quick", help="Small sizes (seconds-long clips, thousands of moments): checks that every step runs."
    ),
    model: str = typer.Option("damo-tiny", "--model", help="Model card name or trained model folder."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, mps or auto (cuda > mps > cpu)."),
    workdir: Path = typer.Option(
        None, "--workdir", help="Keep the generated media, libraries and logs here (default: a temporary folder)."
    ),
) -> None:
    """Measure damo on this machine in one run: index throughput (beside decode-only and a naive pipeline), search
    latency at 10k/100k/1M moments (IVF beside exact, recall@10), ask latency cold and warm, peak RSS of a
    30-minute index. The full run takes several minutes; --quick about one."""
    from damo_cli.bench import BenchConfig, run_bench
    from damo_cli.bench.report import render_table

    config = BenchConfig.small(model, device) if quick else BenchConfig.full(model, device)
    console = Console(stderr=True)
    with console.status("benchmarking") as status:

        def on_stage(name: str) -> None:  # progress on stderr whatever the output: stdout holds only the report
            status.update(name)
            console.print(f"bench: {name}", markup=False, highlight=False, soft_wrap=True)

        report = run_bench(config, on_stage, workdir)
    if json_output:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    Console().print(render_table(report))
