"""Audio backbone for damo-tiny: Whisper-base in CTranslate2 format (frozen encoder states, and transcripts).

The weights ship split across two packages; `weights.assembled_dir` concatenates and verifies them once into the cache.
One `WhisperBackbone` load serves both the encoder (per-window states for the DaMO audio stream) and the transcriber.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from damo_cli.cards import BackboneSpec
from damo_cli.encoders.weights import assembled_dir, threads
from damo_cli.errors import ModelError

# How transcripts are decoded; part of every cache key that stores a transcript, so changing it retranscribes.
TRANSCRIBE_SETTINGS = "greedy-t0-vad-words"


@dataclass
class AudioWindowStates:
    start: float  # absolute seconds of the window's first sample
    states: np.ndarray  # (states_per_window, D) float32 encoder states for the padded 30 s window
    valid: int  # how many leading states cover real audio (the rest encode padding and must be masked)


@dataclass
class Word:
    start: float
    end: float
    text: str
    probability: float


@dataclass
class TranscriptSegment:
    start: float
    end: float
    text: str
    words: list[Word]


class WhisperBackbone:
    def __init__(self, backbone: BackboneSpec, device: str = "cpu") -> None:
        if backbone.kind != "whisper-ct2":
            raise ModelError(f"WhisperBackbone loads CTranslate2 Whisper, not '{backbone.kind}'")
        from faster_whisper import WhisperModel

        self.folder = assembled_dir(backbone, "whisper-base-ct2")
        self.sample_rate = int(backbone.param("sample_rate"))
        self.window_seconds = float(backbone.param("window_seconds"))
        self.states_per_window = int(backbone.param("states_per_window"))
        self.dim = int(backbone.param("feature_dim"))
        ct2_device = "cuda" if device.startswith("cuda") else "cpu"  # CTranslate2 has no MPS backend
        compute_type = "float16" if ct2_device == "cuda" else "int8"
        self.model = WhisperModel(
            str(self.folder), device=ct2_device, compute_type=compute_type, cpu_threads=threads(), local_files_only=True
        )

    @cached_property
    def _features(self):  # noqa: ANN202 - faster_whisper's FeatureExtractor
        from faster_whisper.feature_extractor import FeatureExtractor

        return FeatureExtractor(feature_size=80, sampling_rate=self.sample_rate, chunk_length=int(self.window_seconds))

    def encode(self, samples: np.ndarray, start: float = 0.0) -> list[AudioWindowStates]:
        """16 kHz mono float32 -> encoder states per 30 s window (the last window padded, with `valid` marking it)."""
        return list(self.iter_encode(samples, start))

    def iter_encode(self, samples: np.ndarray, start: float = 0.0) -> Iterator[AudioWindowStates]:
        """`encode`, one window at a time: a caller that pools each window keeps one window's states (3 MB), not
        a ten-minute piece's (60 MB)."""
        _check_mono(samples)
        window = int(self.window_seconds * self.sample_rate)
        frames_per_window = window // 160  # mel hop of 10 ms
        for offset in range(0, max(len(samples), 1), window):
            chunk = samples[offset : offset + window].astype(np.float32, copy=False)
            if len(chunk) == 0:
                break
            mel = self._features(chunk, padding=0)[:, :frames_per_window]  # (80, <=3000)
            mel = np.pad(mel, ((0, 0), (0, frames_per_window - mel.shape[1])))
            states = np.asarray(self.model.encode(mel[None].astype(np.float32)))  # (1, 1500, 512)
            valid = min(self.states_per_window, math.ceil(len(chunk) / window * self.states_per_window))
            yield AudioWindowStates(start + offset / self.sample_rate, states[0].astype(np.float32), valid)

    def language_of(self, windows: list[AudioWindowStates]) -> str | None:
        """The spoken language, from encoder states already computed (None: no windows).

        Given no language, faster-whisper runs the encoder over the first 30 s once more just to detect it (a third
        encoder pass beside damo's features and the transcription's own): here one decoder step per window names it.
        Each language's probability is summed over the windows, so speech outweighs the diffuse guesses of silence.
        """
        totals: dict[str, float] = {}
        for window in windows:
            self.add_language_scores(window, totals)
        return most_likely_language(totals)

    def add_language_scores(self, window: AudioWindowStates, totals: dict[str, float]) -> None:
        """Add one window's language probabilities to `totals` (`language_of`, a window at a time)."""
        import ctranslate2

        states = ctranslate2.StorageView.from_array(np.ascontiguousarray(window.states[None], dtype=np.float32))
        for token, probability in self.model.model.detect_language(states)[0]:
            totals[token] = totals.get(token, 0.0) + probability

    def transcribe(
        self, samples: np.ndarray, language: str | None = None, beam_size: int = 1
    ) -> list[TranscriptSegment]:
        """Timestamped transcript; Silero VAD drops non-speech first, so silence and tones give no invented text.

        Greedy decoding by default: on 2 CPU cores it was ~1.5x faster than beam 5 with the same words on speech.
        Temperature 0 only (TRANSCRIBE_SETTINGS): Whisper's fallback re-decodes a segment by sampling when its text
        compresses too well, which real repeated speech does; measured on a 60 s clip of looped speech it took 31-33 s
        instead of 6 s and gave a different transcript on every run. The same audio now gives the same words.
        """
        _check_mono(samples)
        if len(samples) == 0:
            return []
        bound_vad_batches()
        segments, _info = self.model.transcribe(
            samples.astype(np.float32, copy=False),
            language=language,
            vad_filter=True,
            word_timestamps=True,
            beam_size=beam_size,
            condition_on_previous_text=False,
            temperature=0.0,
        )
        result = []
        for seg in segments:
            words = [
                Word(float(w.start), float(w.end), w.word.strip(), float(w.probability)) for w in (seg.words or [])
            ]
            text = seg.text.strip()
            if text:
                result.append(TranscriptSegment(float(seg.start), float(seg.end), text, words))
        return result


