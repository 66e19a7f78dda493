"""Parameter counts of a card's whole system, per component and per training stage, on the meta device.

Nothing is downloaded or allocated: every backbone is rebuilt from the architecture numbers in the card
(`[model.backbone_arch.*]`) under `torch.device("meta")`, the DaMO model and its LoRA adapters likewise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from damo_cli.errors import ModelError
from damo_cli.model.config import DamoConfig

if TYPE_CHECKING:
    from damo_cli.cards import ModelCard

COMPONENTS = (
    "visual_backbone", "audio_backbone", "text_backbone", "llm", "lora", "fuser", "time_head", "projector",
)  # fmt: skip


@dataclass(frozen=True)
class ParameterReport:
    card: str
    components: dict[str, int]  # every component's parameter count
    trainable_by_stage: dict[int, int]

    @property
    def total(self) -> int:
        """Everything the system loads: backbones, LLM, LoRA, DaMO's own modules."""
        return sum(self.components.values())

    @property
    def video_llm_total(self) -> int:
        """The video LLM proper (what the paper counts): all but the stage-1 text tower."""
        return self.total - self.components["text_backbone"]

    def to_dict(self) -> dict[str, object]:
        return {
            "components": dict(self.components),
            "total": self.total,
            "video_llm_total": self.video_llm_total,
            "trainable_by_stage": {str(stage): count for stage, count in self.trainable_by_stage.items()},
        }


def count_parameters(card: ModelCard) -> ParameterReport:
    import torch

    from damo_cli.model.checkpoint import CHECKPOINT_GROUPS
    from damo_cli.model.damo import DamoModel
    from damo_cli.model.hub_towers import build_backbone

    config = DamoConfig.from_card(card)
    missing = [role for role in ("visual", "audio", "text", "llm") if role not in config.backbone_arch]
    if missing:
        raise ModelError(f"model card '{card.name}' has no [model.backbone_arch.*] for {', '.join(missing)}")

    def size(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    with torch.device("meta"):
        components = {
            f"{role}_backbone": size(build_backbone(config.backbone_arch[role])) for role in ("visual", "audio", "text")
        }
        model = DamoModel(config)
        model.attach_llm(build_backbone(config.backbone_arch["llm"]), tokenizer=None)
    groups = {name: sum(p.numel() for _, p in params) for name, params in model.parameter_groups().items()}
    components.update(groups)
    components = {name: components[name] for name in COMPONENTS}
    trainable = {stage: sum(groups[g] for g in wanted) for stage, wanted in CHECKPOINT_GROUPS.items()}
    return ParameterReport(card.name, components, trainable)
