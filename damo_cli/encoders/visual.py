"""Visual backbone for damo-tiny: ImageNet EfficientNet-Lite0, frozen.

Per frame it gives a global vector (the pooled head features, 1280-d) and a local map (7x7 = 49 tokens of 1280-d),
which the DaMO global residual consumes, plus the 1000-class ImageNet head used for the zero-shot text bridge.

On the CPU the network runs through ONNX Runtime (encoders.onnx_runtime): 3-5x faster than PyTorch eager on 2 cores,
the same outputs to within 3e-5 (`tests/test_backbones.py -k onnx`). Where the export cannot be made, or on a GPU,
PyTorch runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from damo_cli.cards import BackboneSpec
from damo_cli.encoders.onnx_runtime import OPSET, cpu_session, export_once, export_path
from damo_cli.encoders.weights import packaged_file
from damo_cli.errors import ModelError

CLASS_NAMES_FILE = Path(__file__).with_name("imagenet_classes.txt")


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet class names in the classifier's order (read once per process)."""
    return tuple(CLASS_NAMES_FILE.read_text(encoding="utf-8").splitlines())


@dataclass
class VisualFeatures:
    global_: torch.Tensor  # (N, D) pooled features per frame
    local: torch.Tensor  # (N, grid*grid, D) spatial tokens per frame, row-major
    class_probs: torch.Tensor  # (N, 1000) ImageNet class probabilities (the head costs ~nothing beside the trunk)


class VisualEncoder:
    def __init__(self, backbone: BackboneSpec, device: str = "cpu", batch_size: int = 8) -> None:
        if backbone.kind != "efficientnet-lite0":
            raise ModelError(f"VisualEncoder handles efficientnet-lite0, not '{backbone.kind}'")
        from efficientnet_lite_pytorch import EfficientNet

        weights = packaged_file(backbone.files["weights"])
        self.image_size = int(backbone.param("image_size"))
        self.device = device
        self.batch_size = batch_size
        net = EfficientNet.from_name("efficientnet-lite0")
        # weights_only: the .pth is a plain state dict; never unpickle arbitrary objects.
        state = torch.load(weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        self.net = net.eval().to(device)
        # ONNX Runtime on the CPU (see the module's docstring); None: PyTorch runs the network
        weights_sha256 = backbone.files["weights"].sha256
        self._session: Any = _onnx_session(self.net, weights_sha256, self.image_size) if device == "cpu" else None

    @property
    def runtime(self) -> str:
        return "onnxruntime" if self._session is not None else "torch"

    @cached_property
    def class_names(self) -> list[str]:
        return list(imagenet_class_names())

    def _prepare(self, frames: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB -> (N, 3, S, S) float scaled to [-1, 1] as the TF-Lite weights were trained."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ModelError(f"expected frames shaped (N, H, W, 3), got {tuple(frames.shape)}")
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = torch.nn.functional.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False
            )
        return ((x - 127.5) / 127.5).to(self.device)

    @torch.inference_mode()
    def _run(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        maps, logits = [], []
        for start in range(0, len(frames), self.batch_size):
            x = self._prepare(frames[start : start + self.batch_size])
            if self._session is not None:
                fmap_np, logits_np = self._session.run(None, {"frames": x.numpy()})
                fmap, batch_logits = torch.from_numpy(fmap_np), torch.from_numpy(logits_np)
            else:
                fmap, batch_logits = _Trunk(self.net)(x)
            maps.append(fmap)  # (B, 1280, 7, 7)
            logits.append(batch_logits)  # (B, 1000)
        return torch.cat(maps).cpu(), torch.cat(logits).cpu()

    def encode(self, frames: np.ndarray) -> VisualFeatures:
        """Frames (N, H, W, 3) uint8 -> global (N, 1280), local (N, 49, 1280) features and class probabilities."""
        if len(frames) == 0:
            dim, classes = self.net._fc.in_features, self.net._fc.out_features
            return VisualFeatures(torch.zeros(0, dim), torch.zeros(0, 0, dim), torch.zeros(0, classes))
        fmap, logits = self._run(frames)
        local = fmap.flatten(2).transpose(1, 2)  # (N, 49, 1280)
        return VisualFeatures(global_=fmap.mean(dim=(2, 3)), local=local, class_probs=logits.softmax(dim=-1))

    def feature_maps(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames (N, H, W, 3) uint8 -> feature maps (N, 1280, 7, 7) and class probabilities (N, 1000)."""
        fmap, logits = self._run(frames)
        return fmap, logits.softmax(dim=-1)

    def class_activation(self, fmap: torch.Tensor, class_index: int) -> np.ndarray:
        """Where in each frame a class's evidence is: (N, 1280, 7, 7) maps -> (N, 7, 7), scaled to [0, 1] per frame.

        The feature map weighted by the class's row of the classifier (the class's logit is this map's mean plus a
        bias): the cells that made the network say "Labrador retriever", whose colour is what is asked about."""
        row = self.net._fc.weight.detach()[class_index].to(fmap.dtype).cpu()  # (1280,)
        maps = torch.einsum("nchw,c->nhw", fmap, row).numpy()
        low = maps.min(axis=(1, 2), keepdims=True)
        high = maps.max(axis=(1, 2), keepdims=True)
        return (maps - low) / np.maximum(high - low, 1e-6)

    def classify(self, frames: np.ndarray) -> torch.Tensor:
        """ImageNet class probabilities (N, 1000)."""
        _, logits = self._run(frames)
        return logits.softmax(dim=-1)

    def top_classes(self, frames: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        probs = self.classify(frames)
        values, indices = probs.topk(k, dim=-1)
        return [
            [(self.class_names[i], float(v)) for v, i in zip(row_v, row_i, strict=True)]
            for row_v, row_i in zip(values.tolist(), indices.tolist(), strict=True)
        ]


class _Trunk(torch.nn.Module):
    """The network as the features need it: frames (B, 3, S, S) -> (feature map (B, 1280, 7, 7), logits (B, 1000))."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.net.extract_features(x)
        return fmap, self.net._fc(fmap.mean(dim=(2, 3)))  # dropout is identity in eval


def onnx_path(weights_sha256: str, image_size: int) -> Path:
    """Where the ONNX export of these weights lives (encoders.onnx_runtime)."""
    return export_path(f"efficientnet-lite0-{image_size}px", weights_sha256, torch.__version__)


def _onnx_session(net: torch.nn.Module, weights_sha256: str, image_size: int) -> Any:
    """An ONNX Runtime session of `net`, exported on first use; None when it cannot be made here."""

    def export(file: Any) -> None:
        with torch.no_grad():
            torch.onnx.export(
                _Trunk(net).eval(),
                (torch.zeros(1, 3, image_size, image_size),),
                file,
                dynamo=False,  # the TorchScript exporter: no onnxscript needed, and this network traces as it is
                input_names=["frames"],
                output_names=["fmap", "logits"],
                dynamic_axes={"frames": {0: "batch"}, "fmap": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=OPSET,
            )

    model = export_once(onnx_path(weights_sha256, image_size), weights_sha256, export)
    return None if model is None else cpu_session(model)
