"""One `damo bench` run: make the media, load the model once, measure every figure beside its baseline."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from damo_cli.bench import asking, indexing, scaling, searching, serving
from damo_cli.bench.homes import fresh_home, using_home
from damo_cli.bench.machine import describe_machine, load_average
from damo_cli.bench.media import make_clip, make_long
from damo_cli.bench.report import BenchReport, Figure, percentiles_ms, span, stopwatch
from damo_cli.paths import cache_dir


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one run. `full()` is what the README reports; `quick()` exercises every step in about a minute."""

    quick: bool
    clip_seconds: float  # the clip for index throughput and ask (720p in the full run)
    clip_size: tuple[int, int]
    clip_fps: int
    long_seconds: float  # the long video for peak RSS
    long_size: tuple[int, int]
    long_fps: int
    short_seconds: float  # the same material, short: the peak-RSS baseline
    search_sizes: tuple[int, ...]
    search_queries: int
    exact_queries_past_100k: int  # a flat scan of 1M moments is slow: fewer exact queries there
    ray_copies: int  # copies of the clip indexed on a local 2-worker Ray instance and by one process
    serve_calls: int  # CLI asks and searches through `damo serve` (and, baseline_calls, without it)
    serve_baseline_calls: int
    model: str = "damo-tiny"
    device: str = "cpu"

    @classmethod
    def full(cls, model: str = "damo-tiny", device: str = "cpu") -> BenchConfig:
        return cls(
            quick=False,
            clip_seconds=60.0,
            clip_size=(1280, 720),
            clip_fps=30,
            long_seconds=1800.0,
            long_size=(1280, 720),
            long_fps=2,  # a real 30-minute 720p file that stays quick to make: 2 frames per second
            short_seconds=60.0,
            search_sizes=(10_000, 100_000, 1_000_000),
            search_queries=200,
            exact_queries_past_100k=50,
            ray_copies=4,
            serve_calls=20,
            serve_baseline_calls=5,
            model=model,
            device=device,
        )

    @classmethod
    def small(cls, model: str = "damo-tiny", device: str = "cpu") -> BenchConfig:
        return cls(
            quick=True,
            clip_seconds=6.0,
            clip_size=(640, 360),
            clip_fps=30,
            long_seconds=40.0,
            long_size=(320, 240),
            long_fps=5,
            short_seconds=10.0,
            search_sizes=(2_000, 6_000),
            search_queries=20,
            exact_queries_past_100k=20,
            ray_copies=2,
            serve_calls=3,
            serve_baseline_calls=1,
            model=model,
            device=device,
        )

    def exact_queries(self, n: int) -> int:
        return self.search_queries if n <= 100_000 else self.exact_queries_past_100k


STAGES = 9  # the stages of one run, in order: model, media, warm-up, index, ask, serve, search, peak RSS, Ray


