"""The frozen encoders' features of a video: the one feature path of index, ask, eval and training.

`FeatureExtractor.extract(path)` decodes and encodes a video once and caches the result, keyed by the file's
*content* (a renamed copy is a hit, an edited file a miss) and by everything that changes the features (backbone
weights' sha256, frame rate, image size, pooled sizes, this module's format version); the transcript's name says how
it was decoded, so new decoding settings retranscribe without re-encoding. Writes are atomic. `Analyser` (index, ask,
`damo eval --videos`) and `damo train` / `finetune` all read video through here, so what a model is trained on is
what it sees when a user asks (docs/architecture.md).

Decoding runs piece by piece (frames in 60 s pieces through one `FrameReader`, audio in 10-minute pieces), so a
two-hour video never sits in memory; only the small per-frame vectors below survive a piece.

What is stored per video, and why (measured on damo-tiny, composed 20-36 s videos at 2 fps):
- frame times (the real pts of each sampled frame) and the per-frame global vector (1280, fp16);
- the local map *already pooled* to the card's p x p (2x2 of the 7x7 EfficientNet map). The model pools 7x7 to 2x2
  first thing (VisualResidual) and accepts pre-pooled tokens as exactly that, so nothing is lost; storing all 49
  tokens in fp16 would be 125 KB per frame (~15 MB per 60 s video at 2 fps) against 10 KB pooled;
- per 30 s audio window (on one grid from 0 s), the masked mean of every pooling bin of the Whisper states (30 x 512
  instead of 1500 x 512) and the number of valid states. When the bins do not overlap (1500 / 30 = 50 states each)
  expanding each bin mean back over its states gives the model *exactly* the same pooled tokens and global mean
  (see `to_clip`);
- the top-10 ImageNet classes of each frame (the zero-shot bridge: a search channel and a stage-1 teacher);
- the Whisper transcript (lines cut where the speaker pauses, with word times), as JSON beside it;
- with `named_evidence` (index and ask, not training): on-screen text lines (`encoders.screen_text`) and sound events
  (`encoders.sounds`), each a JSON file beside it named by its own settings, so adding or retuning them never
  re-encodes frames.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from damo_cli.cards import BackboneSpec, ModelCard
from damo_cli.encoders import screen_text as screen_text_module
from damo_cli.encoders import sounds as sounds_module
from damo_cli.encoders.audio import (
    TRANSCRIBE_SETTINGS,
    TranscriptSegment,
    Word,
    most_likely_language,
    split_at_pauses,
)
from damo_cli.encoders.colours import NAMES as COLOUR_NAMES
from damo_cli.encoders.colours import colour_shares
from damo_cli.encoders.screen_text import ScreenText
from damo_cli.encoders.sounds import SoundEvent
from damo_cli.errors import NoVideoStreamError
from damo_cli.integrity import atomic_path
from damo_cli.media import FrameReader, iter_audio_windows, probe
from damo_cli.memory import release_free_memory
from damo_cli.model.config import DamoConfig
from damo_cli.model.damo import ClipFeatures
from damo_cli.paths import cache_dir

FORMAT_VERSION = 2  # 2: decoded piece by piece, transcript lines cut at pauses with word probabilities
TOP_CLASSES = 10
FRAME_PIECE_SECONDS = 60.0
# Frames through the frame encoder at once on a CPU (a multiple of its batch of 8, so the same batches run and the
# features are bit-identical): a minute's 120 frames at once held their feature maps two and three times over; on
# the bench's 30-min file a minute's encode peaked +129-155 MB that way and +108-129 MB 32 frames at a time.
FRAME_ENCODE_CHUNK = 32
AUDIO_PIECE_SECONDS = 600.0  # a multiple of Whisper's 30 s window, so audio windows sit on one grid from 0 s
# A video at least this long frees each phase's models as the phase ends (the frame encoder before the sound is
# encoded, the OCR reader when its pass is done): reloading them for a next video costs ~1 s, well under 1 % of
# indexing such a video, and a 30-min index peaked ~150 MB lower without them beside Whisper.
RELEASE_AFTER_SECONDS = 600.0
UTTERANCE_PAUSE_SECONDS = 1.0  # a transcript line ends where the speaker stops this long (search returns lines)


@dataclass
class ColourShares:
    """The share of a frame's pixels in each colour name of `encoders.colours.NAMES`."""

    time: float
    shares: list[float]


