"""The four training stages: which parameter groups each one trains (docs/architecture.md §7).

Groups (DamoModel.parameter_groups): `fuser` (global residual, temporal pathway, time embeddings, queries, T-Fuseformer
blocks), `time_head` (per-time and clip heads to the text space, stage-1 temperature), `projector` (Q-Former +
linear + gain), `lora` (adapters in the LLM), `llm` (the LLM's own weights: frozen at every stage).

    stage 1 video-text alignment       fuser + time_head
    stage 2 representation bridging    + projector              (LLM frozen, no LoRA)
    stage 3 temporal perception        + lora
    stage 4 dialogue tuning            same as stage 3

A stage's checkpoint holds exactly what it trains; the model side reads that from the checkpoint format
(`damo_cli.model.checkpoint.CHECKPOINT_GROUPS`), which must stay equal to `STAGE_GROUPS` (tests/test_checkpoint.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from damo_cli.errors import ModelError

if TYPE_CHECKING:
    from damo_cli.model.damo import DamoModel

STAGE_GROUPS: dict[int, tuple[str, ...]] = {
    1: ("fuser", "time_head"),
    2: ("fuser", "time_head", "projector"),
    3: ("fuser", "time_head", "projector", "lora"),
    4: ("fuser", "time_head", "projector", "lora"),
}


def stage_groups(stage: int) -> tuple[str, ...]:
    if stage not in STAGE_GROUPS:
        raise ModelError(f"unknown training stage {stage}: stages are 1, 2, 3, 4")
    return STAGE_GROUPS[stage]


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
