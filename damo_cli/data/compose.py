"""Composed training videos whose labels come from construction: we put each event there, so we know when it is.

A video (20-36 s by default, 320x180, 15 fps, H.264 + AAC 16 kHz mono) is built from:
- background segments cut from real footage (footage.toml), with scene changes at known times and, sometimes, a
  black gap; each segment is described by its source's descriptions;
- on-screen events: a coloured shape that appears (or moves across) for a known interval, or a big word;
- speech synthesised with espeak-ng at known times (voices and sentences differ between train and held-out);
- sounds at known times: a steady beep, a series of beeps, a burst of noise, a rising sweep; faint noise elsewhere.

Planning (what happens when) is pure and deterministic from (seed, split, index); rendering turns a plan into a file.
Each dataset folder holds `videos/*.mp4`, `annotations.jsonl` (the docs/architecture.md §4 schema + "kind", "split",
"event"), `videos.jsonl` (the full construction record of every video), `transcripts.jsonl` (what was said when) and
`manifest.json` (settings, footage and voices used, sha256 of every file).
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from damo_cli.data import draw, footage, tts
from damo_cli.data.errors import DataError
from damo_cli.integrity import atomic_dir, sha256_file

COMPOSITION_FILE = Path(__file__).with_name("composition.toml")
FORMAT = "damo-composed/1"
SPLIT_CODES = {"train": 0, "heldout": 1}  # part of each video's RNG seed, so splits never share random draws
KINDS = ("visual-scene", "overlay", "speech", "sound")
BLACK = "black"


@dataclass(frozen=True)
class ComposeSettings:
    """Output format and timing of composed videos. All event boundaries fall on `grid` seconds (3 frames at 15 fps,
    3,200 samples at 16 kHz), except speech ends, which are where the utterance really ends."""

    width: int = 320
    height: int = 180
    fps: int = 15
    sample_rate: int = 16_000
    min_seconds: float = 20.0
    max_seconds: float = 36.0
    grid: float = 0.2
    min_segment: float = 3.0
    max_segment: float = 10.0
    black_share: float = 0.3  # share of videos with one black gap
    black_seconds: tuple[float, float] = (1.4, 2.4)
    crf: int = 26
    audio_bitrate: str = "48k"

    def __post_init__(self) -> None:
        frames_per_tick = self.fps * self.grid
        if abs(frames_per_tick - round(frames_per_tick)) > 1e-9 or round(frames_per_tick) < 1:
            raise DataError(f"grid {self.grid} s must be a whole number of frames at {self.fps} fps")
        if self.width % 2 or self.height % 2:
            raise DataError("width and height must be even (H.264 4:2:0)")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise DataError("min_seconds must be positive and not above max_seconds")


@dataclass(frozen=True)
class Sentence:
    split: str
    text: str
    phrase: str


@dataclass
class Vocabulary:
    """composition.toml, checked."""

    voices: dict[str, list[str]]
    sentences: list[Sentence]
    speech: dict[str, list[float]]
    shapes: list[str]
    words: list[str]
    colours: dict[str, tuple[int, int, int]]
    overlay: dict[str, Any]
    sound: dict[str, Any]
    templates: dict[str, list[str]] = field(default_factory=dict)

    def sentences_for(self, split: str) -> list[Sentence]:
        return [s for s in self.sentences if s.split == split]


def load_vocabulary(path: Path = COMPOSITION_FILE) -> Vocabulary:
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    voices: dict[str, list[str]] = {}
    for split in SPLIT_CODES:
        entry = data["voices"][split]
        voices[split] = [f"{b}+{v}" if v else b for b in entry["bases"] for v in entry["variants"]]
    sentences = [Sentence(s["split"], s["text"], s["phrase"]) for s in data["sentence"]]
    for s in sentences:
        if s.phrase not in s.text:
            raise DataError(f"{path.name}: phrase {s.phrase!r} is not part of {s.text!r}")
        if s.split not in SPLIT_CODES:
            raise DataError(f"{path.name}: sentence {s.text!r} has unknown split {s.split!r}")
    overlay = dict(data["overlay"])
    colours = {name: (int(r), int(g), int(b)) for name, (r, g, b) in overlay.pop("colours").items()}
    for shape in overlay["shapes"]:
        if shape not in draw.SHAPES:
            raise DataError(f"{path.name}: unknown shape {shape!r}")
    return Vocabulary(
        voices=voices,
        sentences=sentences,
        speech=data["speech"],
        shapes=list(overlay.pop("shapes")),
        words=list(overlay.pop("words")),
        colours=colours,
        overlay=overlay,
        sound=data["sound"],
        templates=data["templates"],
    )


# ---------------------------------------------------------------------------------------------------------------------
# Planning: every random draw happens here, from one generator per video


@dataclass
class _Source:
    clip: footage.Clip
    path: Path


def _ticks(seconds: float, grid: float) -> int:
    return int(round(seconds / grid))


def _sec(ticks: int, grid: float) -> float:
    return round(ticks * grid, 3)


def _place(
    rng: np.random.Generator, lengths: Sequence[float], total: float, margin: float, min_gap: float, grid: float
) -> list[float] | None:
    """Random non-overlapping starts (on the grid) for events of `lengths`, in the given order, inside
    [margin, total - margin] with at least `min_gap` between events; None when they cannot fit."""
    n = len(lengths)
    free = total - 2 * margin - sum(lengths) - min_gap * (n - 1) - n * grid  # n * grid: room for snapping up
    if n == 0 or free < 0:
        return None if n else []
    shares = rng.dirichlet(np.ones(n + 1)) * free
    starts: list[float] = []
    t = margin + shares[0]
    for i, length in enumerate(lengths):
        start = math.ceil(t / grid - 1e-9) * grid
        starts.append(round(start, 3))
        t = start + length + min_gap + shares[i + 1]
    return starts


def _plan_segments(
    rng: np.random.Generator, sources: list[_Source], total_ticks: int, s: ComposeSettings
) -> list[dict]:
    grid = s.grid
    min_t, max_t = _ticks(s.min_segment, grid), _ticks(s.max_segment, grid)
    black_len = _ticks(rng.uniform(*s.black_seconds), grid) if rng.random() < s.black_share else 0
    black_at = int(rng.uniform(0.2, 0.7) * total_ticks) if black_len else None
    segments: list[dict] = []
    order: list[int] = []
    previous: int | None = None
    t = 0
    while t < total_ticks:
        remaining = total_ticks - t
        if black_at is not None and t >= black_at and remaining >= black_len + min_t:
            segments.append({"start": t, "end": t + black_len, "source": BLACK, "src_start": 0.0, "hflip": False})
            t += black_len
            black_at = None
            continue
        if not order:
            order = [int(i) for i in rng.permutation(len(sources))]
            if len(order) > 1 and order[0] == previous:  # no cut from a source to itself
                order.append(order.pop(0))
        index = order.pop(0)
        source = sources[index]
        src_ticks = int(math.floor(source.clip.usable_seconds / grid + 1e-9))
        longest = max(1, min(max_t, src_ticks))
        if remaining <= longest:
            length = remaining
        else:
            upper = max(1, min(longest, remaining - min_t))
            length = int(rng.integers(min(min_t, upper), upper + 1))
        src_room = source.clip.usable_seconds - length * grid
        src_start = round(source.clip.start + float(rng.uniform(0, max(src_room, 0.0))), 3)
        hflip = bool(rng.random() < 0.3)  # mirror some cuts: more looks from the same footage
        segments.append(
            {"start": t, "end": t + length, "source": source.clip.name, "src_start": src_start, "hflip": hflip}
        )
        previous = index
        t += length
    for i, seg in enumerate(segments):
        seg["id"] = f"scene-{i}"
        seg["start"], seg["end"] = _sec(seg["start"], grid), _sec(seg["end"], grid)
    return segments


def _plan_overlays(rng: np.random.Generator, vocab: Vocabulary, duration: float, s: ComposeSettings) -> list[dict]:
    n = int(rng.integers(2, 4))
    lo, hi = vocab.overlay["seconds"]
    lengths = [_sec(_ticks(rng.uniform(lo, hi), s.grid), s.grid) for _ in range(n)]
    starts = None
    while lengths and (starts := _place(rng, lengths, duration, 0.4, 0.6, s.grid)) is None:
        lengths.pop()
    overlays: list[dict] = []
    used: set[tuple[str, str]] = set()
    scale = s.height / 180.0
    colour_names = list(vocab.colours)
    for i, (start, length) in enumerate(zip(starts or [], lengths, strict=True)):
        colour = colour_names[int(rng.integers(len(colour_names)))]
        record: dict[str, Any] = {"id": f"overlay-{i}", "start": start, "end": round(start + length, 3)}
        if rng.random() < 0.3:
            word = vocab.words[int(rng.integers(len(vocab.words)))]
            while ("word", word) in used:
                word = vocab.words[int(rng.integers(len(vocab.words)))]
            used.add(("word", word))
            glyph_scale = max(2, min(int(round(5 * scale)), (s.width - 24) // (6 * len(word) - 1)))
            mask = draw.word_mask(word, glyph_scale)
            pad = max(4, glyph_scale + 2)
            box_w, box_h = mask.shape[1] + 2 * pad, mask.shape[0] + 2 * pad
            x = int(rng.integers(4, s.width - box_w - 4 + 1))
            y = int(rng.integers(4, s.height - box_h - 4 + 1))
            record.update(
                kind="word", word=word, colour=colour, rgb=list(vocab.colours[colour]), box_rgb=[16, 16, 16],
                glyph_scale=glyph_scale, pad=pad, size=[box_w, box_h], moving=False, path=[[x, y], [x, y]],
            )  # fmt: skip
        else:
            shape = vocab.shapes[int(rng.integers(len(vocab.shapes)))]
            while (colour, shape) in used:
                colour = colour_names[int(rng.integers(len(colour_names)))]
                shape = vocab.shapes[int(rng.integers(len(vocab.shapes)))]
            used.add((colour, shape))
            size = int(round(rng.uniform(*vocab.overlay["size"]) * scale))
            moving = bool(rng.random() < vocab.overlay["moving_share"])
            max_x, max_y = s.width - size - 4, s.height - size - 4
            if moving:  # left to right or back, drifting up or down a little: fully on screen all the time
                x0, x1 = (4, max_x) if rng.random() < 0.5 else (max_x, 4)
                y0, y1 = int(rng.integers(4, max_y + 1)), int(rng.integers(4, max_y + 1))
            else:
                x0 = x1 = int(rng.integers(4, max_x + 1))
                y0 = y1 = int(rng.integers(4, max_y + 1))
            record.update(
                kind="shape", shape=shape, colour=colour, rgb=list(vocab.colours[colour]), size=[size, size],
                moving=moving, path=[[x0, y0], [x1, y1]],
            )  # fmt: skip
        overlays.append(record)
    return overlays


def _plan_audio(
    rng: np.random.Generator, vocab: Vocabulary, split: str, duration: float, s: ComposeSettings
) -> tuple[list[dict], list[dict], dict[str, np.ndarray]]:
    """Speech and sound events, placed one after another with silence between; returns (speech, sounds, samples)."""
    pool = vocab.sentences_for(split)
    voices = vocab.voices[split]
    video_voices = [voices[int(i)] for i in rng.choice(len(voices), size=min(2, len(voices)), replace=False)]
    n_speech = int(rng.integers(2, 4))
    chosen = [pool[int(i)] for i in rng.choice(len(pool), size=min(n_speech, len(pool)), replace=False)]
    events: list[dict] = []
    samples: dict[str, np.ndarray] = {}
    for i, sentence in enumerate(chosen):
        voice = video_voices[int(rng.integers(len(video_voices)))]
        rate = int(rng.integers(vocab.speech["rate"][0], vocab.speech["rate"][1] + 1))
        pitch = int(rng.integers(vocab.speech["pitch"][0], vocab.speech["pitch"][1] + 1))
        level = round(float(rng.uniform(*vocab.speech["level"])), 3)
        wave, _ = tts.synthesize(sentence.text, voice=voice, rate=rate, pitch=pitch, sample_rate=s.sample_rate)
        wave = wave * (level / max(float(np.abs(wave).max()), 1e-6))
        event_id = f"speech-{i}"
        samples[event_id] = wave.astype(np.float32)
        events.append(
            {"id": event_id, "type": "speech", "length": len(wave) / s.sample_rate, "text": sentence.text,
             "phrase": sentence.phrase, "voice": voice, "rate": rate, "pitch": pitch, "level": level}
        )  # fmt: skip
    kinds = ["tone", "beeps", "noise", "sweep"]
    n_sounds = int(rng.integers(1, 3))
    picked = [kinds[int(i)] for i in rng.choice(len(kinds), size=n_sounds, replace=False)]
    if {"tone", "beeps"} <= set(picked):  # "a beep" would be ambiguous with both in one video
        picked.remove("beeps")
    for i, kind in enumerate(picked):
        lo, hi = vocab.sound[f"{kind}_seconds"]
        length = _sec(_ticks(rng.uniform(lo, hi), s.grid), s.grid)
        record: dict[str, Any] = {"id": f"sound-{i}", "type": "sound", "kind": kind, "length": length}
        record["level"] = round(float(rng.uniform(*vocab.sound["level"])), 3)
        if kind in ("tone", "beeps"):
            freqs = vocab.sound["tone_frequencies"]
            record["frequency"] = float(freqs[int(rng.integers(len(freqs)))])
        if kind == "beeps":
            on, off = 0.12, 0.13
            pulses = max(2, int((length + off) // (on + off)))
            record.update(on=on, off=off, pulses=pulses, length=round(pulses * on + (pulses - 1) * off, 3))
        if kind == "sweep":
            record.update(f0=300.0, f1=2400.0)
        events.append(record)
    order = [int(i) for i in rng.permutation(len(events))]
    events = [events[i] for i in order]
    while events and (starts := _place(rng, [e["length"] for e in events], duration, 0.6, 0.8, s.grid)) is None:
        events.pop()  # too long for this video: drop the last one (rare with 24 s or more)
    speech, sounds = [], []
    for event, start in zip(events, starts if events else [], strict=True):
        length = event.pop("length")
        event["start"] = start
        event["end"] = round(start + length, 3)
        (speech if event.pop("type") == "speech" else sounds).append(event)
    speech.sort(key=lambda e: e["start"])
    sounds.sort(key=lambda e: e["start"])
    return speech, sounds, {e["id"]: samples[e["id"]] for e in speech}


def plan_video(
    vid: str, split: str, rng: np.random.Generator, sources: list[_Source], vocab: Vocabulary, s: ComposeSettings
) -> tuple[dict, dict[str, np.ndarray]]:
    """The construction record of one video and the synthesised speech it needs."""
    total_ticks = _ticks(rng.uniform(s.min_seconds, s.max_seconds), s.grid)
    duration = _sec(total_ticks, s.grid)
    segments = _plan_segments(rng, sources, total_ticks, s)
    overlays = _plan_overlays(rng, vocab, duration, s)
    speech, sounds, speech_samples = _plan_audio(rng, vocab, split, duration, s)
    noise_db = round(float(rng.uniform(-56.0, -46.0)), 1)
    plan = {
        "vid": vid,
        "split": split,
        "duration": duration,
        "fps": s.fps,
        "width": s.width,
        "height": s.height,
        "sample_rate": s.sample_rate,
        "noise_floor_dbfs": noise_db,
        "audio_seed": int(rng.integers(2**31)),
        "segments": segments,
        "overlays": overlays,
        "speech": speech,
        "sounds": sounds,
    }
    return plan, speech_samples


# ---------------------------------------------------------------------------------------------------------------------
# Queries: one per event, straight from the construction record


def _merge(windows: list[list[float]]) -> list[list[float]]:
    merged: list[list[float]] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1] + 1e-9:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def queries_for(plan: dict, vocab: Vocabulary, rng: np.random.Generator) -> list[dict]:
    """Grounding queries for every event of a plan, in the docs/architecture.md §4 schema (+ kind, split, event ids)."""
    duration = plan["duration"]
    out: list[dict] = []

    def pick(key: str) -> str:
        options = vocab.templates[key]
        return options[int(rng.integers(len(options)))]

    def add(kind: str, query: str, windows: list[list[float]], events: list[str]) -> None:
        out.append({"query": query, "relevant_windows": windows, "kind": kind, "event": events})

    by_source: dict[str, list[dict]] = {}
    for seg in plan["segments"]:
        by_source.setdefault(seg["source"], []).append(seg)
    clips = {c.name: c for c in footage.registry()}
    for source, segs in sorted(by_source.items(), key=lambda kv: kv[1][0]["start"]):
        windows = _merge([[seg["start"], seg["end"]] for seg in segs])
        if sum(e - s for s, e in windows) > 0.5 * duration:
            continue  # a query answered by most of the video says nothing about grounding
        if source == BLACK:
            query = pick("black")
        else:
            descriptions = clips[source].descriptions
            query = pick("scene").format(desc=descriptions[int(rng.integers(len(descriptions)))])
        add("visual-scene", query, windows, [seg["id"] for seg in segs])
    for o in plan["overlays"]:
        if o["kind"] == "word":
            query = pick("word").format(word=o["word"])
        else:
            query = pick("moving_shape" if o["moving"] else "shape").format(colour=o["colour"], shape=o["shape"])
        add("overlay", query, [[o["start"], o["end"]]], [o["id"]])
    for sp in plan["speech"]:
        add("speech", pick("speech").format(phrase=sp["phrase"]), [[sp["start"], sp["end"]]], [sp["id"]])
    for so in plan["sounds"]:
        add("sound", pick(so["kind"]), [[so["start"], so["end"]]], [so["id"]])
    for i, q in enumerate(out):
        q.update(qid=f"{plan['vid']}-q{i:02d}", vid=plan["vid"], duration=duration, split=plan["split"])
    keys = ("qid", "vid", "query", "duration", "relevant_windows", "kind", "split", "event")
    return [{k: q[k] for k in keys} for q in out]


# ---------------------------------------------------------------------------------------------------------------------
# Rendering


class _FootageFrames:
    """Each source decoded once per run to the output size (centre-cropped to the output aspect), with the
    time of each frame from the clip's first frame."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._cache:
            self._cache[name] = self._decode(path)
        return self._cache[name]

    def _decode(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        import av

        if footage.is_still(path):
            return self._pan(path)
        times: list[float] = []
        frames: list[np.ndarray] = []
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                for index, frame in enumerate(container.decode(stream)):
                    t = frame.time if frame.time is not None else index / float(stream.average_rate or 25)
                    times.append(float(t))
                    frames.append(self._fit(frame))
        except (av.error.FFmpegError, IndexError) as err:
            raise DataError(f"cannot decode footage {path}: {err}") from err
        if not frames:
            raise DataError(f"footage {path} has no video frames")
        stamps = np.asarray(times) - times[0]
        order = np.argsort(stamps, kind="stable")  # presentation order, even if a container delivers otherwise
        return stamps[order], np.stack(frames)[order]

    def _pan(self, path: Path, fps: int = 15, zoom: float = 1.3) -> tuple[np.ndarray, np.ndarray]:
        """A photograph as footage: a slow zoom into its centre over STILL_PAN_SECONDS, so the picture moves a
        little, as filmed footage does, and every part of the pan is a slightly different view."""
        import av

        try:
            with av.open(str(path)) as container:
                rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
        except (av.error.FFmpegError, StopIteration) as err:
            raise DataError(f"cannot decode still image {path}: {err}") from err
        h, w = rgb.shape[:2]
        n = int(round(footage.STILL_PAN_SECONDS * fps))
        frames = []
        for k in range(n):
            scale = 1.0 / (1.0 + (zoom - 1.0) * k / max(n - 1, 1))  # share of the full picture kept on screen
            ch, cw = max(2, int(round(h * scale))), max(2, int(round(w * scale)))
            y0, x0 = (h - ch) // 2, (w - cw) // 2
            frames.append(self._fit_rgb(rgb[y0 : y0 + ch, x0 : x0 + cw]))
        return np.arange(n) / fps, np.stack(frames)

    def _fit(self, frame: Any) -> np.ndarray:
        return self._fit_rgb(frame.to_ndarray(format="rgb24"))

    def _fit_rgb(self, rgb: np.ndarray) -> np.ndarray:
        import av

        h, w = rgb.shape[:2]
        target = self.width / self.height
        if w / h > target:  # too wide: keep the centre columns
            keep = int(round(h * target))
            x0 = (w - keep) // 2
            rgb = rgb[:, x0 : x0 + keep]
        else:
            keep = int(round(w / target))
            y0 = (h - keep) // 2
            rgb = rgb[y0 : y0 + keep]
        resized = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
            width=self.width, height=self.height, interpolation="AREA"
        )
        return resized.to_ndarray(format="rgb24")