@dataclass
class VideoFeatures:
    """Cached frozen features of one video (CPU tensors)."""

    key: str  # the video's content key (store.keys.content_key): its name in the cache
    duration: float
    has_audio: bool
    frame_times: torch.Tensor  # (N,) float32 seconds
    visual_global: torch.Tensor  # (N, Dv) fp16
    visual_local: torch.Tensor  # (N, p*p, Dv) fp16, pooled
    class_index: torch.Tensor  # (N, K) int32 top ImageNet classes
    class_prob: torch.Tensor  # (N, K) fp16 their probabilities
    audio_bins: torch.Tensor | None  # (W, La, Da) fp16 masked bin means, or None: no audio track
    audio_valid: torch.Tensor | None  # (W,) int32 valid states per window
    audio_starts: torch.Tensor | None  # (W,) float32 seconds
    transcript: list[TranscriptSegment] = field(default_factory=list)
    screen_text: list[ScreenText] | None = None  # None: not read (training does not need it)
    sounds: list[SoundEvent] | None = None
    colours: list[ColourShares] | None = None  # per frame sampled for on-screen text
    image_embeds: torch.Tensor | None = None  # (N, E) fp16 unit vectors in a text-aligned tower's space, or None

    def to_clip(self, config: DamoConfig) -> ClipFeatures:
        """ClipFeatures (B = 1) for the model: bins expanded back over their states, masked past `valid`.

        Features stay in their stored fp16 (the model casts each window to its weights' dtype): in fp32 the expanded
        audio states of a 30-min video alone were 184 MB."""
        audio_states = audio_mask = audio_starts = None
        if self.audio_bins is not None:
            assert self.audio_valid is not None and self.audio_starts is not None
            states = config.audio_states_per_window
            per_bin = states // self.audio_bins.shape[1]
            audio_states = self.audio_bins.repeat_interleave(per_bin, dim=1)[None]  # (1, W, S, Da)
            audio_mask = (torch.arange(states)[None, :] < self.audio_valid[:, None])[None]
            audio_starts = self.audio_starts[None].float()
        return ClipFeatures(
            visual_global=self.visual_global[None],
            visual_local=self.visual_local[None],
            frame_times=self.frame_times.float()[None],
            audio_states=audio_states,
            audio_mask=audio_mask,
            audio_starts=audio_starts,
        )

    def class_probs(self, classes: int = 1000) -> torch.Tensor:
        """(N, classes) dense probabilities with only the stored top classes non-zero."""
        dense = torch.zeros(len(self.frame_times), classes)
        return dense.scatter_(1, self.class_index.long(), self.class_prob.float())


