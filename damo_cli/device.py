"""Compute-device choice: cuda > mps > cpu, overridable everywhere with `--device`."""

from __future__ import annotations

from damo_cli.errors import DamoError

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
