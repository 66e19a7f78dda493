"""Frozen PyTorch backbones run through ONNX Runtime on the CPU, exported once into the cache.

On 2 cores ONNX Runtime ran EfficientNet-Lite0 3-5x faster than PyTorch eager, and a MiniLM query needs neither
torch nor transformers at all once its export exists (their imports were ~7 s of every warm `damo ask`). The export
is made from the verified PyTorch weights; its sha256 (and the sha256 of the weights it came from) is recorded in a
JSON file beside it and checked on every load (the hash remembered by path, size, mtime and inode, as the packaged
weights'), so a truncated or altered export is made again, never run.
Where an export cannot be made (no `onnx` module, an exporter that cannot trace the network), callers run PyTorch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from damo_cli.encoders.weights import threads, verify_cached
from damo_cli.errors import ChecksumError
from damo_cli.integrity import atomic_path
from damo_cli.paths import cache_dir

OPSET = 17


def export_path(name: str, weights_sha256: str, torch_version: str) -> Path:
    """Where an export lives; the torch version is in the name (another exporter makes another file)."""
    return cache_dir() / "onnx" / f"{name}-{weights_sha256[:16]}-torch{torch_version.split('+')[0]}-opset{OPSET}.onnx"


def cached_export(path: Path, weights_sha256: str) -> Path | None:
    """`path` when the export there matches its recorded sha256 and source weights; None when missing or damaged.

    The hash is remembered like the packaged weights' (`weights.verify_cached`: path, size, mtime, inode): hashing
    MiniLM's and EfficientNet's exports took 1.6 s of every `damo` process that loads them."""
    try:
        record = json.loads(path.with_suffix(".json").read_text())
        if record.get("weights_sha256") != weights_sha256 or not isinstance(record.get("sha256"), str):
            return None
        verify_cached(path, record["sha256"])
    except (OSError, ValueError, ChecksumError):
        return None
    return path


def export_once(path: Path, weights_sha256: str, export: Callable[[Any], None]) -> Path | bytes | None:
    """The verified export at `path`, made with `export(file_like)` when missing or damaged (its bytes when the
    cache cannot be written); None if it fails."""
    verified = cached_export(path, weights_sha256)
    if verified is not None:
        return verified
    import io
    import warnings

    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on traced shapes say nothing to a user
            export(buffer)
    except Exception:  # noqa: BLE001 - no `onnx` module, or an exporter that cannot trace it: callers run PyTorch
        return None
    model = buffer.getvalue()
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(model)
        with atomic_path(path.with_suffix(".json")) as tmp:  # written second: a file without its record is redone
            tmp.write_text(json.dumps({"sha256": hashlib.sha256(model).hexdigest(), "weights_sha256": weights_sha256}))
    except OSError:
        return model  # a read-only cache: this process still runs the export it made
    return path


def cpu_session(model: Path | bytes) -> Any:
    """An ONNX Runtime CPU session of `model` (a verified export's path, or its bytes), or None when this runtime
    cannot run it.

    Opened from the file where there is one: given the bytes, ONNX Runtime kept ~60 MB more of MiniLM resident (232
    against 172 MB after loading) with the same outputs. The file was verified just before (`cached_export`), in
    damo's own cache."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads()
    options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise to a user
    options.enable_cpu_mem_arena = False  # EfficientNet: the arena kept ~270 MB after 120 frames, ~120 MB without
    try:
        source = str(model) if isinstance(model, Path) else model
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - an export this runtime cannot run: PyTorch runs the network instead
        return None