def extractor_fingerprint(card: ModelCard, config: DamoConfig) -> str:
    """sha256 prefix of everything that changes cached features."""
    visual, audio = card.backbone("visual"), card.backbone("audio")
    parts = {
        "version": FORMAT_VERSION,
        "visual": sorted(f.sha256 for f in visual.files.values()) or _hub_pin(visual),
        "audio": sorted(a.sha256 for a in audio.assembled.values())
        or sorted(f.sha256 for f in audio.files.values())
        or _hub_pin(audio),
        "image_size": visual.params.get("image_size"),
        "fps": config.video.sample_fps,
        "pool": config.visual_pool_grid,
        "audio_tokens": config.audio_tokens_per_window,
        "top": TOP_CLASSES,
        "pause": UTTERANCE_PAUSE_SECONDS,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _hub_pin(backbone: BackboneSpec) -> list[str]:
    """A hub backbone's weights are named by their repo and pinned commit (the lock file holds their sha256s)."""
    return [str(backbone.repo), str(backbone.params.get("revision")), backbone.kind]


def check_poolable(config: DamoConfig) -> None:
    if config.audio_states_per_window % config.audio_tokens_per_window:
        from damo_cli.errors import ModelError

        raise ModelError(
            "the feature cache stores pooled audio bins: audio states per window "
            f"({config.audio_states_per_window}) must be divisible by audio tokens ({config.audio_tokens_per_window})"
        )


class FeatureExtractor:
    """Loads the frozen visual and audio backbones once; `extract(path)` returns (and caches) a video's features."""

    def __init__(
        self,
        card: ModelCard,
        config: DamoConfig,
        device: str = "cpu",
        transcribe: bool = True,
        named_evidence: bool = False,
    ) -> None:
        check_poolable(config)
        self.card, self.config, self.device, self.transcribe = card, config, device, transcribe
        self.read_screen = named_evidence and card.has("ocr")
        self.detect_sounds = named_evidence and card.has("sounds")
        self.fingerprint = extractor_fingerprint(card, config)
        self.image_size = int(card.backbone("visual").params.get("image_size", 224))
        self._visual: Any = None
        self._audio: Any = None
        self._ocr: Any = None
        self._sound_detector: Any = None
        self.timings: dict[str, float] = {
            "decode": 0.0, "visual": 0.0, "audio": 0.0, "transcribe": 0.0, "screen_text": 0.0, "sounds": 0.0,
        }  # fmt: skip

    @property
    def folder(self) -> Path:
        return cache_dir() / "features" / self.fingerprint  # read on every lookup: DAMO_HOME may change (bench)

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

    @property
    def ocr(self) -> Any:
        if self._ocr is None:
            self._ocr = screen_text_module.ScreenTextReader(self.card.backbone("ocr"))
        return self._ocr

    @property
    def sound_detector(self) -> Any:
        if self._sound_detector is None:
            self._sound_detector = sounds_module.SoundEventDetector(self.card.backbone("sounds"))
        return self._sound_detector

    def paths(self, digest: str) -> tuple[Path, Path]:
        return cache_paths(self.folder, digest)

    def extract(self, path: Path, digest: str | None = None, on_progress: Any = None) -> VideoFeatures:
        """on_progress(fraction) is called as pieces of the video are encoded."""
        digest = digest or file_key(path)
        tensors, transcript = self.paths(digest)
        if tensors.is_file():
            try:
                features = load_features(self.folder, digest)
            except (OSError, ValueError, KeyError, RuntimeError):
                pass  # damaged cache entry: recompute below
            else:
                if self.transcribe and not transcript.is_file():  # only the transcript is missing (or outdated)
                    features.transcript = self._transcript_only(path) if features.has_audio else []
                    save_transcript(transcript, features.transcript)
                self._add_named_evidence(path, features)
                return features
        # The frames pass for on-screen text and colours (ONNX Runtime) runs in a thread beside the encoders
        # (PyTorch / ONNX Runtime / CTranslate2 release the GIL): on 2 cores OCR and transcription took 16-31 % less
        # wall time side by side than one after the other.
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="damo-frames") as pool:
            looking = self._look_alongside(pool, path, digest, stop)
            try:
                features = self._compute(path, digest, on_progress)
                save_features(self.folder, features, with_transcript=self.transcribe)
            except BaseException:
                stop.set()  # a failed or interrupted (Ctrl-C) encode does not wait for the rest of the frames pass
                raise
            if looking is not None:
                features.screen_text, features.colours = looking.result()
        self._add_named_evidence(path, features)
        return features

    def _look_alongside(
        self, pool: ThreadPoolExecutor, path: Path, digest: str, stop: threading.Event
    ) -> Future | None:
        screen_path, _, colours_path = evidence_paths(self.folder, digest)
        if not self.read_screen or (screen_path.is_file() and colours_path.is_file()):
            return None
        info = probe(path)
        if not info.has_video:
            return None  # _compute says why, in one line
        self.ocr  # noqa: B018 - loaded here, not in two threads at once
        return pool.submit(self._look_then_release, path, info.duration, stop)

    def _look_then_release(
        self, path: Path, duration: float, stop: threading.Event
    ) -> tuple[list[ScreenText] | None, list[ColourShares]]:
        looked = self._look_at_frames(path, duration, True, stop)
        if duration >= RELEASE_AFTER_SECONDS:
            self._ocr = None  # the next video loads it again (the main thread waits for this pass first)
            release_free_memory()
        return looked

    def _add_named_evidence(self, path: Path, features: VideoFeatures) -> None:
        """On-screen text, colours and sound events from their own cache files, computed (and saved) when missing."""
        screen_path, sounds_path, colours_path = evidence_paths(self.folder, features.key)
        if self.read_screen:
            screen_read = colours_read = False  # read from their files just now: nothing to write back
            if features.screen_text is None:
                features.screen_text = _read_side_file(screen_path, ScreenText)
                screen_read = features.screen_text is not None
            if features.colours is None:
                features.colours = _read_side_file(colours_path, ColourShares)
                colours_read = features.colours is not None
            if features.screen_text is None or features.colours is None:  # one decode for both
                text, colours = self._look_at_frames(path, features.duration, read_text=features.screen_text is None)
                features.screen_text = features.screen_text if features.screen_text is not None else text
                features.colours = features.colours if features.colours is not None else colours
            # computed here or beside the encoders: written unless a readable file is already there
            if not screen_read and _read_side_file(screen_path, ScreenText) is None:
                save_json(screen_path, features.screen_text or [])
            if not colours_read and _read_side_file(colours_path, ColourShares) is None:
                save_json(colours_path, features.colours or [])
        if self.detect_sounds:
            if features.sounds is None:
                features.sounds = _read_side_file(sounds_path, SoundEvent)
            if features.sounds is None:
                events: list[SoundEvent] = []
                if features.has_audio:
                    for piece in iter_audio_windows(path, window_seconds=AUDIO_PIECE_SECONDS):
                        events += self._detect_sounds(piece.samples, piece.start)
                features.sounds = sounds_module.merge_pieces(events)
            if not sounds_path.is_file():
                save_json(sounds_path, features.sounds)

    def _look_at_frames(
        self, path: Path, duration: float, read_text: bool = True, stop: threading.Event | None = None
    ) -> tuple[list[ScreenText] | None, list[ColourShares]]:
        """Full-size frames at the screen-text rate: text read where the picture changed, colours of every one
        (`stop` set: it ends at the next frame, its result unused)."""
        started = time.perf_counter()
        tracker = screen_text_module.ScreenTextTracker(self.ocr) if read_text else None
        colours: list[ColourShares] = []
        for at, frame in screen_text_module.sampled_frames(path, duration):
            if stop is not None and stop.is_set():
                break
            if tracker is not None:
                tracker.see(at, frame)
            colours.append(ColourShares(at, [round(float(x), 4) for x in colour_shares(frame)]))
            if len(colours) % 30 == 0:
                release_free_memory()  # the full-size frames read so far
        self.timings["screen_text"] += time.perf_counter() - started
        return (tracker.lines(duration) if tracker is not None else None), colours

    def _detect_sounds(self, samples: np.ndarray, offset: float) -> list[SoundEvent]:
        started = time.perf_counter()
        events = self.sound_detector.detect(samples, offset)
        self.timings["sounds"] += time.perf_counter() - started
        return events

    def _compute(self, path: Path, digest: str, on_progress: Any = None) -> VideoFeatures:
        config = self.config
        info = probe(path)
        if not info.has_video:
            raise NoVideoStreamError(f"{path}: no video stream (an audio-only file)")
        times: list[torch.Tensor] = []
        globals_: list[torch.Tensor] = []
        locals_: list[torch.Tensor] = []
        top_i: list[torch.Tensor] = []
        top_p: list[torch.Tensor] = []
        embeds: list[torch.Tensor] = []  # a text-aligned tower's image embeddings (the zero-shot channel)
        last = -float("inf")
        with FrameReader(path, size=(self.image_size, self.image_size)) as reader:  # opened once for all pieces
            for start, end in frame_pieces(info.duration):
                started = time.perf_counter()
                try:
                    batch = reader.sample(fps=config.video.sample_fps, start=start, end=end)
                except ValueError:  # the declared duration runs past the last frame
                    break
                self.timings["decode"] += time.perf_counter() - started
                started = time.perf_counter()
                piece_times = torch.as_tensor(batch.timestamps, dtype=torch.float32)
                keep = torch.ones_like(piece_times, dtype=torch.bool)  # a repeated frame (video slower than the
                keep[1:] = piece_times[1:] > piece_times[:-1]  # sampling rate) is kept once
                keep &= piece_times > last
                if bool(keep.any()):
                    frames = batch.frames[keep.numpy()]
                    chunk = FRAME_ENCODE_CHUNK if self.device == "cpu" else len(frames)
                    grid, pool = config.visual_grid, config.visual_pool_grid
                    for first in range(0, len(frames), chunk):  # a few frames' maps at a time, not a minute's
                        encoded = self.visual.encode(frames[first : first + chunk])
                        probs_p, probs_i = encoded.class_probs.topk(TOP_CLASSES, dim=-1)
                        maps = encoded.local.reshape(len(probs_i), grid, grid, -1).permute(0, 3, 1, 2)
                        pooled = torch.nn.functional.adaptive_avg_pool2d(maps, pool).flatten(2).transpose(1, 2)
                        globals_.append(encoded.global_.half())
                        locals_.append(pooled.half())
                        top_i.append(probs_i.int())
                        top_p.append(probs_p.half())
                        if getattr(encoded, "image_embeds", None) is not None:
                            embeds.append(encoded.image_embeds.half())
                        del encoded, maps, pooled
                    times.append(piece_times[keep])
                    last = float(piece_times[keep][-1])
                self.timings["visual"] += time.perf_counter() - started
                del batch
                release_free_memory()  # a minute of decoded frames and their activations, freed just now
                if on_progress is not None:
                    on_progress(0.8 * end / max(info.duration, 1e-6))
        if not times:
            raise NoVideoStreamError(f"{path}: no decodable frames")
        if info.duration >= RELEASE_AFTER_SECONDS:
            self._visual = None  # not needed beside the sound models; the next video loads it again
            release_free_memory()
        audio_bins = audio_valid = audio_starts = None
        transcript: list[TranscriptSegment] = []
        sounds: list[SoundEvent] | None = [] if self.detect_sounds else None
        if info.has_audio:
            pooled, segments = [], []
            for piece in iter_audio_windows(path, window_seconds=AUDIO_PIECE_SECONDS):  # one decode for all uses
                started = time.perf_counter()
                languages: dict[str, float] | None = {} if hasattr(self.audio, "add_language_scores") else None
                language_seconds = 0.0
                for window in self.audio.iter_encode(piece.samples, start=piece.start):
                    # pooled, and its language read, as it comes: one window's full states are held, not a piece's
                    pooled.append(pool_audio_windows([window], config.audio_tokens_per_window))
                    if self.transcribe and languages is not None:
                        language_started = time.perf_counter()
                        self.audio.add_language_scores(window, languages)
                        language_seconds += time.perf_counter() - language_started
                    del window
                self.timings["audio"] += time.perf_counter() - started - language_seconds
                self.timings["transcribe"] += language_seconds
                if self.transcribe:
                    # the language named from the states just computed saves the transcriber an encoder pass (None:
                    # a backbone that cannot say; the transcriber detects it itself)
                    language = most_likely_language(languages) if languages is not None else None
                    segments += self._transcribe_piece(piece.samples, piece.start, language)
                if sounds is not None:
                    sounds += self._detect_sounds(piece.samples, piece.start)
                del piece
                release_free_memory()  # ten minutes of samples, their encoder states and the transcriber's buffers
            if pooled:
                audio_bins, audio_valid, audio_starts = (torch.cat(parts) for parts in zip(*pooled, strict=True))
            transcript = split_at_pauses(segments, UTTERANCE_PAUSE_SECONDS)
        if on_progress is not None:
            on_progress(1.0)
        return VideoFeatures(
            key=digest,
            duration=float(info.duration),
            has_audio=audio_bins is not None,
            frame_times=torch.cat(times),
            visual_global=torch.cat(globals_),
            visual_local=torch.cat(locals_).contiguous(),
            class_index=torch.cat(top_i),
            class_prob=torch.cat(top_p),
            audio_bins=audio_bins,
            audio_valid=audio_valid,
            audio_starts=audio_starts,
            transcript=transcript,
            sounds=sounds_module.merge_pieces(sounds) if sounds is not None else None,
            image_embeds=torch.cat(embeds) if embeds else None,
        )

    def _transcript_only(self, path: Path) -> list[TranscriptSegment]:
        segments: list[TranscriptSegment] = []
        for piece in iter_audio_windows(path, window_seconds=AUDIO_PIECE_SECONDS):
            segments += self._transcribe_piece(piece.samples, piece.start)
        return split_at_pauses(segments, UTTERANCE_PAUSE_SECONDS)

    def _transcribe_piece(
        self, samples: np.ndarray, offset: float, language: str | None = None
    ) -> list[TranscriptSegment]:
        started = time.perf_counter()
        segments = self.audio.transcribe(samples, language=language)
        for seg in segments:
            seg.start += offset
            seg.end += offset
            for word in seg.words:
                word.start += offset
                word.end += offset
        self.timings["transcribe"] += time.perf_counter() - started
        return segments


