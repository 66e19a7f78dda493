"""Moments from the per-time head: a query's similarity curve over a video's steps -> ranked (start, end, score).

`localize(step_embeddings, step_spans, query_embedding)` is what `damo eval`, `damo ask` and `damo search` use to
turn the stage-1 head into moments. The decoder (`decode_curve`), in order:

1. smooth the cosine curve with a small Gaussian (sigma in steps): one noisy step should neither split an event in
   two nor make a moment of its own;
2. threshold it *relative to the video's own curve*: thr = median + `threshold` x (max - median). Absolute cosines
   drift between queries (a short query sits closer to everything), but within one video the event stands out from
   the rest; the median is the "nothing happens" level because most of a video is not the answer;
3. contiguous runs above thr, with gaps of at most `bridge_gap` steps closed, are candidate moments;
4. boundaries: where the curve crosses thr between two step centres, linearly interpolated (sub-step precision:
   steps are 1 s for damo-tiny, events 1.5-3 s); a run touching the video's edge keeps the edge;
5. each moment is scored by its peak minus the median, ranked; more candidates for top-k come from a few other
   thresholds, with non-maximum suppression at IoU `nms_iou`.

The defaults were tuned on the *training* split's validation videos (TRAINING.md), never on held-out data.

`speech_moments(segments, query)` is the transcript's evidence for "when does someone say '...'": a quoted phrase
(or what follows "say") matched against each transcript segment's words, fuzzily (ASR misspells), answered with
the segment (utterance) that holds it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LocalizeSettings:
    smooth_sigma: float = 0.5  # Gaussian smoothing in steps (0: none)
    threshold: float = 0.6  # fraction of the way from the curve's median to its max
    bridge_gap: int = 1  # runs separated by at most this many steps below thr are one moment
    extra_thresholds: tuple[float, ...] = (0.3, 0.7, 0.85)  # more candidates for top-k
    nms_iou: float = 0.6


DEFAULT_SETTINGS = LocalizeSettings()


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def similarity_curve(step_embeddings: Any, query_embedding: Any) -> np.ndarray:
    """(N, D) unit step embeddings . (D,) unit query -> (N,) cosines."""
    steps, query = _as_numpy(step_embeddings), _as_numpy(query_embedding).reshape(-1)
    return steps @ query


def localize(
    step_embeddings: Any,
    step_spans: Any,
    query_embedding: Any,
    k: int = 5,
    settings: LocalizeSettings = DEFAULT_SETTINGS,
) -> list[tuple[float, float, float]]:
    """Ranked moments (start, end, score) of one query in one video, best first (at most k)."""
    return decode_curve(similarity_curve(step_embeddings, query_embedding), step_spans, k, settings)


def smooth(curve: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0 or len(curve) < 3:
        return curve.copy()
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    padded = np.pad(curve, radius, mode="edge")  # edge padding: an event at the very start keeps its height
    return np.convolve(padded, kernel / kernel.sum(), mode="valid")


def _runs(mask: np.ndarray, bridge_gap: int) -> list[tuple[int, int]]:
    runs: list[list[int]] = []
    for i in np.flatnonzero(mask):
        if runs and i - runs[-1][1] <= bridge_gap + 1:
            runs[-1][1] = int(i)
        else:
            runs.append([int(i), int(i)])
    return [(a, b) for a, b in runs]


def _crossing(c0: float, c1: float, v0: float, v1: float, thr: float) -> float:
    """Time between step centres c0 and c1 where the line through (c0, v0), (c1, v1) crosses thr."""
    if v1 == v0:
        return (c0 + c1) / 2
    f = float(np.clip((thr - v0) / (v1 - v0), 0.0, 1.0))
    return c0 + f * (c1 - c0)


def _regions(
    s: np.ndarray, raw: np.ndarray, spans: np.ndarray, thr: float, base: float, gap: int
) -> list[tuple[float, float, float]]:
    centres = spans.mean(1)
    out = []
    for i, j in _runs(s >= thr, gap):
        start = spans[0, 0] if i == 0 else _crossing(centres[i - 1], centres[i], s[i - 1], s[i], thr)
        end = spans[-1, 1] if j == len(s) - 1 else _crossing(centres[j], centres[j + 1], s[j], s[j + 1], thr)
        out.append((float(start), float(max(end, start)), float(raw[i : j + 1].max() - base)))
    return out


def _iou(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    hull = max(a[1], b[1]) - min(a[0], b[0])
    return inter / hull if hull > 0 else float(a[:2] == b[:2])


def decode_curve(
    curve: Any, step_spans: Any, k: int = 5, settings: LocalizeSettings = DEFAULT_SETTINGS
) -> list[tuple[float, float, float]]:
    """Per-step scores (N,) and spans (N, 2) -> ranked (start, end, score) moments (see the module docstring)."""
    raw, spans = _as_numpy(curve).reshape(-1), _as_numpy(step_spans).reshape(-1, 2)
    if len(raw) != len(spans):
        raise ValueError(f"{len(raw)} scores for {len(spans)} step spans")
    if len(raw) == 0 or k <= 0:
        return []
    if not np.isfinite(raw).all():
        raw = np.nan_to_num(raw, nan=-1.0, posinf=1.0, neginf=-1.0)
    s = smooth(raw, settings.smooth_sigma)
    base, top = float(np.median(s)), float(s.max())
    if top - base <= 1e-9:  # a flat curve says nothing: the whole video, scored 0
        return [(float(spans[0, 0]), float(spans[-1, 1]), 0.0)]
    ranked: list[tuple[int, tuple[float, float, float]]] = []  # (0 for the main threshold's moments, moment)
    for rank, level in enumerate((settings.threshold, *settings.extra_thresholds)):
        thr = base + level * (top - base)
        ranked.extend((min(rank, 1), m) for m in _regions(s, raw, spans, thr, base, settings.bridge_gap))
    ranked.sort(key=lambda item: (item[0], -item[1][2]))  # the main threshold's moments first, then by score
    kept: list[tuple[float, float, float]] = []
    for _, moment in ranked:
        if all(_iou(moment, other) < settings.nms_iou for other in kept):
            kept.append(moment)
        if len(kept) == k:
            break
    return kept


# ------------------------------------------------------------------------------------------------ speech evidence

_QUOTED = re.compile(r"['\"\u2018\u2019\u201c\u201d]([^'\"\u2018\u2019\u201c\u201d]{2,})['\"\u2018\u2019\u201c\u201d]")
_SAY = re.compile(r"\b(?:say|says|said|saying|speak|speaks|spoken|mention|mentions|mentioned)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9']+")
_STOP = frozenset(
    ("a", "an", "the", "and", "or", "to", "of", "in", "on", "at", "is", "are", "was", "be", "by", "for", "with",
     "when", "does", "do", "did", "someone", "somebody", "say", "says", "said", "moment", "what", "where", "which",
     "who", "it", "this", "that")
)  # fmt: skip


def quoted_phrase(query: str) -> str | None:
    """The phrase a speech query asks for: text in quotes, else what follows 'say ...'; None for other queries."""
    match = _QUOTED.search(query)
    if match:
        return match.group(1).strip()
    said = _SAY.search(query)
    if said:
        rest = query[said.end() :].strip(" ?.!:")
        return rest or None
    return None


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _similar(a: str, b: str) -> float:
    return 1.0 if a == b else SequenceMatcher(None, a, b).ratio()


def phrase_match(phrase: str, words: Sequence[str]) -> tuple[float, int, int]:
    """How well `phrase` occurs in `words`: (score 0-1, first, last word index) of the best contiguous match.

    Each phrase word is matched fuzzily (string similarity >= 0.75) to a word of the window; the score is the mean
    similarity over the phrase's words (stop words count half), so one misheard word costs little. Between windows
    that score the same, the one saying the words in the phrase's order wins, then the tighter one: "ask what you can
    do for your country" and "ask not what your country can do for you" share every word.
    """
    target = _words(phrase)
    if not target or not words:
        return 0.0, 0, 0
    weights = np.array([0.5 if w in _STOP else 1.0 for w in target])
    best, best_key = (0.0, 0, 0), (0.0, 0, 0)
    span = len(target) + 2  # allow an inserted or split word
    for first in range(len(words)):
        window = words[first : first + span]
        table = np.array([[_similar(t, w) for w in window] for t in target])  # (phrase words, window words)
        sims = table.max(axis=1)
        matched = sims >= 0.75
        if not matched.any():
            continue
        score = float((np.where(matched, sims, 0.0) * weights).sum() / weights.sum())
        # the span of the words that matched, not of the window: a window may begin with words before the phrase
        where = table.argmax(axis=1)[matched]
        in_order = int((np.diff(where) > 0).sum())
        key = (round(score, 9), in_order, -int(where.max() - where.min()))
        if key > best_key:
            best_key, best = key, (score, first + int(where.min()), first + int(where.max()))
    return best


def _word_items(seg: Any) -> list[tuple[float, float, str]]:
    """(start, end, text) of a segment's words: objects with .start/.end/.text or (start, end, text) tuples."""
    out = []
    for w in getattr(seg, "words", None) or []:
        start, end, text = (w.start, w.end, w.text) if hasattr(w, "start") else (w[0], w[1], w[2])
        out.append((float(start), float(end), str(text)))
    return out


