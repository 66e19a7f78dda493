"""LoRA on the frozen LLM (peft) and the four training stages' trainable parameter groups.

Groups (DamoModel.parameter_groups): `fuser` (global residual, temporal pathway, time embeddings, queries, T-Fuseformer
blocks), `time_head` (per-time and clip heads to the text space, stage-1 temperature), `projector` (Q-Former +
linear + gain), `lora` (adapters in the LLM), `llm` (the LLM's own weights: frozen at every stage).

    stage 1 video-text alignment       fuser + time_head
    stage 2 representation bridging    + projector              (LLM frozen, no LoRA)
    stage 3 temporal perception        + lora
    stage 4 dialogue tuning            same as stage 3
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from torch import nn

from damo_cli.errors import ModelError
from damo_cli.model.config import LoraSettings

if TYPE_CHECKING:
    from damo_cli.model.damo import DamoModel

STAGE_GROUPS: dict[int, tuple[str, ...]] = {
    1: ("fuser", "time_head"),
    2: ("fuser", "time_head", "projector"),
    3: ("fuser", "time_head", "projector", "lora"),
    4: ("fuser", "time_head", "projector", "lora"),
}
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


def stage_groups(stage: int) -> tuple[str, ...]:
    if stage not in STAGE_GROUPS:
        raise ModelError(f"unknown training stage {stage}: stages are 1, 2, 3, 4")
    return STAGE_GROUPS[stage]


def stage_parameter_names(model: DamoModel, stage: int) -> list[str]:
    """Names of the parameters stage `stage` trains (and a checkpoint of that stage holds), in model order."""
    wanted = stage_groups(stage)
    if "lora" in wanted and model.llm is not None and model.config.lora.r > 0 and not model.parameter_groups()["lora"]:
        raise ModelError("stage needs LoRA but the attached LLM has no adapters")
    return [name for group in wanted for name, _ in model.parameter_groups()[group]]


def set_trainable(model: DamoModel, stage: int) -> dict[str, int]:
    """Unfreeze exactly the groups of `stage`, freeze everything else; returns parameter counts per group."""
    wanted = stage_groups(stage)
    counts: dict[str, int] = {}
    for group, params in model.parameter_groups().items():
        on = group in wanted
        for _, param in params:
            param.requires_grad_(on)
        counts[group] = sum(p.numel() for _, p in params)
    return {group: counts[group] for group in wanted}
