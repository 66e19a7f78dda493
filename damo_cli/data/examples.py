"""Generated media whose contents are known: a slide video with a caption and a stretch of music at given times.

The example of `make demo` (examples/slides_music.mp4, rebuilt by scripts/make_examples.py) and the named-evidence
tests' fixture: on-screen text and sound events have exact ground truth here, which real footage cannot give.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

RATE = 16000
SIZE = (640, 360)  # width, height
FPS = 10


def music(seconds: float, seed: int = 0) -> np.ndarray:
    """Plucked notes of a C major scale, four per second, with a bass chord on every beat: music to any listener."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * RATE), np.float32)
    scale = [261.6, 293.7, 329.6, 349.2, 392.0, 440.0, 493.9, 523.3]
    t = np.arange(int(0.5 * RATE)) / RATE
    for i in range(int(seconds / 0.25)):
        chord = [scale[rng.integers(8)]] + ([scale[0] / 2, scale[4] / 2] if i % 4 == 0 else [])
        tone = sum(0.6**h * np.sin(2 * np.pi * f * (h + 1) * t) for f in chord for h in range(5)) * np.exp(-4 * t)
        start = int(i * 0.25 * RATE)
        end = min(len(out), start + len(tone))
        out[start:end] += 0.15 * tone[: end - start]
    return out


def slide_frames(seconds: float, caption: str, shown: tuple[float, float]) -> list[np.ndarray]:
    """A slowly moving coloured background and a drifting disc; `caption` in white while `shown` [start, end)."""
    import cv2

    width, height = SIZE
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(int(round(seconds * FPS))):
        t = i / FPS
        img = np.zeros((height, width, 3), np.uint8)
        img[..., 0] = (60 + 40 * np.sin(xx / 80 + t * 0.3)).astype(np.uint8)
        img[..., 1] = (70 + 30 * np.cos(yy / 60)).astype(np.uint8)
        img[..., 2] = 90
        cv2.circle(img, (int(100 + 15 * t), 250), 30, (200, 180, 40), -1)
        if shown[0] <= t < shown[1]:
            cv2.putText(img, caption, (40, 160), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (255, 255, 255), 3)
        frames.append(img)
    return frames


def slide_soundtrack(seconds: float, music_span: tuple[float, float] | None) -> np.ndarray:
    """Faint noise, with music over `music_span`."""
    audio = np.random.default_rng(1).normal(0, 0.003, int(seconds * RATE)).astype(np.float32)
    if music_span is not None:
        start, end = (int(s * RATE) for s in music_span)
        audio[start:end] += music((end - start) / RATE)
    return audio


def write_video(path: Path, frames: list[np.ndarray], audio: np.ndarray | None, fps: int = FPS) -> Path:
    """H.264 (and AAC when `audio` is given) through the imageio-ffmpeg binary."""
    import imageio_ffmpeg
    import soundfile

    height, width = frames[0].shape[:2]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{width}x{height}", "-r", str(fps), "-i", "-"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        if audio is not None:
            wav = Path(tmp) / "audio.wav"
            soundfile.write(wav, audio, RATE)
            cmd += ["-i", str(wav), "-c:a", "aac", "-b:a", "64k", "-shortest"]
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)]
        subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def slide_video(
    path: Path,
    seconds: float = 30.0,
    caption: str = "QUARTERLY RESULTS 2026",
    shown: tuple[float, float] = (5.0, 8.0),
    music_span: tuple[float, float] | None = (10.0, 20.0),
) -> Path:
    return write_video(path, slide_frames(seconds, caption, shown), slide_soundtrack(seconds, music_span))
