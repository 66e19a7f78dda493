"""Frozen features -> DaMO per-time outputs for one video: what index, ask and `damo eval --videos` all run.

The frozen encoders' features come from `pipeline.features` (the same cache and code `damo train` reads); the
video is then fused in the model's overlapping windows (`DamoModel.fuse_video`, 60 s with 10 s overlap for
damo-tiny, each window keeping the per-time steps it owns), and each step gets its zero-shot bridge vector (the
ImageNet classes of the frames inside it, mapped into the text space).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from damo_cli.cards import ModelCard
from damo_cli.encoders import screen_text, sounds
from damo_cli.encoders.audio import TRANSCRIBE_SETTINGS, TranscriptSegment
from damo_cli.encoders.colours import NAMES as COLOUR_NAMES
from damo_cli.encoders.screen_text import ScreenText
from damo_cli.encoders.sounds import SoundEvent
from damo_cli.encoders.text import TextEncoder
from damo_cli.model.damo import DamoModel
from damo_cli.pipeline import bridge
from damo_cli.pipeline.bridge import bridge_vectors, class_text_embeddings
from damo_cli.pipeline.features import FeatureExtractor, VideoFeatures, extractor_fingerprint
from damo_cli.pipeline.zero_shot import ImageNetBridge, step_means, zero_shot_channel, zero_shot_kind
from damo_cli.store import TranscriptLine

# Windows fused at once on a CPU. Measured on a 30-min video's cached features: 8 at a time held +258 MB at the
# peak for 1.12 s of work, one at a time +0 MB for 1.08 s (step embeddings equal within 1e-7); a GPU keeps the
# model's batch of 8.
CPU_WINDOWS_PER_BATCH = 1


@dataclass
class VideoAnalysis:
    """Everything index and ask need from one video."""

    path: Path
    duration: float
    has_audio: bool
    step_spans: np.ndarray  # (N, 2) seconds [start, end) of each per-time step
    fused: np.ndarray  # (N, 384) per-time head outputs in the text space, unit norm
    bridge: np.ndarray  # (N, D) the zero-shot channel's vectors of the same steps, unit norm (pipeline.zero_shot)
    fusion_tokens: np.ndarray  # (K, F, d) fusion tokens of each window (the LLM's soft prompt reads them)
    window_spans: np.ndarray  # (K, 2)
    frame_times: np.ndarray  # (T,) seconds of the sampled frames
    class_index: np.ndarray  # (T, 10) each frame's top ImageNet classes (what `ask` can name of what is seen)
    class_prob: np.ndarray  # (T, 10) their probabilities
    colour_times: np.ndarray  # (C,) seconds of the frames whose colours were named (the on-screen text samples)
    colour_shares: np.ndarray  # (C, 11) share of each frame's pixels per name of encoders.colours.NAMES
    transcript: list[TranscriptSegment] = field(default_factory=list)
    screen_text: list[ScreenText] = field(default_factory=list)
    sounds: list[SoundEvent] = field(default_factory=list)

    def lines(self) -> list[TranscriptLine]:
        """Every line of words the video gives, with times: said, written on screen, and its sounds in words."""
        return [
            *(TranscriptLine(s.start, s.end, s.text, "speech") for s in self.transcript if s.text.strip()),
            *(TranscriptLine(t.start, t.end, t.text, "screen") for t in self.screen_text),
            *(TranscriptLine(e.start, e.end, e.description, "sound") for e in self.sounds),
        ]


@dataclass
class LoadedModel:
    """A DaMO model ready for inference, with what identifies it in caches and reports."""

    name: str
    source: str  # what the user named: a card name or a model folder
    card: ModelCard
    damo: DamoModel
    fingerprint: str  # changes whenever the weights or the architecture change
    trained: bool  # False: random fusion weights (no trained checkpoint available)


class Analyser:
    """Holds the frozen backbones and the DaMO model; `analyse(path)` turns a video into a VideoAnalysis."""

    def __init__(self, model: LoadedModel, device: str = "cpu") -> None:
        from damo_cli.encoders.loader import load_backbone

        self.model = model
        self.device = device
        self.features = FeatureExtractor(model.card, model.damo.config, device, transcribe=True, named_evidence=True)
        self.text: TextEncoder = load_backbone(model.card, "text", device)
        self.class_embeddings = class_text_embeddings(self.text, bridge.NAMING_PROMPTS)  # the named evidence's
        self.bridge_embeddings = class_text_embeddings(self.text)  # the bridge's own prompts
        # the untrained visual evidence: the ImageNet bridge, or a hub card's image-text tower (pipeline.zero_shot)
        self.zero_shot = zero_shot_channel(model.card, self.text, self._bridge, lambda: self.features.visual)
        self._talker: Any = None

    def talker(self) -> Any:
        """The model that answers in words, loaded on first use and kept: DaMO with its LLM (and LoRA weights) when
        trained, else the card's plain LLM as (model, tokenizer)."""
        if self._talker is None:
            if self.model.trained:
                from damo_cli.model.load import load_damo

                self._talker = load_damo(self.model.source, self.device, llm=True).model
            else:
                from damo_cli.encoders.loader import load_backbone

                self._talker = load_backbone(self.model.card, "llm", self.device)
        return self._talker

    @property
    def fingerprint(self) -> str:
        return self.fingerprint_of(self.model)

    @staticmethod
    def fingerprint_of(model: LoadedModel) -> str:
        """Identifies what produced stored analyses: the model plus the frozen features that fed it (no backbone
        load)."""
        video = model.damo.config.video
        parts = f"{model.fingerprint}|features={extractor_fingerprint(model.card, model.damo.config)}"
        parts += f"|window={video.window_seconds}/{video.window_overlap_seconds}|asr={TRANSCRIBE_SETTINGS}"
        if model.card.has("ocr"):
            parts += f"|screen={screen_text.SETTINGS}|colours={len(COLOUR_NAMES)}"
        if model.card.has("sounds"):
            parts += f"|sounds={sounds.SETTINGS}"
        if zero_shot_kind(model.card) == ImageNetBridge.kind:  # stored bridge vectors change with its prompts
            parts += f"|bridge={bridge.SETTINGS}"
        return hashlib.sha256(parts.encode()).hexdigest()[:16]

    def analyse(self, path: Path, on_progress: Callable[[float], None] | None = None) -> VideoAnalysis:
        features = self.features.extract(path, on_progress=on_progress)
        return self.fuse(path, features)

    @torch.inference_mode()
    def fuse(self, path: Path, features: VideoFeatures) -> VideoAnalysis:
        clip = _to(features.to_clip(self.model.damo.config), self.device)
        per_batch = {"windows_per_batch": CPU_WINDOWS_PER_BATCH} if self.device == "cpu" else {}
        fused = self.model.damo.fuse_video(clip, duration=features.duration, **per_batch)
        step_spans = fused.step_spans.cpu().double().numpy()
        return VideoAnalysis(
            path=Path(path),
            duration=features.duration,
            has_audio=features.has_audio,
            step_spans=step_spans,
            fused=_numpy(fused.step_embeddings),
            bridge=self.zero_shot.step_vectors(step_spans, features),
            fusion_tokens=_numpy(fused.fusion_tokens),
            window_spans=fused.window_spans.cpu().double().numpy(),
            frame_times=features.frame_times.double().numpy(),
            class_index=features.class_index.numpy().astype(np.int32),
            class_prob=features.class_prob.float().numpy(),
            colour_times=np.array([c.time for c in features.colours or []], dtype=np.float64),
            colour_shares=np.array([c.shares for c in features.colours or []], dtype=np.float32).reshape(
                -1, len(COLOUR_NAMES)
            ),
            transcript=list(features.transcript),
            screen_text=list(features.screen_text or []),
            sounds=list(features.sounds or []),
        )

    def _bridge(self, step_spans: np.ndarray, features: VideoFeatures) -> np.ndarray:
        """Average the class probabilities of the frames inside each step, then map them into the text space."""
        probs = features.class_probs(len(self.bridge_embeddings)).numpy()
        means = step_means(step_spans, features.frame_times.double().numpy(), probs)
        return bridge_vectors(torch.from_numpy(means), self.bridge_embeddings)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def _to(clip, device: str):  # noqa: ANN001, ANN202
    from damo_cli.model.damo import ClipFeatures

    if device == "cpu":
        return clip
    moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(clip).items()}
    return ClipFeatures(**moved)
