"""On-screen events drawn with numpy: filled shapes and big block-letter words, as boolean masks over a frame.

No font file or imaging library is needed: words use a 5x7 pixel font defined here, scaled up.
"""

from __future__ import annotations

import math

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")

# 5x7 block capitals, one string of 7 rows per letter ("#" = ink)
_FONT_ROWS: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
}
GLYPH_W, GLYPH_H = 5, 7
_GLYPHS = {ch: np.array([[c == "#" for c in row] for row in rows], dtype=bool) for ch, rows in _FONT_ROWS.items()}


def word_mask(word: str, scale: int) -> np.ndarray:
    """(7*scale, (6*len-1)*scale) boolean mask of `word` in block capitals (one blank column between letters)."""
    word = word.upper()
    unknown = sorted({ch for ch in word if ch not in _GLYPHS})
    if unknown:
        raise ValueError(f"no glyph for {''.join(unknown)!r}")
    columns: list[np.ndarray] = []
    for i, ch in enumerate(word):
        if i:
            columns.append(np.zeros((GLYPH_H, 1), dtype=bool))
        columns.append(_GLYPHS[ch])
    small = np.concatenate(columns, axis=1)
    return np.kron(small, np.ones((scale, scale), dtype=bool))


def _polygon_mask(xx: np.ndarray, yy: np.ndarray, points: list[tuple[float, float]]) -> np.ndarray:
    """Even-odd rule point-in-polygon test over pixel centres (works for concave outlines such as a star)."""
    inside = np.zeros(xx.shape, dtype=bool)
    n = len(points)
    for i in range(n):
        x1, y1 = points[i]
        x2, y2 = points[(i + 1) % n]
        if y1 == y2:
            continue
        crosses = (yy >= min(y1, y2)) & (yy < max(y1, y2))
        x_at = x1 + (yy - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (xx < x_at)
    return inside


def shape_mask(shape: str, size: int) -> np.ndarray:
    """(size, size) boolean mask of a filled shape centred in its box."""
    c = (size - 1) / 2.0
    r = size / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if shape == "circle":
        return (xx - c) ** 2 + (yy - c) ** 2 <= r * r
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "diamond":
        return np.abs(xx - c) + np.abs(yy - c) <= r
    if shape == "triangle":
        return _polygon_mask(xx, yy, [(c, -0.5), (size - 0.5, size - 0.5), (-0.5, size - 0.5)])
    if shape == "star":
        points = []
        for k in range(10):  # 5 outer and 5 inner corners, first one pointing up
            radius = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((c + radius * math.cos(angle), c + radius * math.sin(angle)))
        return _polygon_mask(xx, yy, points)
    if shape == "cross":
        arm = size / 6.0  # half thickness of each bar
        return (np.abs(xx - c) <= arm) | (np.abs(yy - c) <= arm)
    raise ValueError(f"unknown shape {shape!r} (known: {', '.join(SHAPES)})")


def paint(frame: np.ndarray, mask: np.ndarray, x: int, y: int, rgb: tuple[int, int, int]) -> None:
    """Paint `rgb` into `frame` (H, W, 3 uint8) where `mask` (placed with its top-left at x, y) is set; clipped."""
    h, w = frame.shape[:2]
    mh, mw = mask.shape
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(w, x + mw), min(h, y + mh)
    if x1 <= x0 or y1 <= y0:
        return
    region = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    frame[y0:y1, x0:x1][region] = rgb


def shape_core(shape: str, size: int) -> tuple[float, float]:
    """A point (dx, dy) from the top-left of a shape's box that lies well inside the shape (for checking colour)."""
    c = (size - 1) / 2.0
    if shape == "triangle":
        return c, size * 0.7  # the centroid sits low in an upward triangle
    return c, c
