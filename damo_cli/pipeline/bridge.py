"""The zero-shot visual bridge: ImageNet class probabilities -> the MiniLM text space, with no image-text data.

Each of the 1,000 class names is embedded once as "there is a {name} in the scene"; a frame's vector is the
probability-weighted mean of its top classes' embeddings. It is a search channel beside the trained per-time head,
measured in docs/architecture.md §3 to rank the right video first for 3 of 5 visual queries on unseen real videos
(then with "a photo of a {name}"). The stage-1 teacher in training.trainer words its classes with these PROMPTS too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from damo_cli.encoders.text import TextEncoder
from damo_cli.encoders.visual import imagenet_class_names
from damo_cli.integrity import cached_array
from damo_cli.paths import cache_dir

TOP_CLASSES = 10  # the long tail of 990 near-zero probabilities only adds noise to the mixture
# Each class's embedding is the unit mean over these prompts. Chosen on the real clips' train split
# (scripts/choose_bridge.py, models/damo-tiny/TRAINING.md): against "a photo of a {}" it ranked the right clip first
# more often (with and without the trained head) and placed the bridge's own moment better; prompt ensembles,
# WordNet hypernyms or glosses, fewer top classes and sharpening did not beat it on every measure.
PROMPTS: tuple[str, ...] = ("there is a {} in the scene",)
# The named evidence ranks class names against a question with these (measured so; the bridge's choice left it alone).
NAMING_PROMPTS: tuple[str, ...] = ("a photo of a {}",)
SHARPEN = 1.0  # probabilities are raised to this power before mixing (1: as the classifier gives them)
SETTINGS = f"prompts={'|'.join(PROMPTS)};top={TOP_CLASSES};sharpen={SHARPEN}"  # what stored bridge vectors depend on


def class_text_embeddings(
    text: TextEncoder, prompts: Sequence[str] = PROMPTS, names: Sequence[str] | None = None
) -> np.ndarray:
    """(1000, 384) unit vectors of the class prompts, computed once and cached (keyed by names, prompts, model)."""
    names = list(names) if names is not None else imagenet_class_names()
    key = hashlib.sha256(("\n".join(names) + "\t".join(prompts) + text.fingerprint).encode()).hexdigest()[:16]

    def compute() -> np.ndarray:
        vectors = text.encode([prompt.format(name) for prompt in prompts for name in names])
        return _unit(vectors.reshape(len(prompts), len(names), -1).mean(0))

    return cached_array(cache_dir() / "bridge" / f"classes-{key}.npy", (len(names), text.dim), compute)


def bridge_vectors(
    class_probs: torch.Tensor, class_embeddings: np.ndarray, top: int = TOP_CLASSES, sharpen: float = SHARPEN
) -> np.ndarray:
    """(N, 1000) probabilities -> (N, 384) unit vectors in the text space."""
    if class_probs.shape[0] == 0:
        return np.zeros((0, class_embeddings.shape[1]), dtype=np.float32)
    values, indices = class_probs.topk(top, dim=-1)  # (N, K)
    values = values.clamp_min(0) ** sharpen
    weights = (values / values.sum(-1, keepdim=True).clamp_min(1e-12)).numpy()
    mixed = np.einsum("nk,nkd->nd", weights, class_embeddings[indices.numpy()])
    return _unit(mixed)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)).astype(np.float32)
