"""Frames at chosen times, upright, with the real presentation time of each frame.

Two decoders sit behind one interface:
- PyAV (keyframe-aware seeking, then decoding forward), the default for every format;
- decord (random access) for H.264/HEVC/MPEG-4 in MP4/MOV/MKV when `PREFER_DECORD` is set, with PyAV taking over
  whenever decord fails on a file.

Sampling picks, for each target time t, the latest frame whose pts is <= t (the frame on screen at t), or the first
frame when t precedes it, and reports that frame's own pts, never t and never index / fps, so variable frame rate
files get true times.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import av
import numpy as np

from damo_cli.errors import CorruptMediaError, NoVideoStreamError
from damo_cli.media.probe import Probe, grey_thumbnail, is_cover_art, probe_internal
from damo_cli.media.validate import display_name, native_stderr_captured

log = logging.getLogger("damo.media")

# PyAV first. Measured on the 2-core dev machine through one FrameReader at the index's 2 fps (8 windows of 60 s):
# a 30-min 720p file 2.0 s / 296 MiB peak RSS with PyAV vs 7.5 s / 1,251 MiB with decord; a 60 s 720p30 clip 1.3 s
# vs 2.2 s; 16 uniform frames of the 30-min file 0.3 s vs 0.7 s. decord (which indexes the whole file on open) stays
# behind this switch, tested, for layouts where random access may pay.
PREFER_DECORD = False
_EPS = 1e-4  # seconds: float round-off between a requested time and a pts
_DECORD_CHUNK = 8  # frames per decord batch: bounds the full-resolution frames held at once


@dataclass
class FrameBatch:
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB, upright
    timestamps: np.ndarray  # (N,) float64 seconds: the presentation time of each frame

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])


def sample_frames(
    path: str | Path,
    *,
    fps: float | None = None,
    num_frames: int | None = None,
    start: float = 0.0,
    end: float | None = None,
    size: tuple[int, int] | None = None,
) -> FrameBatch:
    """Frames of [start, end) either every 1/fps seconds or at the centres of `num_frames` equal segments.

    One frame per target time, in time order; when targets are denser than the video's frames the same frame (and
    timestamp) repeats, so `num_frames` always gives exactly that many. `size=(width, height)` resizes the output.
    """
    with FrameReader(path, size=size) as reader:
        return reader.sample(fps=fps, num_frames=num_frames, start=start, end=end)


class FrameReader:
    """One video, opened once, sampled over many time ranges (the windows of a long video, in any order).

    A reader per window would reopen the file each time: PyAV would seek and decode again from a keyframe it had
    already passed, and decord would re-index every frame (~2 s and ~0.5 GB per open of a 30-minute 720p file).
    """

    def __init__(self, path: str | Path, *, size: tuple[int, int] | None = None) -> None:
        self._path = path
        self._pr = _video_probe(path)
        self._out = _output_size(self._pr, size)
        self._sampler: _Sampler | None = None  # opened on the first sample

    def sample(
        self, *, fps: float | None = None, num_frames: int | None = None, start: float = 0.0, end: float | None = None
    ) -> FrameBatch:
        """Frames of [start, end), as `sample_frames` gives them."""
        return self._sample_at(_targets(self._pr, fps, num_frames, start, end))

    def _sample_at(self, targets: np.ndarray) -> FrameBatch:
        """The frame on screen at each of `targets` (seconds, ascending)."""
        if self._sampler is None:
            self._sampler = _open_sampler(self._path, self._pr, self._out)
        batch, self._sampler = _sample_with_fallback(self._sampler, self._path, self._pr, self._out, targets)
        return batch

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _targets(pr: Probe, fps: float | None, num_frames: int | None, start: float, end: float | None) -> np.ndarray:
    """The times to sample in [start, end): every 1/fps seconds, or the centres of num_frames equal segments."""
    if (fps is None) == (num_frames is None):
        raise ValueError("give exactly one of fps= or num_frames=")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    assert pr.video_end is not None and pr.video_start is not None
    lo = max(0.0, float(start))
    hi = pr.video_end if end is None else min(float(end), pr.video_end)
    if lo >= pr.video_end:
        raise ValueError(f"start={start:g} s is at or past the end of the video ({pr.video_end:.2f} s)")
    if hi <= lo:
        raise ValueError(f"empty time range: start={start:g} s, end={end:g} s")
    if fps is not None:
        count = max(1, int(np.ceil((hi - lo) * fps - 1e-9)))
        return lo + np.arange(count, dtype=np.float64) / fps
    assert num_frames is not None
    return lo + (np.arange(num_frames, dtype=np.float64) + 0.5) * (hi - lo) / num_frames


def iter_frame_windows(
    path: str | Path, *, fps: float, window_seconds: float = 60.0, size: tuple[int, int] | None = None
) -> Iterator[FrameBatch]:
    """The whole video sampled every 1/fps seconds, yielded one window of `window_seconds` at a time.

    Only one window of (resized) frames exists at once, plus a few full-resolution frames being converted, so a
    two-hour video streams in bounded memory. Windows are consecutive; a window with no target is skipped.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not window_seconds > 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds}")
    with FrameReader(path, size=size) as reader:
        assert reader._pr.video_end is not None
        total = max(1, int(np.ceil(reader._pr.video_end * fps - 1e-9)))
        per_window = max(1, int(round(window_seconds * fps)))
        # Targets are generated by integer index so that windows tile the timeline without float drift.
        for first in range(0, total, per_window):
            ks = np.arange(first, min(first + per_window, total), dtype=np.float64)
            yield reader._sample_at(ks / fps)


