"""Search results and how per-time-step hits become moments.

The index holds one vector per time step (e.g. one per second); a query scores steps. A person wants
moments: "the door opens at 12-15 s", not three rows for 12, 13 and 14 s. `merge_hits` defines the rule:

1. Hits are grouped per (video, channel) and sorted by start time.
2. A *run* is a maximal sequence of hits that touch in time: each starts at most `max_gap` seconds after
   the previous one ends (overlapping steps touch too).
3. Inside a run, a step is *core* when its score is within `margin` of the run's best score, or at least
   `threshold` when one is given. Each maximal stretch of consecutive core steps is one moment:
   start = first start, end = last end, score = the best score in it, steps = how many steps it joins.
4. Non-core steps of a run are dropped: they are the fading edges of, or a dip between, stronger moments of
   the same event. A dip therefore splits a run, as a gap does.

Runs are judged against their own peak rather than the video's best, so a second, weaker event in the same
video still comes back as its own moment (ranked lower) instead of being swallowed by the first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_MARGIN = 0.05
DEFAULT_MAX_GAP = 0.25


@dataclass(frozen=True)
class Moment:
    """A ranked result: a stretch of one video. Raw per-step hits are Moments with steps=1."""

    video_id: int
    path: Path
    start: float
    end: float
    score: float
    channel: str
    steps: int = 1
    text: str = ""  # the transcript overlapping [start, end], when the video has one

    @property
    def duration(self) -> float:
        return self.end - self.start


def merge_hits(
    hits: Iterable[Moment],
    *,
    margin: float = DEFAULT_MARGIN,
    threshold: float | None = None,
    max_gap: float = DEFAULT_MAX_GAP,
) -> list[Moment]:
    """Merge time-adjacent hits of the same video and channel into moments (rule in the module docstring).

    Returns the moments best first (ties: earlier video id, then earlier start, so the order is stable).
    """
    if margin < 0 or max_gap < 0:
        raise ValueError("margin and max_gap must be >= 0")
    groups: dict[tuple[int, str], list[Moment]] = defaultdict(list)
    for hit in hits:
        groups[(hit.video_id, hit.channel)].append(hit)

    merged: list[Moment] = []
    for group in groups.values():
        group.sort(key=lambda h: (h.start, h.end))
        for run in _runs(group, max_gap):
            peak = max(h.score for h in run)
            stretch: list[Moment] = []
            for hit in run:
                core = hit.score >= peak - margin or (threshold is not None and hit.score >= threshold)
                if core:
                    stretch.append(hit)
                elif stretch:
                    merged.append(_join(stretch))
                    stretch = []
            if stretch:
                merged.append(_join(stretch))
    merged.sort(key=lambda m: (-m.score, m.video_id, m.start))
    return merged


def _runs(hits: list[Moment], max_gap: float) -> Iterable[list[Moment]]:
    run = [hits[0]]
    reach = hits[0].end  # the furthest end so far: a long step can bridge later short ones
    for hit in hits[1:]:
        if hit.start <= reach + max_gap:
            run.append(hit)
            reach = max(reach, hit.end)
        else:
            yield run
            run, reach = [hit], hit.end
    yield run


def _join(stretch: list[Moment]) -> Moment:
    best = max(stretch, key=lambda h: h.score)
    return replace(
        best,
        start=min(h.start for h in stretch),
        end=max(h.end for h in stretch),
        steps=sum(h.steps for h in stretch),
    )
