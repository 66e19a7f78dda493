"""LoRA on the frozen LLM (peft). Which training stage trains it is training policy: damo_cli/training/stages.py."""

from __future__ import annotations

import warnings

from torch import nn

from damo_cli.errors import ModelError
from damo_cli.model.config import LoraSettings

ADAPTER_NAME = "default"


def attach_lora(llm: nn.Module, settings: LoraSettings) -> nn.Module:
    """Wrap `llm` with LoRA adapters on the card's target projections that exist in it (base weights frozen)."""
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, module in llm.named_modules() if isinstance(module, nn.Linear)}
    targets = [t for t in settings.targets if t in present]
    if not targets:
        raise ModelError(f"none of the LoRA targets {list(settings.targets)} is a linear layer of this LLM")
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft calls a transformers method that transformers 5 deprecates
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(llm, config, adapter_name=ADAPTER_NAME)
