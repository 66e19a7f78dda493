"""`damo`'s entry point: `ask` and `search` go straight to a running `damo serve` when it can answer them
(`damo_cli.server.quick`, standard library only); everything else, and those it cannot answer, run through the
full command line (`damo_cli.cli`)."""

from __future__ import annotations

import sys


def main() -> None:
    from damo_cli.server import quick

    try:
        answered = quick.run(sys.argv[1:])
    except KeyboardInterrupt:
        print("damo: interrupted", file=sys.stderr)
        sys.exit(130)
    if answered:
        return
    from damo_cli.cli import main as full_command_line

    full_command_line()
