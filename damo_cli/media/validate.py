"""Checks shared by every media entry point: the path, the first bytes, and quiet native libraries.

Every failure becomes one of the typed errors in `damo_cli.errors`, whose `str()` is one line naming the file.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from damo_cli.errors import (
    CorruptMediaError,
    EmptyFileError,
    MediaError,
    MissingPathError,
    NotAFileError,
    NotMediaError,
    PermissionDeniedError,
)

log = logging.getLogger("damo.media")

HEAD_BYTES = 64


def display_name(path: str | Path) -> str:
    """The path as the user typed it, on one line even if the name holds control characters."""
    text = str(path)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        text = text.encode("unicode_escape").decode("ascii")
    return text


def check_file(path: str | Path) -> tuple[Path, bytes]:
    """Fail early with a precise reason; return the path and the file's first bytes (for sniffing).

    Readability is tested by opening the file, not with `os.access`: root passes `os.access` for any file, and
    ACLs, network file systems and sandboxes can disagree with the mode bits.
    """
    p = Path(path).expanduser()
    name = display_name(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise MissingPathError(f"{name}: no such file") from None
    except NotADirectoryError:
        raise MissingPathError(f"{name}: no such file (a parent in the path is not a directory)") from None
    except PermissionError:
        raise PermissionDeniedError(f"{name}: permission denied (cannot reach the file)") from None
    except OSError as exc:
        raise MediaError(f"{name}: cannot access the file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise NotAFileError(f"{name}: is a directory, not a media file")
    if not stat.S_ISREG(st.st_mode):
        raise NotAFileError(f"{name}: is not a regular file (device, socket or pipe)")
    if st.st_size == 0:
        raise EmptyFileError(f"{name}: file is empty (0 bytes)")
    try:
        with p.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
    except PermissionError:
        raise PermissionDeniedError(f"{name}: permission denied (cannot open the file for reading)") from None
    except OSError as exc:
        raise MediaError(f"{name}: cannot read the file ({exc.strerror or exc})") from None
    return p, head


def sniff_container(head: bytes) -> str | None:
    """Name the container family from magic bytes, or None. Used only to word errors: a file that starts like a
    known container but will not open is corrupt/truncated; anything else is simply not media."""
    if len(head) >= 12 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "MP4/MOV"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "Matroska/WebM"
    if head.startswith(b"RIFF") and head[8:12] in (b"AVI ", b"WAVE"):
        return "AVI" if head[8:12] == b"AVI " else "WAV"
    if head.startswith(b"fLaC"):
        return "FLAC"
    if head.startswith(b"OggS"):
        return "Ogg"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3/AAC"
    if head.startswith((b"FLV", b"\x30\x26\xb2\x75")):
        return "FLV/ASF"
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return "MPEG-PS"
    return None


def looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def open_failure(path: str | Path, head: bytes, exc: BaseException) -> MediaError:
    """Translate a demuxer's refusal to open a file into the error a user can act on."""
    name = display_name(path)
    if isinstance(exc, PermissionError):
        return PermissionDeniedError(f"{name}: permission denied (cannot open the file for reading)")
    family = sniff_container(head)
    if family is not None and not looks_like_text(head):
        return CorruptMediaError(
            f"{name}: looks like {family} but cannot be read; the file is truncated or corrupt "
            "(an interrupted copy or recording?)"
        )
    if looks_like_text(head):
        return NotMediaError(f"{name}: not a media file (it contains text)")
    return NotMediaError(f"{name}: not a media file (no audio or video format recognised)")


_STDERR_LOCK = threading.Lock()


@contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Run native code with file descriptor 2 pointed at a temporary file.

    decord's C++ logging (dmlc) and its bundled FFmpeg 4.1 write straight to fd 2, below Python's `sys.stderr`,
    so redirecting `sys.stderr` is not enough. What they wrote is kept (yielded list) and logged at DEBUG level for
    diagnosis; the user never sees it. The lock keeps two threads from interleaving the swap.
    """
    captured: list[str] = []
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield captured  # no usable fd 2 (embedded interpreter): nothing to hide from
            return
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield captured
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                text = sink.read().decode("utf-8", errors="replace").strip()
                if text:
                    captured.append(text)
                    log.debug("native decoder output: %s", text)
