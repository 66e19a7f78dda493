"""DamoConfig: the `[model]` section of a model card plus the backbone sizes it needs, validated into dataclasses.

No torch here: `damo models` and the CLI read cards without paying for a torch import.

Card layout (see models/*.toml):

    [model]                      fuser and projector sizes (width, blocks, heads, tokens, conv)
    [model.video]                frame sampling and long-video windows
    [model.prompt]               system prompt, transcript budget, answer length
    [model.lora]                 LoRA on the frozen LLM (paper: r=32, alpha=64)
    [model.training]             optimiser defaults (paper: AdamW lr 1e-4, weight decay 0.02)
    [model.backbone_arch.ROLE]   the architecture numbers of each backbone (`class` + its config fields), so that
                                 parameter counts and tiny test models are built offline, without the hub
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from damo_cli.errors import ModelError

if TYPE_CHECKING:
    from damo_cli.cards import ModelCard

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_SYSTEM_PROMPT = (
    "You are DaMO. You watch and listen to a video and answer questions about it. "
    "Give times in seconds, as 'from 12.3 s to 15.0 s'."
)


@dataclass(frozen=True)
class LoraSettings:
    r: int = 32
    alpha: int = 64
    dropout: float = 0.05
    targets: tuple[str, ...] = DEFAULT_LORA_TARGETS


@dataclass(frozen=True)
class VideoSettings:
    sample_fps: float = 1.0  # frames sampled per second of video ...
    max_frames_per_window: int = 64  # ... at most this many per window (then uniform over the window)
    window_seconds: float = 60.0  # long videos are fused in windows of this length ...
    window_overlap_seconds: float = 10.0  # ... overlapping by this much, stitched by absolute time


@dataclass(frozen=True)
class PromptSettings:
    system: str = DEFAULT_SYSTEM_PROMPT
    max_transcript_tokens: int = 256
    max_new_tokens: int = 64


@dataclass(frozen=True)
class TrainingSettings:
    learning_rate: float = 1e-4
    weight_decay: float = 0.02


@dataclass(frozen=True)
class DamoConfig:
    """Every size the DaMO model needs; built from a card with `DamoConfig.from_card`."""

    card_name: str
    # backbone outputs the model consumes (from the card's [backbones.*])
    visual_dim: int  # per-frame global vector and local-map channels
    visual_grid: int  # the local map is visual_grid x visual_grid tokens
    audio_dim: int  # audio encoder state width
    audio_window_seconds: float  # one audio encoder window (Whisper: 30 s) ...
    audio_states_per_window: int  # ... gives this many states (Whisper: 1500)
    text_dim: int  # stage-1 target space (the frozen text encoder)
    llm_hidden: int  # LLM embedding width
    # Temporal-aware Fuseformer
    width: int
    blocks: int
    heads: int
    ffn_mult: int
    dropout: float
    visual_pool_grid: int  # L'_v = visual_pool_grid**2 pooled local tokens per frame
    audio_tokens_per_window: int  # L'_a pooled tokens per audio window
    conv_kernel: int
    conv_stride: int
    conv_groups: int
    visual_queries: int
    audio_queries: int
    fusion_tokens: int
    time_min_period: float  # shortest sinusoid period of the time embedding, seconds
    time_max_period: float  # longest, seconds
    # projector
    prompt_tokens: int
    qformer_layers: int
    # LLM glue, windows, training defaults
    lora: LoraSettings = field(default_factory=LoraSettings)
    video: VideoSettings = field(default_factory=VideoSettings)
    prompt: PromptSettings = field(default_factory=PromptSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    backbone_arch: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)

    # ------------------------------------------------------------------------------------------------ derived

    @property
    def visual_pool_tokens(self) -> int:
        return self.visual_pool_grid**2

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """sha256 of the architecture (everything that changes tensor shapes or meaning); names a checkpoint's fit."""
        arch = self.to_dict()
        for volatile in ("card_name", "video", "prompt", "training"):
            arch.pop(volatile)
        arch["lora"].pop("dropout")
        return hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()

    def validate(self) -> DamoConfig:
        where = f"model card '{self.card_name}' [model]"
        positive = (
            "visual_dim", "visual_grid", "audio_dim", "audio_states_per_window", "text_dim", "llm_hidden", "width",
            "blocks", "heads", "ffn_mult", "visual_pool_grid", "audio_tokens_per_window", "conv_kernel",
            "conv_stride", "conv_groups", "visual_queries", "audio_queries", "fusion_tokens", "prompt_tokens",
            "qformer_layers",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ModelError(f"{where}: '{name}' must be a positive integer, not {value!r}")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ModelError(f"{where}: width {self.width} must split into {self.heads} heads of even size")
        if self.width % 2:
            raise ModelError(f"{where}: width must be even (sin/cos time embedding)")
        if self.width % self.conv_groups:
            raise ModelError(f"{where}: width {self.width} is not divisible by conv_groups {self.conv_groups}")
        if self.conv_kernel % 2 == 0:
            raise ModelError(f"{where}: conv_kernel must be odd (so a stride-s conv gives ceil(T/s) steps)")
        if self.visual_pool_grid > self.visual_grid:
            raise ModelError(f"{where}: visual_pool_grid {self.visual_pool_grid} > backbone grid {self.visual_grid}")
        if self.audio_tokens_per_window > self.audio_states_per_window:
            raise ModelError(f"{where}: audio_tokens_per_window exceeds the encoder's states per window")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"{where}: dropout must be in [0, 1)")
        if not 0 < self.time_min_period < self.time_max_period:
            raise ModelError(f"{where}: need 0 < time_min_period < time_max_period")
        if self.audio_window_seconds <= 0:
            raise ModelError(f"{where}: audio window_seconds must be > 0")
        if self.lora.r < 0 or self.lora.alpha <= 0 or not 0.0 <= self.lora.dropout < 1.0 or not self.lora.targets:
            raise ModelError(f"{where} [model.lora]: need r >= 0, alpha > 0, 0 <= dropout < 1 and some targets")
        video = self.video
        if video.sample_fps <= 0 or video.max_frames_per_window <= 0:
            raise ModelError(f"{where} [model.video]: sample_fps and max_frames_per_window must be > 0")
        if not 0 <= video.window_overlap_seconds < video.window_seconds / 2:
            raise ModelError(f"{where} [model.video]: need 0 <= window_overlap_seconds < window_seconds / 2")
        if self.prompt.max_transcript_tokens < 0 or self.prompt.max_new_tokens <= 0:
            raise ModelError(f"{where} [model.prompt]: token budgets must be >= 0 (answers > 0)")
        return self

    # ------------------------------------------------------------------------------------------------ from a card

    @classmethod
    def from_card(cls, card: ModelCard) -> DamoConfig:
        where = f"model card '{card.name}' [model]"
        raw = dict(card.model)
        if not raw:
            raise ModelError(f"{where}: the card has no [model] section")
        sub = {key: raw.pop(key, {}) for key in ("lora", "video", "prompt", "training", "backbone_arch")}
        visual, audio = card.backbone("visual"), card.backbone("audio")
        arch = {role: dict(table) for role, table in sub["backbone_arch"].items()}
        config = cls(
            card_name=card.name,
            visual_dim=int(visual.param("feature_dim")),
            visual_grid=_visual_grid(visual.params, arch.get("visual", {}), where),
            audio_dim=int(audio.param("feature_dim")),
            audio_window_seconds=float(audio.param("window_seconds")),
            audio_states_per_window=int(audio.param("states_per_window")),
            text_dim=int(card.backbone("text").param("feature_dim")),
            llm_hidden=int(card.backbone("llm").param("hidden_size")),
            time_min_period=float(raw.pop("time_min_period", 0.5)),
            time_max_period=float(raw.pop("time_max_period", 20000.0)),
            lora=_settings(LoraSettings, sub["lora"], f"{where} [model.lora]"),
            video=_settings(VideoSettings, sub["video"], f"{where} [model.video]"),
            prompt=_settings(PromptSettings, sub["prompt"], f"{where} [model.prompt]"),
            training=_settings(TrainingSettings, sub["training"], f"{where} [model.training]"),
            backbone_arch=arch,
            **_take_fields(raw, where),
        )
        _check_arch_matches(config, card.name)
        return config.validate()


