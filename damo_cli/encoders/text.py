"""Text backbone: all-MiniLM-L6-v2 (384-d), the stage-1 text tower and the search query encoder."""

from __future__ import annotations

import numpy as np

from damo_cli.cards import BackboneSpec
from damo_cli.encoders.weights import packaged_file
from damo_cli.errors import ModelError


class TextEncoder:
    def __init__(self, backbone: BackboneSpec, device: str = "cpu") -> None:
        if backbone.kind != "sentence-transformers" or backbone.source != "package":
            raise ModelError(f"TextEncoder loads a packaged sentence-transformers model, not '{backbone.kind}'")
        from sentence_transformers import SentenceTransformer

        weights = packaged_file(backbone.files["model.safetensors"])
        self.dim = int(backbone.param("feature_dim"))
        # The package folder is a complete sentence-transformers layout; load it in place, offline.
        self.model = SentenceTransformer(str(weights.parent), device=device, local_files_only=True)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Sentences -> (N, 384) float32, unit norm (so a dot product is a cosine)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return vectors.astype(np.float32, copy=False)