def _overlay_position(o: dict, t: float) -> tuple[int, int]:
    (x0, y0), (x1, y1) = o["path"]
    if not o["moving"]:
        return x0, y0
    f = min(max((t - o["start"]) / max(o["end"] - o["start"], 1e-9), 0.0), 1.0)
    return int(round(x0 + (x1 - x0) * f)), int(round(y0 + (y1 - y0) * f))


def overlay_position(o: dict, t: float) -> tuple[int, int]:
    """Top-left pixel of an overlay's box at time t (for tests and tools that check the rendering)."""
    return _overlay_position(o, t)


def _frames(plan: dict, sources: dict[str, Path], cache: _FootageFrames) -> Iterator[np.ndarray]:
    fps, w, h = plan["fps"], plan["width"], plan["height"]
    n_frames = int(round(plan["duration"] * fps))
    masks: dict[str, np.ndarray] = {}
    for o in plan["overlays"]:
        if o["kind"] == "word":
            masks[o["id"]] = draw.word_mask(o["word"], o["glyph_scale"])
        else:
            masks[o["id"]] = draw.shape_mask(o["shape"], o["size"][0])
    segments = plan["segments"]
    seg_index = 0
    for k in range(n_frames):
        t = k / fps
        while seg_index + 1 < len(segments) and t >= segments[seg_index]["end"] - 1e-9:
            seg_index += 1
        seg = segments[seg_index]
        if seg["source"] == BLACK:
            frame = np.zeros((h, w, 3), dtype=np.uint8)
        else:
            stamps, pictures = cache.get(seg["source"], sources[seg["source"]])
            src_t = seg["src_start"] + (t - seg["start"])
            # the frame on screen at src_t: the last one that started at or before it
            i = int(np.clip(np.searchsorted(stamps, src_t + 1e-6, side="right") - 1, 0, len(stamps) - 1))
            frame = pictures[i][:, ::-1].copy() if seg["hflip"] else pictures[i].copy()
        for o in plan["overlays"]:
            if o["start"] - 1e-9 <= t < o["end"] - 1e-9:
                x, y = _overlay_position(o, t)
                if o["kind"] == "word":
                    bw, bh = o["size"]
                    frame[max(0, y) : y + bh, max(0, x) : x + bw] = o["box_rgb"]
                    draw.paint(frame, masks[o["id"]], x + o["pad"], y + o["pad"], tuple(o["rgb"]))
                else:
                    draw.paint(frame, masks[o["id"]], x, y, tuple(o["rgb"]))
        yield frame


