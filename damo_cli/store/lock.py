"""The exclusive writer lock: one `damo index` per library at a time; readers never take it.

`fcntl.flock` on `library.lock` beside the database, non-blocking. The kernel drops a flock when the last
descriptor of its open file goes away, so a killed (even SIGKILLed) writer never leaves a stale lock behind:
there is no pid file to clean up, the pid written into the file is only there for the error message.
The descriptor is opened non-inheritable, so helper processes (ffmpeg) cannot keep the lock alive; a
`fork()` without `exec` would share it, which damo does not do while writing.
POSIX only (Linux, macOS); on network file systems flock may be advisory-per-host only.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from damo_cli.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class WriterLock:
    """`acquire()` or raise a one-line StoreError naming the holder's pid; `release()` is idempotent."""

    def __init__(self, path: Path, library_root: Path) -> None:
        self.path = path
        self.library_root = library_root
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError("writer lock already held by this object")
        if fcntl is None:  # pragma: no cover
            raise StoreError("damo index needs POSIX file locks (Linux or macOS); this platform has none")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            for _ in range(20):  # the holder writes its pid just after locking: give a racing winner 0.2 s
                if holder is not None:
                    break
                time.sleep(0.01)
                holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f"pid {holder}" if holder else "pid unknown"
                raise StoreError(f"another damo index is running on {self.library_root} ({who})") from None
            raise StoreError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        # Only the holder writes the file, and only after it holds the lock.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # the pid is stale the moment we let go
        finally:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """A short blocking exclusive flock on the folder itself, held while a library file is created or checked.

    Two processes opening a new library at once would otherwise interleave SQLite's switch to WAL and the
    schema's creation (one sees the other's half-made file: "busy", or tables without the application id).
    Locking the directory adds no file to it; the kernel drops the lock if the holder dies.
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        raise StoreError(f"cannot open the library folder {folder}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock
