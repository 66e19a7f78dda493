"""`damo search` latency over libraries of synthetic moments, approximate (IVF) beside exact, and IVF's recall@10.

For each size a real library is filled through `Writer.add_video` with the clustered, video-like vectors of
`damo_cli.bench.store_vectors` (one synthetic video per 300 steps, stored as float16 like every moment). Each query then
runs `search_library`, the function `damo search` calls after encoding the query: vector search over the channel,
moment lookup in SQLite, merging, calibration. Query vectors are text-like (off the data, the hard case).

The same library is opened twice: with `approx_threshold=0` (IVF whatever the size) and with the threshold above
the size (exact, a flat scan). damo itself uses exact up to `vectors.APPROX_THRESHOLD` moments and IVF above it;
each figure's detail says which. Recall@10 compares the raw top 10 steps of both (no merging).
"""

from __future__ import annotations

import gc
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from damo_cli.bench.report import Figure, percentiles_ms, stopwatch
from damo_cli.bench.store_vectors import clustered_vectors, recall_at, text_like_queries
from damo_cli.pipeline.search import search_library
from damo_cli.store import Library, Moments, VideoEntry, vectors

CHANNEL = "bridge"  # a channel `damo search` reads with an untrained model
FINGERPRINT = "bench-synthetic"
QUERY_TEXT = "someone opens a door"  # only the transcript channel reads it; the library has no transcripts
STEPS_PER_VIDEO = 300
DIM = 384


def fill_library(root: Path, data: np.ndarray) -> Library:
    lib = Library.open(root)
    with lib.writer() as writer:
        for number, lo in enumerate(range(0, len(data), STEPS_PER_VIDEO)):
            block = data[lo : lo + STEPS_PER_VIDEO]
            starts = np.arange(len(block), dtype=np.float64)
            entry = VideoEntry(
                Path(f"/damo-bench/synthetic/video-{number:05d}.mp4"),
                f"synthetic-{number}",
                FINGERPRINT,
                size=0,
                mtime_ns=0,
                duration=float(len(block)),
                has_audio=False,
            )
            writer.add_video(entry, Moments(starts, starts + 1.0, block, CHANNEL))
    return lib


def _timed_queries(lib: Library, queries: np.ndarray) -> list[float]:
    times = []
    for q in queries:
        with stopwatch() as took:
            search_library(lib, QUERY_TEXT, q, FINGERPRINT, trained=False, k=10)
        times.append(took())
    return times


def _raw_top10(lib: Library, queries: np.ndarray) -> np.ndarray:
    """(queries x 10) ids of the raw top-10 steps, as (video, start) packed into one integer."""
    rows = []
    for q in queries:
        hits = lib.search(q, k=10, channel=CHANNEL, fingerprint=FINGERPRINT, merge=False)
        keys = [h.video_id * 1_000_000 + int(round(h.start)) for h in hits]
        rows.append(keys + [-1] * (10 - len(keys)))
    return np.asarray(rows, dtype=np.int64)


def size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n / 1000:g}k"


def search_latency(
    sizes: tuple[int, ...],
    queries: int,
    exact_queries: Callable[[int], int],
    work: Path,
    query_encode_ms: float | None = None,
) -> list[Figure]:
    figures: list[Figure] = []
    for n in sizes:
        data, topics = clustered_vectors(n, DIM, steps_per_video=STEPS_PER_VIDEO)
        root = work / f"lib-search-{size_label(n)}"
        with stopwatch() as fill_took:
            fill_library(root, data).close()
        del data
        gc.collect()
        asked = text_like_queries(topics, queries)
        n_exact = min(queries, exact_queries(n))

        ivf = Library.open(root, create=False, approx_threshold=0)
        with stopwatch() as ivf_build:
            kinds = ivf.refresh_vectors()
        exact = Library.open(root, create=False, approx_threshold=n + 1)
        with stopwatch() as exact_build:
            exact_kinds = exact.refresh_vectors()
        assert set(kinds.values()) == {"ivf"} and set(exact_kinds.values()) == {"exact"}, (kinds, exact_kinds)

        ivf_p50, ivf_p95 = percentiles_ms(_timed_queries(ivf, asked))
        exact_p50, exact_p95 = percentiles_ms(_timed_queries(exact, asked[:n_exact]))
        truth = _raw_top10(exact, asked[:n_exact])
        recall, reference = recall_at(truth, _raw_top10(ivf, asked[:n_exact]), 10), recall_at(truth, truth, 10)
        ivf.close()
        exact.close()
        shutil.rmtree(root, ignore_errors=True)  # a million moments is ~0.9 GB on disk

        nlist = vectors.ivf_lists(n)
        detail = {
            "moments": n,
            "queries_ivf": queries,
            "queries_exact": n_exact,
            "damo_uses": "ivf" if n > vectors.APPROX_THRESHOLD else "exact",
            "ivf_nlist": nlist,
            "ivf_nprobe": vectors.ivf_probes(nlist),
            "fill_s": round(fill_took(), 1),
            "ivf_build_s": round(ivf_build(), 1),
            "exact_build_s": round(exact_build(), 1),
            "query_encode_ms_not_included": query_encode_ms,
        }
        label = size_label(n)
        figures += [
            Figure(f"search_p50_{label}", f"search p50, {label} moments (IVF)", ivf_p50, "ms",
                   "exact search, same library", exact_p50, "lower", detail),
            Figure(f"search_p95_{label}", f"search p95, {label} moments (IVF)", ivf_p95, "ms",
                   "exact search, same library", exact_p95, "lower", {"moments": n}),
            Figure(f"search_recall10_{label}", f"IVF recall@10, {label} moments", recall, "",
                   "exact search (the reference)", reference, "higher",
                   {"moments": n, "queries": n_exact}),
        ]  # fmt: skip
    return figures
