"""Text backbone: all-MiniLM-L6-v2 (384-d), the stage-1 text tower and the search query encoder.

The package ships a sentence-transformers folder (BERT -> mean pooling -> L2 normalise, max 256 tokens). We run
those three steps with transformers directly: importing sentence-transformers pulls scikit-learn and SciPy, seconds
of start-up on every `damo search`. `tests/test_backbones.py` checks parity with sentence-transformers.
"""

from __future__ import annotations

import json

import numpy as np

from damo_cli.cards import BackboneSpec
from damo_cli.encoders.quiet import quiet_transformers
from damo_cli.encoders.weights import packaged_file
from damo_cli.errors import ModelError


class TextEncoder:
    def __init__(self, backbone: BackboneSpec, device: str = "cpu") -> None:
        if backbone.kind != "sentence-transformers" or backbone.source != "package":
            raise ModelError(f"TextEncoder loads a packaged sentence-transformers model, not '{backbone.kind}'")
        from transformers import AutoModel, AutoTokenizer

        folder = packaged_file(backbone.files["model.safetensors"]).parent
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ModelError(f"{folder}: expected a mean-pooling sentence model")
        self.max_length = int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
        self.dim = int(backbone.param("feature_dim"))
        self.fingerprint = backbone.files["model.safetensors"].sha256[:16]
        self.device = device
        quiet_transformers()  # no "Loading weights" bar on stderr
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval().to(device)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Sentences -> (N, 384) float32, unit norm (so a dot product is a cosine)."""
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state  # (B, L, 384)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1): padding does not count
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(mean, dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32, copy=False)