def _fade(n: int, sample_rate: int, seconds: float = 0.01) -> np.ndarray:
    """A window that ramps over `seconds` at both ends, so events start and stop without clicks."""
    ramp = min(int(seconds * sample_rate), n // 2)
    env = np.ones(n, dtype=np.float64)
    if ramp > 0:
        edge = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
        env[:ramp] = edge
        env[n - ramp :] = edge[::-1]
    return env


def render_audio(plan: dict, speech_samples: dict[str, np.ndarray]) -> np.ndarray:
    """The soundtrack (float32 mono) of a plan: faint noise, speech and sounds at their planned samples."""
    sr = plan["sample_rate"]
    total = int(round(plan["duration"] * sr))
    rng = np.random.default_rng(plan["audio_seed"])
    audio = rng.normal(0.0, 10 ** (plan["noise_floor_dbfs"] / 20), total)
    for sp in plan["speech"]:
        wave = speech_samples[sp["id"]]
        start = int(round(sp["start"] * sr))
        audio[start : start + len(wave)] += wave[: max(0, total - start)]
    for so in plan["sounds"]:
        start, end = int(round(so["start"] * sr)), min(total, int(round(so["end"] * sr)))
        n = end - start
        t = np.arange(n) / sr
        if so["kind"] == "tone":
            wave = np.sin(2 * np.pi * so["frequency"] * t) * _fade(n, sr)
        elif so["kind"] == "beeps":
            period, on = so["on"] + so["off"], so["on"]
            gate = np.zeros(n)
            for p in range(so["pulses"]):
                a, b = int(round(p * period * sr)), min(n, int(round((p * period + on) * sr)))
                gate[a:b] = _fade(b - a, sr, 0.005)
            wave = np.sin(2 * np.pi * so["frequency"] * t) * gate
        elif so["kind"] == "noise":
            wave = rng.uniform(-1.0, 1.0, n) * 1.2 * _fade(n, sr)  # uniform noise: rms ~0.7 of its peak
            wave = np.clip(wave, -1.0, 1.0)
        elif so["kind"] == "sweep":
            duration = n / sr
            # exponential sweep: phase is the integral of f0 * (f1/f0)^(t/T)
            k = math.log(so["f1"] / so["f0"])
            phase = 2 * np.pi * so["f0"] * duration / k * (np.exp(k * t / duration) - 1)
            wave = np.sin(phase) * _fade(n, sr)
        else:
            raise DataError(f"unknown sound kind {so['kind']!r}")
        audio[start:end] += so["level"] * wave
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def render_video(
    plan: dict,
    speech_samples: dict[str, np.ndarray],
    sources: dict[str, Path],
    out: Path,
    settings: ComposeSettings,
    cache: _FootageFrames | None = None,
) -> Path:
    """Encode a plan into an MP4 (H.264 + AAC mono) with the imageio-ffmpeg binary."""
    cache = cache or _FootageFrames(plan["width"], plan["height"])
    audio = render_audio(plan, speech_samples)
    return write_mp4(_frames(plan, sources, cache), audio, plan["sample_rate"], plan["fps"], out, settings)


def write_mp4(
    frames: Iterable[np.ndarray], audio: np.ndarray, sample_rate: int, fps: int, out: Path, settings: ComposeSettings
) -> Path:
    """(H, W, 3) uint8 RGB frames and mono float audio -> an MP4 (H.264 + AAC mono) at `out`, frames streamed to
    the imageio-ffmpeg binary as they come; the same input gives the same bytes."""
    import soundfile
    from imageio_ffmpeg import get_ffmpeg_exe

    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise DataError(f"no frames to encode into {out.name}")
    height, width = first.shape[:2]
    with tempfile.TemporaryDirectory(prefix="damo-compose-") as tmp_name:
        wav = Path(tmp_name) / "audio.wav"
        soundfile.write(str(wav), audio, sample_rate, subtype="PCM_16")
        log = Path(tmp_name) / "ffmpeg.log"
        cmd = [
            get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
            "-framerate", str(fps), "-i", "-",
            "-i", str(wav),
            "-map", "0:v", "-map", "1:a",
            # one encoder thread: output bytes depend only on the input, and the machine's other users keep a core
            "-c:v", "libx264", "-preset", "veryfast", "-crf", str(settings.crf), "-pix_fmt", "yuv420p",
            "-g", str(2 * fps), "-threads", "1",
            "-c:a", "aac", "-b:a", settings.audio_bitrate, "-ar", str(sample_rate), "-ac", "1",
            "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
            "-movflags", "+faststart", str(out),
        ]  # fmt: skip
        with open(log, "wb") as log_handle:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=log_handle)
            assert proc.stdin is not None
            try:
                proc.stdin.write(first.tobytes())
                for frame in frames:
                    proc.stdin.write(frame.tobytes())
            except BrokenPipeError:
                pass  # ffmpeg stopped early; its log says why
            finally:
                proc.stdin.close()
            code = proc.wait()
        if code != 0 or not out.exists():
            message = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise DataError(f"ffmpeg failed to encode {out.name}: {message[0]}")
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Datasets