def run_bench(
    config: BenchConfig, on_stage: Callable[[str], None] = lambda _: None, workdir: Path | None = None
) -> BenchReport:
    """Run every measurement; `workdir` (kept afterwards) or a temporary folder (removed) holds media and libraries.

    `on_stage` is told each stage as it starts, numbered: "index throughput: … (4/7)"."""
    from damo_cli.device import resolve_device

    started = time.perf_counter()
    device = resolve_device(config.device)
    machine = describe_machine(device)
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="damo-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    stages: dict[str, float] = {}
    figures: list[Figure] = []

    def stage(name: str) -> Callable[[float], None]:
        on_stage(f"{name} ({len(stages) + 1}/{STAGES})")  # the stage_s keys stay the plain names
        return lambda seconds: stages.__setitem__(name, seconds)

    try:
        user_cache = cache_dir()  # before any DAMO_HOME override: the derived weights every fresh home links to

        done = stage("loading the model and preparing derived weights (not timed as a figure)")
        with stopwatch() as took:
            indexer = _prepare(config.model, device, work)
        done(took())

        done = stage("making the test media")
        with stopwatch() as took:
            clip, audio = make_clip(work / "clip.mp4", config.clip_seconds, config.clip_size, config.clip_fps)
            warm_clip, _ = make_clip(work / "warmup.mp4", 2.0, (320, 180), 15)
            long_video = make_long(work / "long.mp4", config.long_seconds, config.long_size, config.long_fps)
            short_video = make_long(work / "short.mp4", config.short_seconds, config.long_size, config.long_fps)
        done(took())
        clip_info = {"size": "x".join(map(str, config.clip_size)), "fps": config.clip_fps, "audio": audio}

        done = stage("warming up (first-call costs kept out of the figures)")
        with stopwatch() as took, using_home(fresh_home(work, "home-warmup", user_cache)):
            indexer.analyser.analyse(warm_clip)
        done(took())

        done = stage(f"index throughput: damo, naive, decode-only on the {span(config.clip_seconds)} clip")
        with stopwatch() as took:
            figures += indexing.index_throughput(indexer, clip, clip_info, work, user_cache)
        done(took())

        done = stage("ask latency: cold and warm, in-process and CLI")
        with stopwatch() as took:
            figures += asking.ask_latency(
                indexer.analyser, clip, audio.startswith("speech"), work, user_cache, config.model, device
            )
        done(took())

        done = stage("`damo ask` and `damo search` CLI calls with `damo serve` running, beside none")
        with stopwatch() as took:
            question = asking.SPEECH_QUESTION if audio.startswith("speech") else asking.TONE_QUESTION
            figures += serving.serve_latency(
                clip,
                question,
                fresh_home(work, "home-serve", user_cache),
                config.serve_calls,
                config.serve_baseline_calls,
                config.model,
                device,
            )
        done(took())

        done = stage(f"search latency at {', '.join(map(searching.size_label, config.search_sizes))} moments")
        with stopwatch() as took:
            encode_ms = _query_encode_ms(indexer.analyser)
            figures += searching.search_latency(
                config.search_sizes, config.search_queries, config.exact_queries, work, encode_ms
            )
        done(took())

        lengths = f"{span(config.short_seconds)}, then {span(config.long_seconds)}"
        done = stage(f"peak RSS and wall time of `damo index` (a subprocess) on {lengths} of video")
        with stopwatch() as took:
            figures += indexing.index_memory(long_video, short_video, work, user_cache, config.model, device)
        done(took())

        copies = f"{config.ray_copies} copies of the {span(config.clip_seconds)} clip"
        if scaling.ray_available():
            done = stage(f"index throughput on a local 2-worker Ray instance beside one process, {copies}")
        else:  # an optional extra: the figure is left out, and this line says why
            done = stage(f"index throughput on Ray: {scaling.NOT_INSTALLED}")
        with stopwatch() as took:
            figures += scaling.ray_throughput(clip, config.ray_copies, work, user_cache, config.model, device)
        done(took())
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    machine["load_average_at_end"] = load_average()
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
    return BenchReport(figures, machine, settings, time.perf_counter() - started, stages)


def _prepare(model: str, device: str, work: Path):  # noqa: ANN202 - Indexer, imported lazily
    """The model and backbones, loaded once for every in-process figure; derived weights built now if missing, so
    that no figure includes a one-time conversion."""
    from damo_cli.encoders.llm import ensure_llm_cache
    from damo_cli.pipeline.indexer import Indexer
    from damo_cli.store import Library

    indexer = Indexer(model, device, Library.open(work / "lib-prepare"), workers=1)
    indexer.library.close()  # each measured run gives the indexer a library of its own
    indexer.analyser  # noqa: B018 - loads the backbones (and assembles Whisper, embeds the class names, if needed)
    llm = indexer.model.card.backbone("llm")
    if llm.kind == "causal-lm-gguf":
        ensure_llm_cache(llm)
    return indexer


def _query_encode_ms(analyser, repeats: int = 20) -> float:  # noqa: ANN001 - Analyser
    """p50 of encoding one search query with the text tower: what `damo search` adds before the vector search."""
    times = []
    for i in range(repeats):
        with stopwatch() as took:
            analyser.text.encode([f"{searching.QUERY_TEXT} number {i}"])
        times.append(took())
    return round(percentiles_ms(times)[0], 2)