_ARCH_FIELDS = (
    "width", "blocks", "heads", "ffn_mult", "dropout", "visual_pool_grid", "audio_tokens_per_window", "conv_kernel",
    "conv_stride", "conv_groups", "visual_queries", "audio_queries", "fusion_tokens", "prompt_tokens", "qformer_layers",
)  # fmt: skip


def _take_fields(raw: dict[str, Any], where: str) -> dict[str, Any]:
    missing = [name for name in _ARCH_FIELDS if name not in raw]
    if missing:
        raise ModelError(f"{where}: missing {', '.join(missing)}")
    unknown = sorted(set(raw) - set(_ARCH_FIELDS))
    if unknown:
        raise ModelError(f"{where}: unknown keys {', '.join(unknown)}")
    return {name: (float(raw[name]) if name == "dropout" else raw[name]) for name in _ARCH_FIELDS}


def _settings(kind: type, table: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise ModelError(f"{where}: unknown keys {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        default = getattr(kind(), key)
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ModelError(f"{where}: '{key}' must be a list of strings")
            value = tuple(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif type(value) is not type(default):
            raise ModelError(f"{where}: '{key}' must be {type(default).__name__}, not {value!r}")
        values[key] = value
    return kind(**values)


def _visual_grid(params: dict[str, Any], arch: dict[str, Any], where: str) -> int:
    if "grid" in params:
        return int(params["grid"])
    if "image_size" in arch and "patch_size" in arch:
        return int(arch["image_size"]) // int(arch["patch_size"])
    raise ModelError(f"{where}: cannot tell the visual local grid: give backbones.visual.grid or the arch sizes")


def _check_arch_matches(config: DamoConfig, card_name: str) -> None:
    """The arch tables and the backbone sizes describe the same networks: a mismatch is a card bug, caught here."""
    checks = (
        ("visual", "hidden_size", config.visual_dim),
        ("audio", "d_model", config.audio_dim),
        ("audio", "max_source_positions", config.audio_states_per_window),
        ("text", "hidden_size", config.text_dim),
        ("llm", "hidden_size", config.llm_hidden),
    )
    for role, key, expected in checks:
        table = config.backbone_arch.get(role, {})
        if key in table and int(table[key]) != expected:
            raise ModelError(
                f"model card '{card_name}' [model.backbone_arch.{role}]: {key} = {table[key]} but the backbone "
                f"section says {expected}"
            )
