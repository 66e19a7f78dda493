"""Frozen-encoder features of a video, computed once and cached, so every training step reads them from disk.

Cache: `cache_dir()/features/<extractor fingerprint>/<video sha256>.safetensors` (+ `.transcript.<settings>.json`),
keyed by the file's *content* (a renamed copy is a hit, an edited file a miss) and by everything that changes the
features (backbone weights' sha256, frame rate, image size, pooled sizes, this module's format version); the
transcript's name says how it was decoded, so new decoding settings retranscribe without re-encoding. Writes are atomic.

What is stored per video, and why (measured on damo-tiny, composed 20-36 s videos at 2 fps):
- frame times (the real pts of each sampled frame) and the per-frame global vector (1280, fp16);
- the local map *already pooled* to the card's p x p (2x2 of the 7x7 EfficientNet map). The model pools 7x7 to 2x2
  first thing (VisualResidual) and accepts pre-pooled tokens as exactly that, so nothing is lost; storing all 49
  tokens in fp16 would be 125 KB per frame (~15 MB per 60 s video at 2 fps) against 10 KB pooled;
- per audio window, the masked mean of every pooling bin of the Whisper states (30 x 512 instead of 1500 x 512)
  and the number of valid states. When the bins do not overlap (1500 / 30 = 50 states each) expanding each bin mean
  back over its states gives the model *exactly* the same pooled tokens and global mean (see `to_clip`);
- the top-10 ImageNet classes of each frame (the zero-shot bridge: a stage-1 teacher, DESIGN §3);
- the Whisper transcript (segments with word times), as JSON beside it.

Frame sampling is the one inference uses: `sample_frames(path, fps=card sample_fps, size=(S, S))` with S the visual
backbone's image size, then `VisualEncoder.encode`; audio is `load_audio` (16 kHz mono) then `WhisperBackbone.encode`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from damo_cli.cards import ModelCard
from damo_cli.encoders.audio import TRANSCRIBE_SETTINGS
from damo_cli.integrity import atomic_path, sha256_file
from damo_cli.model.config import DamoConfig
from damo_cli.paths import cache_dir

FORMAT_VERSION = 1
TOP_CLASSES = 10


@dataclass
class TranscriptLineRecord:
    start: float
    end: float
    text: str
    words: list[tuple[float, float, str]] = field(default_factory=list)


@dataclass
class VideoFeatures:
    """Cached frozen features of one video (CPU tensors)."""

    sha256: str
    duration: float
    frame_times: torch.Tensor  # (N,) float32 seconds
    visual_global: torch.Tensor  # (N, Dv) fp16
    visual_local: torch.Tensor  # (N, p*p, Dv) fp16, pooled
    class_index: torch.Tensor  # (N, K) int32 top ImageNet classes
    class_prob: torch.Tensor  # (N, K) fp16 their probabilities
    audio_bins: torch.Tensor | None  # (W, La, Da) fp16 masked bin means, or None: no audio track
    audio_valid: torch.Tensor | None  # (W,) int32 valid states per window
    audio_starts: torch.Tensor | None  # (W,) float32 seconds
    transcript: list[TranscriptLineRecord] = field(default_factory=list)

    def to_clip(self, config: DamoConfig) -> Any:
        """ClipFeatures (B = 1) for the model: bins expanded back over their states, masked past `valid`."""
        from damo_cli.model.damo import ClipFeatures

        audio_states = audio_mask = audio_starts = None
        if self.audio_bins is not None:
            assert self.audio_valid is not None and self.audio_starts is not None
            states = config.audio_states_per_window
            per_bin = states // self.audio_bins.shape[1]
            audio_states = self.audio_bins.float().repeat_interleave(per_bin, dim=1)[None]  # (1, W, S, Da)
            audio_mask = (torch.arange(states)[None, :] < self.audio_valid[:, None])[None]
            audio_starts = self.audio_starts[None].float()
        return ClipFeatures(
            visual_global=self.visual_global.float()[None],
            visual_local=self.visual_local.float()[None],
            frame_times=self.frame_times.float()[None],
            audio_states=audio_states,
            audio_mask=audio_mask,
            audio_starts=audio_starts,
        )


def extractor_fingerprint(card: ModelCard, config: DamoConfig) -> str:
    """sha256 prefix of everything that changes cached features."""
    visual, audio = card.backbone("visual"), card.backbone("audio")
    parts = {
        "version": FORMAT_VERSION,
        "visual": sorted(f.sha256 for f in visual.files.values()),
        "audio": sorted(a.sha256 for a in audio.assembled.values()) or sorted(f.sha256 for f in audio.files.values()),
        "image_size": visual.params.get("image_size"),
        "fps": config.video.sample_fps,
        "pool": config.visual_pool_grid,
        "audio_tokens": config.audio_tokens_per_window,
        "top": TOP_CLASSES,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def check_poolable(config: DamoConfig) -> None:
    if config.audio_states_per_window % config.audio_tokens_per_window:
        from damo_cli.errors import ModelError

        raise ModelError(
            "the feature cache stores pooled audio bins: audio states per window "
            f"({config.audio_states_per_window}) must be divisible by audio tokens ({config.audio_tokens_per_window})"
        )


class FeatureExtractor:
    """Loads the frozen visual and audio backbones once; `extract(path)` returns (and caches) a video's features."""

    def __init__(self, card: ModelCard, config: DamoConfig, device: str = "cpu", transcribe: bool = True) -> None:
        check_poolable(config)
        self.card, self.config, self.device, self.transcribe = card, config, device, transcribe
        self.folder = cache_dir() / "features" / extractor_fingerprint(card, config)
        self._visual: Any = None
        self._audio: Any = None
        self.timings: dict[str, float] = {"decode": 0.0, "visual": 0.0, "audio": 0.0, "transcribe": 0.0}

    # backbones are loaded on first need: a fully cached dataset never loads them
    @property
    def visual(self) -> Any:
        if self._visual is None:
            from damo_cli.encoders.loader import load_backbone

            self._visual = load_backbone(self.card, "visual", self.device)
        return self._visual

    @property
    def audio(self) -> Any:
        if self._audio is None:
            from damo_cli.encoders.loader import load_backbone

            self._audio = load_backbone(self.card, "audio", self.device)
        return self._audio

    def paths(self, digest: str) -> tuple[Path, Path]:
        return cache_paths(self.folder, digest)

    def extract(self, path: Path, digest: str | None = None) -> VideoFeatures:
        digest = digest or sha256_file(path)
        tensors, transcript = self.paths(digest)
        if tensors.is_file():
            try:
                features = load_features(self.folder, digest)
            except (OSError, ValueError, KeyError, RuntimeError):
                pass  # damaged cache entry: recompute below
            else:
                if self.transcribe and not transcript.is_file():  # only the transcript is missing (or outdated)
                    features.transcript = self._transcribe(path)
                    save_transcript(transcript, features.transcript)
                return features
        features = self._compute(path, digest)
        save_features(self.folder, features, with_transcript=self.transcribe)
        return features

    def _compute(self, path: Path, digest: str) -> VideoFeatures:
        from damo_cli.media import load_audio, probe, sample_frames

        config = self.config
        info = probe(path)
        size = int(self.card.backbone("visual").params.get("image_size", 224))
        started = time.perf_counter()
        batch = sample_frames(path, fps=config.video.sample_fps, size=(size, size))
        samples = load_audio(path) if info.has_audio else None
        self.timings["decode"] += time.perf_counter() - started
        started = time.perf_counter()
        times = torch.as_tensor(batch.timestamps, dtype=torch.float32)
        keep = torch.ones_like(times, dtype=torch.bool)
        keep[1:] = times[1:] > times[:-1]  # a repeated frame (video slower than the sampling rate) is kept once
        frames = batch.frames[keep.numpy()]
        encoded = self.visual.encode(frames)
        with torch.inference_mode():
            probs = self.visual.net._fc(encoded.global_.to(self.visual.device)).softmax(-1).cpu()  # ImageNet head
        top_p, top_i = probs.topk(TOP_CLASSES, dim=-1)
        grid, pool = config.visual_grid, config.visual_pool_grid
        maps = encoded.local.reshape(len(frames), grid, grid, -1).permute(0, 3, 1, 2)
        pooled = torch.nn.functional.adaptive_avg_pool2d(maps, pool).flatten(2).transpose(1, 2)  # (N, p*p, Dv)
        self.timings["visual"] += time.perf_counter() - started
        audio_bins = audio_valid = audio_starts = None
        transcript: list[TranscriptLineRecord] = []
        if samples is not None and len(samples) > 0:
            started = time.perf_counter()
            windows = self.audio.encode(samples)
            audio_bins, audio_valid, audio_starts = pool_audio_windows(windows, config.audio_tokens_per_window)
            self.timings["audio"] += time.perf_counter() - started
            if self.transcribe:
                transcript = self._transcribe_samples(samples)
        return VideoFeatures(
            sha256=digest,
            duration=float(info.duration),
            frame_times=times[keep],
            visual_global=encoded.global_.half(),
            visual_local=pooled.half().contiguous(),
            class_index=top_i.int(),
            class_prob=top_p.half(),
            audio_bins=audio_bins,
            audio_valid=audio_valid,
            audio_starts=audio_starts,
            transcript=transcript,
        )

    def _transcribe(self, path: Path) -> list[TranscriptLineRecord]:
        from damo_cli.media import load_audio, probe

        return self._transcribe_samples(load_audio(path)) if probe(path).has_audio else []

    def _transcribe_samples(self, samples: Any) -> list[TranscriptLineRecord]:
        started = time.perf_counter()
        transcript = [
            TranscriptLineRecord(s.start, s.end, s.text, [(w.start, w.end, w.text) for w in s.words])
            for s in self.audio.transcribe(samples)
        ]
        self.timings["transcribe"] += time.perf_counter() - started
        return transcript