def _video_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def normalise_split(split: str) -> str:
    value = split.strip().lower().replace("-", "").replace("_", "")
    if value == "train":
        return "train"
    if value in ("heldout", "test", "val"):
        return "heldout"
    raise DataError(f"split must be 'train' or 'heldout', got {split!r}")


def composable_sources(split: str, names: Sequence[str] | None = None) -> list[_Source]:
    """Verified footage for a split (optionally only the named clips, all of which must be present)."""
    split = normalise_split(split)
    present = {c.name: (c, p) for c, p in footage.available(split)}
    if names is not None:
        wrong = [n for n in names if footage.get_clip(n).split != split]
        if wrong:
            raise DataError(f"footage {', '.join(wrong)} belongs to the other split; {split} videos cannot use it")
        absent = [n for n in names if n not in present]
        if absent:
            raise DataError(f"footage not available here: {', '.join(absent)} (run 'damo data fetch-footage')")
        return [_Source(*present[n]) for n in names]
    if not present:
        missing = ", ".join(c.name for c in footage.missing(split))
        raise DataError(f"no {split} footage is available (missing: {missing}); run 'damo data fetch-footage'")
    return [_Source(c, p) for c, p in present.values()]


def write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        manifest = out_dir / "manifest.json"
        try:
            ours = json.loads(manifest.read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise DataError(f"{out_dir} exists and is not an empty folder or a composed dataset; choose another path")


def compose_dataset(
    out_dir: Path,
    n_videos: int,
    split: str,
    seed: int,
    *,
    settings: ComposeSettings | None = None,
    footage_names: Sequence[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> Path:
    """Compose `n_videos` videos of `split` ("train" or "heldout") into `out_dir`; returns `out_dir`.

    The same seed, split, settings and footage give identical plans, annotations and (with this ffmpeg build)
    identical files; video i does not depend on how many videos are composed. The folder is built beside `out_dir`
    and renamed into place, so an interrupted run leaves no half-written dataset. An existing composed dataset at
    `out_dir` is replaced; any other non-empty folder is refused.
    """
    if n_videos < 1:
        raise DataError("compose at least one video")
    split = normalise_split(split)
    settings = settings or ComposeSettings()
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    vocab = load_vocabulary()
    sources = composable_sources(split, footage_names)
    source_paths = {src.clip.name: src.path for src in sources}
    cache = _FootageFrames(settings.width, settings.height)
    plans, annotations, transcripts = [], [], []
    with atomic_dir(out_dir) as tmp:
        (tmp / "videos").mkdir()
        for index in range(n_videos):
            vid = f"damo-{split}-s{seed}-{index:04d}"
            rng = _video_rng(seed, split, index)
            plan, speech_samples = plan_video(vid, split, rng, sources, vocab, settings)
            plan["file"] = f"videos/{vid}.mp4"
            render_video(plan, speech_samples, source_paths, tmp / plan["file"], settings, cache)
            plans.append(plan)
            annotations.extend(queries_for(plan, vocab, rng))
            transcripts.append(
                {"vid": vid, "duration": plan["duration"],
                 "segments": [{k: sp[k] for k in ("start", "end", "text", "voice")} for sp in plan["speech"]]}
            )  # fmt: skip
            if progress is not None:
                progress(index + 1, n_videos, vid)
        write_jsonl(tmp / "annotations.jsonl", annotations)
        write_jsonl(tmp / "videos.jsonl", plans)
        write_jsonl(tmp / "transcripts.jsonl", transcripts)
        files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {
            "format": FORMAT,
            "split": split,
            "seed": seed,
            "count": n_videos,
            "queries": len(annotations),
            "settings": asdict(settings),
            "footage": [
                {"name": src.clip.name, "sha256": src.clip.sha256, "license": src.clip.license} for src in sources
            ],
            "voices": vocab.voices[split],
            "sentences": [s.text for s in vocab.sentences_for(split)],
            "files": files,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out_dir
