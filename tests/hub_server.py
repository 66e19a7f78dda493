"""A stand-in for the Hugging Face Hub on 127.0.0.1, for tests (no hub is reachable from CI or the dev machines).

It answers what huggingface_hub (`hf_hub_download`, `get_hf_file_metadata`, `HfApi.model_info`) and `damo models
pull` ask a hub, the way the hub does:

- `GET /api/models/{repo}/revision/{rev}[?blobs=true]`: model info (sha, siblings with size, blobId, lfs sha256).
- `HEAD|GET /{repo}/resolve/{rev}/{file}`: `X-Repo-Commit`, and `ETag` = the git blob sha1 for a regular file, served
  as is; an LFS file (`*.safetensors`, `*.bin` by default) answers 302 to a "CDN" with `X-Linked-Etag` = its sha256 and
  `X-Linked-Size`. The CDN is this same server under another host name (`localhost`), so the client must treat it as
  another host: follow the `Location` and keep the token off it.
- `GET /cdn/{sha256}`: the bytes, honouring `Range: bytes=N-` with 206 and `Content-Range`.
- errors with the hub's `X-Error-Code`: RepoNotFound (401), RevisionNotFound / EntryNotFound (404), GatedRepo (401).

Faults, per file: `drop_after(repo, file, n)` closes the connection after n bytes, once; `stall_after(repo, file, n)`
sends n bytes then hangs until released (the test kills the client meanwhile); `tamper(repo, file)` serves other bytes
of the same length under the advertised sha256. `gate(repo, token)` makes a repo need `Authorization: Bearer token`.
Every request is logged (`requests`): method, path, Range and Authorization headers.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf", ".onnx")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's object id


@dataclass
class HubRepo:
    repo_id: str
    commit: str
    files: dict[str, bytes]
    lfs: set[str]
    token: str | None = None  # gated: requests need this bearer token

    def etag(self, name: str) -> str:
        data = self.files[name]
        return hashlib.sha256(data).hexdigest() if name in self.lfs else git_blob_sha1(data)


@dataclass
class Request:
    method: str
    path: str
    host: str
    range: str | None
    authorization: str | None
    file: tuple[str, str] | None = None  # (repo, file) whose bytes were served, if any


@dataclass
class _Faults:
    drop: dict[tuple[str, str], int] = field(default_factory=dict)  # (repo, file) -> bytes before closing, once
    stall: dict[tuple[str, str], tuple[int, threading.Event]] = field(default_factory=dict)
    tampered: set[tuple[str, str]] = field(default_factory=set)


class MockHub:
    """`with MockHub() as hub: hub.add_folder("org/name", folder)`; point HF_ENDPOINT at `hub.url`."""

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[Request] = []
        self.faults = _Faults()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MockHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    # --- content
    def add_repo(self, repo_id: str, files: dict[str, bytes], lfs: set[str] | None = None) -> HubRepo:
        if lfs is None:
            lfs = {name for name in files if name.endswith(LFS_SUFFIXES)}
        digest = hashlib.sha1(repo_id.encode())  # noqa: S324 - a stand-in commit id
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name])
        repo = HubRepo(repo_id, digest.hexdigest(), dict(files), set(lfs))
        self.repos[repo_id] = repo
        return repo

    def add_folder(self, repo_id: str, folder: Path) -> HubRepo:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return self.add_repo(repo_id, files)

    # --- faults
    def drop_after(self, repo_id: str, name: str, nbytes: int) -> None:
        self.faults.drop[(repo_id, name)] = nbytes

    def stall_after(self, repo_id: str, name: str, nbytes: int) -> threading.Event:
        release = threading.Event()
        self.faults.stall[(repo_id, name)] = (nbytes, release)
        return release

    def tamper(self, repo_id: str, name: str) -> None:
        self.faults.tampered.add((repo_id, name))

    def gate(self, repo_id: str, token: str) -> None:
        self.repos[repo_id].token = token

    def release(self) -> None:
        for _, event in self.faults.stall.values():
            event.set()
        self.faults.stall.clear()

    def clear(self) -> None:
        self.release()
        self.faults = _Faults()
        self.requests.clear()

    def downloads(self, repo_id: str | None = None, name: str | None = None) -> list[Request]:
        """The GETs that were served file bytes (not HEADs, redirects or API calls), of one file if named."""
        return [
            r
            for r in self.requests
            if r.method == "GET" and r.file and (repo_id is None or r.file[0] == repo_id) and name in (None, r.file[1])
        ]

    def _by_sha(self, sha: str) -> tuple[HubRepo, str] | None:
        for repo in self.repos.values():
            for name in repo.files:
                if name in repo.lfs and repo.etag(name) == sha:
                    return repo, name
        return None


def hub_env(hub: MockHub, root: Path, **extra: str) -> dict[str, str]:
    """The environment of a `damo` run against this stand-in hub: its endpoint, HF cache, damo state and cards under
    `root`, and none of the caller's own HF settings (they would point elsewhere or switch the hub off)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_OFFLINE"))}
    return {
        **base,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(root / "hf"),
        "DAMO_HOME": str(root / "damo"),
        "DAMO_MODELS_DIR": str(root / "models"),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **extra,
    }


