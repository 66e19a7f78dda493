"""Index throughput (× realtime) beside the decode-only floor and a naive pipeline; peak RSS of a long index.

Three runs over the same clip, with the same loaded model:
- damo: `Indexer.run` on a fresh library and an empty feature cache (probe, content key, windowed seek-based
  sampling, encode, fuse, transcribe, store, vector cache);
- naive: the very same `Indexer.run`, except that frames come from decoding every frame of the file (each converted
  to RGB at full size, as "read all frames, then subsample" code does) and keeping those at the model's sampling
  times. Only the frame source differs, so the ratio is what windowed, seek-based sampling buys;
- decode-only floor: a `FrameReader` sampling exactly the frames damo's windows ask for (same windows, fps, size),
  with no encoding, fusing, transcription or storing: no indexer that decodes this way can be faster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np

from damo_cli.bench.homes import fresh_home, run_cli, using_home
from damo_cli.bench.report import Figure, span, stopwatch
from damo_cli.media import FrameBatch, FrameReader, probe
from damo_cli.pipeline import features as features_module
from damo_cli.pipeline.indexer import Indexer
from damo_cli.store import Library

_EPS = 1e-4


class DecodeEverything:
    """A drop-in for `FrameReader` that decodes and converts every frame of the file once, keeps one frame per
    sampling step (the latest frame shown at each multiple of 1/fps), then serves windows from memory."""

    def __init__(self) -> None:
        self.frames: np.ndarray | None = None
        self.times: np.ndarray | None = None
        self.fps: float | None = None
        self.decoded = 0  # frames decoded and converted: the work the naive way pays for
        self._path: Path | None = None
        self._size: tuple[int, int] | None = None

    def __call__(self, path: str | Path, *, size: tuple[int, int] | None = None) -> DecodeEverything:
        """Open `path` as `FrameReader(path, size=...)` would (the analyser's constructor call)."""
        self._path, self._size = Path(path), size
        return self

    def sample(
        self, *, fps: float | None = None, num_frames: int | None = None, start: float = 0.0, end: float | None = None
    ) -> FrameBatch:
        if fps is None or num_frames is not None:
            raise ValueError("the naive frame source serves fixed-rate sampling only, as the indexer uses")
        if self.frames is None:
            assert self._path is not None, "call the source with a path first, as FrameReader(path)"
            self._decode_all(self._path, fps, self._size)
        assert self.frames is not None and self.times is not None and self.fps == fps
        hi = len(self.frames) / fps if end is None else min(end, len(self.frames) / fps)
        count = max(1, int(np.ceil((hi - start) * fps - 1e-9)))
        steps = np.clip(np.rint((start + np.arange(count) / fps) * fps).astype(int), 0, len(self.frames) - 1)
        return FrameBatch(frames=self.frames[steps], timestamps=self.times[steps])

    def close(self) -> None:
        """Nothing to release: the decoded frames stay for the next window, as the naive way keeps them."""

    def __enter__(self) -> DecodeEverything:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decode_all(self, path: Path, fps: float, size: tuple[int, int] | None) -> None:
        kept, times = [], []
        previous: tuple[np.ndarray, float] | None = None
        step = 0
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # the same multithreaded decoding damo's PyAV path uses
            origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            duration = probe(path).duration
            for frame in container.decode(stream):
                rgb = frame.to_ndarray(format="rgb24")  # every frame, full size: what the naive way does
                self.decoded += 1
                t = float(frame.time) - origin if frame.time is not None else (previous[1] if previous else 0.0)
                while step / fps < t - _EPS:  # steps before this frame show the previous one (or this, if first)
                    shown = previous or (rgb, t)
                    kept.append(_resized(shown[0], size))
                    times.append(shown[1])
                    step += 1
                previous = (rgb, t)
            while previous is not None and step / fps < duration - _EPS:  # the last frame stays on screen
                kept.append(_resized(previous[0], size))
                times.append(previous[1])
                step += 1
        self.frames, self.times, self.fps = np.stack(kept), np.asarray(times, dtype=np.float64), fps


def _resized(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or (img.shape[1], img.shape[0]) == tuple(size):
        return img
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
    return frame.reformat(width=size[0], height=size[1], interpolation="AREA").to_ndarray()


@contextmanager
def frames_from(source: object) -> Iterator[None]:
    """Swap the analyser's frame reader for `source` while the block runs: the one place the naive run differs."""
    original = features_module.FrameReader
    features_module.FrameReader = source  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        features_module.FrameReader = original


def _index_once(indexer: Indexer, clip: Path, library_dir: Path, home: Path) -> float:
    """Seconds `Indexer.run` takes on `clip` into a new library, with an empty feature cache."""
    with using_home(home):
        indexer.library = Library.open(library_dir)
        try:
            with stopwatch() as took:
                report = indexer.run([clip])
        finally:
            indexer.library.close()
    if report.failed or len(report.indexed) != 1:
        reason = report.failed[0][1] if report.failed else "nothing was indexed"
        raise RuntimeError(f"the bench could not index {clip.name}: {reason}")
    return took()


def decode_only_seconds(indexer: Indexer, clip: Path) -> tuple[float, int]:
    """(seconds, frames) for sampling the frames the indexer's windows ask for, and nothing else."""
    extractor = indexer.analyser.features
    side, fps = extractor.image_size, extractor.config.video.sample_fps
    frames = 0
    with stopwatch() as took:
        duration = probe(clip).duration
        with FrameReader(clip, size=(side, side)) as reader:  # opened once, as the extractor does
            for start, end in features_module.frame_pieces(duration):
                frames += len(reader.sample(fps=fps, start=start, end=end))
    return took(), frames


def index_throughput(indexer: Indexer, clip: Path, clip_info: dict, work: Path, user_cache: Path) -> list[Figure]:
    duration = probe(clip).duration
    damo_s = _index_once(indexer, clip, work / "lib-windowed", fresh_home(work, "home-windowed", user_cache))
    naive = DecodeEverything()
    with frames_from(naive):
        naive_s = _index_once(indexer, clip, work / "lib-naive", fresh_home(work, "home-naive", user_cache))
    if naive.decoded == 0:  # the analyser no longer reads frames through the swapped name: the baseline is void
        raise RuntimeError("the naive frame source was never used; the bench would compare damo with itself")
    decode_s, sampled = decode_only_seconds(indexer, clip)
    extractor = indexer.analyser.features
    stages = {k: round(v, 3) for k, v in extractor.timings.items()}  # summed over the two runs above
    named = (extractor.read_screen, extractor.detect_sounds)
    extractor.read_screen = extractor.detect_sounds = False
    try:
        plain_s = _index_once(indexer, clip, work / "lib-plain", fresh_home(work, "home-plain", user_cache))
    finally:
        extractor.read_screen, extractor.detect_sounds = named
    detail = {
        **clip_info,
        "duration_s": round(duration, 2),
        "sample_fps": indexer.analyser.features.config.video.sample_fps,
        "frames_sampled": sampled,
        "frames_decoded_by_naive": naive.decoded,
        "damo_s": round(damo_s, 4),
        "naive_s": round(naive_s, 4),
        "decode_only_s": round(decode_s, 4),
        "includes": "probe, content key, decode, encode, fuse, transcribe, OCR, sound events, store (model loaded)",
        "stage_seconds_both_runs": stages,
    }
    rtf = duration / damo_s
    return [
        Figure(
            "index_rtf_vs_no_named_evidence",
            "index throughput with on-screen text and sound events",
            rtf,
            "× realtime",
            "the same index without them",
            duration / plain_s,
            "higher",
            {"without_s": round(plain_s, 4), "ocr_s": stages.get("screen_text"), "sounds_s": stages.get("sounds")},
        ),
        Figure(
            "index_rtf_vs_naive",
            f"index throughput, {clip_info['size']} clip (video s per wall s)",
            rtf,
            "× realtime",
            "naive: decode every frame, then subsample",
            duration / naive_s,
            "higher",
            detail,
        ),
        Figure(
            "index_rtf_vs_decode_floor",
            "index throughput vs decoding its frames alone",
            rtf,
            "× realtime",
            "decode-only floor, same frames",
            duration / decode_s,
            "higher",
            {"decode_only_s": round(decode_s, 2), "frames": sampled},
        ),
    ]


def index_memory(
    long_video: Path, short_video: Path, work: Path, user_cache: Path, model: str, device: str
) -> list[Figure]:
    """Peak RSS and wall time of `damo index` (a subprocess) on the long video, beside the same on a one-minute
    cut of the same material: equal peaks mean memory is bounded by the window, not by the video's length."""
    runs = {}
    for name, video in (("short", short_video), ("long", long_video)):
        home = fresh_home(work, f"home-rss-{name}", user_cache)
        args = ["index", str(video), "--library", str(work / f"lib-rss-{name}"), "--json"]
        run = run_cli([*args, "--model", model, "--device", device], home, work / f"log-rss-{name}")
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        if summary.get("indexed") != 1:
            raise RuntimeError(f"`damo index {video.name}` in the bench did not index it: {summary}")
        runs[name] = (run, probe(video).duration)
    (short, short_len), (long, long_len) = runs["short"], runs["long"]
    if short.peak_rss_bytes is None or long.peak_rss_bytes is None:
        raise RuntimeError("the peak RSS of a subprocess cannot be read on this platform (no /proc, no psutil)")
    mb = 2**20
    detail = {
        "long_video_s": round(long_len, 1),
        "short_video_s": round(short_len, 1),
        "long_wall_s": round(long.wall_s, 1),
        "short_wall_s": round(short.wall_s, 1),
        "measured": "VmHWM of the `damo index` process (its own high-water mark), startup and model load included",
    }
    return [
        Figure(
            "index_peak_rss",
            f"peak RSS, `damo index` of a {span(long_len)} video",
            long.peak_rss_bytes / mb,
            "MiB",
            f"same command on {span(short_len)} of it",
            short.peak_rss_bytes / mb,
            "lower",
            detail,
        ),
        Figure(
            "index_cli_rtf_long",
            f"`damo index` CLI throughput, {span(long_len)} video",
            long_len / long.wall_s,
            "× realtime",
            f"same command on {span(short_len)} of it",
            short_len / short.wall_s,
            "higher",
            {**detail, "includes": "process start, model load, everything `damo index` does"},
        ),
    ]
