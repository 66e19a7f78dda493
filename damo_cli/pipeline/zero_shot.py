"""The zero-shot visual channel: per-step vectors of what is seen that need no trained DaMO weights, and how a query
is embedded to search them. It fills the library's "bridge" channel and the untrained part of `ask`'s curve.

The card chooses the implementation (`zero_shot_channel`):
- `ImageNetBridge` (damo-tiny, whose vision backbone is an ImageNet classifier with no text side): the frames'
  class probabilities mapped into MiniLM's text space (`pipeline.bridge`); queries are MiniLM vectors.
- `ImageTextTower` (a hub card whose vision tower is an image-text model, SigLIP or CLIP): the frames' own image
  embeddings, searched with the tower's text embedding of the query, scored on SigLIP's own sigmoid calibration
  (CLIP: a fixed one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from damo_cli.cards import ModelCard
from damo_cli.pipeline.features import VideoFeatures
from damo_cli.pipeline.search import CALIBRATION, Calibration

# ImageTextTower's calibration, from the model's P(match) = sigmoid(scale * cosine + bias): the floor is the cosine
# where P = 0.001 (unrelated text sits below it), the ceiling where P = 0.5 (the model's own "this matches"). The
# weight keeps a zero-shot visual match below a clear spoken or on-screen match, as the ImageNet bridge's 0.6 does,
# but higher, since the tower was trained on image-text pairs. Not yet measured on real footage with real weights.
TOWER_FLOOR_P, TOWER_CEILING_P, TOWER_WEIGHT = 1e-3, 0.5, 0.8
# CLIP has no per-pair probability (softmax-trained): cosines of CLIP ViT-L/14 as commonly reported, unrelated
# captions around 0.15-0.2 and good matches 0.25-0.35. Not measured here.
CLIP_CALIBRATION = Calibration(TOWER_WEIGHT, 0.18, 0.3)


class ZeroShotChannel(Protocol):
    kind: str  # what `damo models info` and `--verbose` call it

    @property
    def calibration(self) -> Calibration: ...

    def step_vectors(self, step_spans: np.ndarray, features: VideoFeatures) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def step_means(step_spans: np.ndarray, frame_times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(N, D) mean of `values` (T, D) over the frames inside each step; a step with no frame of its own takes the
    nearest one. Step by step: the (steps x frames) weight matrix this replaced grew with the square of the video's
    length (250 MB of transients on a 30-minute video, 4 GB on a two-hour one)."""
    order = np.argsort(frame_times, kind="stable")
    times, ordered = frame_times[order], values[order]
    first = np.searchsorted(times, step_spans[:, 0], side="left")  # frames at or after the step's start...
    last = np.searchsorted(times, step_spans[:, 1], side="left")  # ...and before its end
    out = np.empty((len(step_spans), values.shape[1]), dtype=values.dtype)
    for step, (lo, hi) in enumerate(zip(first, last, strict=True)):
        if hi > lo:
            out[step] = ordered[lo:hi].mean(0)
        else:
            out[step] = ordered[int(np.abs(times - step_spans[step].mean()).argmin())]
    return out


class ImageNetBridge:
    """damo-tiny's channel: ImageNet class probabilities -> MiniLM text space. The step vectors are the analyser's
    own (`Analyser._bridge`, on `pipeline.bridge`): this class only says how to query and score them."""

    kind = "imagenet-bridge"

    def __init__(self, text: Any, step_vectors: Callable[[np.ndarray, VideoFeatures], np.ndarray]) -> None:
        self.text, self._step_vectors = text, step_vectors

    @property
    def calibration(self) -> Calibration:
        return CALIBRATION["bridge"]

    def step_vectors(self, step_spans: np.ndarray, features: VideoFeatures) -> np.ndarray:
        return self._step_vectors(step_spans, features)

    def embed_query(self, text: str) -> np.ndarray:
        return self.text.encode([text])[0]


class ImageTextTower:
    """A text-aligned vision tower's channel: mean image embedding per step, the tower's text embedding as query."""

    kind = "image-text-tower"

    def __init__(self, tower: Callable[[], Any]) -> None:
        self._tower, self._loaded = tower, None  # loaded on first use: indexing cached features needs no tower

    @property
    def tower(self) -> Any:
        if self._loaded is None:
            self._loaded = self._tower()
        return self._loaded

    @property
    def calibration(self) -> Calibration:
        scale, bias = self.tower.logit_scale_bias
        if bias is None:
            return CLIP_CALIBRATION
        floor = (math.log(TOWER_FLOOR_P / (1 - TOWER_FLOOR_P)) - bias) / scale
        ceiling = (math.log(TOWER_CEILING_P / (1 - TOWER_CEILING_P)) - bias) / scale
        return Calibration(TOWER_WEIGHT, floor, ceiling)

    def step_vectors(self, step_spans: np.ndarray, features: VideoFeatures) -> np.ndarray:
        if features.image_embeds is None:
            raise ValueError("these cached features have no image embeddings (made with another vision backbone)")
        embeds = features.image_embeds.float().numpy()
        mixed = step_means(step_spans, features.frame_times.double().numpy(), embeds)
        return (mixed / np.maximum(np.linalg.norm(mixed, axis=-1, keepdims=True), 1e-8)).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.tower.embed_text([text])[0]


def zero_shot_kind(card: ModelCard) -> str:
    """Which channel a card's untrained visual evidence comes from (nothing is loaded)."""
    return ImageTextTower.kind if card.backbone("visual").kind == "hf-vision-tower" else ImageNetBridge.kind


def zero_shot_channel(
    card: ModelCard,
    text: Any,
    bridge: Callable[[np.ndarray, VideoFeatures], np.ndarray],
    vision: Callable[[], Any],
) -> ZeroShotChannel:
    """The card's channel. bridge: the ImageNet bridge's step vectors; vision: loads the card's vision backbone (the
    tower is only loaded when a query is embedded or a video encoded)."""
    if zero_shot_kind(card) == ImageTextTower.kind:
        return ImageTextTower(vision)
    return ImageNetBridge(text, bridge)


def own_query(channel: ZeroShotChannel, text: str) -> tuple[np.ndarray, Calibration] | None:
    """The channel's query vector and calibration where its space is its own (a tower), or None where it shares the
    text encoder's space and the query vector every other channel uses (the ImageNet bridge)."""
    if channel.kind == ImageNetBridge.kind:
        return None
    return channel.embed_query(text), channel.calibration
