"""Checksums and atomic writes: a file is either absent or complete and verified, never half-written and trusted."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from damo_cli.errors import ChecksumError

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(f"checksum mismatch for {path}: expected sha256 {expected[:12]}…, got {actual[:12]}…")


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is fsynced and renamed onto `target`.

    A crash or exception leaves `target` untouched (old version or absent) and removes the temporary.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Like `atomic_path` for a directory: build into a temporary sibling, then rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            _remove_tree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            _remove_tree(tmp)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def concatenate_verified(parts: Iterable[Path], target: Path, expected_sha256: str) -> Path:
    """Assemble `parts` into `target` atomically; the result must hash to `expected_sha256` or nothing is written."""
    digest = hashlib.sha256()
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != expected_sha256:
            raise ChecksumError(
                f"assembled {target.name} has sha256 {digest.hexdigest()[:12]}…, expected {expected_sha256[:12]}…"
            )
    return target


def build_verified(target: Path, build: Callable[[Path], None], expected_sha256: str | None = None) -> Path:
    """Run `build(tmp)` to produce `target` atomically, verifying its sha256 when one is given."""
    with atomic_path(target) as tmp:
        build(tmp)
        if expected_sha256 is not None:
            verify_sha256(tmp, expected_sha256)
    return target


def cached_array(path: Path, shape: tuple[int, ...], compute: Callable[[], Any]) -> Any:
    """The numpy array saved at `path` when it loads with `shape`; else `compute()`, saved atomically (a missing,
    damaged or stale file is made again). Never pickled."""
    import numpy as np

    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == shape:
                return cached
        except (OSError, ValueError):
            pass  # damaged: made again below
    array = compute()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    return array
