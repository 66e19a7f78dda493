"""`damo serve`: keep a model loaded and answer `damo ask` and `damo search` (and HTTP clients) from one process."""

from __future__ import annotations

from pathlib import Path

import typer

from damo_cli.commands.library_cmds import DEVICE_OPTION, LIBRARY_OPTION, MODEL_OPTION
from damo_cli.errors import DamoError, UsageError
from damo_cli.server import DEFAULT_PORT, TOKEN_ENV, is_loopback


def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on; anything but this machine's loopback needs --token."
    ),
    port: int = typer.Option(DEFAULT_PORT, "--port", min=0, max=65535, help="Port (0: any free port)."),
    token: str = typer.Option(
        None,
        "--token",
        envvar=TOKEN_ENV,
        help=f"Every request must carry 'Authorization: Bearer TOKEN' (env {TOKEN_ENV}).",
    ),
    model: str = MODEL_OPTION,
    device: str = DEVICE_OPTION,
    library_dir: Path = LIBRARY_OPTION,
) -> None:
    """Keep the model loaded and answer ask, search and status requests over HTTP (127.0.0.1 unless told otherwise).

    While it runs, `damo ask` and `damo search` with the same --model (and --library) send their work here and print
    exactly what they print on their own; without it they work as always. Endpoints: POST /ask {video, question},
    POST /search {query, k, path, library}, GET /status. Ctrl-C (or SIGTERM) stops it.
    """
    from damo_cli.server import pid_alive, read_discovery

    if token is not None and not token.strip():
        raise UsageError("the token is empty")
    if not is_loopback(host) and token is None:
        raise UsageError(f"serving on {host} lets other machines in: give --token TOKEN (or {TOKEN_ENV}) to allow it")
    running = read_discovery()
    if running is not None and pid_alive(running.pid):
        raise DamoError(f"a damo server is already running at {running.url} (pid {running.pid}): stop it first")

    from rich.console import Console

    from damo_cli.api import load
    from damo_cli.server.app import serve as run_server
    from damo_cli.store import Library

    console = Console(stderr=True)
    library = Path(library_dir).expanduser().resolve() if library_dir is not None else Library.default_root().resolve()
    with console.status("loading the model"):
        session = load(model, device)
        session.analyser  # noqa: B018 - loaded now, so the first question does not wait for it
        session.text.load()  # (the text encoder loads on first use otherwise)

    def log(line: str) -> None:
        typer.echo(f"damo serve: {line}", err=True)

    def ready(info) -> None:  # noqa: ANN001 - ServerInfo
        guarded = ", token required" if info.token else ""
        log(f"serving {session.name} on {session.device} at {info.url} (pid {info.pid}{guarded}); library {library}")

    run_server(session, library, host, port, token, log, ready)
