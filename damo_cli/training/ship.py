"""Ship trained weights with a model card: fp16 safetensors of the trainable parts + manifest, sha256 in the card.

    models/damo-tiny.toml            [weights] path = "damo-tiny/weights.safetensors", sha256 = "..."
    models/damo-tiny/weights.safetensors, manifest.json

The card's sha256 of the weights is written first, then the manifest (which pins the card's own sha256 and text),
so both checks of `load_damo` hold: the file matches the card, and the checkpoint matches its manifest.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from damo_cli.cards import parse_card
from damo_cli.errors import ModelError
from damo_cli.integrity import atomic_path, sha256_file
from damo_cli.model.checkpoint import MANIFEST_FILE, WEIGHTS_FILE, Manifest, read_manifest, verified_weights

_COMMENT = "# Trained weights of the DaMO model"
_WEIGHTS_TABLE = re.compile(r"\n*^\[weights\]\n(?:^(?!\[).*\n?)*", re.MULTILINE)


def ship(checkpoint: Path, card_path: Path, out_dir: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `checkpoint`'s tensors as fp16 into `out_dir` and point `card_path`'s [weights] at them."""
    from safetensors.torch import load_file, save_file

    source = read_manifest(checkpoint)
    weights = out_dir / WEIGHTS_FILE
    if not weights.resolve().is_relative_to(card_path.resolve().parent):
        raise ModelError(f"the weights must go under the card's folder ({card_path.parent}), not {out_dir}")
    tensors = load_file(str(verified_weights(checkpoint, source)))
    half = {name: t.to(torch.float16).contiguous() if t.is_floating_point() else t for name, t in tensors.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights) as tmp:
        save_file(half, str(tmp), metadata={"format": "pt", "damo_stage": str(source.stage)})
    digest = sha256_file(weights)
    relative = weights.resolve().relative_to(card_path.resolve().parent).as_posix()
    text = card_path.read_text(encoding="utf-8")
    text = text.split(_COMMENT)[0]  # a previous [weights] table (always last, after this comment) goes
    text = _WEIGHTS_TABLE.sub("", text).rstrip("\n")
    text += (
        f"\n\n{_COMMENT} (trainable parts only: fuser, heads, projector, LoRA), fp16; see TRAINING.md beside them.\n"
        f'[weights]\npath = "{relative}"\nsha256 = "{digest}"\n'
    )
    with atomic_path(card_path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    card = parse_card(card_path)
    manifest = Manifest(
        card=card.name,
        card_sha256=sha256_file(card_path),
        card_text=card_path.read_text(encoding="utf-8"),
        config_fingerprint=source.config_fingerprint,
        stage=source.stage,
        weights_sha256=digest,
        tensors={n: {"shape": list(t.shape), "dtype": str(t.dtype)[len("torch.") :]} for n, t in half.items()},
        extra={**source.extra, **(extra or {})},
    )
    with atomic_path(out_dir / MANIFEST_FILE) as tmp:
        tmp.write_text(manifest.to_json(), encoding="utf-8")
    for path in (weights, out_dir / MANIFEST_FILE):
        path.chmod(0o644)  # files meant for a repository and a wheel (atomic writes create them 0600)
    return {"weights": str(weights), "sha256": digest, "bytes": weights.stat().st_size, "tensors": len(half),
            "parameters": int(sum(t.numel() for t in half.values()))}  # fmt: skip
