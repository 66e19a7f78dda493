"""Backbones of hub cards, built with transformers from the files `damo models pull` fetched and verified.

Every load re-hashes the role's files against the lock file first (`hub.verify_pulled`, offline), then reads them
from that snapshot folder only: `local_files_only`, safetensors only, never `trust_remote_code`, and only the model
classes named here (a card cannot make damo run arbitrary code).

- visual, kind "hf-vision-tower": an image-text model, SigLIP / SigLIP 2 (`SiglipModel`, `Siglip2Model`) or CLIP
  (`CLIPModel`). Per frame: the global vector (the vision tower's pooled output: SigLIP's attention-pooling head,
  CLIP's post-LayerNorm CLS token), the local map (the last layer's patch tokens, CLS dropped, pooled to the card's
  grid), the image embedding in the model's own image-text space (SigLIP: that pooled output; CLIP: its projection;
  unit length) and ImageNet class probabilities by zero-shot classification against the model's own text embeddings
  of "a photo of a {class}" (what `ask` names of what is seen). `embed_text` embeds queries the same way.
- audio, kind "hf-whisper-encoder": WhisperFeatureExtractor + the Whisper encoder's states per 30 s window, and
  transcripts by greedy decoding with the full model when the repo has its tokenizer: one line per window with
  speech, no word times and no voice-activity detection (damo-tiny's faster-whisper has both).
- text, kind "sentence-transformers": the packaged encoder's code on the pulled folder (mean pooling, unit norm).
- llm, kind "hf-causal-lm": AutoModelForCausalLM + AutoTokenizer.

On a GPU the backbones run in half precision (`device.compute_dtype`); outputs are returned as fp32 CPU tensors.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from damo_cli.cards import BackboneSpec, ModelCard
from damo_cli.device import batch_size, compute_dtype, out_of_memory_hint
from damo_cli.encoders.audio import AudioWindowStates, TranscriptSegment
from damo_cli.encoders.quiet import quiet_transformers
from damo_cli.encoders.visual import VisualFeatures, imagenet_class_names
from damo_cli.errors import ModelError
from damo_cli.integrity import cached_array
from damo_cli.paths import cache_dir

IMAGE_TEXT_CLASSES = ("SiglipModel", "Siglip2Model", "CLIPModel")  # the model classes a vision tower may name
CLASS_PROMPT = "a photo of a {}"
MAX_TRANSCRIPT_TOKENS = 224  # a 30 s window of fast speech is ~100 words
SILENT_PEAK = 1e-3  # a window whose loudest sample is below this is not transcribed (Whisper invents text on silence)


@dataclass(frozen=True)
class PulledFolder:
    """A hub backbone's verified snapshot folder, and what identifies its weights."""

    path: Path
    sha256: dict[str, str]  # repo file -> sha256 (from the lock file, just re-checked)

    @property
    def fingerprint(self) -> str:
        joined = "\n".join(f"{name}={digest}" for name, digest in sorted(self.sha256.items()))
        return hashlib.sha256(joined.encode()).hexdigest()[:16]


def pulled_folder(card: ModelCard, role: str) -> PulledFolder:
    """The folder holding a hub backbone's files at its pinned revision, each re-hashed against the lock file."""
    from damo_cli.hub import verify_pulled

    files = verify_pulled(card, (role,))
    if not files:
        raise ModelError(f"{card.name}'s {role} backbone has no pulled files: damo models pull {card.name}")
    roots = {Path(f.path).parents[len(Path(f.filename).parts) - 1] for f in files}
    if len(roots) != 1:  # every file of one revision lives in snapshots/<revision>/
        raise ModelError(f"{card.name}'s {role} files are not in one snapshot folder: damo models pull {card.name}")
    if not any(f.filename.endswith(".safetensors") for f in files):
        raise ModelError(f"{card.name}'s {role} backbone pins no .safetensors weights (damo loads no pickled weights)")
    return PulledFolder(roots.pop(), {f.filename: f.sha256 for f in files})


