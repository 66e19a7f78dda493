"""decode -> encode -> fuse for one video, window by window, so a two-hour video never sits in memory.

The video is cut into the model's overlapping windows (`plan_windows`, 60 s with 10 s overlap for damo-tiny); each
window's frames (at the card's fps) and audio are decoded, encoded by the frozen backbones and fused; each window
keeps the per-time steps it owns (`ownership`), so the stitched result is time-ordered with no duplicates. Only
small per-step vectors and the fusion tokens survive a window. The transcript is made over the whole audio track in
10-minute pieces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from damo_cli.cards import ModelCard
from damo_cli.encoders.audio import TRANSCRIBE_SETTINGS, TranscriptSegment, WhisperBackbone, split_at_pauses
from damo_cli.encoders.text import TextEncoder
from damo_cli.encoders.visual import VisualEncoder
from damo_cli.errors import NoVideoStreamError
from damo_cli.media import FrameReader, iter_audio_windows, load_audio, probe
from damo_cli.model.damo import ClipFeatures, DamoModel, ownership, plan_windows
from damo_cli.pipeline.bridge import bridge_vectors, class_text_embeddings

TRANSCRIBE_PIECE_SECONDS = 600.0
UTTERANCE_PAUSE_SECONDS = 1.0  # a transcript line ends where the speaker stops this long (search returns lines)


@dataclass
class VideoAnalysis:
    """Everything index and ask need from one video."""

    path: Path
    duration: float
    has_audio: bool
    step_spans: np.ndarray  # (N, 2) seconds [start, end) of each per-time step
    fused: np.ndarray  # (N, 384) per-time head outputs in the text space, unit norm
    bridge: np.ndarray  # (N, 384) zero-shot bridge vectors of the same steps, unit norm
    fusion_tokens: np.ndarray  # (K, F, d) fusion tokens of each window (the LLM's soft prompt reads them)
    window_spans: np.ndarray  # (K, 2)
    transcript: list[TranscriptSegment] = field(default_factory=list)


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
        self.visual: VisualEncoder = load_backbone(model.card, "visual", device)
        self.whisper: WhisperBackbone = load_backbone(model.card, "audio", device)
        self.text: TextEncoder = load_backbone(model.card, "text", device)
        self.class_embeddings = class_text_embeddings(self.text)
        video = model.damo.config.video
        self.fps, self.window, self.overlap = video.sample_fps, video.window_seconds, video.window_overlap_seconds
        side = int(model.card.backbone("visual").param("image_size"))
        self.frame_size = (side, side)

    @property
    def fingerprint(self) -> str:
        return self.fingerprint_of(self.model)

    @staticmethod
    def fingerprint_of(model: LoadedModel) -> str:
        """Identifies what produced stored features: the model plus the sampling that fed it (no backbone load)."""
        video = model.damo.config.video
        parts = f"{model.fingerprint}|fps={video.sample_fps}|window={video.window_seconds}/"
        parts += f"{video.window_overlap_seconds}|bridge=top10|asr={TRANSCRIBE_SETTINGS}"
        parts += f"|pause={UTTERANCE_PAUSE_SECONDS}"
        return hashlib.sha256(parts.encode()).hexdigest()[:16]

    @torch.inference_mode()
    def analyse(
        self, path: Path, transcribe: bool = True, on_progress: Callable[[float], None] | None = None
    ) -> VideoAnalysis:
        info = probe(path)
        if not info.has_video:
            raise NoVideoStreamError(f"{path}: no video stream (an audio-only file)")
        plan = plan_windows(info.duration, self.window, self.overlap)
        spans, fused, bridge, fusion, windows = [], [], [], [], []
        with FrameReader(path, size=self.frame_size) as frames:  # opened once for all windows
            for (start, end), (own_from, own_to) in zip(plan, ownership(plan), strict=True):
                piece = self._window(frames, path, start, end, info.has_audio)
                if piece is None:
                    continue
                out, probs, frame_times = piece
                times = out.step_times[0].cpu()
                keep = out.step_mask[0].cpu() & (times >= own_from) & (times < own_to)
                step_spans = out.step_spans[0].cpu()[keep].double().numpy()
                spans.append(step_spans)
                fused.append(_numpy(out.step_embeddings[0].cpu()[keep]))
                bridge.append(self._bridge(step_spans, probs, frame_times))
                fusion.append(_numpy(out.fusion_tokens[0]))
                windows.append((start, end))
                if on_progress:
                    on_progress(min(1.0, end / max(info.duration, 1e-6)))
        if not spans:
            raise NoVideoStreamError(f"{path}: no decodable frames")
        transcript = self._transcribe(path) if (transcribe and info.has_audio) else []
        return VideoAnalysis(
            path=Path(path),
            duration=info.duration,
            has_audio=info.has_audio,
            step_spans=np.concatenate(spans),
            fused=np.concatenate(fused),
            bridge=np.concatenate(bridge),
            fusion_tokens=np.stack(fusion),
            window_spans=np.asarray(windows, dtype=np.float64),
            transcript=transcript,
        )

    def _window(self, frames: FrameReader, path: Path, start: float, end: float, has_audio: bool):  # noqa: ANN202
        batch = frames.sample(fps=self.fps, start=start, end=end)
        if len(batch) == 0:
            return None
        visual = self.visual.encode(batch.frames)
        audio_windows = []
        if has_audio:
            samples = load_audio(path, start=start, end=end)
            if samples is not None and len(samples):
                audio_windows = self.whisper.encode(samples, start=start)
        clip = ClipFeatures.from_encoders(visual.global_, visual.local, batch.timestamps, audio_windows)
        return self.model.damo.fuse(_to(clip, self.device)), visual.class_probs, batch.timestamps

    def _bridge(self, step_spans: np.ndarray, probs: torch.Tensor, frame_times: np.ndarray) -> np.ndarray:
        """Average the class probabilities of the frames inside each step, then map them into the text space."""
        inside = (frame_times[None, :] >= step_spans[:, :1]) & (frame_times[None, :] < step_spans[:, 1:])  # (N, T)
        empty = ~inside.any(1)
        if empty.any():  # a step with no frame of its own takes the nearest frame
            centres = step_spans[empty].mean(1)
            inside[np.flatnonzero(empty), np.abs(frame_times[None, :] - centres[:, None]).argmin(1)] = True
        weights = torch.from_numpy(inside / inside.sum(1, keepdims=True)).to(probs.dtype)
        return bridge_vectors(weights @ probs, self.class_embeddings)

    def _transcribe(self, path: Path) -> list[TranscriptSegment]:
        segments: list[TranscriptSegment] = []
        for piece in iter_audio_windows(path, window_seconds=TRANSCRIBE_PIECE_SECONDS):
            for seg in self.whisper.transcribe(piece.samples):
                seg.start += piece.start
                seg.end += piece.start
                for word in seg.words:
                    word.start += piece.start
                    word.end += piece.start
                segments.append(seg)
        return split_at_pauses(segments, UTTERANCE_PAUSE_SECONDS)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def _to(clip: ClipFeatures, device: str) -> ClipFeatures:
    if device == "cpu":
        return clip
    moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(clip).items()}
    return ClipFeatures(**moved)
