"""Trivial baselines built from the ground truth's own durations, scored with the same metrics as the model.

A model's numbers mean little without them: on Charades-STA a window over the whole video already reaches a sizeable
R1@0.3. Each baseline predicts exactly one window per query (score 1):

- `random`: start, end = the sorted pair of two independent draws from Uniform(0, duration), seeded; i.e. the pair of
  order statistics of two uniforms, so the window length has density 2(1 - l/d)/d (mean d/3) and its midpoint a
  triangular density peaking at d/2.
- `centre`: centred on the video's midpoint, length = the dataset's mean GT window length / duration ratio times the
  duration (a prior peeked from the GT on purpose: it is the best a content-blind fixed window can know).
- `whole`: [0, duration].

For QVHighlights the baselines also predict clip saliency: 1 for 2-second clips whose centre lies in the window, else 0
(so highlight metrics show what the window alone gives; tied clips form one rank).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from damo_cli.evaluation.records import CLIP_SECONDS, GTQuery, Prediction, PredictionSet


def random_windows(durations: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, 2) windows from two sorted Uniform(0, duration) draws per query, reproducible for a given seed."""
    d = np.asarray(durations, dtype=float)
    draws = np.random.default_rng(seed).uniform(0.0, 1.0, size=(len(d), 2)) * d[:, None]
    return np.sort(draws, axis=1)


def centre_windows(durations: np.ndarray, ratio: float) -> np.ndarray:
    """(n, 2) windows centred in each video with length `ratio` x duration (ratio clipped to [0, 1])."""
    d = np.asarray(durations, dtype=float)
    half = 0.5 * float(np.clip(ratio, 0.0, 1.0)) * d
    return np.column_stack([d / 2 - half, d / 2 + half])


def whole_windows(durations: np.ndarray) -> np.ndarray:
    """(n, 2) windows [0, duration]."""
    d = np.asarray(durations, dtype=float)
    return np.column_stack([np.zeros_like(d), d])


def mean_length_ratio(gt: Sequence[GTQuery]) -> float:
    """Mean over all GT windows of window length / video duration (each capped at 1)."""
    ratios = np.concatenate([np.minimum((q.windows[:, 1] - q.windows[:, 0]) / q.duration, 1.0) for q in gt])
    return float(ratios.mean())


def window_saliency(window: np.ndarray, duration: float) -> np.ndarray:
    """Per 2-second clip: 1.0 if the clip's centre lies within `window`, else 0.0 (int(duration / 2) clips)."""
    centres = np.arange(int(duration / CLIP_SECONDS)) * CLIP_SECONDS + CLIP_SECONDS / 2
    return ((centres >= window[0]) & (centres <= window[1])).astype(float)


def baseline_predictions(
    gt: Sequence[GTQuery], seed: int = 0, with_saliency: bool = False
) -> tuple[dict[str, PredictionSet], dict[str, str]]:
    """The three baselines as prediction sets (same qids as `gt`), and a one-line description of each."""
    durations = np.asarray([q.duration for q in gt])
    ratio = mean_length_ratio(gt)
    windows = {
        "random": random_windows(durations, seed),
        "centre": centre_windows(durations, ratio),
        "whole": whole_windows(durations),
    }
    notes = {
        "random": f"sorted pair of two Uniform(0, duration) draws, seed {seed}",
        "centre": f"centred, length {ratio:.3f} x duration (mean GT length ratio)",
        "whole": "[0, duration]",
    }
    sets: dict[str, PredictionSet] = {}
    for name, wins in windows.items():
        preds = PredictionSet()
        for q, w in zip(gt, wins, strict=True):
            saliency = window_saliency(w, q.duration) if with_saliency else None
            preds.by_key[q.key] = Prediction(key=q.key, windows=np.array([[w[0], w[1], 1.0]]), saliency=saliency)
        sets[name] = preds
    return sets, notes