def _config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"{folder}: cannot read config.json: {err}") from err


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


# ------------------------------------------------------------------------------------------------------- visual


@dataclass
class HubVisualFeatures(VisualFeatures):
    image_embeds: torch.Tensor | None = None  # (N, E) unit vectors in the tower's image-text space


@functools.lru_cache(maxsize=2)
def _image_text_model(folder: Path, device: str) -> tuple[Any, Any, Any]:
    """(model, image processor, tokenizer), loaded once per process: the frame encoder and the query encoder of
    the zero-shot channel share one copy."""
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    quiet_transformers()
    architectures = _config(folder).get("architectures") or []
    name = next((a for a in architectures if a in IMAGE_TEXT_CLASSES), None)
    if name is None:
        raise ModelError(
            f"{folder}: an hf-vision-tower must be a full image-text model ({' or '.join(IMAGE_TEXT_CLASSES)}), "
            f"not {architectures or 'unnamed'}: the zero-shot channel needs its text tower"
        )
    model_class = getattr(transformers, name)
    model = model_class.from_pretrained(
        str(folder), local_files_only=True, use_safetensors=True, dtype=compute_dtype(device)
    )
    processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return model.eval().to(device), processor, tokenizer


class HubVisionTower:
    """Frames -> HubVisualFeatures with a SigLIP / SigLIP 2 / CLIP model; texts -> unit vectors in the same space."""

    def __init__(self, card: ModelCard, backbone: BackboneSpec, device: str = "cpu") -> None:
        if backbone.kind != "hf-vision-tower":
            raise ModelError(f"HubVisionTower loads an hf-vision-tower, not '{backbone.kind}'")
        self.pulled = pulled_folder(card, backbone.role)
        self.device = device
        self.model, self.processor, self.tokenizer = _image_text_model(self.pulled.path, device)
        vision = self.model.config.vision_config
        patches = getattr(vision, "num_patches", None) or (vision.image_size // vision.patch_size) ** 2  # SigLIP 2
        self.grid = int(backbone.params.get("grid", math.isqrt(patches)))
        self.text_length = int(self.model.config.text_config.max_position_embeddings)
        self.clip = type(self.model).__name__ == "CLIPModel"  # a CLS token, projected embeddings, softmax-trained
        self.dim = int(vision.hidden_size)  # the global vector and local tokens
        self.embed_dim = int(getattr(self.model.config, "projection_dim", None) or self.dim)  # the image-text space
        self.fingerprint = self.pulled.fingerprint
        self._classes: torch.Tensor | None = None  # the ImageNet class prompts' embeddings, made on first encode
        per_frame = 4 * self.dim * (self.grid**2 + 1) * vision.num_hidden_layers  # rough activations per frame
        self.batch_size = batch_size(device, per_frame)

    @property
    def logit_scale_bias(self) -> tuple[float, float | None]:
        """SigLIP's own calibration, P(match) = sigmoid(scale * cosine + bias); CLIP has a scale only (bias None):
        it was trained with a softmax over a batch, so one pair's cosine has no probability of its own."""
        bias = getattr(self.model, "logit_bias", None)
        return float(self.model.logit_scale.detach().exp()), None if bias is None else float(bias.detach())

    def pixel_inputs(self, frames: np.ndarray) -> dict[str, torch.Tensor]:
        """The processor's tensors for (N, H, W, 3) uint8 RGB frames (SigLIP 2 adds its patch mask and shapes)."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ModelError(f"expected frames shaped (N, H, W, 3), got {tuple(frames.shape)}")
        inputs = self.processor(images=list(frames), return_tensors="pt")
        return {k: v.to(self.device) for k, v in inputs.items()}

    def text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """SigLIP: token ids padded to the text tower's full length with no attention mask (it was trained attending
        to its padding; its own tokenizer returns input ids only). CLIP: padded to the longest, with the mask."""
        if self.clip:
            inputs = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.text_length, return_tensors="pt"
            )
            return {k: inputs[k].to(self.device) for k in ("input_ids", "attention_mask")}
        inputs = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.text_length, return_tensors="pt"
        )
        return {"input_ids": inputs["input_ids"].to(self.device)}

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> HubVisualFeatures:
        if len(frames) == 0:
            return HubVisualFeatures(
                torch.zeros(0, self.dim), torch.zeros(0, self.grid**2, self.dim), torch.zeros(0, 1000),
                torch.zeros(0, self.embed_dim),
            )  # fmt: skip
        globals_, locals_, embeds_ = [], [], []
        with out_of_memory_hint("encoding frames"):
            for start in range(0, len(frames), self.batch_size):
                inputs = self.pixel_inputs(frames[start : start + self.batch_size])
                out = self.model.vision_model(**inputs)  # what get_image_features runs (before CLIP's projection)
                pooled = out.pooler_output
                globals_.append(pooled.float().cpu())
                embeds_.append((self.model.visual_projection(pooled) if self.clip else pooled).float().cpu())
                tokens = out.last_hidden_state[:, 1:] if self.clip else out.last_hidden_state
                locals_.append(self._grid(tokens.float().cpu(), inputs.get("spatial_shapes")))
        embeds = _unit(torch.cat(embeds_))
        probs = (self.logit_scale_bias[0] * embeds @ self.class_embeddings().T).softmax(dim=-1)
        return HubVisualFeatures(torch.cat(globals_), torch.cat(locals_), probs, image_embeds=embeds)

    def _grid(self, tokens: torch.Tensor, shapes: torch.Tensor | None) -> torch.Tensor:
        """Patch tokens (N, P, D) -> (N, grid*grid, D), row-major; SigLIP 2 gives each image's own patch grid."""
        maps = []
        for i, row in enumerate(tokens):
            h, w = (int(x) for x in shapes[i]) if shapes is not None else (math.isqrt(row.shape[0]),) * 2
            patch_map = row[: h * w].reshape(h, w, -1).permute(2, 0, 1)
            maps.append(torch.nn.functional.adaptive_avg_pool2d(patch_map, self.grid).flatten(1).T)
        return torch.stack(maps)

    @torch.inference_mode()
    def embed_text(self, texts: list[str], batch: int = 64) -> np.ndarray:
        """Texts -> (N, E) float32 unit vectors in the image-text space (the zero-shot channel's query)."""
        if not texts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        out = []
        with out_of_memory_hint("encoding text"):
            for start in range(0, len(texts), batch):
                inputs = self.text_inputs(texts[start : start + batch])
                out.append(_unit(self.model.get_text_features(**inputs).pooler_output).cpu())
        return torch.cat(out).numpy()

    def class_embeddings(self) -> torch.Tensor:
        """(1000, E) text embeddings of the ImageNet class prompts, computed once per model and cached on disk."""
        if self._classes is not None:
            return self._classes
        names = imagenet_class_names()
        key = hashlib.sha256(("\n".join(names) + CLASS_PROMPT + self.fingerprint).encode()).hexdigest()[:16]
        vectors = cached_array(
            cache_dir() / "hub-classes" / f"{key}.npy",
            (len(names), self.embed_dim),
            lambda: self.embed_text([CLASS_PROMPT.format(name) for name in names]),
        )
        self._classes = torch.from_numpy(vectors).float()
        return self._classes