def cache_paths(folder: Path, digest: str) -> tuple[Path, Path]:
    """(tensors, transcript) of one video; the transcript's name carries how it was decoded."""
    return folder / f"{digest}.safetensors", folder / f"{digest}.transcript.{TRANSCRIBE_SETTINGS}.json"


def save_transcript(path: Path, transcript: Sequence[TranscriptLineRecord]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps([line.__dict__ for line in transcript], ensure_ascii=False))


def pool_audio_windows(windows: Sequence[Any], tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Whisper windows -> (W, La, Da) masked bin means, (W,) valid counts, (W,) starts."""
    states = torch.stack([torch.as_tensor(w.states, dtype=torch.float32) for w in windows])  # (W, S, Da)
    count, length = states.shape[0], states.shape[1]
    per_bin = length // tokens
    valid = torch.tensor([int(w.valid) for w in windows], dtype=torch.int32)
    mask = (torch.arange(length)[None, :] < valid[:, None]).float()  # (W, S)
    sums = (states * mask[..., None]).reshape(count, tokens, per_bin, -1).sum(2)
    counts = mask.reshape(count, tokens, per_bin).sum(2).clamp_min(1.0)
    bins = (sums / counts[..., None]).half()
    starts = torch.tensor([float(w.start) for w in windows], dtype=torch.float32)
    return bins, valid, starts


def save_features(folder: Path, features: VideoFeatures, with_transcript: bool = True) -> None:
    from safetensors.torch import save_file

    tensors_path, transcript_path = cache_paths(folder, features.sha256)
    tensors = {
        "frame_times": features.frame_times,
        "visual_global": features.visual_global,
        "visual_local": features.visual_local,
        "class_index": features.class_index,
        "class_prob": features.class_prob,
    }
    if features.audio_bins is not None:
        assert features.audio_valid is not None and features.audio_starts is not None
        tensors.update(audio_bins=features.audio_bins, audio_valid=features.audio_valid)
        tensors["audio_starts"] = features.audio_starts
    metadata = {"duration": repr(features.duration), "version": str(FORMAT_VERSION), "sha256": features.sha256}
    if with_transcript:  # transcript first: a tensors file without its transcript is transcribed again
        save_transcript(transcript_path, features.transcript)
    with atomic_path(tensors_path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def load_features(folder: Path, digest: str) -> VideoFeatures:
    from safetensors import safe_open

    tensors_path, transcript_path = cache_paths(folder, digest)
    with safe_open(str(tensors_path), framework="pt") as handle:
        meta = handle.metadata() or {}
        if meta.get("version") != str(FORMAT_VERSION):
            raise ValueError("feature cache format changed")
        t = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open is not a dict
    transcript: list[TranscriptLineRecord] = []
    if transcript_path.is_file():
        for raw in json.loads(transcript_path.read_text(encoding="utf-8")):
            words = [tuple(w) for w in raw.get("words", [])]
            transcript.append(TranscriptLineRecord(raw["start"], raw["end"], raw["text"], words))  # type: ignore[arg-type]
    return VideoFeatures(
        sha256=digest,
        duration=float(meta["duration"]),
        frame_times=t["frame_times"],
        visual_global=t["visual_global"],
        visual_local=t["visual_local"],
        class_index=t["class_index"],
        class_prob=t["class_prob"],
        audio_bins=t.get("audio_bins"),
        audio_valid=t.get("audio_valid"),
        audio_starts=t.get("audio_starts"),
        transcript=transcript,
    )


def extract_folder(
    extractor: FeatureExtractor,
    videos: Sequence[Path],
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[Path, VideoFeatures]:
    """Features of every video (cached ones are read, the rest computed), in order."""
    out: dict[Path, VideoFeatures] = {}
    for index, path in enumerate(videos):
        out[path] = extractor.extract(path)
        if progress is not None:
            progress(index + 1, len(videos), path.name)
    return out


def feature_megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("*") if p.is_file()) / 1e6 if folder.is_dir() else 0.0


def seconds_per(total: float, count: int) -> float:
    return total / count if count else math.nan
