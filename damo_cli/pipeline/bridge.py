"""The zero-shot visual bridge: ImageNet class probabilities -> the MiniLM text space, with no image-text data.

Each of the 1,000 class names is embedded once as "a photo of a {name}"; a frame's vector is the probability-weighted
mean of its top classes' embeddings. It is a search channel beside the trained per-time head (and a stage-1 teacher),
measured in docs/architecture.md §3 to rank the right video first for 3 of 5 visual queries on unseen real videos.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from damo_cli.encoders.text import TextEncoder
from damo_cli.encoders.visual import imagenet_class_names
from damo_cli.integrity import atomic_path
from damo_cli.paths import cache_dir

TOP_CLASSES = 10  # the long tail of 990 near-zero probabilities only adds noise to the mixture
PROMPT = "a photo of a {}"


def class_text_embeddings(text: TextEncoder) -> np.ndarray:
    """(1000, 384) unit vectors of the class prompts, computed once and cached (keyed by names, prompt, model)."""
    names = imagenet_class_names()
    key = hashlib.sha256(("\n".join(names) + PROMPT + text.fingerprint).encode()).hexdigest()[:16]
    path = cache_dir() / "bridge" / f"classes-{key}.npy"
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == (len(names), text.dim):
                return cached
        except (OSError, ValueError):
            pass  # damaged cache: rebuild below
    vectors = text.encode([PROMPT.format(name) for name in names])
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, vectors, allow_pickle=False)
    return vectors


def bridge_vectors(class_probs: torch.Tensor, class_embeddings: np.ndarray) -> np.ndarray:
    """(N, 1000) probabilities -> (N, 384) unit vectors in the text space."""
    if class_probs.shape[0] == 0:
        return np.zeros((0, class_embeddings.shape[1]), dtype=np.float32)
    values, indices = class_probs.topk(TOP_CLASSES, dim=-1)  # (N, K)
    weights = (values / values.sum(-1, keepdim=True)).numpy()
    mixed = np.einsum("nk,nkd->nd", weights, class_embeddings[indices.numpy()])
    return _unit(mixed)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)).astype(np.float32)
