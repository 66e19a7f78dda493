"""Training videos cut from hand-labelled real clips: `damo data compose-real`.

A real-mix video is 1-4 whole real clips played one after another (each resized to the output size, its audio kept,
silence where a clip has none). Its labels come from construction and from the clips' hand-written labels
(data/real-clips/): every moment of every clip, shifted by where the clip starts, and each clip's summary over the
clip's whole span. `augmented.jsonl` holds descriptive QA about each clip ("what happens from 4.0 s to 9.5 s?" ->
the summary; the clip's open questions with their answers), for stages 3-4.

Frames are resized without cropping: the visual encoder squashes every frame to a square anyway, so a clip's frames
reach the model with the same geometry here as when `damo ask` reads the original file. Only clips whose labels say
`split: train` are accepted, and each clip's sha256 is checked against its label before it is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from damo_cli.data.compose import ComposeSettings, write_jsonl, write_mp4
from damo_cli.data.errors import DataError
from damo_cli.integrity import atomic_dir, sha256_file

FORMAT = "damo-real-mix/1"


@dataclass
class RealClip:
    file: str
    path: Path
    sha256: str
    duration: float
    moments: list[tuple[str, tuple[float, float], str]] = field(default_factory=list)  # (query, window, kind)
    summary: str = ""
    questions: list[tuple[str, str]] = field(default_factory=list)  # (question, answer)


def load_real_clips(moments_file: Path, clips_dir: Path, labels_file: Path | None = None) -> list[RealClip]:
    """Train-split clips named by a moments file (the project's schema + `sha256`, `split`), verified on disk."""
    clips: dict[str, RealClip] = {}
    for number, line in enumerate(Path(moments_file).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("split") != "train":
            raise DataError(f"{moments_file}:{number}: {row.get('vid')} is not in the train split (only train mixes)")
        clip = clips.get(row["vid"])
        if clip is None:
            path = Path(clips_dir) / row["vid"]
            clip = clips[row["vid"]] = RealClip(row["vid"], path, row["sha256"], float(row["duration"]))
        for start, end in row["relevant_windows"]:
            clip.moments.append((row["query"], (float(start), float(end)), row.get("kind", "visual")))
    if labels_file is not None:
        for line in Path(labels_file).read_text(encoding="utf-8").splitlines():
            label = json.loads(line) if line.strip() else None
            if label and label["file"] in clips:
                clip = clips[label["file"]]
                clip.summary = label.get("summary", "")
                clip.questions = [(q["question"], q["answer"]) for q in label.get("questions", [])]
    for clip in clips.values():
        if not clip.path.is_file():
            raise DataError(f"real clip not found: {clip.path}")
        if sha256_file(clip.path) != clip.sha256:
            raise DataError(f"{clip.path} does not match the sha256 of its labels")
    if not clips:
        raise DataError(f"{moments_file} names no clips")
    return sorted(clips.values(), key=lambda c: c.file)


def _clip_media(clip: RealClip, width: int, height: int, fps: int, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames (N, H, W, 3) uint8, audio (N / fps * rate,) float32) of a whole clip at the output's rates."""
    from damo_cli.media.audio import load_audio
    from damo_cli.media.frames import sample_frames

    batch = sample_frames(clip.path, fps=fps, size=(width, height))
    frames = batch.frames
    samples = int(round(len(frames) / fps * rate))
    audio = load_audio(clip.path, sample_rate=rate)
    if audio is None:
        audio = np.zeros(samples, dtype=np.float32)
    audio = np.pad(audio[:samples], (0, max(0, samples - len(audio))))
    return frames, audio.astype(np.float32)


def _frames_of(clips: Sequence[RealClip], media: dict[str, tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
    """The clips' frames in turn, one at a time (no copy of the whole video)."""
    for clip in clips:
        yield from media[clip.file][0]


def _seconds(value: float) -> str:
    return f"{value:.1f} s"


def compose_real_mix(
    out_dir: Path,
    clips: Sequence[RealClip],
    count: int,
    seed: int,
    *,
    max_clips: int = 4,
    settings: ComposeSettings | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> Path:
    """Write `count` real-mix videos with annotations.jsonl, augmented.jsonl and manifest.json into `out_dir`,
    encoded as `damo data compose` encodes (`settings`: its size, frame rate, sample rate and quality).

    Video i depends only on (seed, i) and the clips; the folder is built beside `out_dir` and renamed into place.
    """
    settings = settings or ComposeSettings()
    width, height, fps, sample_rate = settings.width, settings.height, settings.fps, settings.sample_rate
    if count < 1:
        raise DataError("compose at least one video")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DataError(f"{out_dir} exists and is not empty; choose another path")
    media: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    annotations: list[dict] = []
    augmented: list[dict] = []
    videos: list[dict] = []
    with atomic_dir(out_dir) as tmp:
        (tmp / "videos").mkdir()
        for index in range(count):
            rng = np.random.default_rng([seed, index])
            n = int(rng.integers(1, min(max_clips, len(clips)) + 1))
            picked = [clips[k] for k in rng.choice(len(clips), size=n, replace=False)]
            vid = f"real-mix-s{seed}-{index:04d}"
            spans = []
            offset = 0.0
            for clip in picked:
                if clip.file not in media:
                    media[clip.file] = _clip_media(clip, width, height, fps, sample_rate)
                length = len(media[clip.file][0]) / fps
                spans.append((clip, offset, offset + length))
                offset += length
            duration = round(offset, 3)
            audio = np.concatenate([media[clip.file][1] for clip in picked])
            write_mp4(_frames_of(picked, media), audio, sample_rate, fps, tmp / "videos" / f"{vid}.mp4", settings)
            q = 0
            for clip, start, end in spans:
                rows = [(query, window, kind) for query, window, kind in clip.moments]
                if clip.summary:
                    rows.append((clip.summary, (0.0, end - start), "visual"))
                for query, (a, b), kind in rows:
                    a, b = min(start + a, end), min(start + b, end)
                    if b - a < 0.1:
                        continue
                    q += 1
                    annotations.append({"qid": f"{vid}#q{q}", "vid": vid, "query": query, "duration": duration,
                                        "relevant_windows": [[round(a, 2), round(b, 2)]], "kind": kind,
                                        "source": clip.file})  # fmt: skip
                span = f"from {_seconds(start)} to {_seconds(end)}"
                if clip.summary:
                    augmented.append({"vid": vid, "turns": [
                        {"role": "user", "content": f"What happens {span}?"},
                        {"role": "assistant", "content": clip.summary}]})  # fmt: skip
                for question, answer in clip.questions:
                    asked = question[0].upper() + question[1:] if n == 1 else f"{span[0].upper()}{span[1:]}, {question}"
                    reply = answer[0].upper() + answer[1:]
                    augmented.append({"vid": vid, "turns": [
                        {"role": "user", "content": asked},
                        {"role": "assistant", "content": reply if reply.endswith(".") else reply + "."}]})  # fmt: skip
            videos.append(
                {
                    "vid": vid,
                    "duration": duration,
                    "clips": [{"file": c.file, "start": round(s, 3), "end": round(e, 3)} for c, s, e in spans],
                }
            )
            if progress is not None:
                progress(index + 1, count, vid)
        write_jsonl(tmp / "annotations.jsonl", annotations)
        write_jsonl(tmp / "augmented.jsonl", augmented)
        write_jsonl(tmp / "clips.jsonl", videos)
        manifest = {
            "format": FORMAT, "seed": seed, "count": count, "queries": len(annotations), "max_clips": max_clips,
            "settings": asdict(settings),
            "clips": [{"file": c.file, "sha256": c.sha256} for c in clips],
            "files": {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()},
        }  # fmt: skip
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out_dir
