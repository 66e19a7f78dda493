"""Load a DaMO model for inference by card name (`damo-tiny`) or model folder (`--model PATH`)."""

from __future__ import annotations

import hashlib

import torch

from damo_cli.cards import load_card
from damo_cli.model.config import DamoConfig
from damo_cli.model.damo import DamoModel
from damo_cli.pipeline.analyse import LoadedModel

UNTRAINED_SEED = 0


def load_model(name: str, device: str = "cpu") -> LoadedModel:
    """The card's DaMO model with its trained weights when the card ships them, else seeded random weights."""
    card = load_card(name)
    config = DamoConfig.from_card(card)
    torch.manual_seed(UNTRAINED_SEED)  # untrained weights are still reproducible, so cached features stay valid
    damo = DamoModel(config).eval().to(device)
    fingerprint = hashlib.sha256(f"{config.fingerprint()}|untrained-seed{UNTRAINED_SEED}".encode()).hexdigest()[:16]
    return LoadedModel(name=card.name, card=card, damo=damo, fingerprint=fingerprint, trained=False)