# -------------------------------------------------------------------------------------------------------- audio


class HubWhisper:
    """16 kHz mono -> Whisper encoder states per 30 s window, and (with the full model) a transcript per window."""

    def __init__(self, card: ModelCard, backbone: BackboneSpec, device: str = "cpu") -> None:
        if backbone.kind != "hf-whisper-encoder":
            raise ModelError(f"HubWhisper loads an hf-whisper-encoder, not '{backbone.kind}'")
        from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperForConditionalGeneration

        quiet_transformers()
        self.pulled = pulled_folder(card, backbone.role)
        folder = str(self.pulled.path)
        self.device, self.dtype = device, compute_dtype(device)
        self.features = WhisperFeatureExtractor.from_pretrained(folder, local_files_only=True)
        self.model = WhisperForConditionalGeneration.from_pretrained(
            folder, local_files_only=True, use_safetensors=True, dtype=self.dtype
        ).eval().to(device)  # fmt: skip
        self.encoder = self.model.get_encoder()
        self.sample_rate = int(backbone.params.get("sample_rate", self.features.sampling_rate))
        self.window_seconds = float(backbone.param("window_seconds"))
        self.states_per_window = int(self.model.config.max_source_positions)
        if self.states_per_window != int(backbone.param("states_per_window")):
            raise ModelError(
                f"{card.name}: the card says {backbone.param('states_per_window')} audio states per window, the "
                f"pulled Whisper gives {self.states_per_window}"
            )
        self.dim = int(self.model.config.d_model)
        self.tokenizer = None
        if (self.pulled.path / "tokenizer_config.json").is_file():
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.batch_size = batch_size(device, 4 * self.dim * self.states_per_window * self.model.config.encoder_layers)

    def _windows(self, samples: np.ndarray) -> list[tuple[int, np.ndarray]]:
        if samples.ndim != 1:
            raise ModelError(f"audio must be mono 16 kHz samples shaped (T,), got {tuple(samples.shape)}")
        window = int(self.window_seconds * self.sample_rate)
        return [(o, samples[o : o + window].astype(np.float32, copy=False)) for o in range(0, len(samples), window)]

    def _mel(self, chunks: list[np.ndarray]) -> torch.Tensor:
        """Log-mel windows, each padded to the full 30 s as Whisper was trained."""
        mel = self.features(chunks, sampling_rate=self.sample_rate, return_tensors="pt").input_features
        return mel.to(self.device, self.dtype)

    def encode(self, samples: np.ndarray, start: float = 0.0) -> list[AudioWindowStates]:
        return list(self.iter_encode(samples, start))

    def iter_encode(self, samples: np.ndarray, start: float = 0.0) -> Iterator[AudioWindowStates]:
        """`encode`, a batch of windows at a time (the caller pools each window as it comes)."""
        windows = self._windows(samples)
        window = self.window_seconds * self.sample_rate
        with out_of_memory_hint("encoding audio"):
            for first in range(0, len(windows), self.batch_size):
                group = windows[first : first + self.batch_size]
                with torch.inference_mode():
                    states = self.encoder(input_features=self._mel([c for _, c in group])).last_hidden_state
                    rows = states.float().cpu().numpy()
                for (offset, chunk), row in zip(group, rows, strict=True):
                    valid = min(self.states_per_window, math.ceil(len(chunk) / window * self.states_per_window))
                    yield AudioWindowStates(start + offset / self.sample_rate, row, valid)

    @torch.inference_mode()
    def transcribe(
        self, samples: np.ndarray, language: str | None = None, beam_size: int = 1
    ) -> list[TranscriptSegment]:
        """One line per 30 s window that holds sound, timed to the window (no word times); none without a tokenizer.
        Greedy decoding only (`damo transcribe --beam-size` is for the packaged faster-whisper)."""
        if beam_size != 1:
            raise ModelError("a hub card's Whisper decodes greedily: drop --beam-size (or use damo-tiny for beams)")
        if self.tokenizer is None:
            return []
        segments = []
        with out_of_memory_hint("transcribing"):
            for offset, chunk in self._windows(samples):
                if len(chunk) == 0 or float(np.abs(chunk).max()) < SILENT_PEAK:
                    continue
                text = self._greedy(self._mel([chunk]), language)
                if text:
                    start = offset / self.sample_rate
                    segments.append(TranscriptSegment(start, start + len(chunk) / self.sample_rate, text, []))
        return segments

    def _greedy(self, mel: torch.Tensor, language: str | None = None) -> str:
        """Greedy decoding from <|startoftranscript|>; Whisper's special tokens, where the tokenizer has them, ask for
        a transcript without timestamps in `language`, or in the language the model hears (its first token)."""
        config = self.model.config
        encoded = self.encoder(input_features=mel)
        ids = [int(config.decoder_start_token_id)]
        forced = [self._token(t) for t in ("<|transcribe|>", "<|notimestamps|>")]
        forced = [t for t in forced if t is not None]
        told = self._token(f"<|{language}|>") if language else None
        if told is not None and len(forced) == 2:
            ids += [told, *forced]
        limit = min(MAX_TRANSCRIPT_TOKENS, int(config.max_target_positions) - 1)
        # The decoder's key/value cache: only new tokens are fed. Without it every step re-ran the decoder over the
        # whole prefix: 60 tokens of a Whisper-small-sized decoder took 214 s instead of 17 s on 2 busy CPU cores.
        cache, fresh = None, ids
        while len(ids) < limit:
            out = self.model(
                encoder_outputs=encoded, decoder_input_ids=torch.tensor([fresh], device=self.device), cache=cache,
                use_cache=True,
            )  # fmt: skip
            cache, token = out.cache, int(out.logits[0, -1].argmax())
            if token == config.eos_token_id:
                break
            ids.append(token)
            fresh = [token]
            if len(ids) == 2 and len(forced) == 2 and told is None:  # the language the model chose, then the task
                ids += forced
                fresh = [token, *forced]
        return self.tokenizer.decode(ids[1:], skip_special_tokens=True).strip()

    def _token(self, token: str) -> int | None:
        """The id of a special token the tokenizer knows, else None (a tiny or non-Whisper tokenizer)."""
        found = self.tokenizer.convert_tokens_to_ids(token)
        return found if isinstance(found, int) and found != self.tokenizer.unk_token_id else None


