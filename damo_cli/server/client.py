"""The client side of `damo serve`: `damo ask` and `damo search` send their request to a running server when the
discovery file names one for the same model (and library), and print what it answers exactly as they print their
own results. Whenever the server cannot be used (none running, another model, refused connection, a stale file, a
killed server, a wrong or missing token, an internal error) these return None and the verb does the work itself.

A server's one-line errors (a missing library, a video it cannot read) are raised here as the same `DamoError`
line and exit code the in-process path would give.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

from damo_cli.errors import DamoError
from damo_cli.paths import library_dir
from damo_cli.server import (
    TOKEN_ENV,
    ServerInfo,
    disabled,
    model_key,
    pid_alive,
    read_discovery,
    remove_discovery,
)

_asked_already = False  # set by the quick lane when it asked a server and said why it could not use it
CONNECT_TIMEOUT_S = 1.0  # a live local server accepts in microseconds; the answer itself may take minutes
Say = Callable[[str], None]  # a line for --verbose


class ServerError(DamoError):
    """An error the server reported: its one line, and the exit code the CLI would have used."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def ask(video: Path, question: str, *, model: str, device: str, say: Say) -> dict | None:
    """{"result": `damo ask --json`'s object, "exact": {"moments": [[start, end, score], ...]}} or None."""
    body = {"video": str(video.expanduser().absolute()), "question": question, "exact": True}
    return _request("/ask", body, model=model, device=device, library=None, say=say)


def search(
    query: str, k: int, path_filter: str | None, *, model: str, device: str, library: Path | None, say: Say
) -> dict | None:
    """{"result": `damo search --json`'s array, "exact": [[start, end, score], ...]} or None."""
    root = library_key(library)
    body = {"query": query, "k": k, "path": path_filter, "library": root, "exact": True}
    return _request("/search", body, model=model, device=device, library=root, say=say)


def exact_moments(reply: dict) -> list[tuple[float, float, float]]:
    """An /ask reply's supporting moments, times and scores unrounded: [(start, end, score), ...]."""
    return [(s, e, x) for s, e, x in reply["exact"]["moments"]]


def exact_hits(reply: dict) -> list[tuple[Path, float, float, float, str | None]]:
    """A /search reply's hits, times and scores unrounded: [(video, start, end, score, text), ...]."""
    return [
        (Path(hit["video"]), start, end, score, hit["text"])
        for hit, (start, end, score) in zip(reply["result"], reply["exact"], strict=True)
    ]


def library_key(library: Path | str | None) -> str:
    return str(Path(library).expanduser().resolve() if library is not None else library_dir().resolve())


def _request(path: str, body: dict, *, model: str, device: str, library: str | None, say: Say) -> dict | None:
    server = _server_for(model, device, library, say)
    if server is None:
        return None
    headers = {"Content-Type": "application/json"}
    token = os.environ.get(TOKEN_ENV)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        sock = socket.create_connection((server.connect_host, server.port), timeout=CONNECT_TIMEOUT_S)
    except OSError as err:
        if isinstance(err, ConnectionRefusedError) or not pid_alive(server.pid):
            remove_discovery(server)  # stale: that server is gone
        say(f"running in this process: the server at {server.url} did not answer ({_reason(err)})")
        return None
    try:
        sock.settimeout(None)  # connected: now wait as long as the work takes (a new video is analysed)
        status, raw = _exchange(sock, server.url.removeprefix("http://"), path, json.dumps(body).encode(), headers)
    except (OSError, ValueError) as err:  # killed or restarted mid-request, or cut short: nothing is lost
        say(f"running in this process: the server at {server.url} stopped answering ({_reason(err)})")
        return None
    finally:
        sock.close()
    try:
        reply = json.loads(raw)
    except ValueError:
        reply = None
    if status == 200 and isinstance(reply, dict) and "result" in reply:
        say(f"using the server at {server.url} (pid {server.pid}, model {server.model} on {server.device})")
        return reply
    if status == 401:
        say(f"running in this process: the server at {server.url} needs a token (set {TOKEN_ENV})")
        return None
    if 400 <= status < 500 and isinstance(reply, dict) and isinstance(reply.get("error"), str) and status != 409:
        say(f"using the server at {server.url} (pid {server.pid}): it reports an error")
        raise ServerError(reply["error"], int(reply.get("exit_code", 1)))
    detail = reply.get("error") if isinstance(reply, dict) else None
    say(f"running in this process: the server at {server.url} answered {status}" + (f" ({detail})" if detail else ""))
    return None


def skip_server() -> None:
    """The quick lane (server.quick) asked a server in this process and said why it could not use it: ask and
    search answer here from now on, without asking again or saying it twice."""
    global _asked_already
    _asked_already = True


def _server_for(model: str, device: str, library: str | None, say: Say) -> ServerInfo | None:
    if _asked_already:
        return None
    if disabled():
        say("running in this process: DAMO_NO_SERVER is set")
        return None
    server = read_discovery()
    if server is None:
        say("running in this process: no damo server is running")
        return None
    if not pid_alive(server.pid):
        remove_discovery(server)
        say(f"running in this process: the server at {server.url} (pid {server.pid}) is gone; its file is removed")
        return None
    if server.model != model_key(model):
        say(f"running in this process: the server at {server.url} serves {server.model}, not {model_key(model)}")
        return None
    if device.lower() != "auto" and device.lower() != server.device.lower():
        say(f"running in this process: the server at {server.url} runs on {server.device}, not {device}")
        return None
    if library is not None and library != server.library:
        say(f"running in this process: the server at {server.url} searches {server.library}, not {library}")
        return None
    return server


def _exchange(
    sock: socket.socket, authority: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    """One POST and its whole reply on a connected socket: (status, body). The server (`server.app`) answers once
    per connection and closes it, so the reply is everything up to the close. Written on the socket rather than
    with http.client, whose import (email parsing, ssl) alone was ~25 ms of a ~100 ms served `damo search`."""
    head = [f"POST {path} HTTP/1.1", f"Host: {authority}", f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    reply = b"".join(chunks)
    header_block, separator, content = reply.partition(b"\r\n\r\n")
    status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not separator or not version.startswith("HTTP/") or not rest[:3].isdigit():
        raise ValueError("not an HTTP reply")
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            if len(content) < int(value):
                raise ValueError("reply cut short")
            content = content[: int(value)]
    return int(rest[:3]), content


def _reason(err: BaseException) -> str:
    if isinstance(err, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(err, ValueError):  # a reply that is not HTTP, or cut short
        return str(err)
    return getattr(err, "strerror", None) or type(err).__name__
