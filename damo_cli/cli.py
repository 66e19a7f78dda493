"""The `damo` command line: one typed function per verb, whose docstring is its help.

Every verb's errors are `DamoError`s: `main()` prints their one line to stderr and exits non-zero, never a traceback.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer

from damo_cli import __version__
from damo_cli.commands import (
    bench_cmd,
    data_cmds,
    eval_cmd,
    library_cmds,
    media_cmds,
    models_cmds,
    serve_cmd,
    system_cmds,
    train_cmds,
)
from damo_cli.errors import DamoError

app = typer.Typer(
    name="damo",
    help="Ask questions about your own videos and find the moments you ask for, offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts show JSON like [[s, e]]: no markup parsing
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"damo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Ask questions about your own videos and find the moments you ask for, offline."""


app.command("ask")(library_cmds.ask)
app.command("index")(library_cmds.index)
app.command("search")(library_cmds.search)
app.command("serve")(serve_cmd.serve)
app.command("finetune")(train_cmds.finetune)
app.command("train")(train_cmds.train)
app.command("probe")(media_cmds.probe)
app.command("transcribe")(media_cmds.transcribe)
app.command("doctor")(system_cmds.doctor)
app.command("eval")(eval_cmd.evaluate)
app.command("bench")(bench_cmd.bench)
app.add_typer(models_cmds.app, name="models")
app.add_typer(data_cmds.app, name="data")


def _quiet_libraries() -> None:
    """Library progress bars and warnings are noise on a CLI; damo shows its own progress."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def main() -> None:
    _quiet_libraries()
    try:
        app()
    except DamoError as err:
        typer.secho(f"damo: error: {err}", err=True, fg=typer.colors.RED)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        typer.echo("damo: interrupted", err=True)
        sys.exit(130)
    except Exception as err:  # a GPU out of memory anywhere (fusion, the LLM, training): one line with the fix
        from damo_cli.device import OOM_FIX, is_cuda_out_of_memory

        if not is_cuda_out_of_memory(err):
            raise
        typer.secho(f"damo: error: the GPU ran out of memory: {OOM_FIX}", err=True, fg=typer.colors.RED)
        sys.exit(DamoError.exit_code)
