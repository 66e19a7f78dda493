"""Approximate vs exact vector search on synthetic video-like vectors: recall@10, build time, query time.

    python -m damo_cli.bench.store_vectors --n 100000 --dim 384 --queries 300 [--threads 1] [--hnsw]

Vectors imitate per-second video features: topics -> videos (a direction near a topic) -> steps (a slow random
walk around the video's direction plus noise), so neighbours cluster by video as real features do. Queries
imitate text queries: a mix of two topics plus strong noise, i.e. not near any stored vector (the hard case).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from damo_cli.store import vectors


def _unit(a: np.ndarray) -> np.ndarray:
    return vectors.normalise(a)


def clustered_vectors(
    n: int, dim: int = 384, *, topics: int = 50, steps_per_video: int = 300, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(n x dim unit vectors, topics x dim topic directions)."""
    rng = np.random.default_rng(seed)
    topic_dirs = _unit(rng.standard_normal((topics, dim)))
    out = np.empty((n, dim), dtype=np.float32)
    step = np.float32(0.08 / np.sqrt(steps_per_video))
    # float32 and in place: `damo bench` makes a million of these, and float64 temporaries doubled the time.
    for lo in range(0, n, steps_per_video):
        m = min(steps_per_video, n - lo)
        topic = topic_dirs[rng.integers(topics)]
        video = _unit(topic + 0.7 * _unit(rng.standard_normal(dim, dtype=np.float32)))
        walk = np.cumsum(rng.standard_normal((steps_per_video, dim), dtype=np.float32), axis=0)[:m]
        walk *= step
        walk += np.float32(0.35) * _unit(rng.standard_normal((m, dim), dtype=np.float32))
        walk += video
        out[lo : lo + m] = _unit(walk)
    return out, topic_dirs


def text_like_queries(topic_dirs: np.ndarray, count: int, *, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = topic_dirs[rng.integers(len(topic_dirs), size=count)]
    b = topic_dirs[rng.integers(len(topic_dirs), size=count)]
    return _unit(a + b + 1.5 * _unit(rng.standard_normal((count, topic_dirs.shape[1]))))


def recall_at(exact_ids: np.ndarray, approx_ids: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k."""
    hits = [len(set(e[:k].tolist()) & set(a[:k].tolist())) / k for e, a in zip(exact_ids, approx_ids, strict=True)]
    return float(np.mean(hits))


def _per_query_ms(index: object, queries: np.ndarray, k: int) -> float:
    start = time.perf_counter()
    for q in queries:
        index.search(q.reshape(1, -1), k)  # type: ignore[attr-defined]
    return (time.perf_counter() - start) / len(queries) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="FAISS/OpenMP threads (1: stable timings)")
    parser.add_argument("--hnsw", action="store_true", help="also measure HNSW (M=32) for comparison")
    args = parser.parse_args(argv)

    import faiss

    faiss.omp_set_num_threads(args.threads)
    data, topic_dirs = clustered_vectors(args.n, args.dim)
    data = data.astype(np.float16).astype(np.float32)  # what the store holds: exact = exact over these values
    queries = text_like_queries(topic_dirs, args.queries)
    ids = np.arange(args.n, dtype=np.int64)

    start = time.perf_counter()
    exact = vectors.build_index(ids, data, approx_threshold=args.n)
    exact_build = time.perf_counter() - start
    _, truth = exact.search(queries, 10)

    start = time.perf_counter()
    ivf = vectors.build_index(ids, data, approx_threshold=0)
    ivf_build = time.perf_counter() - start
    _, found = ivf.search(queries, 10)
    nlist = faiss.extract_index_ivf(ivf).nlist

    print(f"n={args.n} dim={args.dim} queries={args.queries} threads={faiss.omp_get_max_threads()}")
    exact_ms = _per_query_ms(exact, queries, 10)
    print(f"exact  flat (fp16)             build {exact_build:6.2f} s  query {exact_ms:7.3f} ms")
    print(
        f"approx IVF (fp16) nlist={nlist} nprobe={vectors.ivf_probes(nlist)}  build {ivf_build:6.2f} s  "
        f"query {_per_query_ms(ivf, queries, 10):7.3f} ms  recall@10 {recall_at(truth, found, 10):.4f}"
    )
    if args.hnsw:
        start = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 40
        hnsw.add(data)
        build = time.perf_counter() - start
        for ef in (64, 128, 256):
            hnsw.hnsw.efSearch = ef
            _, got = hnsw.search(queries, 10)
            print(
                f"approx HNSW M=32 efSearch={ef:<4}         build {build:6.2f} s  "
                f"query {_per_query_ms(hnsw, queries, 10):7.3f} ms  recall@10 {recall_at(truth, got, 10):.4f}"
            )


if __name__ == "__main__":
    main()
