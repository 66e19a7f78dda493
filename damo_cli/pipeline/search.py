"""`damo search`: one query against every channel of the library, combined on calibrated scores.

Each channel's raw score is mapped to [0, 1] between a floor (below it the channel says nothing: an unrelated
sentence still has some cosine) and a ceiling (a clear match). Rank-based fusion was tried first and dropped: in a
small library a channel's best hit ranks first even when it is unrelated, e.g. the only transcript line won every
query. A result's score is its strongest channel's calibrated score, plus a small bonus when other channels agree,
so a spoken-only or a seen-only moment can still score 1.0. Overlapping moments of one video are one result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from damo_cli.store import Library, Moment

CANDIDATES = 50  # per channel, before combining
AGREEMENT_BONUS = 0.1  # per unit of calibrated score from the other channels


@dataclass(frozen=True)
class Calibration:
    weight: float
    floor: float
    ceiling: float

    def __call__(self, score: float) -> float:
        return float(np.clip(self.linear(score), 0.0, self.weight))

    def linear(self, scores: np.ndarray | float) -> np.ndarray:
        """The same map without the clipping: below the floor stays below 0, so a curve keeps its shape."""
        return self.weight * (np.asarray(scores, dtype=np.float64) - self.floor) / (self.ceiling - self.floor)


# Cosines in MiniLM space (fused, bridge, speech); the transcript channel is scored by query-word coverage.
# Floors and ceilings read off the distributions of matching vs unrelated queries on the packaged sample videos.
CALIBRATION = {
    "fused": Calibration(1.0, 0.15, 0.6),
    "bridge": Calibration(0.6, 0.1, 0.4),  # zero-shot fallback: even matches rarely exceed 0.35
    "speech": Calibration(1.0, 0.2, 0.6),  # paraphrases of a spoken line score ~0.4-0.6
    "transcript": Calibration(0.9, 0.34, 1.0),  # at least a third of the query's words are said
    # on-screen text by meaning: "the slide about revenue" vs "Revenue grew 12%" 0.56, unrelated lines < 0.3
    "screen": Calibration(1.0, 0.25, 0.65),
    "screen_text": Calibration(0.9, 0.34, 1.0),  # on-screen text by its words, like the transcript
    # a sound event's sentence: "music" vs "music is playing" 0.74, "a song" vs "someone is singing" 0.58, while
    # unrelated queries reach 0.25 against "someone is speaking" (MiniLM cosines)
    "sound": Calibration(1.0, 0.4, 0.8),
}
TEXT_LABELS = {"screen": "on screen", "screen_text": "on screen", "sound": "heard"}  # how a hit's text is introduced
_STOPWORDS = frozenset(
    """a an the of to in on at for and or is are was were be been it this that with by from as do does did when where
    what who how someone somebody something say says said""".split()  # noqa: SIM905 - a word list reads best as text
)


@dataclass
class SearchHit:
    path: Path
    start: float
    end: float
    score: float
    text: str | None
    channels: dict[str, float] = field(default_factory=dict)  # calibrated evidence per channel

    def to_json(self) -> dict:
        return {
            "video": str(self.path),
            "start": round(self.start, 2),
            "end": round(self.end, 2),
            "score": round(self.score, 4),
            "text": self.text or None,
        }


def query_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in _STOPWORDS}


def word_coverage(query: str, text: str) -> float:
    """Share of the query's content words said in `text` (crude stemming: a trailing 's' is ignored)."""
    wanted = {w.rstrip("s") for w in query_words(query)}
    said = {w.rstrip("s") for w in query_words(text)}
    return len(wanted & said) / len(wanted) if wanted else 0.0


def combine(evidence: list[tuple[str, Moment, float]], k: int) -> list[SearchHit]:
    """(channel, moment, calibrated score) -> results: overlapping moments of one video merge, best first."""
    hits: list[tuple[SearchHit, int]] = []
    for channel, moment, score in sorted(evidence, key=lambda e: -e[2]):
        if score <= 0:
            continue
        match = next((h for h, vid in hits if vid == moment.video_id and _overlap(h, moment) > 0), None)
        text = _labelled(channel, moment.text)
        if match is None:  # the strongest evidence sets the span
            match = SearchHit(moment.path, moment.start, moment.end, 0.0, text)
            hits.append((match, moment.video_id))
        match.channels[channel] = max(match.channels.get(channel, 0.0), score)
        match.text = match.text or text
    for hit, _ in hits:
        best = max(hit.channels.values())
        hit.score = min(1.0, best + AGREEMENT_BONUS * (sum(hit.channels.values()) - best))
    return sorted((h for h, _ in hits), key=lambda h: -h.score)[:k]


def _labelled(channel: str, text: str | None) -> str | None:
    """What a hit shows: what is said as it is; text on screen and sounds introduced as such."""
    if not text:
        return None
    label = TEXT_LABELS.get(channel)
    return f"{label}: {text}" if label else text


def _overlap(hit: SearchHit, moment: Moment) -> float:
    return min(hit.end, moment.end) - max(hit.start, moment.start)


def search_library(
    library: Library,
    query: str,
    query_vector: np.ndarray,
    fingerprint: str,
    trained: bool,
    k: int = 10,
    path_filter: str | None = None,
    zero_shot: tuple[np.ndarray, Calibration] | None = None,
) -> list[SearchHit]:
    """zero_shot: the query's vector for the "bridge" channel and that channel's calibration, where the card's
    zero-shot channel is not in the text encoder's space (a hub card's image-text tower: `pipeline.zero_shot`)."""
    evidence: list[tuple[str, Moment, float]] = []
    channels = ("bridge", "speech", "screen", "sound")
    channels = ("fused", *channels) if trained else channels  # untrained fused: noise
    for channel in channels:
        vector, calibration = query_vector, CALIBRATION[channel]
        if channel == "bridge" and zero_shot is not None:
            vector, calibration = zero_shot
        for moment in library.search(
            vector, CANDIDATES, channel=channel, fingerprint=fingerprint, path_filter=path_filter
        ):
            evidence.append((channel, moment, calibration(moment.score)))
    if query_words(query):
        for moment in library.text_search(query, CANDIDATES, path_filter=path_filter):
            channel = moment.channel  # "transcript" or "screen_text"
            evidence.append((channel, moment, CALIBRATION[channel](word_coverage(query, moment.text))))
    return combine(evidence, k)