def frame_pieces(duration: float) -> list[tuple[float, float]]:
    """[start, end) pieces of FRAME_PIECE_SECONDS covering the video: frames are decoded and encoded one at a time."""
    starts = np.arange(0.0, max(duration, 1e-6), FRAME_PIECE_SECONDS)
    return [(float(s), float(min(s + FRAME_PIECE_SECONDS, duration))) for s in starts]


def file_key(path: Path) -> str:
    """The cache's name for a video: its content key, as a file name (a renamed copy is a hit, an edit a miss)."""
    from damo_cli.store.keys import content_key

    return content_key(path).replace(":", "-")


def cache_paths(folder: Path, digest: str) -> tuple[Path, Path]:
    """(tensors, transcript) of one video; the transcript's name carries how it was decoded."""
    return folder / f"{digest}.safetensors", folder / f"{digest}.transcript.{TRANSCRIBE_SETTINGS}.json"


def evidence_paths(folder: Path, digest: str) -> tuple[Path, Path, Path]:
    """(on-screen text, sound events, colours) of one video; each name carries the settings that made it."""
    return (
        folder / f"{digest}.screen.{screen_text_module.SETTINGS}.json",
        folder / f"{digest}.sounds.{sounds_module.SETTINGS}.json",
        folder / f"{digest}.colours.{screen_text_module.READ_FPS:g}fps-{len(COLOUR_NAMES)}.json",
    )