# ---------------------------------------------------------------------------------------------------------------


def _video_probe(path: str | Path) -> Probe:
    pr = probe_internal(path)
    if not pr.info.has_video:
        codec = pr.info.audio_codec or "audio"
        raise NoVideoStreamError(
            f"{display_name(path)}: has no video stream (audio only, {codec}); frames cannot be sampled"
        )
    return pr


def _output_size(pr: Probe, size: tuple[int, int] | None) -> tuple[int, int]:
    if size is None:
        assert pr.info.width is not None and pr.info.height is not None
        return pr.info.width, pr.info.height
    w, h = (int(v) for v in size)
    if w < 1 or h < 1:
        raise ValueError(f"size must be (width, height) of positive integers, got {size}")
    return w, h


class _Sampler(Protocol):
    def sample(self, targets: np.ndarray) -> FrameBatch: ...

    def close(self) -> None: ...


class _DecordUnfit(Exception):
    """decord failed or gave doubtful results on this file: decode it with PyAV instead."""


def _open_sampler(path: str | Path, pr: Probe, out_size: tuple[int, int]) -> _Sampler:
    if PREFER_DECORD and pr.decord_ok:
        try:
            return _DecordSampler(path, pr, out_size)
        except _DecordUnfit as exc:
            log.debug("decord cannot be used for %s (%s); using PyAV", path, exc)
    return _AVSampler(path, pr, out_size)


def _sample_with_fallback(
    sampler: _Sampler, path: str | Path, pr: Probe, out_size: tuple[int, int], targets: np.ndarray
) -> tuple[FrameBatch, _Sampler]:
    try:
        return sampler.sample(targets), sampler
    except _DecordUnfit as exc:
        log.debug("decord failed on %s (%s); retrying with PyAV", path, exc)
        sampler.close()
        replacement = _AVSampler(path, pr, out_size)
        return replacement.sample(targets), replacement


