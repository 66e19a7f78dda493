"""Audio as mono float32 at a fixed rate (16 kHz for Whisper), whole or streamed in windows.

soundfile reads plain audio files (WAV/FLAC/Ogg) sample-exactly; PyAV decodes audio inside video containers (and
anything soundfile cannot read). Both paths resample with PyAV's AudioResampler (libswresample). Sample i of the
result is at time `start + i / sample_rate`, on the same clock as frame timestamps. A file without an audio track
is not an error: `load_audio` returns None and `iter_audio_windows` yields nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from damo_cli.errors import CorruptMediaError
from damo_cli.media.probe import Probe, probe_internal
from damo_cli.media.validate import display_name

# Demuxers whose files soundfile (libsndfile) reads directly.
_SOUNDFILE_CONTAINERS = frozenset({"wav", "flac", "ogg", "aiff", "w64", "caf", "au"})
_BLOCK_SECONDS = 5.0  # soundfile read size: bounds memory while streaming


@dataclass
class AudioWindow:
    start: float  # seconds, time of samples[0]
    samples: np.ndarray  # float32 mono


def load_audio(
    path: str | Path, *, sample_rate: int = 16000, start: float = 0.0, end: float | None = None
) -> np.ndarray | None:
    """Mono float32 samples in [-1, 1] of [start, end) (end defaults to the end of the audio), or None when the
    file has no audio track."""
    _check_rate(sample_rate)
    pr = probe_internal(path)
    if not pr.info.has_audio:
        return None
    lo = max(0.0, float(start))
    stop = pr.audio_end if end is None else (float(end) if pr.audio_end is None else min(float(end), pr.audio_end))
    if stop is not None and stop <= lo:
        if end is not None and end <= start:
            raise ValueError(f"empty time range: start={start:g} s, end={end:g} s")
        raise ValueError(f"start={start:g} s is at or past the end of the audio ({stop:.2f} s)")
    chunks = list(_decode_mono(path, pr, sample_rate, lo, stop))
    out = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if stop is None:
        return out
    want = int(round((stop - lo) * sample_rate))
    if out.size < want:
        _check_complete(path, out.size / sample_rate, (stop - lo), lo)
        out = np.concatenate([out, np.zeros(want - out.size, dtype=np.float32)])  # rounding of the declared end
    return out[:want]


def iter_audio_windows(
    path: str | Path, *, window_seconds: float = 30.0, sample_rate: int = 16000
) -> Iterator[AudioWindow]:
    """Consecutive windows of `window_seconds` covering the whole audio track (the last one may be shorter),
    decoded as they are consumed: memory stays at about one window."""
    _check_rate(sample_rate)
    if not window_seconds > 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds}")
    pr = probe_internal(path)
    if not pr.info.has_audio:
        return
    size = max(1, int(round(window_seconds * sample_rate)))
    # Decoded chunks are copied straight into the window they belong to: collecting a 10-minute window's chunks
    # and concatenating them held three copies of it at once (+114 MB against +38 for the window itself).
    window = np.empty(size, dtype=np.float32)  # pages are only resident once written
    held = 0
    emitted = 0  # samples already yielded: the next window's start is emitted / sample_rate
    for chunk in _decode_mono(path, pr, sample_rate, 0.0, pr.audio_end):
        while chunk.size:
            take = min(size - held, chunk.size)
            window[held : held + take] = chunk[:take]
            held, chunk = held + take, chunk[take:]
            if held == size:
                yield AudioWindow(start=emitted / sample_rate, samples=window)
                emitted += size
                window, held = np.empty(size, dtype=np.float32), 0
    if pr.audio_end is not None:
        want_total = int(round(pr.audio_end * sample_rate))
        got_total = emitted + held
        if got_total < want_total:
            _check_complete(path, got_total / sample_rate, pr.audio_end, 0.0)
    if held:
        yield AudioWindow(start=emitted / sample_rate, samples=window[:held].copy())


# ---------------------------------------------------------------------------------------------------------------


def _check_rate(sample_rate: int) -> None:
    if int(sample_rate) != sample_rate or sample_rate < 1000:
        raise ValueError(f"sample_rate must be an integer number of Hz >= 1000, got {sample_rate}")


def _check_complete(path: str | Path, got: float, wanted: float, start: float) -> None:
    # Declared durations are estimates for some formats (VBR MP3 without a header, Ogg): allow a little, but a
    # large shortfall means the data ends early.
    if wanted - got > max(1.0, 0.05 * wanted):
        raise CorruptMediaError(
            f"{display_name(path)}: audio data stops at {start + got:.2f} s but the file declares "
            f"{start + wanted:.2f} s; the file is truncated or corrupt"
        )


class _Trimmer:
    """Cuts a stream of resampled chunks, whose first sample is at time t0, to [start, stop) exactly: drops what
    precedes start (seeks land early), pads silence when the track begins after start, stops at stop."""

    def __init__(self, rate: int, start: float, stop: float | None) -> None:
        self.rate, self.start = rate, start
        self.remaining = None if stop is None else int(round((stop - start) * rate))
        self.skip: int | None = None  # samples still to drop; None until the first chunk's time is known

    def begin(self, t0: float) -> np.ndarray:
        offset = int(round((self.start - t0) * self.rate))
        self.skip = max(0, offset)
        return self._cut(np.zeros(max(0, -offset), dtype=np.float32))

    def feed(self, chunk: np.ndarray) -> np.ndarray:
        assert self.skip is not None
        if self.skip:
            dropped = min(self.skip, chunk.size)
            chunk = chunk[dropped:]
            self.skip -= dropped
        return self._cut(chunk)

    def _cut(self, chunk: np.ndarray) -> np.ndarray:
        if self.remaining is None:
            return chunk
        chunk = chunk[: self.remaining]
        self.remaining -= chunk.size
        return chunk

    @property
    def done(self) -> bool:
        return self.remaining is not None and self.remaining <= 0


def _decode_mono(path: str | Path, pr: Probe, rate: int, start: float, stop: float | None) -> Iterator[np.ndarray]:
    """Float32 mono chunks at `rate` covering [start, stop) (stop None: to the end of the track)."""
    if pr.info.container in _SOUNDFILE_CONTAINERS and not pr.info.has_video:
        try:
            handle = sf.SoundFile(str(Path(path).expanduser()))
        except (sf.LibsndfileError, RuntimeError, TypeError):
            handle = None  # e.g. an Ogg/Opus build libsndfile lacks: PyAV decodes it
        if handle is not None:
            with handle:
                yield from _soundfile_chunks(path, handle, rate, start, stop)
            return
    yield from _pyav_chunks(path, pr, rate, start, stop)


def _mono_resampler(rate: int) -> av.AudioResampler:
    return av.AudioResampler(format="flt", layout="mono", rate=rate)


def _resampled(resampler: av.AudioResampler, frame: av.AudioFrame | None) -> Iterator[np.ndarray]:
    for out in resampler.resample(frame):
        yield np.array(out.to_ndarray()[0], dtype=np.float32, copy=True)


def _soundfile_chunks(
    path: str | Path, handle: sf.SoundFile, rate: int, start: float, stop: float | None
) -> Iterator[np.ndarray]:
    src_rate = handle.samplerate
    first = int(round(start * src_rate))
    count = -1 if stop is None else max(0, int(round((stop - start) * src_rate)))
    trim = _Trimmer(rate, start, stop)
    yield trim.begin(start)  # seeking is sample-exact here
    resampler = _mono_resampler(rate) if src_rate != rate else None
    try:
        if handle.seekable():
            handle.seek(min(first, max(0, handle.frames)))
        else:
            handle.read(first, dtype="float32")
        block = max(1, int(_BLOCK_SECONDS * src_rate))
        for data in handle.blocks(blocksize=block, dtype="float32", always_2d=True, frames=count):
            mono = np.ascontiguousarray(data.mean(axis=1, dtype=np.float32))
            if resampler is None:
                yield trim.feed(mono)
            else:
                frame = av.AudioFrame.from_ndarray(mono[None, :], format="flt", layout="mono")
                frame.sample_rate = src_rate
                for out in _resampled(resampler, frame):
                    yield trim.feed(out)
            if trim.done:
                return
        if resampler is not None:
            for out in _resampled(resampler, None):
                yield trim.feed(out)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise CorruptMediaError(f"{display_name(path)}: cannot decode the audio; the file is corrupt ({exc})") from None


def _pyav_chunks(path: str | Path, pr: Probe, rate: int, start: float, stop: float | None) -> Iterator[np.ndarray]:
    name = display_name(path)
    try:
        container = av.open(str(Path(path).expanduser()), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError) as exc:
        raise CorruptMediaError(f"{name}: the file can no longer be opened ({exc})") from None
    with container:
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        if start > 0 and stream.time_base is not None:
            # Lands on or before start; the trimmer drops the excess.
            target = int((start + pr.origin) / stream.time_base)
            try:
                container.seek(target, stream=stream, backward=True, any_frame=False)
            except av.error.FFmpegError:
                container.seek(0)
        trim = _Trimmer(rate, start, stop)
        resampler = _mono_resampler(rate)
        began = False
        t = start
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                raise CorruptMediaError(
                    f"{name}: cannot decode the audio near {t:.2f} s; the file is corrupt ({exc.strerror or exc})"
                ) from None
            if frame.time is not None:
                t = float(frame.time) - pr.origin
            if not began:
                began = True
                yield trim.begin(t)
            for out in _resampled(resampler, frame):
                yield trim.feed(out)
            if trim.done:
                return
        if began:
            for out in _resampled(resampler, None):
                yield trim.feed(out)