VAD_ROWS = 1000  # 32 ms frames per Silero VAD run: 32 s of audio


class _RowBatchedSession:
    """Silero VAD's ONNX session, run VAD_ROWS frames at a time with its LSTM state (h, c) carried between runs.

    faster-whisper hands the VAD up to 10,000 frames (5 min 20 s) per run: on a 10-minute piece of a long video that
    held ~176 MB of activations at once, the largest transient of `damo index`. Carried state makes the smaller runs
    give the same probabilities bit for bit (the model's frames are independent before its LSTM, which reads them
    in order); measured on 10 minutes of audio: peak +41 MB instead of +176, 1.1 s instead of 1.3 s
    (tests/test_backbones.py checks the speech stretches are unchanged)."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def run(self, output_names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        frames, h, c = feeds["input"], feeds["h"], feeds["c"]
        probabilities = []
        for first in range(0, len(frames), VAD_ROWS):
            out, h, c = self.session.run(output_names, {"input": frames[first : first + VAD_ROWS], "h": h, "c": c})
            probabilities.append(out)
        return [np.concatenate(probabilities, 0) if probabilities else np.zeros((0,), np.float32), h, c]

    def __getattr__(self, name: str) -> Any:  # get_inputs() and the rest: the session's own
        return getattr(self.session, name)


def bound_vad_batches() -> None:
    """Make faster-whisper's (shared, cached) Silero VAD run in VAD_ROWS-frame batches; left as it is when its
    shape is not the one this was measured on (another faster-whisper)."""
    try:
        from faster_whisper.vad import get_vad_model
    except ImportError:
        return
    model = get_vad_model()
    session = getattr(model, "session", None)
    if session is None or isinstance(session, _RowBatchedSession):
        return
    try:
        names = [i.name for i in session.get_inputs()]
    except Exception:  # noqa: BLE001 - not an ONNX Runtime session: leave it alone
        return
    if names == ["input", "h", "c"]:
        model.session = _RowBatchedSession(session)


def most_likely_language(totals: dict[str, float]) -> str | None:
    """The language with the most summed probability ("<|en|>" -> "en"); None when nothing was heard."""
    if not totals:
        return None
    return max(totals, key=totals.__getitem__).strip("<|>")


def split_at_pauses(segments: list[TranscriptSegment], pause: float) -> list[TranscriptSegment]:
    """Whisper's segments cut where the speaker stops for `pause` seconds or more (from the word times).

    Whisper groups by its 30 s decoding context, not by utterance: two sentences said 8 s apart, with a beep between
    them, came back as one 10 s line, so a search for either found the whole 10 s. A segment without such a pause
    is kept as it is."""
    out: list[TranscriptSegment] = []
    for seg in segments:
        pieces: list[list[Word]] = []
        for word in seg.words:
            if pieces and word.start - pieces[-1][-1].end < pause:
                pieces[-1].append(word)
            else:
                pieces.append([word])
        if len(pieces) <= 1:
            out.append(seg)
            continue
        for words in pieces:
            text = " ".join(w.text for w in words if w.text).strip()
            if text:
                out.append(TranscriptSegment(words[0].start, words[-1].end, text, words))
    return out


def _check_mono(samples: np.ndarray) -> None:
    if samples.ndim != 1:
        raise ModelError(f"audio must be mono 16 kHz samples shaped (T,), got {tuple(samples.shape)}")
