"""Stage losses. Stage 1 aligns the per-time head and the clip embedding with the frozen text encoder; stages 2-4
add the LLM's next-token loss and keep the stage-1 terms, so the fuser (still trained) does not forget grounding.

Stage-1 terms, all on unit vectors in the text space (cosines):
- `temporal`: per query, an InfoNCE over the steps of its own video, the target spread over the steps its GT
  windows cover (weighted by how much of each step they cover). This is what localisation needs: inside one video
  the answer's steps must beat every other step.
- `match`: a SigLIP-style sigmoid loss on every (query, step) pair of the batch, steps of other videos included,
  labelled by construction (a query about "a steady beep" is positive on the beep steps of *every* video that has
  one; its signature says so). It keeps similarities comparable across videos, which search needs.
- `clip`: symmetric InfoNCE between clip embeddings and captions of the clips (the scenes' descriptions in order).
- `bridge`: pulls each step towards the zero-shot bridge vector of its frames (ImageNet class probabilities mixed
  over MiniLM embeddings of the class names, docs/architecture.md §3): an open-vocabulary prior for footage never
  seen in training, where a few dozen captions cannot teach one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

MATCH_TEMPERATURE = 10.0  # sigmoid loss: logit = 10 * cos + bias (the bias is learned, the scale fixed)


@dataclass(frozen=True)
class LossWeights:
    temporal: float = 1.0
    match: float = 1.0
    clip: float = 0.5
    bridge: float = 0.2
    lm: float = 1.0


def temporal_nce(
    steps: Tensor,  # (B, T', D) unit step embeddings
    step_mask: Tensor,  # (B, T') bool
    queries: Tensor,  # (Q, D) unit query embeddings
    owner: Tensor,  # (Q,) long: the video of each query
    labels: Tensor,  # (Q, B, T') coverage of each step by the query's windows, in [0, 1]
    scale: Tensor,  # logit scale (exp of the learnable log-scale)
) -> Tensor:
    own_steps = steps[owner]  # (Q, T', D)
    logits = scale * torch.einsum("qd,qtd->qt", queries, own_steps)  # (Q, T')
    mask = step_mask[owner]
    logits = logits.masked_fill(~mask, float("-inf"))
    target = labels[torch.arange(len(owner), device=owner.device), owner] * mask  # (Q, T')
    total = target.sum(-1)
    keep = total > 0
    if not bool(keep.any()):
        return logits.new_zeros(())
    target = target[keep] / total[keep, None]
    log_p = F.log_softmax(logits[keep], dim=-1).masked_fill(~mask[keep], 0.0)
    return -(target * log_p).sum(-1).mean()


def match_loss(steps: Tensor, step_mask: Tensor, queries: Tensor, labels: Tensor, bias: Tensor) -> Tensor:
    logits = MATCH_TEMPERATURE * torch.einsum("qd,btd->qbt", queries, steps) + bias  # (Q, B, T')
    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    weight = step_mask[None].expand_as(loss).to(loss.dtype)
    return (loss * weight).sum() / weight.sum().clamp_min(1.0)


def clip_nce(clips: Tensor, captions: Tensor, same: Tensor, scale: Tensor) -> Tensor:
    """(B, D) clip embeddings vs (B, D) captions; `same` (B, B) marks pairs from the same video (all positives)."""
    logits = scale * clips @ captions.T  # (B, B)
    target = same.to(logits.dtype)
    target = target / target.sum(-1, keepdim=True)
    forward = -(target * F.log_softmax(logits, dim=-1)).sum(-1).mean()
    backward = -(target.T * F.log_softmax(logits.T, dim=-1)).sum(-1).mean()
    return (forward + backward) / 2


def bridge_loss(steps: Tensor, step_mask: Tensor, teacher: Tensor) -> Tensor:
    cos = (steps * teacher).sum(-1)  # (B, T')
    weight = step_mask.to(cos.dtype)
    return ((1 - cos) * weight).sum() / weight.sum().clamp_min(1.0)
