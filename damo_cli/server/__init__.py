"""`damo serve`: one resident process that keeps a model loaded and answers ask, search and status requests.

- this module: the discovery file a running server writes (`data_dir()/server.json`: host, port, pid, model,
  device, library, version; never the token) and clients read. Standard library only: `damo ask` looks for a
  server without importing anything heavy.
- `client.py`: what `damo ask` and `damo search` run to use a server; any failure to reach it falls back, silently,
  to answering in the calling process.
- `app.py`: the server (the standard library's `ThreadingHTTPServer` around one `damo_cli.api.Session`), imported
  only by `damo serve`.

The protocol: JSON over HTTP, one request per connection.

    POST /ask     {"video": "/absolute/path.mp4", "question": "..."}       -> what `damo ask --json` prints
    POST /search  {"query": "...", "k": 10, "path": null, "library": null}  -> what `damo search --json` prints
    GET  /status  -> {"model", "source", "device", "fingerprint", "pid", "version", "library", "writer", "stats"}

`stats` is what `damo index --stats --json` prints (null with an `error` line when there is no library yet);
`writer` is the pid of a `damo index` writing to the library, or null. An error is a 4xx reply
{"error": "one line", "exit_code": n}: what the CLI would print and exit with. With `"exact": true` in a POST body the
reply is {"result": <the reply above>, "exact": <its times and scores unrounded>}, so the CLI renders text from a
server exactly as it does in-process. When the server was started with a token, every request carries
`Authorization: Bearer TOKEN` (401 otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from damo_cli.paths import data_dir

FILE_NAME = "server.json"
NO_SERVER_ENV = "DAMO_NO_SERVER"  # set (to anything but "" or "0"): ask and search never use a server
TOKEN_ENV = "DAMO_SERVER_TOKEN"  # the token clients send (and `damo serve --token`'s default)
DEFAULT_PORT = 8765


class ServerInfo:
    """What the discovery file says about a running server. A plain class, not a dataclass: every `damo ask` and
    `damo search` reads it first, and importing dataclasses (with inspect) is ~8 ms of a ~100 ms served search."""

    FIELDS = ("host", "port", "pid", "model", "device", "library", "version", "token")
    __slots__ = FIELDS

    def __init__(
        self, host: str, port: int, pid: int, model: str, device: str, library: str, version: str, token: bool
    ) -> None:
        self.host = host  # as bound: a loopback address, or an address asked for explicitly
        self.port = port
        self.pid = pid
        self.model = model  # `model_key` of what it loaded
        self.device = device  # the resolved device (cpu, cuda, mps...)
        self.library = library  # the library folder it searches (canonical)
        self.version = version
        self.token = token  # whether requests need a token (the token itself is never written)

    def to_json(self) -> dict[str, str | int | bool]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServerInfo) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"ServerInfo({', '.join(f'{k}={v!r}' for k, v in self.to_json().items())})"

    @property
    def connect_host(self) -> str:
        """Where a client on this machine connects: a wildcard bind is reached through loopback."""
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)

    @property
    def url(self) -> str:
        host = self.connect_host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


def discovery_file() -> Path:
    return data_dir() / FILE_NAME


def read_discovery() -> ServerInfo | None:
    """The discovery file's server, or None when there is none (or it cannot be read: then it says nothing)."""
    try:
        raw = json.loads(discovery_file().read_text(encoding="utf-8"))
        return ServerInfo(**{name: raw[name] for name in ServerInfo.FIELDS})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_discovery(info: ServerInfo) -> Path:
    """Written atomically (readers see the old file, no file, or the whole new one)."""
    from damo_cli.integrity import atomic_path

    target = discovery_file()
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(info.to_json(), indent=2) + "\n", encoding="utf-8")
    return target


def remove_discovery(info: ServerInfo) -> None:
    """Remove the discovery file if it still names `info`'s server (a newer server's file is left alone)."""
    current = read_discovery()
    if current is not None and (current.pid, current.port) == (info.pid, info.port):
        with contextlib.suppress(OSError):
            discovery_file().unlink()


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except OSError:
        return False
    return True


def is_loopback(host: str) -> bool:
    import ipaddress  # only `damo serve` asks

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def model_key(model: str | Path) -> str:
    """One spelling per model: a model folder by its absolute path, a card by its name (as `resolve_model` reads)."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else str(model)


def disabled() -> bool:
    return os.environ.get(NO_SERVER_ENV, "").strip() not in ("", "0")
