"""What is in a media file: streams, duration, display size, rotation, frame-rate regularity (PyAV; no ffprobe).

All times in this package are seconds from the file's origin: the container's start time (the earliest stream
start). For ordinary MP4/MOV files this is 0 and equals each stream's start; for MPEG-TS it removes the arbitrary
clock offset. Using one origin for audio and video keeps their timestamps comparable.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from damo_cli.errors import CorruptMediaError, MediaError, NotMediaError
from damo_cli.media.validate import check_file, display_name, open_failure

# Demuxers for which decord 0.6 (FFmpeg 4.1) was checked to give correct per-frame timestamps after seeking.
# MPEG-TS and AVI were checked and found wrong (shifted frames, garbage timestamps): PyAV decodes those.
DECORD_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
DECORD_CODECS = frozenset({"h264", "hevc", "mpeg4"})

# Packets inspected to judge whether the frame rate is variable when the container has no full index.
_VFR_SCAN_PACKETS = 600
# Formats that hold one still picture: ffmpeg opens them as a one-frame "video", which is not what a user means.
_STILL_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe", "jpegxl_pipe")


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    container: str  # FFmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    duration: float  # seconds, the longest stream (audio-only files too)
    has_video: bool
    has_audio: bool
    width: int | None  # display size: after rotation
    height: int | None
    fps: float | None  # average frame rate
    num_frames: int | None  # from the container index; estimated as duration * fps where the container has none
    rotation: int  # degrees counter-clockwise (0/90/180/270) that frames are turned to stand upright
    variable_frame_rate: bool
    video_codec: str | None
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None


@dataclass(frozen=True)
class Probe:
    """`MediaInfo` plus what the decoders need and users do not (internal to `damo_cli.media`)."""

    info: MediaInfo
    origin: float  # container start, seconds in stream clock; subtract it from every pts
    video_start: float | None  # first frame pts, from origin
    video_time_base: Fraction | None  # seconds per pts tick of the video stream
    video_stream_start: int | None  # the video stream's start_time in ticks (decord counts from it)
    video_end: float | None  # end of the video stream, from origin
    audio_end: float | None  # end of the audio stream, from origin; None when unknown
    coded_size: tuple[int, int] | None  # (width, height) as stored, before rotation
    thumb: np.ndarray | None  # tiny grey thumbnail of the upright first frame (checks decord's orientation)
    keyframes: np.ndarray | None  # keyframe times from the container index, from origin (seek decisions)
    decord_ok: bool  # container and codec are ones decord is known to handle correctly


def probe(path: str | Path) -> MediaInfo:
    """Describe a media file; raises a typed `MediaError` (one line naming the file) for anything unusable."""
    return probe_internal(path).info


def probe_internal(path: str | Path) -> Probe:
    p, head = check_file(path)
    st = p.stat()
    return _probe_cached(str(path), str(p), st.st_mtime_ns, st.st_size, head)


@functools.lru_cache(maxsize=32)
def _probe_cached(shown: str, real: str, mtime_ns: int, size: int, head: bytes) -> Probe:
    # Keyed by mtime and size so that a file rewritten in place is probed again.
    try:
        container = av.open(real, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise open_failure(shown, head, exc) from None
    try:
        return _describe(container, shown, Path(shown).expanduser(), size)
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, ZeroDivisionError) as exc:
        raise CorruptMediaError(f"{display_name(shown)}: cannot be read; the file is corrupt ({_why(exc)})") from None
    finally:
        container.close()


def _why(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:120]


def _seconds(value: int | None, tb: Fraction | None) -> float | None:
    if value is None or tb is None:
        return None
    return float(value * tb)


def is_cover_art(stream: av.stream.Stream) -> bool:
    # An MP3/M4A's album cover is a one-picture "video" stream; it is not video content.
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def _describe(container: av.container.InputContainer, shown: str, path: Path, size: int) -> Probe:
    name = display_name(shown)
    fmt = container.format.name
    video = next((s for s in container.streams.video if not is_cover_art(s)), None)
    audio = next(iter(container.streams.audio), None)
    if video is None and audio is None:
        raise NotMediaError(f"{name}: not a media file (no audio or video stream)")
    if video is not None and fmt in _STILL_IMAGE_FORMATS:
        raise NotMediaError(f"{name}: is a still image, not a video or audio file")

    _check_not_truncated(container, name, size)

    origin = container.start_time / av.time_base if container.start_time is not None else 0.0
    has_duration = container.duration is not None and container.duration > 0
    container_end = origin + container.duration / av.time_base if has_duration else None

    v_fields: dict[str, object] = {
        "width": None,
        "height": None,
        "fps": None,
        "num_frames": None,
        "rotation": 0,
        "variable_frame_rate": False,
        "video_codec": None,
    }
    video_start = video_end = video_tb = video_stream_start = None
    coded_size = thumb = keyframes = None
    decord_ok = False
    if video is not None:
        tb = video.time_base
        fps = _rate(video.average_rate) or _rate(video.guessed_rate) or _rate(video.base_rate)
        first, rotation = _first_video_frame(container, video, name)
        start = _seconds(video.start_time, tb)
        if start is None:
            start = first.time if first.time is not None else origin
        dur = _seconds(video.duration, tb)
        end = start + dur if dur else container_end
        if end is None:
            raise CorruptMediaError(f"{name}: the video stream has no duration; the file is corrupt")
        video_start = (first.time if first.time is not None else start) - origin
        video_end = end - origin
        video_tb = tb
        video_stream_start = video.start_time
        coded_size = (first.width, first.height)
        upright = np.rot90(first.to_ndarray(format="rgb24"), rotation // 90)
        thumb = grey_thumbnail(upright)
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        times = _packet_times(container, video)
        keyframes = _keyframe_times(video, origin)
        num_frames = video.frames if video.frames > 0 else None
        if num_frames is None and fps:
            num_frames = max(1, round((video_end - video_start) * fps))  # estimate: no per-frame index
        codec = _codec_name(video)
        v_fields = {
            "width": width,
            "height": height,
            "fps": fps,
            "num_frames": num_frames,
            "rotation": rotation,
            "variable_frame_rate": _is_variable(times),
            "video_codec": codec,
        }
        decord_ok = fmt in DECORD_CONTAINERS and codec in DECORD_CODECS

    a_fields: dict[str, object] = {"audio_codec": None, "audio_sample_rate": None, "audio_channels": None}
    audio_end = None
    if audio is not None:
        a_start = _seconds(audio.start_time, audio.time_base)
        a_dur = _seconds(audio.duration, audio.time_base)
        a_start = origin if a_start is None else a_start
        if a_dur:
            audio_end = a_start + a_dur - origin
        elif container_end is not None:
            audio_end = container_end - origin
        cc = audio.codec_context
        a_fields = {
            "audio_codec": _codec_name(audio),
            "audio_sample_rate": int(cc.sample_rate) if cc.sample_rate else None,
            "audio_channels": int(cc.channels) if cc.channels else None,
        }
        if video is None:
            _first_audio_frame(container, audio, name)  # an audio file must decode, or it is corrupt

    ends = [e for e in (video_end, audio_end) if e is not None]
    if not ends and container_end is not None:
        ends.append(container_end - origin)
    duration = max(ends) if ends else 0.0
    info = MediaInfo(
        path=path,
        container=fmt,
        duration=float(duration),
        has_video=video is not None,
        has_audio=audio is not None,
        **v_fields,  # type: ignore[arg-type]
        **a_fields,  # type: ignore[arg-type]
    )
    return Probe(
        info=info,
        origin=origin,
        video_start=video_start,
        video_time_base=video_tb,
        video_stream_start=video_stream_start,
        video_end=video_end,
        audio_end=audio_end,
        coded_size=coded_size,
        thumb=thumb,
        keyframes=keyframes,
        decord_ok=decord_ok,
    )


def _codec_name(stream: av.stream.Stream) -> str:
    # The format's name ("av1"), not the decoder's ("libdav1d").
    codec = stream.codec_context.codec
    return str(getattr(codec, "canonical_name", None) or codec.name)


def _rate(rate: Fraction | None) -> float | None:
    if rate is None or rate <= 0:
        return None
    value = float(rate)
    return value if math.isfinite(value) and value < 10_000 else None


def _check_not_truncated(container: av.container.InputContainer, name: str, size: int) -> None:
    """MP4/MOV index every sample with its byte offset; samples beyond the end of the file mean the file was cut.
    (A cut MP4 whose index sits at the end does not open at all; this catches the "fast start" layout.)"""
    needed = 0
    for stream in container.streams:
        try:
            entries = stream.index_entries
            n = len(entries)
        except (AttributeError, TypeError):
            return
        for i in range(max(0, n - 4), n):  # the last few entries hold the highest offsets
            e = entries[i]
            needed = max(needed, int(e.pos) + int(e.size))
    if needed > size:
        missing = 100.0 * (needed - size) / needed
        raise CorruptMediaError(
            f"{name}: the file is truncated ({size:,} bytes, its index needs {needed:,}; about {missing:.0f}% is "
            "missing); was the copy or recording interrupted?"
        )


def _rotation_of(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
    """Counter-clockwise quarter turns that make the picture upright, in degrees (0/90/180/270)."""
    angle: float | None = None
    try:
        angle = float(frame.rotation)  # PyAV >= 14: read from the display matrix, counter-clockwise
    except (AttributeError, TypeError, ValueError):
        angle = None
    if angle is None:
        angle = _display_matrix_angle(frame)
    if not angle:
        tag = stream.metadata.get("rotate")  # old muxers: a clockwise "rotate" tag
        try:
            angle = -float(tag) if tag else 0.0
        except ValueError:
            angle = 0.0
    if angle is None or not math.isfinite(angle):
        return 0
    return int(round(angle / 90.0)) % 4 * 90


def _display_matrix_angle(frame: av.VideoFrame) -> float | None:
    # Same formula as libavutil's av_display_rotation_get: the matrix is 9 int32, 16.16 fixed point.
    try:
        for sd in frame.side_data:
            if "DISPLAYMATRIX" in str(getattr(sd, "type", "")):
                m = np.frombuffer(bytes(sd), dtype=np.int32, count=9).astype(np.float64) / 65536.0
                s0, s1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
                if s0 == 0 or s1 == 0:
                    return None
                return -math.degrees(math.atan2(m[1] / s1, m[0] / s0))
    except (AttributeError, TypeError, ValueError):
        return None
    return None


def _first_video_frame(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, name: str
) -> tuple[av.VideoFrame, int]:
    try:
        for frame in container.decode(stream):
            return frame, _rotation_of(frame, stream)
    except av.error.FFmpegError as exc:
        raise CorruptMediaError(f"{name}: the video cannot be decoded; the file is corrupt ({_why(exc)})") from None
    raise CorruptMediaError(f"{name}: the video stream holds no decodable frame; the file is corrupt or truncated")


def _first_audio_frame(container: av.container.InputContainer, stream: av.audio.stream.AudioStream, name: str) -> None:
    try:
        for _frame in container.decode(stream):
            return
    except av.error.FFmpegError as exc:
        raise CorruptMediaError(f"{name}: the audio cannot be decoded; the file is corrupt ({_why(exc)})") from None
    raise CorruptMediaError(f"{name}: the audio stream holds no decodable sound; the file is corrupt or truncated")


def _packet_times(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> np.ndarray:
    """Timestamps (stream ticks) of video samples, cheaply: the container's full index when it has one (MP4/MOV),
    else the first packets, read without decoding."""
    try:
        entries = stream.index_entries
        n = len(entries)
    except (AttributeError, TypeError):
        n = 0
    if n > 1 and stream.frames > 0 and n == stream.frames:
        return np.fromiter((entries[i].timestamp for i in range(n)), dtype=np.int64, count=n)
    ticks: list[int] = []
    try:
        container.seek(0)
        for packet in container.demux(stream):
            t = packet.pts if packet.pts is not None else packet.dts
            if t is not None:
                ticks.append(int(t))
            if len(ticks) >= _VFR_SCAN_PACKETS:
                break
    except av.error.FFmpegError:
        pass  # the scan is advisory; decoding will report real corruption where it matters
    return np.asarray(ticks, dtype=np.int64)


def _is_variable(ticks: np.ndarray) -> bool:
    """Variable frame rate: some frame interval differs from the typical one by more than 10% (beyond timestamp
    rounding). Jitter of one or two ticks (29.97 fps in a 1 ms time base) is not variable. A partial scan (no full
    index) can prove variability only within the packets it read."""
    if ticks.size < 3:
        return False
    deltas = np.diff(np.unique(ticks))
    if deltas.size < 2:
        return False
    typical = float(np.median(deltas))
    tolerance = max(2.0, 0.10 * typical)
    return bool(np.any(np.abs(deltas - typical) > tolerance))


def _keyframe_times(stream: av.video.stream.VideoStream, origin: float) -> np.ndarray | None:
    try:
        entries = stream.index_entries
        n = len(entries)
    except (AttributeError, TypeError):
        return None
    if n == 0:
        return None
    tb = stream.time_base
    ticks = [entries[i].timestamp for i in range(n) if entries[i].is_keyframe]
    if not ticks:
        return None
    return np.asarray(sorted(float(t * tb) - origin for t in ticks), dtype=np.float64)


def grey_thumbnail(img: np.ndarray, side: int = 16) -> np.ndarray:
    """A side x side mean-pooled luma picture (float32), to compare orientations of the same frame cheaply.
    Luma weights, not a plain channel mean: pure red and pure blue have the same mean but not the same luma."""
    if img.ndim == 3:
        img = img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    h, w = img.shape
    ys = (np.arange(side + 1) * h) // side
    xs = (np.arange(side + 1) * w) // side
    out = np.empty((side, side), dtype=np.float32)
    for i in range(side):
        band = img[ys[i] : max(ys[i + 1], ys[i] + 1)]
        for j in range(side):
            out[i, j] = band[:, xs[j] : max(xs[j + 1], xs[j] + 1)].mean()
    return out