def _handler(hub: MockHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
            pass

        def do_HEAD(self) -> None:  # noqa: N802
            self._serve(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._serve(body=True)

        # --- plumbing
        def _send(self, status: int, headers: dict[str, str], payload: bytes = b"", body: bool = True) -> None:
            self.send_response(status)
            headers = {"Content-Length": str(len(payload)), **headers}
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if body and payload:
                self.wfile.write(payload)

        def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
            headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
            if commit:
                headers["X-Repo-Commit"] = commit
            self._send(status, headers, json.dumps({"error": message}).encode(), body=self.command == "GET")

        def _serve(self, body: bool) -> None:
            url = urlparse(self.path)
            path = unquote(url.path)
            self._request = Request(
                self.command,
                path,
                self.headers.get("Host", ""),
                self.headers.get("Range"),
                self.headers.get("Authorization"),
            )
            with hub._lock:
                hub.requests.append(self._request)
            if path.startswith("/api/models/"):
                return self._model_info(path[len("/api/models/") :], parse_qs(url.query))
            if path.startswith("/cdn/"):
                return self._cdn(path[len("/cdn/") :], body)
            if "/resolve/" in path:
                return self._resolve(path.lstrip("/"), body)
            return self._error(404, "NotFound", f"no route {path}")

        def _repo(self, repo_id: str, rev: str | None) -> HubRepo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(401, "RepoNotFound", "Repository not found")
                return None
            if repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}":
                self._error(401, "GatedRepo", "Access to this model is restricted")
                return None
            if rev is not None and rev not in (repo.commit, "main"):
                self._error(404, "RevisionNotFound", "Invalid rev id")
                return None
            return repo

        # --- endpoints
        def _model_info(self, rest: str, query: dict[str, list[str]]) -> None:
            repo_id, _, rev = rest.partition("/revision/")
            repo = self._repo(repo_id, rev or None)
            if repo is None:
                return
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            siblings = []
            for name, data in repo.files.items():
                sibling: dict[str, object] = {"rfilename": name}
                if blobs:
                    sibling["size"] = len(data)
                    sibling["blobId"] = git_blob_sha1(data)
                    if name in repo.lfs:
                        sibling["lfs"] = {"sha256": repo.etag(name), "size": len(data), "pointerSize": 134}
                siblings.append(sibling)
            info = {
                "_id": repo.commit[:24],
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo.commit,
                "private": False,
                "gated": "manual" if repo.token else False,
                "disabled": False,
                "tags": [],
                "siblings": siblings,
            }
            self._send(200, {"Content-Type": "application/json"}, json.dumps(info).encode(), body=self.command == "GET")

        def _resolve(self, rest: str, body: bool) -> None:
            head, _, name = rest.partition("/resolve/")
            rev, _, name = name.partition("/")
            repo = self._repo(head, rev)
            if repo is None:
                return
            if name not in repo.files:
                return self._error(404, "EntryNotFound", f"{name} does not exist", repo.commit)
            data, etag = repo.files[name], repo.etag(name)
            if name in repo.lfs:  # the hub redirects LFS files to its CDN, with the real file's metadata
                location = f"http://localhost:{hub.port}/cdn/{etag}"
                headers = {
                    "Location": location,
                    "X-Repo-Commit": repo.commit,
                    "ETag": f'"{git_blob_sha1(b"pointer " + etag.encode())}"',
                    "X-Linked-Etag": f'"{etag}"',
                    "X-Linked-Size": str(len(data)),
                }
                return self._send(302, headers, body=body)
            self._bytes(repo, name, {"X-Repo-Commit": repo.commit, "ETag": f'"{etag}"'}, body)

        def _cdn(self, sha: str, body: bool) -> None:
            found = hub._by_sha(sha)
            if found is None:
                return self._error(404, "NotFound", "no such blob")
            repo, name = found
            self._bytes(repo, name, {"ETag": f'"{sha}"'}, body)

        def _bytes(self, repo: HubRepo, name: str, headers: dict[str, str], body: bool) -> None:
            key = (repo.repo_id, name)
            self._request.file = key
            data = repo.files[name]
            if key in hub.faults.tampered:
                data = bytes(b ^ 0x5A for b in data[:64]) + data[64:]  # same length, other bytes
            start, status = 0, 200
            wanted = self.headers.get("Range")
            if wanted and wanted.startswith("bytes=") and wanted.endswith("-"):
                start = int(wanted[len("bytes=") : -1])
                if start >= len(data):
                    return self._send(416, {"Content-Range": f"bytes */{len(data)}"}, body=body)
                status = 206
                headers = {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            payload = data[start:]
            headers = {**headers, "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
            if not body:
                return self._send(status, {**headers, "Content-Length": str(len(payload))}, body=False)
            cut = None
            with hub._lock:
                if key in hub.faults.drop:
                    cut = hub.faults.drop.pop(key)
                stall = hub.faults.stall.pop(key, None)
            self.send_response(status)
            for k, v in {**headers, "Content-Length": str(len(payload))}.items():
                self.send_header(k, v)
            self.end_headers()
            if stall is not None:
                n, release = stall
                self.wfile.write(payload[:n])
                self.wfile.flush()
                release.wait(timeout=60)
                self.close_connection = True
                return
            if cut is not None:
                self.wfile.write(payload[:cut])
                self.wfile.flush()
                self.close_connection = True  # the client sees the connection drop mid-body
                return
            self.wfile.write(payload)

    return Handler