def save_json(path: Path, items: Sequence[Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps([asdict(item) for item in items], ensure_ascii=False))


def save_transcript(path: Path, transcript: Sequence[TranscriptSegment]) -> None:
    save_json(path, transcript)


def read_transcript(path: Path) -> list[TranscriptSegment]:
    return [
        TranscriptSegment(raw["start"], raw["end"], raw["text"], [Word(**w) for w in raw.get("words", [])])
        for raw in json.loads(path.read_text(encoding="utf-8"))
    ]


def _read_side_file(path: Path, kind: type) -> list | None:
    """The items of a side file, or None when it is missing or damaged (it is then made again)."""
    try:
        return [kind(**raw) for raw in json.loads(path.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError):
        return None


def pool_audio_windows(windows: Sequence[Any], tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Whisper windows -> (W, La, Da) masked bin means, (W,) valid counts, (W,) starts.

    One window at a time: stacking a 30-minute video's states (60 x 1500 x 512 floats) and masking them made three
    184 MB copies at once."""
    bins = torch.stack([_masked_bin_means(w, tokens) for w in windows])
    valid = torch.tensor([int(w.valid) for w in windows], dtype=torch.int32)
    starts = torch.tensor([float(w.start) for w in windows], dtype=torch.float32)
    return bins, valid, starts


def _masked_bin_means(window: Any, tokens: int) -> torch.Tensor:
    """(S, Da) states of one window -> (La, Da) means of each bin's states over real audio (padding masked)."""
    states = torch.as_tensor(window.states, dtype=torch.float32)
    length = states.shape[0]
    per_bin = length // tokens
    mask = (torch.arange(length) < int(window.valid)).float()  # (S,)
    sums = (states * mask[:, None]).reshape(tokens, per_bin, -1).sum(1)
    counts = mask.reshape(tokens, per_bin).sum(1).clamp_min(1.0)
    return (sums / counts[:, None]).half()


def save_features(folder: Path, features: VideoFeatures, with_transcript: bool = True) -> None:
    from safetensors.torch import save_file

    tensors_path, transcript_path = cache_paths(folder, features.key)
    tensors = {
        "frame_times": features.frame_times,
        "visual_global": features.visual_global,
        "visual_local": features.visual_local,
        "class_index": features.class_index,
        "class_prob": features.class_prob,
    }
    if features.image_embeds is not None:
        tensors["image_embeds"] = features.image_embeds
    if features.audio_bins is not None:
        assert features.audio_valid is not None and features.audio_starts is not None
        tensors.update(audio_bins=features.audio_bins, audio_valid=features.audio_valid)
        tensors["audio_starts"] = features.audio_starts
    metadata = {"duration": repr(features.duration), "version": str(FORMAT_VERSION), "key": features.key}
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
    transcript = read_transcript(transcript_path) if transcript_path.is_file() else []
    return VideoFeatures(
        key=digest,
        duration=float(meta["duration"]),
        has_audio="audio_bins" in t,
        frame_times=t["frame_times"],
        visual_global=t["visual_global"],
        visual_local=t["visual_local"],
        class_index=t["class_index"],
        class_prob=t["class_prob"],
        audio_bins=t.get("audio_bins"),
        audio_valid=t.get("audio_valid"),
        audio_starts=t.get("audio_starts"),
        transcript=transcript,
        image_embeds=t.get("image_embeds"),
    )
