"""One entry point to load a card's backbone by role, whatever its kind."""

from __future__ import annotations

from typing import Any

from damo_cli.cards import ModelCard
from damo_cli.errors import ModelError


def load_backbone(card: ModelCard, role: str, device: str = "cpu") -> Any:
    backbone = card.backbone(role)
    if backbone.source != "package":
        raise ModelError(f"{card.name}'s {role} backbone ({backbone.repo}) is a hub model; it is not downloaded here")
    if role == "visual":
        from damo_cli.encoders.visual import VisualEncoder

        return VisualEncoder(backbone, device)
    if role == "audio":
        from damo_cli.encoders.audio import WhisperBackbone

        return WhisperBackbone(backbone, device)
    if role == "text":
        from damo_cli.encoders.text import TextEncoder

        return TextEncoder(backbone, device)
    if role == "llm":
        from damo_cli.encoders.llm import load_llm

        return load_llm(backbone, device)
    raise ModelError(f"unknown backbone role '{role}'")
