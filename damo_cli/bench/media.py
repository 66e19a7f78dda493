"""Generated test media for the bench (the imageio-ffmpeg binary, libx264 + AAC), made fresh in each run.

- `make_clip`: ffmpeg's `testsrc2` pattern (moving, detailed: a fair load for the decoder) at the asked size and frame
  rate, with speech as its sound track when the checkout's example video is there (the bunny speech looped), so
  transcription costs what it costs on a real video; a 440 Hz tone otherwise.
- `make_long`: a long file made cheaply: a one-minute piece of `testsrc2` encoded once, then repeated with stream
  copy (no re-encoding) to the asked length, with a tone as its sound track. The result is a real file of that
  length that every decoder must walk through; only its picture content repeats.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import damo_cli

# Fast to make and to decode: the bench measures damo, not x264.
_X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-crf", "32", "-pix_fmt", "yuv420p")


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def example_speech() -> Path | None:
    """The speech example shipped in the checkout (`examples/bunny_speech.mp4`), if damo runs from one."""
    path = Path(damo_cli.__file__).resolve().parents[1] / "examples" / "bunny_speech.mp4"
    return path if path.is_file() else None


def _run(args: list[str], out: Path) -> Path:
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args, str(out)]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not out.is_file():
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"ffmpeg could not make {out.name}: {tail[0]}")
    return out


def make_clip(out: Path, seconds: float, size: tuple[int, int] = (1280, 720), fps: int = 30) -> tuple[Path, str]:
    """A `seconds`-long H.264 + AAC clip; returns (path, what its sound track is)."""
    w, h = size
    args = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}"]
    speech = example_speech()
    if speech is not None:
        args += ["-stream_loop", "-1", "-i", str(speech)]
        audio = f"speech ({speech.name} looped)"
    else:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]
        audio = "440 Hz tone"
    # A keyframe every 2 s, as phones and cameras write: seeking has something to land on.
    args += ["-map", "0:v", "-map", "1:a", "-t", f"{seconds:g}", *_X264, "-g", str(2 * fps), "-c:a", "aac"]
    return _run(args, out), audio


def make_long(
    out: Path, seconds: float, size: tuple[int, int] = (1280, 720), fps: int = 2, piece_seconds: float = 60.0
) -> Path:
    """A `seconds`-long file built by repeating one encoded piece with stream copy, plus a tone track."""
    w, h = size
    piece_seconds = min(piece_seconds, seconds)
    piece = _run(
        ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}", "-t", f"{piece_seconds:g}", *_X264, "-g", "20"],
        out.with_name(out.stem + "-piece.mp4"),
    )
    repeats = max(0, int(-(-seconds // piece_seconds)) - 1)  # extra plays after the first, rounded up
    args = ["-stream_loop", str(repeats), "-i", str(piece)]
    args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds:g}"]
    args += ["-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-b:a", "32k", "-t", f"{seconds:g}"]
    _run(args, out)
    piece.unlink(missing_ok=True)
    return out
