"""The `damo serve` process: a `ThreadingHTTPServer` (standard library) around one loaded `damo_cli.api.Session`.

Concurrency: every request runs in its own thread. Questions run in parallel; inside the session the text encoder,
analysing a new video and the LLM are each used by one thread at a time (see `damo_cli.api`). Searches run in a pool
of `SEARCH_THREADS` threads, each with its own `Library` (SQLite connections belong to one thread), kept open so its
vector indexes stay in memory, and reopened when `damo index --rebuild` replaces the library file. The server never
writes to the library: `damo index` stays its one writer, and searches see what it commits (SQLite WAL). Nothing the
server holds is state: killing it (even with SIGKILL) loses nothing, and clients then find its discovery file stale,
remove it and answer in-process.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from damo_cli import __version__
from damo_cli.api import Session, library_stats
from damo_cli.errors import DamoError, UsageError
from damo_cli.server import ServerInfo, model_key, pid_alive, remove_discovery, write_discovery
from damo_cli.store import Library

SEARCH_THREADS = 4
MAX_BODY_BYTES = 1 << 20
T = TypeVar("T")


class DamoServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never keeps the process alive at shutdown
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        session: Session,
        library: Path,
        token: str | None = None,
        log: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.session = session
        self.library = library
        self.token = token
        self.log = log
        self._searchers = ThreadPoolExecutor(SEARCH_THREADS, thread_name_prefix="damo-search")
        self._local = threading.local()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own looks the host's name up (socket.getfqdn): seconds on a machine without DNS.
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def info(self) -> ServerInfo:
        host = str(self.server_address[0])
        return ServerInfo(
            host=host,
            port=self.port,
            pid=os.getpid(),
            model=model_key(self.session.model.source),
            device=self.session.device,
            library=str(self.library),
            version=__version__,
            token=self.token is not None,
        )

    def with_library(self, work: Callable[[Library], T]) -> T:
        """Run `work(library)` in a search thread, with that thread's open library."""
        return self._searchers.submit(lambda: work(self._thread_library())).result()

    def _thread_library(self) -> Library:
        held: tuple[Library, tuple[int, int] | None] | None = getattr(self._local, "library", None)
        file_id = _file_id(self.library / "library.db")
        if held is not None and held[1] == file_id:
            return held[0]
        if held is not None:  # the file was replaced (`damo index --rebuild`) or removed: read the new one
            self._local.library = None
            held[0].close()
        library = Library.open(self.library, create=False)
        self._local.library = (library, _file_id(library.db_path))
        return library

    def server_close(self) -> None:
        super().server_close()
        self._searchers.shutdown(wait=False, cancel_futures=True)


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


class _Handler(BaseHTTPRequestHandler):
    server: DamoServer
    server_version = f"damo/{__version__}"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self._authorised():
            return
        if self.path.split("?")[0] != "/status":
            self._send(404, {"error": f"no such endpoint: GET {self.path}", "exit_code": 2})
            return
        self._answer(self._status)

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        routes = {"/ask": self._ask, "/search": self._search}
        route = routes.get(self.path.split("?")[0])
        if route is None:
            self._send(404, {"error": f"no such endpoint: POST {self.path}", "exit_code": 2})
            return
        try:
            body = self._body()
        except UsageError as err:
            self._send(400, {"error": str(err), "exit_code": err.exit_code})
            return
        self._answer(lambda: route(body))

    # ---- endpoints

    def _ask(self, body: dict) -> Any:
        video, question = _text(body, "video"), _text(body, "question")
        result = self.server.session.ask(video, question)
        payload = result.to_json()
        if body.get("exact"):
            return {"result": payload, "exact": {"moments": [[s, e, x] for s, e, x in result.moments]}}
        return payload

    def _search(self, body: dict) -> Any:
        query = _text(body, "query")
        k = body.get("k", 10)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise UsageError("k must be a whole number of at least 1")
        path_filter = body.get("path")
        if path_filter is not None and not isinstance(path_filter, str):
            raise UsageError("path must be a string (a folder or a glob)")
        library = body.get("library")
        if library is not None and Path(str(library)).expanduser().resolve() != self.server.library:
            raise _Conflict(f"this server searches the library {self.server.library}, not {library}")
        session = self.server.session
        hits = self.server.with_library(lambda lib: session.search(query, k, lib, path_filter))
        payload = [hit.to_json() for hit in hits]
        if body.get("exact"):
            return {"result": payload, "exact": [[h.start, h.end, h.score] for h in hits]}
        return payload

    def _status(self) -> Any:
        status = {
            **self.server.session.describe(),
            "pid": os.getpid(),
            "version": __version__,
            "library": str(self.server.library),
            "writer": _writer_pid(self.server.library),
            "stats": None,
        }
        try:
            status["stats"] = self.server.with_library(library_stats)
        except DamoError as err:
            status["error"] = str(err)
        return status

    # ---- plumbing

    def _answer(self, work: Callable[[], Any]) -> None:
        started = time.monotonic()
        try:
            payload, code = work(), 200
        except _Conflict as err:
            payload, code = {"error": str(err), "exit_code": 2}, 409
        except DamoError as err:
            payload, code = {"error": str(err), "exit_code": err.exit_code}, 422
        except Exception as err:  # noqa: BLE001 - a bug: the client answers in-process instead
            first = str(err).splitlines()[0] if str(err) else ""
            payload, code = {"error": f"internal error: {type(err).__name__}: {first}"[:300], "exit_code": 1}, 500
        self._send(code, payload)
        self.server.log(f"{self.command} {self.path.split('?')[0]} {code} {time.monotonic() - started:.2f} s")

    def _authorised(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), token.encode()):
            return True
        self._send(401, {"error": "this server needs Authorization: Bearer TOKEN", "exit_code": 2})
        self.server.log(f"{self.command} {self.path.split('?')[0]} 401 (no valid token)")
        return False

    def _body(self) -> dict:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise UsageError("bad Content-Length") from None
        if length > MAX_BODY_BYTES:
            raise UsageError(f"the request is larger than {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise UsageError("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise UsageError("the request body must be a JSON object")
        return body

    def _send(self, code: int, payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        with contextlib.suppress(OSError):  # the client went away: nothing to tell it
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass  # `_answer` logs one line per request


class _Conflict(DamoError):
    """The request is for something this server does not serve (another library): the client works in-process."""


def _text(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise UsageError(f"the request needs {name!r} (a string)")
    return value


def _writer_pid(library: Path) -> int | None:
    """The pid of the `damo index` writing to the library now, if any (the writer lock's file names its holder)."""
    try:
        text = (library / "library.lock").read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and pid_alive(int(text)) else None


def serve(
    session: Session,
    library: Path,
    host: str,
    port: int,
    token: str | None,
    log: Callable[[str], None],
    on_ready: Callable[[ServerInfo], None] = lambda _info: None,
) -> None:
    """Listen until SIGINT or SIGTERM; the discovery file exists exactly while the server listens."""
    try:
        server = DamoServer((host, port), session, library, token, log)
    except OSError as err:
        raise DamoError(f"cannot listen on {host}:{port}: {err.strerror or err} (--port 0 picks a free port)") from None
    info = server.info()
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        write_discovery(info)
        on_ready(info)
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        remove_discovery(info)
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        log("stopped")


def _stop(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # unwinds serve_forever in the main thread: the discovery file is removed
