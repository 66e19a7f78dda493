"""The quick lane: `damo ask` and `damo search` handed to a running `damo serve` before typer, numpy or the
verbs' modules are imported.

The full command line costs ~0.45 s to start on 2 cores; the server answers a search in ~30 ms. So `damo`'s entry
point (`damo_cli.entry`) first tries this lane, which reads only the arguments it knows for sure (those of the
two verbs, spelled as `--name value`, `--name=value` or a flag), sends the request through `server.client` and
prints the reply through the same writers the verbs use (`damo_cli.writers`). Anything else falls through to the
full command line, which then behaves exactly as it would without this lane:

- another verb, `--help`, an option this lane does not read (`--srt` is read; `--clip` is not), an empty query, a
  URL or a path that is not a file: the full command line parses and reports it, in its own words;
- no server, another model, library or device, or `DAMO_NO_SERVER`: answered in the calling process, as before;
- a server that refuses or fails the request: the lines `--verbose` prints are said, and the full command line
  answers in this process without asking that server again;
- an error the server reports (a video it cannot read): the full command line repeats the request after its own
  checks, so the error line and exit code are the ones it always gave.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ASK_VALUES = ("--model", "--device")
SEARCH_VALUES = ("-k", "--path", "--model", "--device", "--library")
FLAGS = ("--json", "--verbose")
SEARCH_FLAGS = ("--srt",)


class Call:
    """A call this lane can make: the verb, its positional arguments, options with values, flags. (Plain classes
    here, not dataclasses: importing dataclasses is ~8 ms of a ~100 ms served `damo search`.)"""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.arguments: list[str] = []
        self.values: dict[str, str] = {}
        self.flags: set[str] = set()

    def value(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)


class ServedHit:
    """A found moment as a server sent it (times and score unrounded): what the table and SRT writers read."""

    __slots__ = ("path", "start", "end", "score", "text")

    def __init__(self, path: Path, start: float, end: float, score: float, text: str | None) -> None:
        self.path, self.start, self.end, self.score, self.text = path, start, end, score, text


def parse(argv: list[str]) -> Call | None:
    """The call, when every argument is one this lane reads for sure; None: leave it to the full command line."""
    if not argv or argv[0] not in ("ask", "search"):
        return None
    verb = argv[0]
    takes_value = ASK_VALUES if verb == "ask" else SEARCH_VALUES
    flags = FLAGS if verb == "ask" else FLAGS + SEARCH_FLAGS
    call = Call(verb)
    rest = iter(argv[1:])
    for token in rest:
        if not token.startswith("-") or token == "-":
            call.arguments.append(token)
            continue
        name, has_value, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if name in flags and not has_value:
            call.flags.add(name)
        elif name in takes_value:
            if not has_value:
                value = next(rest, None)  # type: ignore[assignment]
                if value is None:
                    return None
            call.values[name] = value
        else:  # --help, --clip, `--`, a short option with its value attached (click reads -k=5 as "=5")...
            return None
    if len(call.arguments) != (2 if verb == "ask" else 1) or not call.arguments[-1].strip():
        return None
    if "--json" in call.flags and "--srt" in call.flags:
        return None
    if verb == "search":
        k = call.value("-k", "10")
        if k is None or not k.isdigit() or int(k) < 1:
            return None
    return call


def run(argv: list[str]) -> bool:
    """True when a running server answered and the answer is printed; False: run the full command line."""
    call = parse(argv)
    if call is None:
        return False
    from damo_cli.server import client, disabled, read_discovery

    if disabled() or read_discovery() is None:  # the common case without a server: no network, no import
        return False
    verbose = "--verbose" in call.flags
    lines: list[str] = []
    try:
        reply = _ask(call, lines.append) if call.verb == "ask" else _search(call, lines.append)
    except client.ServerError:
        return False  # the full command line checks the input itself, then reports the server's error
    except _NotHere:
        return False
    if verbose:
        for line in lines:
            print(line, file=sys.stderr)
    if reply is None:
        client.skip_server()  # asked once already: the full command line answers here without asking again
        return False
    _print(call, reply)
    return True


class _NotHere(Exception):
    """An argument the full command line must judge (a URL, a path that is not a file)."""


def _ask(call: Call, say) -> dict | None:  # noqa: ANN001 - say: client.Say
    from damo_cli.server import client

    video, question = call.arguments
    if "://" in video or not os.path.isfile(video):
        raise _NotHere
    return client.ask(
        Path(video), question, model=call.value("--model", "damo-tiny"), device=call.value("--device", "auto"), say=say
    )


def _search(call: Call, say) -> dict | None:  # noqa: ANN001 - say: client.Say
    from damo_cli.server import client

    library = call.value("--library")
    return client.search(
        call.arguments[0],
        int(call.value("-k", "10")),
        call.value("--path"),
        model=call.value("--model", "damo-tiny"),
        device=call.value("--device", "auto"),
        library=Path(library) if library is not None else None,
        say=say,
    )


def _print(call: Call, reply: dict) -> None:
    from damo_cli import writers
    from damo_cli.server import client

    if call.verb == "ask":
        moments = client.exact_moments(reply)
        writers.AnswerWriter(as_json="--json" in call.flags).write(reply["result"], moments, sys.stdout)
        return
    if "--json" in call.flags:
        writers.HitJsonWriter().write(reply["result"], sys.stdout)
        return
    hits = [ServedHit(*hit) for hit in client.exact_hits(reply)]
    if "--srt" in call.flags:
        writers.HitSrtWriter().write(hits, sys.stdout)
    else:
        writers.HitTableWriter(call.arguments[0]).write(hits, sys.stdout)