# ----------------------------------------------------------------------------------------------------- text, llm


class HubTextEncoder:
    """A sentence-transformers folder from the hub: BERT -> mean of the real tokens' states -> unit length, the steps
    sentence-transformers runs (and damo-tiny's packaged MiniLM), with transformers in fp32 on any device so the
    library's vectors stay comparable across machines."""

    def __init__(self, card: ModelCard, backbone: BackboneSpec, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        if backbone.kind != "sentence-transformers":
            raise ModelError(f"HubTextEncoder loads a sentence-transformers model, not '{backbone.kind}'")
        self.pulled = pulled_folder(card, backbone.role)
        folder = self.pulled.path
        if not _json(folder / "1_Pooling" / "config.json").get("pooling_mode_mean_tokens"):
            raise ModelError(f"{card.name}'s text backbone is not a mean-pooling sentence model")
        self.max_length = int(_json(folder / "sentence_bert_config.json").get("max_seq_length", 256))
        self.dim = int(backbone.param("feature_dim"))
        self.fingerprint = self.pulled.fingerprint
        self.device = device
        quiet_transformers()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
        self.model = model.eval().to(device)

    @torch.inference_mode()
    def encode(self, texts: list[str], batch: int = 64) -> np.ndarray:
        """Sentences -> (N, dim) float32 unit vectors (a dot product is a cosine)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(texts), batch):
            inputs = self.tokenizer(
                texts[start : start + batch], padding=True, truncation=True, max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)  # fmt: skip
            hidden = self.model(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # padding does not count
            out.append(_unit((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).cpu())
        return torch.cat(out).numpy()


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: {err}") from err


def load_hub_llm(card: ModelCard, backbone: BackboneSpec, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) of an hf-causal-lm backbone, eval mode, half precision on a GPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if backbone.kind != "hf-causal-lm":
        raise ModelError(f"load_hub_llm loads an hf-causal-lm, not '{backbone.kind}'")
    quiet_transformers()
    folder = str(pulled_folder(card, backbone.role).path)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    with out_of_memory_hint("loading the language model"):
        model = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, use_safetensors=True, dtype=compute_dtype(device)
        )
        return model.eval().to(device), tokenizer
