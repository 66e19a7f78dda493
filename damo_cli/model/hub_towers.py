"""Backbones rebuilt from the architecture numbers in a card, and adapters from transformers towers to DaMO features.

`build_backbone(arch)` makes the network a card's `[model.backbone_arch.ROLE]` describes, with random weights (or
none at all under `torch.device("meta")`, which is how `damo models info` counts parameters without downloading).
Only the classes below are accepted: a card cannot name arbitrary code.

What runs when a hub card indexes or answers is `damo_cli.encoders.hub_backbones` (the full image-text model, its
processor and tokenizer, from the pulled files); these adapters are the same mapping on a bare tower, for the model's
own tests. The adapters turn a tower's outputs into what DamoModel reads:
- VisionTower (CLIPVisionModel, SiglipVisionModel): global = the tower's pooled output (CLIP: the post-LayerNorm CLS
  token; SigLIP, which has no CLS: its attention-pooling head), local = the last layer's patch tokens (CLIP drops the
  CLS), a row-major g x g grid. The last layer, not the penultimate one LLaVA uses, so global and local agree.
- WhisperTower (WhisperEncoder): states = the encoder's last hidden states per 30 s window; a state mask marks the
  states that cover real audio (Whisper pads every window to 30 s); global = mean of the real states is taken inside
  DamoModel (AudioResidual), so the adapter returns states and mask.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from damo_cli.errors import ModelError


def _transformers_classes() -> dict[str, tuple[type, type]]:
    from transformers import (
        BertConfig,
        BertModel,
        CLIPVisionConfig,
        CLIPVisionModel,
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        SiglipVisionConfig,
        SiglipVisionModel,
        WhisperConfig,
    )
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    return {
        "CLIPVisionModel": (CLIPVisionConfig, CLIPVisionModel),
        "SiglipVisionModel": (SiglipVisionConfig, SiglipVisionModel),
        "WhisperEncoder": (WhisperConfig, WhisperEncoder),
        "BertModel": (BertConfig, BertModel),
        "LlamaForCausalLM": (LlamaConfig, LlamaForCausalLM),
        "MistralForCausalLM": (MistralConfig, MistralForCausalLM),
        "Qwen2ForCausalLM": (Qwen2Config, Qwen2ForCausalLM),
    }


SUPPORTED_CLASSES = (
    "CLIPVisionModel", "SiglipVisionModel", "WhisperEncoder", "BertModel", "LlamaForCausalLM",
    "MistralForCausalLM", "Qwen2ForCausalLM", "EfficientNetLite",
)  # fmt: skip


def backbone_config(arch: dict[str, Any]) -> Any:
    """The transformers config object an arch table describes (not for EfficientNetLite)."""
    name = arch.get("class")
    classes = _transformers_classes()
    if name not in classes:
        raise ModelError(f"backbone class {name!r} is not one damo builds; use one of {', '.join(SUPPORTED_CLASSES)}")
    fields = {k: v for k, v in arch.items() if k != "class"}
    return classes[name][0](**fields)


def build_backbone(arch: dict[str, Any]) -> nn.Module:
    """The backbone an arch table describes, randomly initialised (parameters on the current default device)."""
    name = arch.get("class")
    if name == "EfficientNetLite":
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNet.from_name(arch.get("variant", "efficientnet-lite0"))
    config = backbone_config(arch)
    model_class = _transformers_classes()[str(name)][1]
    return model_class(config)


class VisionTower(nn.Module):
    """(N, 3, H, W) pixels -> global (N, D), local (N, g*g, D) for CLIP / SigLIP vision towers."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        kind = type(tower).__name__
        if kind not in ("CLIPVisionModel", "SiglipVisionModel"):
            raise ModelError(f"VisionTower adapts CLIPVisionModel or SiglipVisionModel, not {kind}")
        self.tower, self.has_cls = tower, kind == "CLIPVisionModel"
        config = tower.config
        self.grid = config.image_size // config.patch_size
        self.feature_dim = config.hidden_size

    @torch.no_grad()
    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        out = self.tower(pixel_values=pixel_values)
        tokens = out.last_hidden_state  # (N, [1 +] g*g, D)
        local = tokens[:, 1:] if self.has_cls else tokens
        if local.shape[1] != self.grid**2:
            raise ModelError(f"vision tower gave {local.shape[1]} patch tokens, expected {self.grid**2}")
        return out.pooler_output, local


class WhisperTower(nn.Module):
    """(W, mels, 2*S) log-mel windows + seconds of real audio per window -> states (W, S, D), mask (W, S)."""

    def __init__(self, encoder: nn.Module, window_seconds: float = 30.0) -> None:
        super().__init__()
        if type(encoder).__name__ != "WhisperEncoder":
            raise ModelError(f"WhisperTower adapts a WhisperEncoder, not {type(encoder).__name__}")
        self.encoder, self.window_seconds = encoder, window_seconds
        self.states = encoder.config.max_source_positions
        self.feature_dim = encoder.config.d_model

    @torch.no_grad()
    def forward(self, input_features: Tensor, real_seconds: Tensor) -> tuple[Tensor, Tensor]:
        states = self.encoder(input_features=input_features).last_hidden_state  # (W, S, D)
        per_state = self.window_seconds / self.states
        real = torch.ceil(real_seconds.clamp(0, self.window_seconds) / per_state - 1e-6)  # (W,) states of real audio
        mask = torch.arange(self.states, device=states.device)[None, :] < real[:, None]  # (W, S)
        return states, mask