def _resize(img: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    w, h = out_size
    if img.shape[1] == w and img.shape[0] == h:
        return np.ascontiguousarray(img)
    # swscale through PyAV: no extra dependency, and area averaging avoids aliasing when shrinking.
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
    return frame.reformat(width=w, height=h, interpolation="AREA").to_ndarray()


def _truncated(pr: Probe, path: str | Path, last_time: float, target: float) -> CorruptMediaError:
    assert pr.video_end is not None
    return CorruptMediaError(
        f"{display_name(path)}: video data stops at {last_time:.2f} s but the file declares "
        f"{pr.video_end:.2f} s; the file is truncated or corrupt (no frame for {target:.2f} s)"
    )


def _slack(pr: Probe) -> float:
    # How far past the last frame a target may fall before we call the file truncated: the last frame is shown
    # for its own duration, and declared durations are rounded.
    fps = pr.info.fps or 25.0
    return max(1.0, 3.0 / fps)


class _DecordSampler:
    def __init__(self, path: str | Path, pr: Probe, out_size: tuple[int, int]) -> None:
        import decord  # lazy: ~0.1 s import, and only needed for video frames

        decord.logging.set_level(decord.logging.QUIET)  # its bundled FFmpeg logs to stderr otherwise
        self._path, self._pr, self._out = path, pr, out_size
        try:
            with native_stderr_captured():
                self._vr = decord.VideoReader(str(Path(path).expanduser()), num_threads=0)
                n = len(self._vr)
                raw = self._vr.get_frame_timestamp(list(range(n)))[:, 0]
                first = self._vr[0].asnumpy()
        except Exception as exc:  # decord raises DECORDError, RuntimeError, AssertionError...
            raise _DecordUnfit(f"open: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
        self._ts = self._timestamps(raw.astype(np.float64))
        self._turns = self._orientation(first)

    def _timestamps(self, raw: np.ndarray) -> np.ndarray:
        """decord gives float32 seconds from the video stream's start. Where float32 resolves half a tick, recover
        the exact tick and compute the time as PyAV does (tick * time base - origin), so both backends agree to the
        bit; then check decord's first frame against the first pts PyAV decoded."""
        pr = self._pr
        assert pr.video_start is not None
        if not np.all(np.isfinite(raw)) or np.any(np.diff(raw) < -_EPS):
            raise _DecordUnfit("frame timestamps are not increasing")
        tb, first_tick = pr.video_time_base, pr.video_stream_start or 0
        # float32 is within half an ulp (|t| * 2**-24) of the true time: the tick is recoverable while that stays
        # well under half a tick (about 10 minutes at MP4's usual 1/12800 s); later, times keep float32 rounding.
        if tb and float(np.abs(raw).max(initial=0.0)) * 2.0**-24 < 0.4 * float(tb):
            ticks = np.round(raw / float(tb)).astype(np.int64) + first_tick
            ts = (ticks * tb.numerator) / tb.denominator - pr.origin
        else:
            ts = raw + (float(first_tick * tb) if tb else 0.0) - pr.origin
        if abs(ts[0] - pr.video_start) > max(0.5 / (pr.info.fps or 25.0), 0.002):
            raise _DecordUnfit(f"first frame at {ts[0]:.3f} s, PyAV says {pr.video_start:.3f} s")
        return ts

    def _orientation(self, first: np.ndarray) -> int:
        """Quarter turns to apply to decord's frames. decord 0.6 rotates by the display matrix itself (and skips it
        when resizing); rather than trust a version, compare its first frame with PyAV's upright one."""
        pr = self._pr
        k = pr.info.rotation // 90
        want = (pr.info.height, pr.info.width)
        best: tuple[float, int] | None = None
        for turns in {0, (-k) % 4, k % 4}:
            cand = np.rot90(first, turns)
            if cand.shape[:2] != want:
                continue
            if pr.thumb is None or k == 0:
                return turns
            err = float(np.abs(grey_thumbnail(cand) - pr.thumb).mean())
            if best is None or err < best[0]:
                best = (err, turns)
        if best is None or best[0] > 20.0:
            raise _DecordUnfit("cannot match decord's frame orientation")
        return best[1]

    def sample(self, targets: np.ndarray) -> FrameBatch:
        ts = self._ts
        idx = np.searchsorted(ts, targets + _EPS, side="right") - 1
        idx = np.clip(idx, 0, len(ts) - 1)
        late = targets > ts[-1] + _slack(self._pr)
        if np.any(late):
            raise _truncated(self._pr, self._path, float(ts[-1]), float(targets[np.argmax(late)]))
        unique = np.unique(idx)
        w, h = self._out
        decoded: dict[int, np.ndarray] = {}
        for lo in range(0, len(unique), _DECORD_CHUNK):
            chunk = [int(i) for i in unique[lo : lo + _DECORD_CHUNK]]
            try:
                with native_stderr_captured() as said:
                    raw = self._vr.get_batch(chunk).asnumpy()
            except Exception as exc:
                raise _DecordUnfit(f"decode: {type(exc).__name__}") from None
            if said and any("corrupt" in s for s in said):
                raise _DecordUnfit("decord substituted frames it could not decode")
            for i, img in zip(chunk, raw, strict=True):
                decoded[i] = _resize(np.rot90(img, self._turns), (w, h))
        frames = np.empty((len(idx), h, w, 3), dtype=np.uint8)
        for j, i in enumerate(idx):
            frames[j] = decoded[int(i)]
        return FrameBatch(frames=frames, timestamps=ts[idx].astype(np.float64))

    def close(self) -> None:
        self.__dict__.pop("_vr", None)


class _AVSampler:
    """Sequential decoding with seeks across gaps; state persists between calls so windows continue cheaply."""

    def __init__(self, path: str | Path, pr: Probe, out_size: tuple[int, int]) -> None:
        self._path, self._pr, self._out = path, pr, out_size
        self._name = display_name(path)
        try:
            self._container = av.open(str(Path(path).expanduser()), metadata_errors="ignore")
        except (av.error.FFmpegError, OSError) as exc:
            raise CorruptMediaError(f"{self._name}: the file can no longer be opened ({exc})") from None
        self._stream = next(s for s in self._container.streams.video if not is_cover_art(s))
        self._stream.thread_type = "AUTO"
        self._frames: Iterator[av.VideoFrame] | None = None
        self._cur: tuple[av.VideoFrame, float] | None = None  # latest decoded frame at or before the target
        self._next: tuple[av.VideoFrame, float] | None = None  # first decoded frame after it (look-ahead)
        self._eof = False
        # The last conversion, reused when several targets fall on one frame (the frame is kept so that identity,
        # not a recycled id(), decides).
        self._converted: tuple[av.VideoFrame, np.ndarray] | None = None

    def close(self) -> None:
        self._frames = None
        self._container.close()

    def _time(self, frame: av.VideoFrame) -> float:
        t = frame.time
        if t is None:  # raw elementary streams can lack pts: continue the previous one by one frame
            prev = self._cur[1] if self._cur else (self._pr.video_start or 0.0) - 1.0 / (self._pr.info.fps or 25.0)
            return prev + 1.0 / (self._pr.info.fps or 25.0)
        return float(t) - self._pr.origin

    def _pull(self, near: float) -> tuple[av.VideoFrame, float] | None:
        if self._frames is None:
            self._frames = self._container.decode(self._stream)
        try:
            frame = next(self._frames)
        except StopIteration:
            self._eof = True
            return None
        except av.error.FFmpegError as exc:
            raise CorruptMediaError(
                f"{self._name}: cannot decode the video near {near:.2f} s; the file is corrupt ({exc.strerror or exc})"
            ) from None
        return frame, self._time(frame)

    def _seek(self, t: float) -> None:
        tb = self._stream.time_base
        assert tb is not None
        self._container.seek(int((t + self._pr.origin) / tb), stream=self._stream, backward=True, any_frame=False)
        self._frames = None
        self._cur = self._next = None
        self._eof = False

    def _should_seek(self, t: float) -> bool:
        """Seek when a keyframe lies between what is decoded and t: decoding from it skips work. Without a
        keyframe index (e.g. MPEG-TS), seek across gaps longer than a typical group of pictures."""
        here = self._cur[1] if self._cur else None
        if here is not None and t < here - _EPS:
            return True  # back in time (an overlapping window): decoding only ever moves forward
        if self._next is not None and self._next[1] > t + _EPS:
            return False
        if here is None:
            here = self._pr.video_start or 0.0
            if t <= here + _EPS:
                return False
        keys = self._pr.keyframes
        if keys is not None and keys.size:
            j = int(np.searchsorted(keys, t + _EPS, side="right")) - 1
            return j >= 0 and keys[j] > here + _EPS
        return t - here > 5.0

    def _frame_at(self, t: float) -> tuple[av.VideoFrame, float]:
        if self._should_seek(t):
            self._seek(t)
            # A seek can land after t (index times are decode times) or past the data (a damaged tail): back off
            # until the first frame decoded is at or before t.
            start = self._pr.video_start or 0.0
            back = 1.0
            while True:
                got = self._pull(t)
                if (got is not None and (got[1] <= t + _EPS or got[1] <= start + _EPS)) or back > 256:
                    self._next = got
                    break
                self._seek(max(start, t - back))
                back *= 4
        if self._next is not None and self._next[1] <= t + _EPS:
            self._cur, self._next = self._next, None
        while self._next is None and not self._eof:
            got = self._pull(t)
            if got is None:
                break
            if got[1] <= t + _EPS:
                self._cur = got
            else:
                self._next = got
        if self._cur is None:
            if self._next is None:
                raise CorruptMediaError(
                    f"{self._name}: no video frame can be decoded at or before {t:.2f} s; "
                    "the file is truncated or corrupt"
                )
            return self._next  # t precedes the first frame: the nearest one is the first
        if self._eof and self._next is None and t > self._cur[1] + _slack(self._pr):
            raise _truncated(self._pr, self._path, self._cur[1], t)
        return self._cur

    def _convert(self, frame: av.VideoFrame) -> np.ndarray:
        if self._converted is not None and self._converted[0] is frame:
            return self._converted[1]
        turns = self._pr.info.rotation // 90
        w, h = self._out
        pre_w, pre_h = (h, w) if turns % 2 else (w, h)  # scale before turning: the stored frame is sideways
        try:
            img = frame.reformat(width=pre_w, height=pre_h, format="rgb24", interpolation="AREA").to_ndarray()
        except (av.error.FFmpegError, ValueError) as exc:
            raise CorruptMediaError(f"{self._name}: cannot convert a decoded frame ({exc})") from None
        if turns:
            img = np.ascontiguousarray(np.rot90(img, turns))
        self._converted = (frame, img)
        return img

    def sample(self, targets: np.ndarray) -> FrameBatch:
        order = np.argsort(targets, kind="stable")
        w, h = self._out
        frames = np.empty((len(targets), h, w, 3), dtype=np.uint8)
        times = np.empty(len(targets), dtype=np.float64)
        for j in order:
            frame, t = self._frame_at(float(targets[j]))
            frames[j] = self._convert(frame)
            times[j] = t
        return FrameBatch(frames=frames, timestamps=times)
