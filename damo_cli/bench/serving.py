"""`damo ask` and `damo search` as CLI calls with a `damo serve` running, beside the same calls without one.

Each call is a fresh `damo` process (what a user types), timed from start to exit; the server runs in the same
fresh home, loaded before the first call. Both ways must print the same bytes, or the figure is refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from damo_cli.bench.homes import cli_failure
from damo_cli.bench.report import Figure, percentiles_ms, stopwatch

SEARCH_QUERY = "ask not what your country can do for you"
SERVER_START_TIMEOUT_S = 300.0


def serve_latency(
    clip: Path, question: str, home: Path, calls: int, baseline_calls: int, model: str, device: str
) -> list[Figure]:
    """p50 of `calls` CLI asks and searches through a running server, beside `baseline_calls` without one.

    `home` is a DAMO_HOME whose feature cache already holds `clip` (a warm question); its library is built here."""
    library = home / "serve-library"
    common = ["--json", "--model", model, "--device", device]
    ask = ["ask", str(clip), question, *common]
    search = ["search", SEARCH_QUERY, "-k", "5", "--library", str(library), *common]
    _cli(["index", str(clip), "--library", str(library), "--model", model, "--device", device], home)

    alone_ask = [_cli(ask, home, no_server=True) for _ in range(baseline_calls)]
    alone_search = [_cli(search, home, no_server=True) for _ in range(baseline_calls)]
    server = _start_server(home, library, model, device)
    try:
        served_ask = [_cli(ask, home) for _ in range(calls)]
        served_search = [_cli(search, home) for _ in range(calls)]
    finally:
        _stop(server)
    for alone, served, verb in ((alone_ask, served_ask, "ask"), (alone_search, served_search, "search")):
        if {out for _, out in served} != {alone[0][1]}:
            raise RuntimeError(f"`damo {verb}` printed something else through the server than without it")

    figures = []
    for key, label, served, alone, args in (
        ("serve_ask_cli_p50", "`damo ask` CLI, warm 'when' question, with `damo serve` running", served_ask,
         alone_ask, ask),
        ("serve_search_cli_p50", "`damo search --json` CLI with `damo serve` running", served_search, alone_search,
         search),
    ):  # fmt: skip
        p50, p95 = percentiles_ms([s for s, _ in served])
        alone_p50, _ = percentiles_ms([s for s, _ in alone])
        figures.append(
            Figure(
                key,
                label,
                p50,
                "ms",
                f"the same call without a server (p50 of {len(alone)})",
                alone_p50,
                "lower",
                {"calls": len(served), "p95_ms": round(p95, 1), "args": args[:3], "answer": json.loads(served[0][1])},
            )
        )
    return figures


def _env(home: Path, no_server: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DAMO_NO_SERVER"}
    env["DAMO_HOME"] = str(home)
    if no_server:
        env["DAMO_NO_SERVER"] = "1"
    return env


def _cli(args: list[str], home: Path, no_server: bool = False) -> tuple[float, str]:
    """(wall seconds, stdout) of one `damo ARGS` process. Not `homes.run_cli`: it polls the child's memory every
    20 ms, coarse for calls of ~0.1 s."""
    with stopwatch() as took:
        proc = subprocess.run(
            [sys.executable, "-m", "damo_cli", *args], capture_output=True, text=True, env=_env(home, no_server)
        )
    if proc.returncode != 0:
        raise cli_failure(args, proc.returncode, proc.stderr)
    return took(), proc.stdout


def _start_server(home: Path, library: Path, model: str, device: str) -> subprocess.Popen:
    """`damo serve` in `home`, returned once its discovery file says it is loaded and listening."""
    discovery, log = home / "data" / "server.json", home / "serve.log"
    args = ["serve", "--port", "0", "--library", str(library), "--model", model, "--device", device]
    with open(log, "wb") as err:
        server = subprocess.Popen(
            [sys.executable, "-m", "damo_cli", *args], stdout=subprocess.DEVNULL, stderr=err, env=_env(home)
        )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not discovery.is_file():
        if server.poll() is not None or time.monotonic() > deadline:
            _stop(server)
            raise cli_failure(args, server.returncode, log.read_text(errors="replace"))
        time.sleep(0.2)
    return server


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)
