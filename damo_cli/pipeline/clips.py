"""Export search moments as playable clips (H.264 + AAC MP4) with the ffmpeg binary of imageio-ffmpeg."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from damo_cli.errors import DamoError
from damo_cli.integrity import atomic_path

PAD_SECONDS = 0.5  # a little context either side, so a clip does not start mid-gesture


def export_clips(hits: Iterable, out_dir: Path) -> Iterator[Path]:  # hits: SearchHit-like (path, start, end)
    import imageio_ffmpeg

    out_dir.mkdir(parents=True, exist_ok=True)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    for rank, hit in enumerate(hits, start=1):
        stem = re.sub(r"[^\w.-]+", "_", Path(hit.path).stem)[:60]
        target = out_dir / f"{rank:02d}-{stem}-{hit.start:.1f}-{hit.end:.1f}.mp4"
        start = max(0.0, hit.start - PAD_SECONDS)
        duration = hit.end - hit.start + 2 * PAD_SECONDS
        with atomic_path(target) as tmp:
            # Re-encoding (not stream copy) cuts exactly at the moment instead of at the previous keyframe.
            command = [
                ffmpeg, "-v", "error", "-y", "-ss", f"{start:.3f}", "-i", str(hit.path), "-t", f"{duration:.3f}",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-movflags", "+faststart", "-f", "mp4", str(tmp),
            ]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                last = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
                raise DamoError(f"cannot export a clip of {hit.path}: {last}")
        yield target
