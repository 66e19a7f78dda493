"""Colour names of a picture: the share of its pixels in each of eleven basic colours (HSV thresholds, no model).

ImageNet classes name things but not their colour, and "what colour is the ball?" is among the commonest questions
about a clip. Pixels are named by hue when saturated and bright enough, else black, grey or white; brown is a dark,
saturated orange or red.
"""

from __future__ import annotations

import numpy as np

NAMES = ("black", "grey", "white", "red", "orange", "brown", "yellow", "green", "blue", "purple", "pink")
THUMB = (96, 54)  # colours are read on a small copy: shares do not need detail


def colour_shares(frame: np.ndarray, where: np.ndarray | None = None, level: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (11,) share of pixels per name in NAMES (sums to 1).

    `where` (any 2-D map of the frame, e.g. a 7x7 class activation in [0, 1]) narrows the count to the pixels where
    it is at least `level`, stretched over the frame: the colours of one thing, not of the whole picture."""
    import cv2

    small = cv2.resize(np.ascontiguousarray(frame), THUMB, interpolation=cv2.INTER_AREA)
    names = pixel_names(small)
    if where is not None:
        stretched = cv2.resize(np.asarray(where, dtype=np.float32), THUMB, interpolation=cv2.INTER_LINEAR)
        names = names[stretched.reshape(-1) >= level]
        if len(names) == 0:
            return np.zeros(len(NAMES), dtype=np.float32)
    return np.bincount(names, minlength=len(NAMES)).astype(np.float32) / len(names)


def pixel_names(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H * W,) index into NAMES of each pixel's colour name."""
    import cv2

    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV_FULL).reshape(-1, 3).astype(np.float32)
    hue, sat, val = hsv[:, 0] * (360.0 / 256.0), hsv[:, 1] / 255.0, hsv[:, 2] / 255.0
    names = np.full(len(hue), NAMES.index("grey"))
    chromatic = (sat >= 0.25) & (val >= 0.25)
    names[(val < 0.2)] = NAMES.index("black")
    names[~chromatic & (val >= 0.2) & (sat < 0.25) & (val > 0.8)] = NAMES.index("white")
    bins = [(15, "red"), (40, "orange"), (70, "yellow"), (160, "green"), (255, "blue"), (290, "purple"), (340, "pink")]
    coloured = np.full(len(hue), NAMES.index("red"))  # 340-360 wraps to red
    for upper, name in reversed(bins):
        coloured[hue < upper] = NAMES.index(name)
    brown = np.isin(coloured, [NAMES.index("orange"), NAMES.index("red")]) & (val < 0.55)
    coloured[brown] = NAMES.index("brown")
    names[chromatic] = coloured[chromatic]
    return names


def main_colours(shares: np.ndarray, count: int = 3, floor: float = 0.03) -> list[str]:
    """The names of the largest shares (at least `floor` of the picture), chromatic ones first when present: a red
    ball on a grey floor is asked about for its red."""
    order = [int(i) for i in np.argsort(-shares) if shares[i] >= floor]
    chromatic = [i for i in order if NAMES[i] not in ("black", "grey", "white")]
    neutral = [i for i in order if NAMES[i] in ("black", "grey", "white")]
    return [NAMES[i] for i in (chromatic + neutral)[:count]]
