"""Text backbone: all-MiniLM-L6-v2 (384-d), the stage-1 text tower and the search query encoder.

The package ships a sentence-transformers folder (BERT -> mean pooling -> L2 normalise, max 256 tokens). On the CPU
those three steps run as one ONNX Runtime graph (encoders.onnx_runtime), tokenised by `tokenizers` from the folder's
tokenizer.json: once the export exists a query needs neither torch nor transformers, whose imports took ~7 s of every
warm `damo ask`. The export is made from the verified weights through transformers on first use; where it cannot be
made, or on a GPU, transformers runs the model. `tests/test_backbones.py` checks both against sentence-transformers.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from damo_cli.cards import BackboneSpec
from damo_cli.encoders.onnx_runtime import OPSET, cpu_session, export_once, export_path
from damo_cli.encoders.quiet import quiet_transformers
from damo_cli.encoders.weights import packaged_file
from damo_cli.errors import ModelError


class TextEncoder:
    def __init__(self, backbone: BackboneSpec, device: str = "cpu") -> None:
        if backbone.kind != "sentence-transformers" or backbone.source != "package":
            raise ModelError(f"TextEncoder loads a packaged sentence-transformers model, not '{backbone.kind}'")
        weights = backbone.files["model.safetensors"]
        self.folder = packaged_file(weights).parent
        pooling = json.loads((self.folder / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ModelError(f"{self.folder}: expected a mean-pooling sentence model")
        self.max_length = int(json.loads((self.folder / "sentence_bert_config.json").read_text())["max_seq_length"])
        self.dim = int(backbone.param("feature_dim"))
        self.fingerprint = weights.sha256[:16]
        self.device = device
        self._sha256 = weights.sha256
        self._loaded = False
        self._load_lock = threading.Lock()
        self.model: Any = None
        self._session: Any = None

    def load(self) -> TextEncoder:
        """The network, loaded on first use: `damo index` needs it only for the words a video gave, after its frames
        and sound are encoded, so a process indexing one long video does not hold its ~120 MB beside the frame and
        sound models (and a cached class table never loads it)."""
        with self._load_lock:  # `damo serve`'s threads: one load
            if not self._loaded:
                self._open()
        return self

    def _open(self) -> None:
        self._session = _onnx_session(self.folder, self._sha256) if self.device == "cpu" else None
        if self._session is not None:
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
            self._fast.enable_truncation(self.max_length)
            self._fast.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest in the batch, as transformers
        else:
            self.tokenizer, self.model = _load_transformers(self.folder, self.device)
        self._loaded = True

    @property
    def runtime(self) -> str:
        self.load()
        return "onnxruntime" if self._session is not None else "transformers"

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Sentences -> (N, 384) float32, unit norm (so a dot product is a cosine)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        encode = self._encode_onnx if self._session is not None else self._encode_transformers
        out = [encode(texts[start : start + batch_size]) for start in range(0, len(texts), batch_size)]
        return np.concatenate(out).astype(np.float32, copy=False)

    def _encode_onnx(self, texts: list[str]) -> np.ndarray:
        batch = self._fast.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in batch], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in batch], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in batch], dtype=np.int64),
        }
        return self._session.run(None, feeds)[0]

    def _encode_transformers(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            batch = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            return _sentence_embeddings(self.model, **batch).cpu().numpy()


def _load_transformers(folder: Path, device: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    quiet_transformers()  # no "Loading weights" bar on stderr
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval().to(device)
    return tokenizer, model


def _onnx_session(folder: Path, weights_sha256: str) -> Any:
    """The sentence graph on ONNX Runtime, exported through transformers on first use; None if it cannot be."""
    from importlib.metadata import version

    def export(file: Any) -> None:
        import torch

        _, bert = _load_transformers(folder, "cpu")

        class SentenceGraph(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return _sentence_embeddings(self.bert, input_ids, attention_mask, token_type_ids)

        example = torch.ones(1, 8, dtype=torch.long)
        names = ["input_ids", "attention_mask", "token_type_ids"]
        with torch.no_grad():
            torch.onnx.export(
                SentenceGraph().eval(),
                (example, example, torch.zeros_like(example)),
                file,
                dynamo=False,
                input_names=names,
                output_names=["sentence"],
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in names} | {"sentence": {0: "batch"}},
                opset_version=OPSET,
            )

    path = export_path("minilm", weights_sha256, version("torch"))  # no torch import on a warm start
    model = export_once(path, weights_sha256, export)
    return None if model is None else cpu_session(model)


def _sentence_embeddings(bert: Any, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
    """BERT -> mean of the real tokens' states (padding does not count) -> unit length: (B, L) ids -> (B, 384)."""
    import torch

    hidden = bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, dim=-1)
