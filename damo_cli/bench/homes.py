"""Isolated state for each measurement: a fresh DAMO_HOME per run, so "cold" really has nothing cached.

A fresh home still links the user's derived weights (assembled Whisper, the SmolLM2 safetensors, the ONNX Runtime
exports of EfficientNet and MiniLM, the bridge's class embeddings) and copies their sha256 memo: a cold run then
measures what a user with an installed damo waits for (decode, encode, fuse, answer), not the one-time GGUF
conversion, exports or weight hashing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SHARED_CACHES = ("weights", "bridge", "onnx")  # derived once per installation, never per video
SHARED_FILES = ("verified.json",)  # sha256 memo of the packaged weight files


def fresh_home(parent: Path, name: str, user_cache: Path) -> Path:
    """`parent/name` as a DAMO_HOME with an empty feature cache and the user's derived weights linked in."""
    home = parent / name
    cache = home / "cache"
    cache.mkdir(parents=True)
    for sub in SHARED_CACHES:
        (user_cache / sub).mkdir(parents=True, exist_ok=True)
        (cache / sub).symlink_to(user_cache / sub, target_is_directory=True)
    for file in SHARED_FILES:
        if (user_cache / file).is_file():
            shutil.copy2(user_cache / file, cache / file)
    return home


@contextmanager
def using_home(home: Path) -> Iterator[Path]:
    """DAMO_HOME=home for this process while the block runs (damo reads it on every cache lookup)."""
    before = os.environ.get("DAMO_HOME")
    os.environ["DAMO_HOME"] = str(home)
    try:
        yield home
    finally:
        if before is None:
            os.environ.pop("DAMO_HOME", None)
        else:
            os.environ["DAMO_HOME"] = before


@dataclass
class CliRun:
    wall_s: float
    peak_rss_bytes: int | None  # the damo process's own maximum resident set size
    stdout: str


def run_cli(args: list[str], home: Path, log_dir: Path) -> CliRun:
    """`damo ARGS` in a subprocess under DAMO_HOME=home: its wall time and its own peak RSS.

    The peak is the child's VmHWM (Linux's high-water mark of its resident memory, which starts afresh at exec),
    read every 20 ms while it runs: a spike between reads is still caught by the next one. Not `wait4`'s
    ru_maxrss: Linux carries the parent's high-water mark over at exec, so a child of this process (which holds
    a loaded model) would report at least this process's size. Elsewhere psutil samples the RSS instead.
    """
    env = dict(os.environ, DAMO_HOME=str(home))
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    cmd = [sys.executable, "-m", "damo_cli", *args]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        status = Path(f"/proc/{proc.pid}/status")
        peak = _watch_hwm(proc, status) if status.exists() else _sample_rss(proc)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise cli_failure(args, proc.returncode, err_path.read_text(errors="replace"))
    return CliRun(wall, peak, out_path.read_text(errors="replace"))


def cli_failure(args: list[str], returncode: int | None, stderr: str) -> RuntimeError:
    """What the bench raises when a `damo ARGS` subprocess fails: the verb, its exit code and its last line."""
    tail = stderr.strip().splitlines()[-1:] or ["no message"]
    return RuntimeError(f"`damo {' '.join(args[:1])}` failed in the bench (exit {returncode}): {tail[0]}")


def _watch_hwm(proc: subprocess.Popen, status: Path) -> int | None:
    peak = 0
    while proc.poll() is None:
        try:
            text = status.read_text()
        except OSError:  # exited between poll() and the read
            break
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) * 1024)  # kB
        time.sleep(0.02)
    proc.wait()
    return peak or None


def _sample_rss(proc: subprocess.Popen) -> int | None:
    try:
        import psutil
    except ImportError:
        proc.wait()
        return None
    watched, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.02)
    proc.wait()
    return peak or None
