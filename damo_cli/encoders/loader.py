"""One entry point to load a card's backbone by role, whatever its kind: packaged weights (damo-tiny) or the hub
files `damo models pull` fetched (`encoders.hub_backbones`)."""

from __future__ import annotations

from typing import Any

from damo_cli.cards import ModelCard
from damo_cli.errors import ModelError

# role -> the hub kind its loader builds (anything else in a hub card is refused before any file is read)
HUB_KINDS = {
    "visual": "hf-vision-tower",
    "audio": "hf-whisper-encoder",
    "text": "sentence-transformers",
    "llm": "hf-causal-lm",
}


def load_backbone(card: ModelCard, role: str, device: str = "cpu") -> Any:
    backbone = card.backbone(role)
    if backbone.source == "hub":
        return _load_hub(card, role, device)
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


def _load_hub(card: ModelCard, role: str, device: str) -> Any:
    from damo_cli.encoders import hub_backbones

    backbone = card.backbone(role)
    if HUB_KINDS.get(role) != backbone.kind:
        expected = f"'{HUB_KINDS[role]}'" if role in HUB_KINDS else "nothing (not a hub role)"
        raise ModelError(f"{card.name}'s {role} backbone is kind '{backbone.kind}'; hub loading builds {expected}")
    if role == "visual":
        return hub_backbones.HubVisionTower(card, backbone, device)
    if role == "audio":
        return hub_backbones.HubWhisper(card, backbone, device)
    if role == "text":
        return hub_backbones.HubTextEncoder(card, backbone, device)
    return hub_backbones.load_hub_llm(card, backbone, device)
