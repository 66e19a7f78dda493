"""Compute-device choice: cuda > mps > cpu, overridable everywhere with `--device`."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from damo_cli.errors import DamoError

if TYPE_CHECKING:
    import torch

VALID_DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(requested: str = "auto") -> str:
    """Return a torch device string; `auto` picks the best available, an explicit one must exist."""
    import torch

    requested = requested.lower()
    base = requested.split(":")[0]
    if base not in VALID_DEVICES:
        raise DamoError(f"unknown device '{requested}': use one of {', '.join(VALID_DEVICES)} (e.g. cuda:1)")
    if base == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if base == "cuda" and not torch.cuda.is_available():
        raise DamoError("device 'cuda' requested but torch sees no CUDA GPU: use --device cpu")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DamoError("device 'mps' requested but it is not available: use --device cpu")
    return requested


def compute_dtype(device: str) -> torch.dtype:
    """What the frozen transformers backbones compute in: bf16 on a GPU that has it (same range as fp32, so no
    overflow in long attention sums), fp16 on other GPUs and on Apple's MPS, fp32 on the CPU (half precision there
    is slower, not faster)."""
    import torch

    base = device.split(":")[0]
    if base == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if base == "mps":
        return torch.float16
    return torch.float32


def batch_size(device: str, bytes_per_item: int, cpu_default: int = 16, cap: int = 256) -> int:
    """How many items (frames, audio windows) to run at once: on CUDA a quarter of the free memory over what one item
    needs (activations, so other backbones and the DaMO model keep room); elsewhere `cpu_default`. DAMO_BATCH
    overrides both (the fix an out-of-memory error names)."""
    import torch

    override = os.environ.get("DAMO_BATCH", "").strip()
    if override:
        if not override.isdigit() or int(override) < 1:
            raise DamoError(f"DAMO_BATCH must be a positive whole number, not {override!r}")
        return int(override)
    if device.split(":")[0] != "cuda":
        return cpu_default
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(max(1, min(cap, free // 4 // max(bytes_per_item, 1))))


OOM_FIX = "run on the CPU (--device cpu), or give hub backbones a smaller batch (DAMO_BATCH=4)"


def is_cuda_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is torch's CUDA out-of-memory error (without importing torch where it was never loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(err, torch.cuda.OutOfMemoryError)


@contextmanager
def out_of_memory_hint(what: str) -> Iterator[None]:
    """A CUDA out-of-memory error inside the block becomes one line that says what ran out and how to fix it."""
    import torch

    try:
        yield
    except torch.cuda.OutOfMemoryError as err:
        torch.cuda.empty_cache()
        raise DamoError(f"the GPU ran out of memory while {what}: {OOM_FIX}") from err
