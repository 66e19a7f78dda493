"""Load a DaMO model for inference by card name (`damo-tiny`) or model folder (`--model PATH`)."""

from __future__ import annotations

from damo_cli.model.load import load_damo
from damo_cli.pipeline.analyse import LoadedModel


def load_model(model: str, device: str = "cpu") -> LoadedModel:
    """The fuser and per-time head with their trained weights (seeded random when the card ships none).

    The LLM is not loaded here: indexing and search never need it; `ask` loads it with the LoRA weights.
    """
    loaded = load_damo(model, device, llm=False)
    return LoadedModel(
        name=loaded.card.name,
        source=model,
        card=loaded.card,
        damo=loaded.model,
        fingerprint=loaded.fingerprint,
        trained=loaded.trained,
    )
