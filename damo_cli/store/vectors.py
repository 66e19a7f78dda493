"""FAISS indexes over the moment vectors: a derived cache of what SQLite holds, never the source of truth.

Vectors are unit length, so inner product = cosine similarity. FAISS keeps them as float16 (`QT_fp16`), the
precision SQLite stores them in: no loss against the store, half the memory and disk of float32, and faster
(a scan is memory-bound).

- Up to `APPROX_THRESHOLD` vectors per (model, channel) (default 50,000, about 14 hours of video at one step
  per second): exact search, a flat fp16 index in an id map. A query scans everything: ~5 ms at 50k, 384-d.
- Past it: **IVF** with fp16 lists (`IndexIVFScalarQuantizer`, inner product, spherical k-means),
  `nlist = 2 * sqrt(n)` lists, `nprobe = max(32, nlist / 20)` (about 5% of the lists, never fewer than 32).

Why IVF rather than HNSW, measured with `python -m damo_cli.bench.store_vectors --n 100000 --threads 1 [--hnsw]`
(384-d, 1 thread, text-like queries that lie off the data, as text queries over video features do):
  exact flat fp16      build 0.2 s   query ~10 ms    recall@10 1 (by definition)
  IVF fp16, nprobe 32  build ~3.5 s  query ~0.6 ms   recall@10 0.999 (0.90 at nprobe 8, 0.99 at 16)
  HNSW M=32 (float32)  build ~10 s   query 0.1-0.3 ms  recall@10 0.59 / 0.63 / 0.67 at efSearch 64 / 128 / 256
HNSW's greedy graph walk gets lost for queries far from the data; IVF scans whole lists, so its recall is
steered by one number (nprobe). It also builds ~3x faster, which matters because the cache is rebuilt after
every indexing run (`build_index` reuses the previous centroids while the size stays within 2x, so then it only
re-adds), and needs only the flat index's memory plus the centroids.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import faiss

APPROX_THRESHOLD = 50_000
LISTS_PER_ROOT = 2
TRAIN_PER_LIST = 40
KMEANS_ITERATIONS = 10
MIN_NPROBE = 32


def _faiss():  # noqa: ANN202 - faiss is a heavy import; only searches and cache builds pay for it
    import faiss

    return faiss


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); all-zero rows stay zero rather than becoming NaN."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def ivf_lists(n: int) -> int:
    """nlist for n vectors: 4 * sqrt(n), never more lists than a 40-per-list sample can train."""
    return max(1, min(max(16, int(LISTS_PER_ROOT * math.sqrt(n))), n // TRAIN_PER_LIST))


def ivf_probes(nlist: int) -> int:
    """nprobe: about 5% of the lists, at least 32 (recall@10 >= 0.99 on clustered data; see the bench)."""
    return min(nlist, max(MIN_NPROBE, nlist // 20))


def build_index(
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    approx_threshold: int = APPROX_THRESHOLD,
    previous: faiss.Index | None = None,
    seed: int = 0,
) -> faiss.Index:
    """A searchable index of unit `vectors` (n x d float32) under int64 `ids`; kind chosen by size.

    `previous`: an older IVF index of the same vector set, whose trained centroids are reused when its size is
    within 2x of n (the data has not drifted enough to need new lists), so an incremental re-index is cheap.
    """
    faiss = _faiss()
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = vectors.shape
    fp16 = faiss.ScalarQuantizer.QT_fp16  # the store's own precision: lossless for its vectors, half of float32
    if n <= approx_threshold:
        index = faiss.IndexIDMap2(faiss.IndexScalarQuantizer(d, fp16, faiss.METRIC_INNER_PRODUCT))
        index.add_with_ids(vectors, ids)
        return index

    nlist = ivf_lists(n)
    quantizer = faiss.IndexFlatIP(d)
    old = _reusable_ivf(previous, n, d)
    if old is not None:
        nlist = old.nlist
        quantizer.add(old.quantizer.reconstruct_n(0, nlist))
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, fp16, faiss.METRIC_INNER_PRODUCT)
        index.is_trained = True  # fp16 needs no codebook; the lists are the old ones
    else:
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, fp16, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True  # centroids on the unit sphere, as the data is
        index.cp.niter = KMEANS_ITERATIONS
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        sample = vectors[np.sort(rng.choice(n, size=min(n, TRAIN_PER_LIST * nlist), replace=False))]
        index.train(sample)
    index.add_with_ids(vectors, ids)
    index.nprobe = ivf_probes(nlist)  # stored in the index file with it
    return index


def _reusable_ivf(previous: faiss.Index | None, n: int, d: int):  # noqa: ANN202
    if previous is None:
        return None
    faiss = _faiss()
    try:
        ivf = faiss.extract_index_ivf(previous)
    except RuntimeError:  # a flat index: nothing trained to reuse
        return None
    if ivf.d != d or not (n / 2 <= ivf.ntotal <= 2 * n):
        return None
    return ivf


def index_kind(index: faiss.Index) -> str:
    """'exact' or 'ivf' (for stats and tests)."""
    faiss = _faiss()
    try:
        faiss.extract_index_ivf(index)
    except RuntimeError:
        return "exact"
    return "ivf"


def search_index(
    index: faiss.Index, query: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the best k, best first; ids of -1 (fewer than k vectors) are dropped."""
    faiss = _faiss()
    query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    params = None
    if allowed_ids is not None:
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
        if index_kind(index) == "ivf":
            ivf = faiss.extract_index_ivf(index)
            # A filter keeps only a part of each list: probe twice as many lists to find k survivors.
            params = faiss.SearchParametersIVF(sel=selector, nprobe=min(ivf.nlist, 2 * ivf.nprobe))
        else:
            params = faiss.SearchParameters(sel=selector)
    scores, ids = index.search(query, k, params=params)
    keep = ids[0] >= 0
    return scores[0][keep], ids[0][keep]


def exact_search(ids: np.ndarray, vectors: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force over an explicit candidate set (used for filtered searches over few vectors)."""
    scores = vectors @ np.asarray(query, dtype=np.float32).reshape(-1)
    k = min(k, len(scores))
    if k == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.lexsort((ids[top], -scores[top]))]
    return scores[top], ids[top]


def write_index(index: faiss.Index, path: Path) -> None:
    from damo_cli.integrity import atomic_path

    with atomic_path(path) as tmp:
        _faiss().write_index(index, str(tmp))


def read_index(path: Path) -> faiss.Index | None:
    """The cached index, or None when it is missing or unreadable (a derived file: rebuild, don't complain)."""
    try:
        return _faiss().read_index(str(path))
    except (RuntimeError, OSError):
        return None
