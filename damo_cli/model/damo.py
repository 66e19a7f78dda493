"""DaMO (arXiv 2506.11558), top to bottom: global residual -> temporal conv + time embeddings -> T-Fuseformer
blocks -> per-time heads -> Q-Former projector -> LLM glue.

The model reads frozen-backbone features, never pixels or samples: per frame a global vector and a grid of local
tokens (visual), per 30 s audio window the encoder's states (audio). Shapes in comments use
    B batch, T frames, Lv = g*g local tokens per frame, Dv / Da backbone widths, W audio windows, S states per
    window (Whisper: 1500), d fuser width, Pv pooled visual tokens per frame (L'_v), La pooled audio tokens per
    window (L'_a), T' = ceil(T / stride) visual steps, Na = W * La audio tokens, Qv / Qa / F visual / audio queries
    and fusion tokens, K windows of a long video, P soft-prompt tokens, H LLM width.

What the paper fixes (docs/architecture.md §2) is implemented as written. Where it is silent, these are the
choices (each is tested in tests/test_model.py):

1. Global residual, X_res = Pool(X_local -> L') + FFN(X_global): both terms are mapped to the fuser width d (a
   linear on the pooled local tokens, a 2-layer FFN on the global vector added to every pooled token), so the
   backbone width never leaks into the fuser. Visual: adaptive average pooling of the g x g map to p x p
   (damo-tiny 7x7 -> 2x2, damo-7b 16x16 -> 4x4). Audio: per 30 s window, a *masked* adaptive average pooling of the
   S states into La tokens with the same bins as AdaptiveAvgPool1d (damo-tiny 30 -> one per second), and the
   window's global vector is the mean of its *real* states only.
2. Temporal pathway: Conv1d along time (kernel 3, stride 2, zero padding 1, `conv_groups` groups), shared across
   the Pv spatial slots, plus a skip that is the masked mean of each stride group, so at initialisation a step is
   the mean of its frames. An odd kernel makes T frames give exactly ceil(T / stride) steps, and padded frames are
   zeroed first, i.e. they look like the conv's own zero padding (padding cannot change real outputs). Only the
   visual stream is convolved (as in the paper); the audio token rate is set by its pooling.
3. Time embeddings encode absolute seconds: sin/cos at geometric periods from 0.5 s to 20,000 s (computed in
   float64, so hour-long videos keep sub-second resolution) plus a learnable MLP of them whose last layer starts at
   zero. They are added once, at the Fuseformer input, to the LayerNorm-ed content: x = LN(content) + time(t) +
   modality embedding (+ a learnable spatial-slot embedding for visual tokens). A visual step's time is the mean of
   its frames' times; an audio token's time is the mean time of its real states. Content features (everything
   before this addition) therefore do not depend on time at all.
4. T-Fuseformer block (pre-LN residual everywhere): per modality, self-attention + FFN over its time-ordered
   tokens, then that modality's queries cross-attend to them; then joint self-attention + FFN over
   [fusion tokens; visual queries; audio queries]. Queries and fusion tokens are learnable parameters entering block
   1 and carried through the stack (the hierarchy); time-ordered tokens only attend within their own modality.
5. Per-time outputs: one per visual step T' (the conv sets the time grid). A step's feature is the mean of its Pv
   last-block visual tokens plus the overlap-weighted mean of the last-block audio tokens whose time spans overlap
   the step's span (nothing is added when none does), then LayerNorm. A step's span is the union of its frames'
   spans (each frame owns up to the midpoints to its neighbours). The stage-1 head maps it linearly to the text
   space and to unit norm. A clip embedding (mean of the fusion tokens, LayerNorm, linear, unit norm) is also
   aligned in stage 1, otherwise the query/fusion branch would get no gradient before stage 2.
6. Missing or partial audio is masked, never zero-filled: a mask per encoder state (windows past the track's end,
   the padding Whisper adds to a short last window, states outside a long-video window) drives the masked pooling
   and the attention key masks; an attention row with no valid key adds nothing (its residual passes through);
   audio queries are masked out of the joint attention of samples with no audio; a clip with no audio at all gets
   one fully masked placeholder token whose content is never read.
7. Long videos: windows of `window_seconds` (damo-tiny 60 s) overlapping by `window_overlap_seconds` (10 s), the
   last one aligned to the video's end, each fused on its own with absolute times. Stitching: window k owns the
   steps whose time lies in [midpoint of its overlap with window k-1, midpoint of its overlap with window k+1), so
   every step comes from the window where it is farthest from an edge and the result is time-ordered with no
   duplicates. The Q-Former reads every window's fusion tokens, each plus the time embedding of its window's centre,
   so the soft prompt has a fixed length P whatever the video's length.
8. Projector: a Q-Former of `qformer_layers` layers (self-attention of P learnable queries, cross-attention to the
   fusion tokens, FFN), LayerNorm, a linear map to the LLM width, then RMS-normalised and scaled by a learnable gain
   initialised to the RMS of the LLM's token embeddings, so soft-prompt tokens start at the scale the LLM expects.
9. Prompt: the tokenizer's own chat template, rendered with a placeholder at the start of the first user turn,
   followed by an optional transcript block ("Transcript:" then lines "from 3.0 s to 5.2 s: text" in time order,
   whole lines only, up to `max_transcript_tokens`), then the question. The rendered text is split at the
   placeholder and the P soft-prompt embeddings go in between, so the video sits inside the user turn, after the
   template's role markers and before the question. The card's system prompt is used, folded into the first user
   turn when a template refuses a system role (Mistral). Template segments are tokenized separately; the loss is on
   assistant turns only.
10. LoRA (lora.py): every linear projection of the decoder (q, k, v, o, gate, up, down), dropout 0.05; r / alpha
    from the card (paper 32 / 64). Generation: greedy, with the KV cache, until EOS or `max_new_tokens`.
11. Sizes (models/*.toml). damo-7b uses the paper's (width 768, 4 blocks, 192 / 64 / 128 tokens); a 4x4 pool of
    24 frames halved by the conv gives exactly 192 visual tokens for the 192 visual queries. damo-tiny is sized for
    a 2-core CPU: width 256, 2 blocks, 4 heads, FFN x2, 32 / 16 / 16 queries and fusion tokens, 2x2 pooled tokens
    per frame at 2 fps and 30 audio tokens per 30 s: a 60 s window is ~240 visual + 60 audio tokens and the fuser
    has ~5.5 M parameters, so stage 1-2 training on cached features costs tens of ms per 60 s clip (at 1 fps,
    forward + backward of a batch of 8 took 0.4 s on 2 cores), i.e. minutes per thousand clips.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from damo_cli.errors import DamoError, ModelError
from damo_cli.model.config import DamoConfig
from damo_cli.schema import TranscriptLine
from damo_cli.timestamps import format_moment

VIDEO_PLACEHOLDER = "<damo:video>"
IGNORE_INDEX = -100


# ================================================================================================= inputs, outputs


@dataclass
class ClipFeatures:
    """Frozen-backbone features of a batch of clips (or of one long video, B = 1), with their absolute times."""

    visual_global: Tensor  # (B, T, Dv)     per-frame global vector (CLS / pooled map)
    visual_local: Tensor  # (B, T, Lv, Dv) per-frame local tokens, row-major g x g grid (or p x p, already pooled)
    frame_times: Tensor  # (B, T)         seconds from the start of the video, increasing over real frames
    frame_mask: Tensor | None = None  # (B, T) bool, True = real frame (real frames first)
    audio_states: Tensor | None = None  # (B, W, S, Da) audio encoder states, or None: no audio track
    audio_mask: Tensor | None = None  # (B, W, S) bool, True = a state of real audio
    audio_starts: Tensor | None = None  # (B, W) seconds at which each audio window starts

    def __post_init__(self) -> None:
        if self.visual_global.dim() != 3 or self.visual_local.dim() != 4:
            raise DamoError("visual features must be (B, T, D) global and (B, T, L, D) local")
        batch, frames = self.visual_global.shape[:2]
        if self.visual_local.shape[:2] != (batch, frames) or self.frame_times.shape != (batch, frames):
            raise DamoError("visual global, local and frame times disagree on (batch, frames)")
        if frames == 0:
            raise DamoError("a clip needs at least one frame")
        if self.frame_mask is None:
            self.frame_mask = torch.ones(batch, frames, dtype=torch.bool, device=self.frame_times.device)
        self.frame_mask = self.frame_mask.bool()
        if self.audio_states is not None:
            windows, states = self.audio_states.shape[1:3]
            if self.audio_mask is None:
                self.audio_mask = torch.ones(batch, windows, states, dtype=torch.bool, device=self.audio_states.device)
            self.audio_mask = self.audio_mask.bool()
            if self.audio_mask.shape != self.audio_states.shape[:3]:
                raise DamoError("audio mask must be (B, W, S) like the audio states")
            if self.audio_starts is None:
                raise DamoError("audio states need their window start times (audio_starts)")
        if not bool(self.frame_mask[:, 0].all()):
            raise DamoError("every clip needs its first frame real (padding goes after the real frames)")
        real_pairs = self.frame_mask[:, 1:]
        if bool((real_pairs & ~self.frame_mask[:, :-1]).any()):
            raise DamoError("padding frames must come after the real frames")
        if bool(((self.frame_times[:, 1:] <= self.frame_times[:, :-1]) & real_pairs).any()):
            raise DamoError("frame times must increase (frames in time order)")

    @classmethod
    def from_encoders(
        cls,
        visual_global: Tensor,  # (N, Dv)
        visual_local: Tensor,  # (N, Lv, Dv)
        frame_times: Any,  # (N,) seconds (array-like)
        audio_windows: Sequence[Any] = (),  # objects with .start (s), .states (S, Da) array, .valid (leading real)
    ) -> ClipFeatures:
        """One video (B = 1) from the frozen encoders' outputs. Frames sharing a timestamp (a video sampled faster
        than its frame rate repeats frames) are kept once; no audio windows means no audio track."""
        times = torch.as_tensor(frame_times, dtype=torch.float32)
        keep = torch.ones_like(times, dtype=torch.bool)
        keep[1:] = times[1:] > times[:-1]
        audio_states = audio_mask = audio_starts = None
        if len(audio_windows):
            audio_states = torch.stack([torch.as_tensor(w.states, dtype=torch.float32) for w in audio_windows])[None]
            states = audio_states.shape[2]
            valid = torch.tensor([int(w.valid) for w in audio_windows])
            audio_mask = (torch.arange(states)[None, :] < valid[:, None])[None]  # (1, W, S)
            audio_starts = torch.tensor([[float(w.start) for w in audio_windows]])
        return cls(
            visual_global=visual_global[keep][None].float(),
            visual_local=visual_local[keep][None].float(),
            frame_times=times[keep][None],
            audio_states=audio_states,
            audio_mask=audio_mask,
            audio_starts=audio_starts,
        )

    @property
    def batch_size(self) -> int:
        return self.visual_global.shape[0]

    def window(self, start: float, end: float, audio_window_seconds: float) -> ClipFeatures | None:
        """The frames with start <= t < end and the audio states inside it, times kept absolute (B must be 1)."""
        if self.batch_size != 1:
            raise DamoError("windows are cut from one video at a time")
        assert self.frame_mask is not None
        times = self.frame_times[0]
        keep = self.frame_mask[0] & (times >= start) & (times < end)
        if not bool(keep.any()):
            return None
        audio_states = audio_mask = audio_starts = None
        if self.audio_states is not None:
            assert self.audio_mask is not None and self.audio_starts is not None
            starts = self.audio_starts[0]
            near = (starts < end) & (starts + audio_window_seconds > start)
            if bool(near.any()):
                audio_states = self.audio_states[:, near]
                audio_starts = self.audio_starts[:, near]
                state_times = state_centres(audio_starts, audio_states.shape[2], audio_window_seconds)  # (1, W, S)
                inside = ((state_times >= start) & (state_times < end)).to(self.audio_mask.device)
                audio_mask = self.audio_mask[:, near] & inside
        return ClipFeatures(
            visual_global=self.visual_global[:, keep],
            visual_local=self.visual_local[:, keep],
            frame_times=self.frame_times[:, keep],
            audio_states=audio_states,
            audio_mask=audio_mask,
            audio_starts=audio_starts,
        )

    @staticmethod
    def collate(clips: Sequence[ClipFeatures]) -> ClipFeatures:
        """Pad clips into one batch: padded frames, windows and states are masked."""
        frames = max(c.visual_global.shape[1] for c in clips)
        with_audio = [c for c in clips if c.audio_states is not None]
        windows = max((c.audio_states.shape[1] for c in with_audio), default=0)  # type: ignore[union-attr]

        def pad_to(x: Tensor, size: int, dim: int, value: float | bool = 0) -> Tensor:
            missing = size - x.shape[dim]
            if missing == 0:
                return x
            shape = list(x.shape)
            shape[dim] = missing
            return torch.cat([x, x.new_full(shape, value)], dim=dim)

        batch: dict[str, Any] = {
            "visual_global": torch.cat([pad_to(c.visual_global, frames, 1) for c in clips]),
            "visual_local": torch.cat([pad_to(c.visual_local, frames, 1) for c in clips]),
            "frame_times": torch.cat([pad_to(c.frame_times, frames, 1, float(c.frame_times.max())) for c in clips]),
            "frame_mask": torch.cat([pad_to(c.frame_mask, frames, 1, False) for c in clips]),  # type: ignore[arg-type]
        }
        # frame times of padding only need to be increasing-safe: they are masked everywhere
        if with_audio:
            ref = with_audio[0].audio_states
            assert ref is not None
            states, dim = ref.shape[2], ref.shape[3]
            audio, masks, starts = [], [], []
            for c in clips:
                if c.audio_states is None:
                    c_states = ref.new_zeros(1, 1, states, dim)
                    c_mask = torch.zeros(1, 1, states, dtype=torch.bool, device=ref.device)
                    c_starts = ref.new_zeros(1, 1)
                else:
                    c_states, c_mask, c_starts = c.audio_states, c.audio_mask, c.audio_starts
                last = float(c_starts[0, -1])  # type: ignore[index]
                audio.append(pad_to(c_states, windows, 1))
                masks.append(pad_to(c_mask, windows, 1, False))  # type: ignore[arg-type]
                starts.append(pad_to(c_starts, windows, 1, last))  # type: ignore[arg-type]
            batch.update(audio_states=torch.cat(audio), audio_mask=torch.cat(masks), audio_starts=torch.cat(starts))
        return ClipFeatures(**batch)


@dataclass
class FusedClip:
    """What `DamoModel.fuse` returns for a batch of clips (one window each)."""

    visual_content: Tensor  # (B, T', Pv, d) after residual + temporal conv, before time embeddings
    audio_content: Tensor  # (B, Na, d)      after residual, before time embeddings
    visual_time: Tensor  # (B, T', d)         time embeddings of the visual steps
    audio_time: Tensor  # (B, Na, d)          time embeddings of the audio tokens
    step_features: Tensor  # (B, T', d)       per-time features of the last block
    step_embeddings: Tensor  # (B, T', text_dim) per-time outputs in the text space, unit norm
    step_times: Tensor  # (B, T')             seconds
    step_spans: Tensor  # (B, T', 2)          [start, end) seconds each step covers
    step_mask: Tensor  # (B, T')              True = a real step
    clip_embedding: Tensor  # (B, text_dim)   fused clip in the text space, unit norm
    fusion_tokens: Tensor  # (B, F, d)
    span: Tensor  # (B, 2)                    seconds the clip covers


@dataclass
class FusedVideo:
    """One video fused window by window, per-time outputs stitched by absolute time."""

    step_features: Tensor  # (N, d)
    step_embeddings: Tensor  # (N, text_dim)
    step_times: Tensor  # (N,)
    step_spans: Tensor  # (N, 2)
    fusion_tokens: Tensor  # (K, F, d)
    clip_embeddings: Tensor  # (K, text_dim)
    window_spans: Tensor  # (K, 2)


# ================================================================================================ building blocks


class TimeEmbedding(nn.Module):
    """Absolute time in seconds -> d: fixed sinusoids (geometric periods) + a learnable MLP of them."""

    def __init__(self, width: int, min_period: float, max_period: float) -> None:
        super().__init__()
        self.width, self.min_period, self.max_period = width, min_period, max_period
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def sinusoids(self, seconds: Tensor) -> Tensor:
        # float64 (on the CPU where a device has none, e.g. MPS), not a buffer: `model.to(bfloat16)` cannot round it
        work = seconds.detach().to(_precise_device(seconds), torch.float64)
        periods = torch.logspace(
            math.log10(self.min_period), math.log10(self.max_period), self.width // 2, dtype=torch.float64,
            device=work.device,
        )  # fmt: skip
        angles = work[..., None] * (2 * math.pi / periods)  # (..., d/2)
        fixed = torch.cat([angles.sin(), angles.cos()], dim=-1)  # (..., d)
        return fixed.to(device=seconds.device, dtype=self.mlp[0].weight.dtype)

    def forward(self, seconds: Tensor) -> Tensor:
        fixed = self.sinusoids(seconds)
        return fixed + self.mlp(fixed)


def _precise_device(x: Tensor) -> torch.device:
    """Where float64 time arithmetic can run: the tensor's device, or the CPU for devices without float64 (MPS)."""
    return torch.device("cpu") if x.device.type == "mps" else x.device