def _spoken(seg: Any, phrase: str) -> tuple[float, float, float]:
    words = _word_items(seg)
    tokens, owner = [], []
    for index, (_, _, text) in enumerate(words):
        for token in _words(text):
            tokens.append(token)
            owner.append(index)
    if not tokens:
        score, _, _ = phrase_match(phrase, _words(getattr(seg, "text", "")))
        return float(seg.start), float(seg.end), score
    score, first, last = phrase_match(phrase, tokens)
    # An edge the phrase shares with its utterance keeps the utterance's edge (faster-whisper folds a pause into
    # an utterance's first word, so that word's start is early); an edge inside the utterance is its word's time.
    start = float(seg.start) if owner[first] == 0 else words[owner[first]][0]
    end = float(seg.end) if owner[last] == len(words) - 1 else words[owner[last]][1]
    return start, end, score


def speech_moments(segments: Sequence[Any], query: str, min_score: float = 0.5) -> list[tuple[float, float, float]]:
    """Transcript segments (with .start, .end, .text, optionally word times) matching the query's phrase, best first.

    "When does someone say X" asks when X is said: the span of X's own words inside the utterance (a segment,
    speech between pauses) that holds it; where X starts or ends the utterance, the utterance's own edge.
    """
    phrase = quoted_phrase(query)
    if not phrase:
        return []
    out = []
    for seg in segments:
        start, end, score = _spoken(seg, phrase)
        if score >= min_score:
            out.append((start, end, score))
    out.sort(key=lambda m: -m[2])
    return out