class Attention(nn.Module):
    """Multi-head attention with a key mask; a query with no valid key gets a zero update (nothing to read)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: Tensor, context: Tensor, key_mask: Tensor) -> Tensor:
        batch, n_query, width = x.shape  # x (B, Lq, d), context (B, Lk, d), key_mask (B, Lk) bool
        n_key, head_dim = context.shape[1], width // self.heads
        q = self.query(x).view(batch, n_query, self.heads, head_dim).transpose(1, 2)  # (B, h, Lq, hd)
        k, v = self.key_value(context).view(batch, n_key, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        has_key = key_mask.any(dim=1)  # (B,)
        allowed = key_mask | ~has_key[:, None]  # rows with no key attend to anything, then are zeroed
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )  # (B, h, Lq, hd)
        out = self.out(out.transpose(1, 2).reshape(batch, n_query, width))
        return out * has_key[:, None, None].to(out.dtype)


class FeedForward(nn.Sequential):
    def __init__(self, width: int, mult: int, dropout: float) -> None:
        super().__init__(nn.Linear(width, mult * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(mult * width, width))


# ======================================================================================== 1. global residual


class VisualResidual(nn.Module):
    """Per frame: X_res = Linear(AdaptiveAvgPool2d(X_local, p x p)) + FFN(X_global); X_local g x g or pooled p x p."""

    def __init__(self, in_dim: int, width: int, grid: int, pool_grid: int) -> None:
        super().__init__()
        self.grid, self.pool_grid = grid, pool_grid
        self.local_proj = nn.Linear(in_dim, width)
        self.global_ffn = nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, global_: Tensor, local: Tensor) -> Tensor:
        batch, frames, tokens, dim = local.shape  # (B, T, Lv, Dv)
        if tokens == self.pool_grid**2:
            # already pooled to p x p (training feature caches store it so): pooling a p x p map to p x p is the
            # identity, so this is exactly what the g x g map would give
            pooled = local  # (B, T, Pv, Dv)
        elif tokens == self.grid**2:
            maps = local.reshape(batch * frames, self.grid, self.grid, dim).permute(0, 3, 1, 2)  # (B*T, Dv, g, g)
            pooled = F.adaptive_avg_pool2d(maps, self.pool_grid)  # (B*T, Dv, p, p)
            pooled = pooled.flatten(2).transpose(1, 2).reshape(batch, frames, self.pool_grid**2, dim)  # (B, T, Pv, Dv)
        else:
            raise DamoError(
                f"visual local features have {tokens} tokens, the card says {self.grid}x{self.grid} "
                f"(or {self.pool_grid}x{self.pool_grid} pooled)"
            )
        return self.local_proj(pooled) + self.global_ffn(global_)[:, :, None, :]  # (B, T, Pv, d)


def adaptive_pool_bins(length: int, bins: int) -> Tensor:
    """(bins, length) 0/1 matrix with AdaptiveAvgPool1d's bins: bin i = [floor(i L / n), ceil((i + 1) L / n))."""
    matrix = torch.zeros(bins, length)
    for i in range(bins):
        matrix[i, (i * length) // bins : -((-(i + 1) * length) // bins)] = 1.0
    return matrix


def state_centres(starts: Tensor, states: int, window_seconds: float) -> Tensor:
    """(B, W) window starts -> (B, W, S) centre time of every encoder state."""
    step = window_seconds / states
    device = _precise_device(starts)
    offsets = (torch.arange(states, device=device, dtype=torch.float64) + 0.5) * step
    return starts.to(device, torch.float64)[..., None] + offsets


class AudioResidual(nn.Module):
    """Per audio window: X_res = Linear(masked AdaptiveAvgPool1d(states, La)) + FFN(mean of real states)."""

    def __init__(self, in_dim: int, width: int, states: int, tokens: int, window_seconds: float) -> None:
        super().__init__()
        self.states, self.tokens, self.window_seconds = states, tokens, window_seconds
        self.register_buffer("bins", adaptive_pool_bins(states, tokens), persistent=False)  # (La, S)
        self.local_proj = nn.Linear(in_dim, width)
        self.global_ffn = nn.Sequential(nn.Linear(in_dim, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, states: Tensor, mask: Tensor, starts: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        # states (B, W, S, Da), mask (B, W, S) bool, starts (B, W) seconds
        if states.shape[2] != self.states:
            raise DamoError(f"audio windows have {states.shape[2]} states, the card says {self.states}")
        real = mask.to(states.dtype)[:, :, None, :]  # (B, W, 1, S)
        weights = self.bins.to(states.dtype) * real  # (B, W, La, S): bin membership of the real states only
        counts = weights.sum(-1)  # (B, W, La) real states per bin
        pooled = (weights @ states) / counts.clamp_min(1.0)[..., None]  # (B, W, La, Da) masked bin means
        global_ = (real @ states)[:, :, 0] / real.sum(-1).clamp_min(1.0)  # (B, W, Da) mean of the real states
        tokens = self.local_proj(pooled) + self.global_ffn(global_)[:, :, None, :]  # (B, W, La, d)
        token_mask = counts > 0  # (B, W, La)
        # times: mean centre of a token's real states; span: from its first real state's start to its last's end
        centres = state_centres(starts, self.states, self.window_seconds)  # (B, W, S) float64
        in_bin = self.bins.bool().to(centres.device)[None, None] & mask.to(centres.device)[:, :, None, :]
        bin_centres = centres[:, :, None, :].expand(in_bin.shape)  # (B, W, La, S)
        times = torch.where(in_bin, bin_centres, 0.0).sum(-1) / in_bin.sum(-1).clamp_min(1)
        half = self.window_seconds / self.states / 2
        first = torch.where(in_bin, bin_centres, math.inf).amin(-1) - half
        last = torch.where(in_bin, bin_centres, -math.inf).amax(-1) + half
        spans = torch.stack([first, last], -1).where(in_bin.any(-1)[..., None], 0.0)  # (B, W, La, 2)
        return tokens, token_mask, times.to(states.device, torch.float32), spans.to(states.device, torch.float32)


# ======================================================================================== 2. temporal pathway


class TemporalConv(nn.Module):
    """Grouped Conv1d along time (stride s) over the visual stream + a masked stride-mean skip."""

    def __init__(self, width: int, kernel: int, stride: int, groups: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(width, width, kernel, stride=stride, padding=kernel // 2, groups=groups)

    def forward(self, x: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor]:
        batch, frames, slots, width = x.shape  # (B, T, Pv, d); frame_mask (B, T)
        steps = -(-frames // self.stride)  # T' = ceil(T / s)
        x = x * frame_mask[:, :, None, None].to(x.dtype)  # padded frames = the conv's zero padding
        seq = x.permute(0, 2, 3, 1).reshape(batch * slots, width, frames)  # (B*Pv, d, T)
        conv = self.conv(seq).reshape(batch, slots, width, steps).permute(0, 3, 1, 2)  # (B, T', Pv, d)
        pad = steps * self.stride - frames
        groups = F.pad(x, (0, 0, 0, 0, 0, pad)).reshape(batch, steps, self.stride, slots, width)
        real = F.pad(frame_mask, (0, pad)).reshape(batch, steps, self.stride)  # (B, T', s)
        weights = real.to(x.dtype)[..., None, None]
        skip = (groups * weights).sum(2) / weights.sum(2).clamp_min(1.0)  # (B, T', Pv, d)
        return conv + skip, real.any(2)


def frame_spans(times: Tensor, mask: Tensor) -> Tensor:
    """(B, T) times -> (B, T, 2): each frame owns up to the midpoints to its real neighbours (0.5 s if alone)."""
    has_prev = F.pad(mask[:, :-1], (1, 0), value=False) & mask
    has_next = F.pad(mask[:, 1:], (0, 1), value=False) & mask
    half_prev = (times - F.pad(times[:, :-1], (1, 0))) / 2
    half_next = (F.pad(times[:, 1:], (0, 1)) - times) / 2
    left = torch.where(has_prev, half_prev, torch.where(has_next, half_next, torch.full_like(times, 0.5)))
    right = torch.where(has_next, half_next, torch.where(has_prev, half_prev, torch.full_like(times, 0.5)))
    return torch.stack([(times - left).clamp_min(0.0), times + right], dim=-1)


def step_timing(times: Tensor, mask: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """Per visual step: time = mean of its real frames' times, span = union of their spans. (B, T') and (B, T', 2)."""
    batch, frames = times.shape
    steps = -(-frames // stride)
    pad = steps * stride - frames
    spans = F.pad(frame_spans(times, mask), (0, 0, 0, pad)).reshape(batch, steps, stride, 2)
    real = F.pad(mask, (0, pad)).reshape(batch, steps, stride)
    grouped = F.pad(times, (0, pad)).reshape(batch, steps, stride)
    step_times = (grouped * real).sum(-1) / real.sum(-1).clamp_min(1)
    start = torch.where(real, spans[..., 0], math.inf).amin(-1)
    end = torch.where(real, spans[..., 1], -math.inf).amax(-1)
    step_spans = torch.stack([start, end], -1).where(real.any(-1)[..., None], 0.0)
    return step_times, step_spans


# ========================================================================================= 3. T-Fuseformer


class ModalityLayer(nn.Module):
    """One modality inside a block: self-attention + FFN over its time-ordered tokens, then its queries read them."""

    def __init__(self, width: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.self_norm, self.self_attn = nn.LayerNorm(width), Attention(width, heads, dropout)
        self.ffn_norm, self.ffn = nn.LayerNorm(width), FeedForward(width, ffn_mult, dropout)
        self.query_norm, self.token_norm = nn.LayerNorm(width), nn.LayerNorm(width)
        self.cross_attn = Attention(width, heads, dropout)

    def forward(self, tokens: Tensor, mask: Tensor, queries: Tensor) -> tuple[Tensor, Tensor]:
        # tokens (B, N, d), mask (B, N), queries (B, Q, d)
        h = self.self_norm(tokens)
        tokens = tokens + self.self_attn(h, h, mask)
        tokens = tokens + self.ffn(self.ffn_norm(tokens))
        queries = queries + self.cross_attn(self.query_norm(queries), self.token_norm(tokens), mask)
        return tokens, queries


class FuseformerBlock(nn.Module):
    """Per-modality layers, then joint self-attention of [fusion tokens; visual queries; audio queries]."""

    def __init__(self, width: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.visual = ModalityLayer(width, heads, ffn_mult, dropout)
        self.audio = ModalityLayer(width, heads, ffn_mult, dropout)
        self.joint_norm, self.joint_attn = nn.LayerNorm(width), Attention(width, heads, dropout)
        self.joint_ffn_norm, self.joint_ffn = nn.LayerNorm(width), FeedForward(width, ffn_mult, dropout)

    def forward(
        self,
        visual: Tensor,  # (B, T'*Pv, d)
        visual_mask: Tensor,  # (B, T'*Pv)
        audio: Tensor,  # (B, Na, d)
        audio_mask: Tensor,  # (B, Na)
        visual_queries: Tensor,  # (B, Qv, d)
        audio_queries: Tensor,  # (B, Qa, d)
        fusion: Tensor,  # (B, F, d)
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        visual, visual_queries = self.visual(visual, visual_mask, visual_queries)
        audio, audio_queries = self.audio(audio, audio_mask, audio_queries)
        joint = torch.cat([fusion, visual_queries, audio_queries], dim=1)  # (B, F + Qv + Qa, d)
        has_audio = audio_mask.any(dim=1, keepdim=True)  # (B, 1): audio queries are keys only if audio exists
        joint_mask = torch.cat(
            [
                torch.ones(fusion.shape[:2], dtype=torch.bool, device=fusion.device),
                torch.ones(visual_queries.shape[:2], dtype=torch.bool, device=fusion.device),
                has_audio.expand(audio_queries.shape[:2]),
            ],
            dim=1,
        )
        h = self.joint_norm(joint)
        joint = joint + self.joint_attn(h, h, joint_mask)
        joint = joint + self.joint_ffn(self.joint_ffn_norm(joint))
        fusion, visual_queries, audio_queries = joint.split(
            [fusion.shape[1], visual_queries.shape[1], audio_queries.shape[1]], dim=1
        )
        return visual, audio, visual_queries, audio_queries, fusion


# ======================================================================================= 4. per-time heads


class PerTimeHead(nn.Module):
    """Stage-1 heads: per visual step (visual + overlapping audio) and per clip (fusion tokens) -> text space."""

    def __init__(self, width: int, text_dim: int) -> None:
        super().__init__()
        self.step_norm, self.step_proj = nn.LayerNorm(width), nn.Linear(width, text_dim)
        self.clip_norm, self.clip_proj = nn.LayerNorm(width), nn.Linear(width, text_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # contrastive temperature (stage 1)

    def step_features(
        self,
        visual: Tensor,  # (B, T', Pv, d) last-block visual tokens
        step_spans: Tensor,  # (B, T', 2)
        audio: Tensor,  # (B, Na, d) last-block audio tokens
        audio_spans: Tensor,  # (B, Na, 2)
        audio_mask: Tensor,  # (B, Na)
    ) -> Tensor:
        overlap = (
            torch.minimum(step_spans[:, :, None, 1], audio_spans[:, None, :, 1])
            - torch.maximum(step_spans[:, :, None, 0], audio_spans[:, None, :, 0])
        ).clamp_min(0.0) * audio_mask[:, None, :]  # (B, T', Na) seconds of overlap
        overlap = overlap.to(audio.dtype)
        total = overlap.sum(-1, keepdim=True)
        heard = overlap @ audio / total.clamp_min(1e-6)  # (B, T', d); zero rows where no audio overlaps
        return self.step_norm(visual.mean(dim=2) + heard)  # (B, T', d)

    def embed_steps(self, features: Tensor) -> Tensor:
        return F.normalize(self.step_proj(features), dim=-1)  # (B, T', text_dim)

    def embed_clip(self, fusion: Tensor) -> Tensor:
        return F.normalize(self.clip_proj(self.clip_norm(fusion.mean(dim=1))), dim=-1)  # (B, text_dim)


# ===================================================================================== 5. Q-Former projector


class QFormerLayer(nn.Module):
    def __init__(self, width: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.self_norm, self.self_attn = nn.LayerNorm(width), Attention(width, heads, dropout)
        self.cross_norm, self.memory_norm = nn.LayerNorm(width), nn.LayerNorm(width)
        self.cross_attn = Attention(width, heads, dropout)
        self.ffn_norm, self.ffn = nn.LayerNorm(width), FeedForward(width, ffn_mult, dropout)

    def forward(self, queries: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        everyone = torch.ones(queries.shape[:2], dtype=torch.bool, device=queries.device)
        h = self.self_norm(queries)
        queries = queries + self.self_attn(h, h, everyone)
        queries = queries + self.cross_attn(self.cross_norm(queries), self.memory_norm(memory), memory_mask)
        return queries + self.ffn(self.ffn_norm(queries))


class QFormerProjector(nn.Module):
    """P learnable queries read the fusion tokens; LayerNorm; linear to the LLM width; RMS-matched to its tokens."""

    def __init__(self, config: DamoConfig) -> None:
        super().__init__()
        c = config
        self.queries = nn.Parameter(torch.randn(c.prompt_tokens, c.width) * 0.02)  # (P, d)
        self.layers = nn.ModuleList(
            QFormerLayer(c.width, c.heads, c.ffn_mult, c.dropout) for _ in range(c.qformer_layers)
        )
        self.norm = nn.LayerNorm(c.width)
        self.proj = nn.Linear(c.width, c.llm_hidden)
        self.gain = nn.Parameter(torch.tensor(1.0))  # set to the LLM's token-embedding RMS when one is attached

    def forward(self, memory: Tensor, memory_mask: Tensor) -> Tensor:
        queries = self.queries[None].expand(memory.shape[0], -1, -1)  # (B, P, d)
        for layer in self.layers:
            queries = layer(queries, memory, memory_mask)
        out = self.proj(self.norm(queries))  # (B, P, H)
        return self.gain * out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + 1e-6)


# ====================================================================================== 6. LLM glue: prompts


@dataclass
class Conversation:
    """Turns about one video: ("user" | "assistant", text), starting with the user; the video opens turn 1."""

    turns: list[tuple[str, str]]
    transcript: Sequence[TranscriptLine] = field(default_factory=tuple)

    @classmethod
    def ask(cls, question: str, transcript: Sequence[TranscriptLine] = ()) -> Conversation:
        return cls([("user", question)], transcript)

    def __post_init__(self) -> None:
        if not self.turns or self.turns[0][0] != "user":
            raise DamoError("a conversation starts with a user turn")
        for (role, _), (next_role, _) in zip(self.turns, self.turns[1:], strict=False):
            if role == next_role or role not in ("user", "assistant"):
                raise DamoError("conversation turns must alternate user / assistant")


@dataclass(frozen=True)
class Segment:
    text: str
    target: bool  # assistant text the loss is computed on


def transcript_block(tokenizer: Any, lines: Sequence[TranscriptLine], max_tokens: int) -> str:
    """'Transcript:' + one 'from 3.0 s to 5.2 s: text' line per segment, in time order, whole lines within budget."""
    if not lines or max_tokens <= 0:
        return ""
    kept: list[str] = []
    used = len(tokenizer("Transcript:\n", add_special_tokens=False)["input_ids"])
    for line in sorted(lines, key=lambda item: (item.start, item.end)):
        text = f"{format_moment(line.start, max(line.end, line.start))}: {line.text.strip()}\n"
        cost = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if used + cost > max_tokens:
            break
        kept.append(text)
        used += cost
    return "Transcript:\n" + "".join(kept) + "\n" if kept else ""


def render_segments(
    tokenizer: Any, conversation: Conversation, system: str, max_transcript_tokens: int, generation: bool
) -> list[Segment]:
    """Chat-template text cut into segments; the first holds VIDEO_PLACEHOLDER where the soft prompt goes."""
    turns = [(role, text.replace(VIDEO_PLACEHOLDER, "")) for role, text in conversation.turns]
    if generation and turns[-1][0] != "user":
        raise DamoError("to generate, the conversation must end with a user turn")
    if not generation and turns[-1][0] != "assistant":
        raise DamoError("to train, the conversation must end with an assistant turn")
    block = transcript_block(tokenizer, conversation.transcript, max_transcript_tokens)
    first = f"{VIDEO_PLACEHOLDER}\n{block}{turns[0][1]}"
    messages = [{"role": role, "content": text} for role, text in turns]
    messages[0] = {"role": "user", "content": first}
    if system:
        with_system = [{"role": "system", "content": system}, *messages]
        try:
            tokenizer.apply_chat_template(with_system, tokenize=False)
            messages = with_system
        except Exception:  # noqa: BLE001 - templates refuse a system role by raising their own error
            messages[0] = {"role": "user", "content": f"{system}\n\n{first}"}

    def render(upto: int, prompt: bool) -> str:
        return tokenizer.apply_chat_template(messages[:upto], tokenize=False, add_generation_prompt=prompt)

    segments: list[Segment] = []
    done = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        head, full = render(index, True), render(index + 1, False)
        if not head.startswith(done) or not full.startswith(head):
            raise ModelError("this tokenizer's chat template does not render conversations as prefixes")
        segments += [Segment(head[len(done) :], False), Segment(full[len(head) :], True)]
        done = full
    if generation:
        head = render(len(messages), True)
        if not head.startswith(done):
            raise ModelError("this tokenizer's chat template does not render conversations as prefixes")
        segments.append(Segment(head[len(done) :], False))
    return segments


@dataclass
class LMInputs:
    inputs_embeds: Tensor  # (B, L, H)
    attention_mask: Tensor  # (B, L)
    position_ids: Tensor  # (B, L)
    labels: Tensor  # (B, L), IGNORE_INDEX outside assistant text


@dataclass
class Generation:
    texts: list[str]
    new_tokens: int
    prefill_seconds: float
    decode_seconds: float


# =========================================================================================== 7. the model


class DamoModel(nn.Module):
    def __init__(self, config: DamoConfig) -> None:
        super().__init__()
        c = self.config = config
        # 1. global residual
        self.visual_residual = VisualResidual(c.visual_dim, c.width, c.visual_grid, c.visual_pool_grid)
        self.audio_residual = AudioResidual(
            c.audio_dim, c.width, c.audio_states_per_window, c.audio_tokens_per_window, c.audio_window_seconds
        )
        # 2. temporal pathway: conv over the visual steps, absolute-time embeddings on both streams
        self.temporal_conv = TemporalConv(c.width, c.conv_kernel, c.conv_stride, c.conv_groups)
        self.time_embed = TimeEmbedding(c.width, c.time_min_period, c.time_max_period)
        self.visual_in_norm, self.audio_in_norm = nn.LayerNorm(c.width), nn.LayerNorm(c.width)
        self.modality_embed = nn.Parameter(torch.randn(2, c.width) * 0.02)  # [visual, audio]
        self.spatial_embed = nn.Parameter(torch.randn(c.visual_pool_tokens, c.width) * 0.02)  # (Pv, d)
        # 3. T-Fuseformer
        self.visual_queries = nn.Parameter(torch.randn(c.visual_queries, c.width) * 0.02)  # (Qv, d)
        self.audio_queries = nn.Parameter(torch.randn(c.audio_queries, c.width) * 0.02)  # (Qa, d)
        self.fusion_queries = nn.Parameter(torch.randn(c.fusion_tokens, c.width) * 0.02)  # (F, d)
        self.blocks = nn.ModuleList(FuseformerBlock(c.width, c.heads, c.ffn_mult, c.dropout) for _ in range(c.blocks))
        # 4. per-time heads
        self.time_head = PerTimeHead(c.width, c.text_dim)
        # 5. projector
        self.projector = QFormerProjector(c)
        # 6. LLM (frozen, LoRA), attached with attach_llm
        self.llm: nn.Module | None = None
        self.tokenizer: Any = None

    # ------------------------------------------------------------------------------------ parameter groups

    def parameter_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """fuser / time_head / projector / lora / llm (frozen base weights)."""
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {
            "fuser": [], "time_head": [], "projector": [], "lora": [], "llm": [],
        }  # fmt: skip
        for name, param in self.named_parameters():
            top = name.split(".", 1)[0]
            if top == "llm":
                groups["lora" if "lora_" in name else "llm"].append((name, param))
            elif top in ("time_head", "projector"):
                groups[top].append((name, param))
            else:
                groups["fuser"].append((name, param))
        return groups

    # ------------------------------------------------------------------------------- 1-4: fuse one window

    def fuse(self, clip: ClipFeatures) -> FusedClip:
        c = self.config
        batch, device = clip.batch_size, clip.visual_global.device
        frame_mask = clip.frame_mask
        assert frame_mask is not None
        dtype = self.visual_residual.local_proj.weight.dtype  # features are cast to the weights' dtype
        # 1. global residual ----------------------------------------------------------------------------
        visual = self.visual_residual(clip.visual_global.to(dtype), clip.visual_local.to(dtype))  # (B, T, Pv, d)
        if clip.audio_states is None:  # no track: one placeholder token, masked everywhere, never read
            audio = visual.new_zeros(batch, 1, c.width)  # (B, 1, d)
            audio_mask = torch.zeros(batch, 1, dtype=torch.bool, device=device)
            audio_times = torch.zeros(batch, 1, device=device)
            audio_spans = torch.zeros(batch, 1, 2, device=device)
        else:
            assert clip.audio_mask is not None and clip.audio_starts is not None
            audio, audio_mask, audio_times, audio_spans = self.audio_residual(
                clip.audio_states.to(dtype), clip.audio_mask, clip.audio_starts
            )  # (B, W, La, d), (B, W, La), (B, W, La), (B, W, La, 2)
            audio, audio_mask = audio.flatten(1, 2), audio_mask.flatten(1, 2)  # (B, Na, d), (B, Na)
            audio_times, audio_spans = audio_times.flatten(1, 2), audio_spans.flatten(1, 2)
        # 2. temporal pathway ---------------------------------------------------------------------------
        visual, step_mask = self.temporal_conv(visual, frame_mask)  # (B, T', Pv, d), (B, T')
        step_times, step_spans = step_timing(clip.frame_times.float(), frame_mask, c.conv_stride)  # (B, T'), (B, T', 2)
        visual_content, audio_content = visual, audio
        visual_time = self.time_embed(step_times)  # (B, T', d)
        audio_time = self.time_embed(audio_times)  # (B, Na, d)
        visual = (
            self.visual_in_norm(visual) + visual_time[:, :, None] + self.spatial_embed + self.modality_embed[0]
        )  # (B, T', Pv, d)
        audio = self.audio_in_norm(audio) + audio_time + self.modality_embed[1]  # (B, Na, d)
        # 3. T-Fuseformer -------------------------------------------------------------------------------
        steps, slots = visual.shape[1], visual.shape[2]
        tokens = visual.reshape(batch, steps * slots, c.width)  # (B, T'*Pv, d), time-ordered
        token_mask = step_mask.repeat_interleave(slots, dim=1)  # (B, T'*Pv)
        visual_queries = self.visual_queries[None].expand(batch, -1, -1)  # (B, Qv, d)
        audio_queries = self.audio_queries[None].expand(batch, -1, -1)  # (B, Qa, d)
        fusion = self.fusion_queries[None].expand(batch, -1, -1)  # (B, F, d)
        for block in self.blocks:
            tokens, audio, visual_queries, audio_queries, fusion = block(
                tokens, token_mask, audio, audio_mask, visual_queries, audio_queries, fusion
            )
        # 4. per-time outputs ---------------------------------------------------------------------------
        step_features = self.time_head.step_features(
            tokens.reshape(batch, steps, slots, c.width), step_spans, audio, audio_spans, audio_mask
        )  # (B, T', d)
        real_spans = step_spans.where(step_mask[..., None], step_spans[:, :1])
        span = torch.stack([real_spans[..., 0].amin(1), real_spans[..., 1].amax(1)], dim=-1)  # (B, 2)
        return FusedClip(
            visual_content=visual_content,
            audio_content=audio_content,
            visual_time=visual_time,
            audio_time=audio_time,
            step_features=step_features,
            step_embeddings=self.time_head.embed_steps(step_features),
            step_times=step_times,
            step_spans=step_spans,
            step_mask=step_mask,
            clip_embedding=self.time_head.embed_clip(fusion),
            fusion_tokens=fusion,
            span=span,
        )

    # ------------------------------------------------------------------------- long videos: windows + stitch

    def fuse_video(
        self,
        video: ClipFeatures,
        duration: float | None = None,
        window_seconds: float | None = None,
        overlap_seconds: float | None = None,
        windows_per_batch: int = 8,
    ) -> FusedVideo:
        """Fuse one video (B = 1) in overlapping windows with absolute times; stitch the per-time outputs."""
        window = window_seconds or self.config.video.window_seconds
        overlap = self.config.video.window_overlap_seconds if overlap_seconds is None else overlap_seconds
        if duration is None:
            assert video.frame_mask is not None
            duration = float(frame_spans(video.frame_times.float(), video.frame_mask)[0, :, 1].max())
        plan = plan_windows(duration, window, overlap)
        owned = ownership(plan)
        kept: dict[str, list[Tensor]] = {"features": [], "embeddings": [], "times": [], "spans": []}
        fusion, clip_embeddings, spans = [], [], []
        # Windows are cut out of the video a batch at a time: each piece copies its audio states (~12 MB per 60 s
        # window), so cutting all of a 30-min video's first held ~400 MB at once.
        for chunk in _window_batches(video, plan, owned, self.config.audio_window_seconds, windows_per_batch):
            fused = self.fuse(ClipFeatures.collate([piece for _, _, piece in chunk]))
            for row, (bounds, (own_from, own_to), _) in enumerate(chunk):
                times = fused.step_times[row]
                keep = fused.step_mask[row] & (times >= own_from) & (times < own_to)
                kept["features"].append(fused.step_features[row, keep])
                kept["embeddings"].append(fused.step_embeddings[row, keep])
                kept["times"].append(times[keep])
                kept["spans"].append(fused.step_spans[row, keep])
                spans.append(torch.tensor(bounds, device=times.device))
            fusion.append(fused.fusion_tokens)
            clip_embeddings.append(fused.clip_embedding)
        if not fusion:
            raise DamoError("the video has no frames to fuse")
        return FusedVideo(
            step_features=torch.cat(kept["features"]),
            step_embeddings=torch.cat(kept["embeddings"]),
            step_times=torch.cat(kept["times"]),
            step_spans=torch.cat(kept["spans"]),
            fusion_tokens=torch.cat(fusion),
            clip_embeddings=torch.cat(clip_embeddings),
            window_spans=torch.stack(spans).float(),
        )

    # ------------------------------------------------------------------------------- 5. soft prompt

    def soft_prompt(self, fusion_tokens: Tensor, window_spans: Tensor, window_mask: Tensor | None = None) -> Tensor:
        """(B, K, F, d) fusion tokens of K windows, (B, K, 2) their spans -> (B, P, H) soft-prompt embeddings."""
        batch, windows, tokens, width = fusion_tokens.shape
        if window_mask is None:
            window_mask = torch.ones(batch, windows, dtype=torch.bool, device=fusion_tokens.device)
        centres = window_spans.mean(-1)  # (B, K)
        memory = fusion_tokens + self.time_embed(centres)[:, :, None, :]  # (B, K, F, d)
        memory = memory.reshape(batch, windows * tokens, width)
        return self.projector(memory, window_mask.repeat_interleave(tokens, dim=1))  # (B, P, H)

    def clip_prompt(self, fused: FusedClip) -> Tensor:
        return self.soft_prompt(fused.fusion_tokens[:, None], fused.span[:, None])  # (B, P, H)

    def video_prompt(self, fused: FusedVideo) -> Tensor:
        return self.soft_prompt(fused.fusion_tokens[None], fused.window_spans[None])  # (1, P, H)

    # ------------------------------------------------------------------------------- 6. LLM glue

    def attach_llm(self, llm: nn.Module, tokenizer: Any) -> None:
        """Freeze `llm`, add LoRA (card's r / alpha), match the soft prompt's scale to its token embeddings."""
        from damo_cli.model.lora import attach_lora

        hidden = llm.get_input_embeddings().weight.shape[1]
        if hidden != self.config.llm_hidden:
            raise ModelError(f"the LLM's width is {hidden}, the card says {self.config.llm_hidden}")
        for param in llm.parameters():
            param.requires_grad_(False)
        self.llm = attach_lora(llm, self.config.lora) if self.config.lora.r > 0 else llm
        self.tokenizer = tokenizer
        weight = llm.get_input_embeddings().weight
        if weight.device.type != "meta":
            with torch.no_grad():
                self.projector.gain.fill_(float(weight.float().pow(2).mean().sqrt()))

    def _need_llm(self) -> tuple[nn.Module, Any]:
        if self.llm is None or self.tokenizer is None:
            raise ModelError("this DaMO model has no LLM attached (attach_llm)")
        return self.llm, self.tokenizer

    def lm_inputs(self, soft_prompts: Tensor, conversations: Sequence[Conversation], generation: bool) -> LMInputs:
        """Embeddings of [template text | soft prompt | template text ...], padded right (training) or left."""
        llm, tokenizer = self._need_llm()
        embed = llm.get_input_embeddings()
        device, dtype = embed.weight.device, embed.weight.dtype
        rows: list[tuple[Tensor, Tensor]] = []
        settings = self.config.prompt
        for prompt, conversation in zip(soft_prompts, conversations, strict=True):
            segments = render_segments(
                tokenizer, conversation, settings.system, settings.max_transcript_tokens, generation
            )
            pieces: list[Tensor] = []
            labels: list[Tensor] = []
            for index, segment in enumerate(segments):
                texts = segment.text.split(VIDEO_PLACEHOLDER) if index == 0 else [segment.text]
                if index == 0 and len(texts) != 2:
                    raise ModelError("the chat template lost the video placeholder")
                for part, text in enumerate(texts):
                    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], device=device)
                    pieces.append(embed(ids))
                    labels.append(ids if segment.target else torch.full_like(ids, IGNORE_INDEX))
                    if index == 0 and part == 0:
                        pieces.append(prompt.to(dtype))  # (P, H) the video
                        labels.append(torch.full((prompt.shape[0],), IGNORE_INDEX, device=device))
            rows.append((torch.cat(pieces), torch.cat(labels)))
        length = max(row[0].shape[0] for row in rows)
        batch = len(rows)
        hidden = rows[0][0].shape[1]
        embeds = torch.zeros(batch, length, hidden, device=device, dtype=dtype)
        labels_out = torch.full((batch, length), IGNORE_INDEX, device=device, dtype=torch.long)
        mask = torch.zeros(batch, length, device=device, dtype=torch.long)
        for i, (row_embeds, row_labels) in enumerate(rows):
            n = row_embeds.shape[0]
            where = slice(length - n, length) if generation else slice(0, n)
            embeds[i, where], labels_out[i, where], mask[i, where] = row_embeds, row_labels, 1
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        return LMInputs(embeds, mask, positions, labels_out)

    def lm_loss(self, soft_prompts: Tensor, conversations: Sequence[Conversation]) -> Tensor:
        """Next-token cross-entropy on the assistant turns (stages 2-4)."""
        llm, _ = self._need_llm()
        inputs = self.lm_inputs(soft_prompts, conversations, generation=False)
        logits = llm(
            inputs_embeds=inputs.inputs_embeds,
            attention_mask=inputs.attention_mask,
            position_ids=inputs.position_ids,
            use_cache=False,
        ).logits  # (B, L, vocab)
        return F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
            inputs.labels[:, 1:].reshape(-1),
            ignore_index=IGNORE_INDEX,
        )

    @torch.no_grad()
    def generate(
        self, soft_prompts: Tensor, conversations: Sequence[Conversation], max_new_tokens: int | None = None
    ) -> Generation:
        """Greedy decoding with the KV cache; returns the answers and the prefill / decode times."""
        llm, tokenizer = self._need_llm()
        budget = max_new_tokens or self.config.prompt.max_new_tokens
        inputs = self.lm_inputs(soft_prompts, conversations, generation=True)
        stop = _eos_ids(llm, tokenizer)
        started = time.perf_counter()
        out = llm(
            inputs_embeds=inputs.inputs_embeds,
            attention_mask=inputs.attention_mask,
            position_ids=inputs.position_ids,
            use_cache=True,
        )
        prefilled = time.perf_counter()
        mask, position = inputs.attention_mask, inputs.position_ids[:, -1:]
        batch = mask.shape[0]
        finished = torch.zeros(batch, dtype=torch.bool, device=mask.device)
        produced: list[Tensor] = []
        for step in range(budget):
            token = out.logits[:, -1].argmax(-1)  # (B,)
            token = torch.where(finished, torch.full_like(token, stop[0] if stop else 0), token)
            produced.append(token)
            if stop:
                finished |= torch.isin(token, torch.tensor(stop, device=token.device))
            if bool(finished.all()) or step == budget - 1:
                break
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
            position = position + 1
            out = llm(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=position,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
        decoded = time.perf_counter()
        ids = torch.stack(produced, dim=1) if produced else torch.zeros(batch, 0, dtype=torch.long)
        texts = []
        for row in ids.tolist():
            cut = next((i for i, t in enumerate(row) if t in stop), len(row))
            texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
        return Generation(texts, len(produced), prefilled - started, decoded - prefilled)


# ================================================================================================ helpers


def plan_windows(duration: float, window: float, overlap: float) -> list[tuple[float, float]]:
    """[(start, end)] covering [0, duration]: stride window - overlap, the last window aligned to the end."""
    if duration <= window:
        return [(0.0, float(duration))]
    stride = window - overlap
    starts: list[float] = []
    start = 0.0
    while start + window < duration:
        starts.append(start)
        start += stride
    starts.append(duration - window)
    return [(s, s + window) for s in starts]


def ownership(plan: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Window k owns [midpoint of its overlap with k-1, midpoint of its overlap with k+1)."""
    cuts = [(plan[k + 1][0] + plan[k][1]) / 2 for k in range(len(plan) - 1)]
    return [(cuts[k - 1] if k else -math.inf, cuts[k] if k < len(cuts) else math.inf) for k in range(len(plan))]


def _eos_ids(llm: nn.Module, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    config = getattr(llm, "generation_config", None)
    extra = getattr(config, "eos_token_id", None) if config is not None else None
    for value in extra if isinstance(extra, list) else [extra]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    return ids


def _window_batches(
    video: ClipFeatures,
    plan: list[tuple[float, float]],
    owned: list[tuple[float, float]],
    audio_window_seconds: float,
    size: int,
) -> Iterator[list[tuple[tuple[float, float], tuple[float, float], ClipFeatures]]]:
    """The video's windows that hold frames, as (bounds, owned span, piece), `size` at a time, cut only when needed."""
    batch: list[tuple[tuple[float, float], tuple[float, float], ClipFeatures]] = []
    for index, (start, end) in enumerate(plan):
        last = index == len(plan) - 1
        piece = video.window(start, math.inf if last else end, audio_window_seconds)
        if piece is None:
            continue
        batch.append(((start, end), owned[index], piece))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
