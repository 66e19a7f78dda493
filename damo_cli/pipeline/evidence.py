"""Named evidence: what the tool can say in words about the moments a question is about.

- seen: the ImageNet classes of the frames (the names behind the zero-shot bridge), averaged over the moments and
  ranked by how likely they are and how related they are to the question ("what animal" favours "cockatoo" over
  "window screen");
- written: lines of on-screen text (PP-OCR);
- heard: sound events (speech, singing, music) and the transcript lines;
- the colours of the thing a colour question is about (`thing_colours`): the ImageNet class most like it is located
  in a few frames by its class activation map, and the colours of those pixels are named.

`describe` writes an answer from them, always in words: the named things most related to the question first, and
what else is seen when nothing fits, so a question is never answered with a time range alone.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from damo_cli.encoders.audio import TranscriptSegment
from damo_cli.encoders.colours import NAMES as COLOUR_NAMES
from damo_cli.encoders.colours import colour_shares, main_colours
from damo_cli.encoders.screen_text import ScreenText
from damo_cli.encoders.sounds import SoundEvent
from damo_cli.encoders.visual import imagenet_class_names
from damo_cli.errors import DamoError
from damo_cli.media import FrameReader
from damo_cli.pipeline.analyse import VideoAnalysis
from damo_cli.timestamps import format_moment

CANDIDATE_CLASSES = 12  # most probable classes considered; beyond them ImageNet guesses are noise
SEEN_NAMED = 3  # classes named in an answer
RELEVANCE_GAIN = 4.0  # how much relatedness to the question can lift a less probable class
LOCALISED = 0.3  # a top moment at least this confident (and not the whole clip) narrows what is looked at
# A colour question's thing: looked for in this many frames (decoded when asked: the cache keeps no full frames);
# its pixels are where the class activation reaches this share of the frame's range. Chosen on the real clips'
# train split (39 colour questions): through `damo eval --answers` the thing's colours named the expected one for 22
# against 20 for the whole picture's; in the first sweep levels 0.5-0.75 gave 23-24, 0.3 gave 20, 0.9 gave 19.
THING_FRAMES = 4
THING_LEVEL = 0.75
# The class that locates the thing is the one most like the question's subject among the frames' THING_CANDIDATES
# most probable classes, however probable each is ("his shorts" -> swimming trunks, not the likelier croquet ball).
# Train split, 39 colour questions in 188: among the top 50 by likeness alone 56 of 188 named against 53 when
# probability x (1 + 4 x likeness) chose among the top 12 as before; top 12 by likeness or top 50 with probability
# ^0.25 gave 55.
THING_CANDIDATES = 50

_TEXT_QUESTION = re.compile(
    r"\b(?:written|writ(?:e|es|ing)|text|word|words|spell(?:s|ed|ing)?|label|labels|watermark|logo|logos"
    r"|title|titles|caption|captions|subtitle|subtitles|screen|slide|slides|read|reads|banner|headline"
    r"|brand|brands|printed)\b"  # a brand is read off a label or a logo
    r"|\bsigns?\b.*\b(?:say|says|read|reads)\b",  # "the sign" of a street, not of sign language
    re.IGNORECASE,
)
_COLOUR_QUESTION = re.compile(r"\bcolou?rs?\b|\bcolou?red\b", re.IGNORECASE)
# "is the film in colour or black and white?": about the whole picture, not a thing's colour
_MONOCHROME_QUESTION = re.compile(r"\bblack[- ](?:and|&)[- ]white\b|\bmonochrome\b|\bgr[ae]yscale\b", re.IGNORECASE)
# A picture reads as black and white when under this share of its pixels has a colour (saturation and brightness
# >= 0.25, encoders.colours): a grey film's compression noise stays far under it, a colour film's skin and sky over
# it. Chosen by that reasoning, not tuned on the real clips (their questions ask it once, on the dev split).
MONOCHROME_LEVEL = 0.05
_COLOUR_SUBJECT = re.compile(r"colou?rs?\s+(?:is|are|was|were|does|do|of)?\s*(.*?)\s*\??$", re.IGNORECASE)
_DETERMINER = re.compile(r"^(?:the|a|an|this|that|these|those|his|her|their|its|my|your|our)\s+", re.IGNORECASE)
_SOUND_QUESTION = re.compile(r"\b(?:hear|heard|sound|sounds|music|song|songs|noise|singing|sings|sing)\b", re.I)
_PLACE_QUESTION = re.compile(
    r"^\s*(?:where\b|(?:what|which)\s+(?:room|place|kind of place|location|setting|building)\b)", re.IGNORECASE
)
# Where a scene is, from the ImageNet classes seen in it: ImageNet names few places ("library", "alp", "stage") but
# many things that only belong in one ("wok" and "stove": a kitchen). Each place lists the classes that say it.
PLACES: dict[str, tuple[str, ...]] = {
    "a kitchen": ("frying pan", "wok", "Dutch oven", "stove", "microwave", "refrigerator", "dishwasher", "toaster",
                  "espresso maker", "coffeepot", "mixing bowl", "spatula", "ladle", "wooden spoon", "plate rack",
                  "caldron", "Crock Pot", "waffle iron", "measuring cup", "can opener", "hot pot"),
    "a gym or sports hall": ("parallel bars", "horizontal bar", "balance beam", "dumbbell", "barbell", "basketball",
                             "volleyball", "punching bag"),
    "a street": ("cab", "streetcar", "minibus", "street sign", "traffic light", "trolleybus", "parking meter",
                 "police van"),
    "a beach": ("seashore", "sandbar", "swimming trunks", "bikini"),
    "the mountains": ("alp", "valley", "cliff", "volcano", "ski"),
    "snow": ("dogsled", "snowmobile", "bobsled"),
    "a bedroom": ("four-poster", "quilt", "pillow", "crib", "cradle", "bassinet", "wardrobe"),
    "a bathroom": ("toilet seat", "washbasin", "bathtub", "shower curtain", "toilet tissue", "soap dispenser"),
    "a living room": ("studio couch", "home theater", "television", "entertainment center", "rocking chair",
                      "table lamp", "fire screen"),
    "an office": ("desk", "desktop computer", "monitor", "computer keyboard", "mouse", "printer"),
    "a stage": ("stage", "electric guitar", "drum", "microphone"),
    "a garden": ("lawn mower", "park bench", "picket fence", "patio", "greenhouse", "worm fence"),
    "a farm field": ("hay", "harvester", "thresher", "plow", "barn", "tractor"),
    "a restaurant": ("restaurant", "dining table", "plate", "tray"),
    "a shop": ("grocery store", "shoe shop", "toyshop", "bookshop", "confectionery", "butcher shop", "tobacco shop",
               "shopping cart", "shopping basket", "bakery"),
    "a barbershop": ("barbershop",),
    "a library": ("library", "bookcase"),
    "a church": ("church", "altar", "monastery", "mosque"),
    "the water": ("lakeside", "boathouse", "canoe", "gondola", "dock", "pier", "paddle", "speedboat", "lifeboat"),
    "a baseball field": ("ballplayer", "scoreboard"),
    "a hospital": ("stretcher", "lab coat", "oxygen mask"),
}  # fmt: skip
# A place is named when its classes hold at least this much of the frames' probability. On the real clips' train
# split (188 open questions, `damo eval --answers --no-llm`) 0.05, 0.1 and 0.2 each named 53 (50 without places);
# 0.1 changed the fewest other answers.
PLACE_LEVEL = 0.1


# What kind of animal an ImageNet class is, in the word a person would use: its 1,000 names are fine-grained
# ("malinois", "tabby", "sorrel", "drake") and say "a dog", "a cat", "a horse" nowhere. The classes come in WordNet
# order, so each kind is a few ranges of class indices (checked against the names in tests/test_named_evidence.py).
KINDS: dict[str, tuple[range, ...]] = {
    "fish": (range(0, 7), range(389, 398)),
    "bird": (range(7, 25), range(80, 101), range(127, 147)),
    "salamander": (range(25, 30),),
    "frog": (range(30, 33),),
    "turtle": (range(33, 38),),
    "lizard": (range(38, 49),),
    "crocodile": (range(49, 51),),
    "snake": (range(52, 69),),
    "spider": (range(72, 78),),
    "crab": (range(118, 122), range(125, 126)),
    "whale": (range(147, 149),),
    "dog": (range(151, 269),),
    "wolf": (range(269, 272),),
    "fox": (range(277, 281),),
    "cat": (range(281, 286),),
    "insect": (range(300, 321),),
    "butterfly": (range(321, 327),),
    "rabbit": (range(330, 333),),
    "rodent": (range(333, 339),),
    "horse": (range(339, 340),),
    "pig": (range(341, 344),),
    "cow": (range(345, 348),),
    "sheep": (range(348, 349),),
    "ape": (range(365, 370),),
    "monkey": (range(370, 383),),
    "lemur": (range(383, 385),),
}


def kind_of(name: str) -> str | None:
    """'malinois' -> 'dog'; None for a class that is no animal above, or whose name already says its kind
    ("Persian cat", "brown bear")."""
    return _kinds_by_name().get(name)


@cache
def _kinds_by_name() -> dict[str, str]:
    """Built on the first open question, not when `ask` is imported."""
    names = imagenet_class_names()
    twice = {name for name, count in Counter(names).items() if count > 1}  # "crane": the bird and the machine
    by_name = {}
    for kind, ranges in KINDS.items():
        for index in (i for r in ranges for i in r):
            if names[index] not in twice and not re.search(rf"\b{kind}", names[index], re.IGNORECASE):
                by_name[names[index]] = kind
    return by_name


@dataclass
class ThingColours:
    """The colours of the thing a question asks about, and how it was found."""

    phrase: str  # what the question asks about: "the man's t-shirt"
    seen_as: str  # the ImageNet class whose activation located it: "jersey"
    colours: list[str]  # main colour names of its pixels, chromatic first


@dataclass
class NamedEvidence:
    span: tuple[float, float]  # the part of the video looked at
    seen: list[tuple[str, float]] = field(default_factory=list)  # (class name, ranking score), best first
    written: list[ScreenText] = field(default_factory=list)
    heard: list[SoundEvent] = field(default_factory=list)
    said: list[TranscriptSegment] = field(default_factory=list)
    colours: list[str] = field(default_factory=list)  # the main colour names of the frames looked at
    thing: ThingColours | None = None  # a colour question's thing, when it could be located
    place: tuple[str, list[str]] | None = None  # (where the scene seems to be, the classes that say so)
    coloured: float | None = None  # share of the frames' pixels that have a colour (None: no colour samples)

    def as_text(self) -> str:
        """The evidence as plain lines, for the LLM's prompt."""
        parts = []
        if self.seen:
            parts.append("Seen: " + ", ".join(name for name, _ in self.seen) + ".")
        if self.place is not None:
            parts.append(f"Seems to be in {self.place[0]}.")
        if self.written:
            parts.append("Written on screen: " + "; ".join(f'"{t.text}"' for t in self.written[:6]) + ".")
        if self.heard:
            parts.append("Heard: " + ", ".join(sorted({e.label for e in self.heard})) + ".")
        if self.thing is not None:
            parts.append(f"Colours of {self.thing.phrase}: " + ", ".join(self.thing.colours) + ".")
        if self.colours:
            parts.append("Main colours: " + ", ".join(self.colours) + ".")
        if self.said:
            parts.append("Said: " + " ".join(f'"{s.text.strip()}"' for s in self.said[:4]))
        return "\n".join(parts)


def is_text_question(question: str) -> bool:
    return bool(_TEXT_QUESTION.search(question))


def is_colour_question(question: str) -> bool:
    return bool(_COLOUR_QUESTION.search(question))


def is_monochrome_question(question: str) -> bool:
    return bool(_MONOCHROME_QUESTION.search(question))


def is_sound_question(question: str) -> bool:
    return bool(_SOUND_QUESTION.search(question))


def is_place_question(question: str) -> bool:
    return bool(_PLACE_QUESTION.search(question))


def gather(
    analysis: VideoAnalysis,
    question_vector: np.ndarray,
    class_embeddings: np.ndarray,
    moments: list[tuple[float, float, float]],
) -> NamedEvidence:
    """The named evidence of the moments a question is about: the best moment when it is confidently localised,
    else the whole video (a short clip's open question is usually about all of it)."""
    start, end = 0.0, float(analysis.duration)
    if moments:
        m_start, m_end, confidence = moments[0]
        if confidence >= LOCALISED and (m_end - m_start) < 0.8 * analysis.duration:
            start, end = float(m_start), float(m_end)
    evidence = NamedEvidence((start, end))
    evidence.seen = _seen(analysis, question_vector, class_embeddings, start, end)
    evidence.place = _place(analysis, start, end)
    evidence.written = [t for t in analysis.screen_text if t.end > start and t.start < end] or list(
        analysis.screen_text
    )
    evidence.heard = [e for e in analysis.sounds if e.end > start and e.start < end]
    evidence.said = [s for s in analysis.transcript if s.text.strip() and s.end > start and s.start < end]
    evidence.colours = _colours(analysis, start, end)
    evidence.coloured = _coloured_share(analysis, start, end)
    return evidence


def colour_subject(question: str) -> str:
    """'What colour is the man's t-shirt?' -> "the man's t-shirt" (the question itself when it has no such form)."""
    match = _COLOUR_SUBJECT.search(question.strip())
    phrase = match.group(1).strip() if match and match.group(1).strip() else question.strip().rstrip("?")
    return phrase if _DETERMINER.match(phrase) else f"the {phrase}"


def thing_colours(
    visual: Any,
    text: Any,
    class_embeddings: np.ndarray | None,
    path: Path,
    span: tuple[float, float],
    question: str,
) -> ThingColours | None:
    """The colours of what a colour question asks about, in a few frames of `span`; None when it cannot be located
    (a visual backbone without ImageNet classes, or frames that will not decode): the picture's colours are used."""
    if class_embeddings is None or not hasattr(visual, "class_activation"):
        return None
    try:
        with FrameReader(path) as reader:
            frames = reader.sample(num_frames=THING_FRAMES, start=span[0], end=span[1]).frames
    except (DamoError, ValueError, OSError):
        return None
    fmap, probs = visual.feature_maps(frames)
    mean = probs.mean(0).numpy()  # (1000,)
    candidates = np.argsort(-mean)[:THING_CANDIDATES]
    phrase = colour_subject(question)
    wanted = text.encode([f"a photo of a {_DETERMINER.sub('', phrase)}"])[0]
    relevance = np.clip(class_embeddings[candidates] @ wanted, 0.0, None)
    chosen = int(candidates[np.argmax(relevance)])
    maps = visual.class_activation(fmap, chosen)  # (F, 7, 7)
    shares = np.mean([colour_shares(f, where=m, level=THING_LEVEL) for f, m in zip(frames, maps, strict=True)], 0)
    colours = main_colours(shares)
    return ThingColours(phrase, imagenet_class_names()[chosen], colours) if colours else None


def _colour_samples(analysis: VideoAnalysis, start: float, end: float) -> np.ndarray | None:
    """(C, 11) colour shares of the frames sampled in [start, end) (all of them when none is); None without any."""
    times = analysis.colour_times
    if len(times) == 0:
        return None
    inside = (times >= start) & (times < end)
    return analysis.colour_shares[inside] if inside.any() else analysis.colour_shares


def _colours(analysis: VideoAnalysis, start: float, end: float) -> list[str]:
    shares = _colour_samples(analysis, start, end)
    return main_colours(shares.mean(0)) if shares is not None else []


def _coloured_share(analysis: VideoAnalysis, start: float, end: float) -> float | None:
    shares = _colour_samples(analysis, start, end)
    if shares is None:
        return None
    neutral = [COLOUR_NAMES.index(name) for name in ("black", "grey", "white")]
    return float(np.clip(1.0 - shares[:, neutral].sum(1).mean(), 0.0, 1.0))  # shares sum to 1 within rounding


def _mean_classes(analysis: VideoAnalysis, start: float, end: float, classes: int = 1000) -> np.ndarray | None:
    """(classes,) mean probability of each ImageNet class over the frames of [start, end) (stored top classes)."""
    times = analysis.frame_times
    if len(times) == 0:
        return None
    inside = (times >= start) & (times < end)
    if not inside.any():
        inside = np.abs(times - (start + end) / 2) == np.abs(times - (start + end) / 2).min()
    mean = np.zeros(classes)
    np.add.at(mean, analysis.class_index[inside].ravel(), analysis.class_prob[inside].ravel())
    return mean / int(inside.sum())


def _place(analysis: VideoAnalysis, start: float, end: float) -> tuple[str, list[str]] | None:
    """The PLACES entry whose classes hold the most probability in [start, end), with its two likeliest classes;
    None when no place reaches PLACE_LEVEL."""
    mean = _mean_classes(analysis, start, end)
    if mean is None:
        return None
    index = {name: i for i, name in enumerate(imagenet_class_names())}
    best: tuple[float, str, list[str]] | None = None
    for place, names in PLACES.items():
        held = sorted(((float(mean[index[n]]), n) for n in names), reverse=True)
        total = sum(p for p, _ in held)
        if total >= PLACE_LEVEL and (best is None or total > best[0]):
            best = (total, place, [n for p, n in held[:2] if p > 0])
    return (best[1], best[2]) if best else None


def _seen(
    analysis: VideoAnalysis, question_vector: np.ndarray, class_embeddings: np.ndarray, start: float, end: float
) -> list[tuple[str, float]]:
    mean = _mean_classes(analysis, start, end, len(class_embeddings))
    if mean is None:
        return []
    candidates = np.argsort(-mean)[:CANDIDATE_CLASSES]
    candidates = candidates[mean[candidates] > 0]
    relevance = np.clip(class_embeddings[candidates] @ question_vector, 0.0, None)
    scores = mean[candidates] * (1.0 + RELEVANCE_GAIN * relevance)
    order = np.argsort(-scores)[:SEEN_NAMED]
    names = imagenet_class_names()
    return [(names[int(candidates[i])], float(scores[i])) for i in order]


def describe(question: str, evidence: NamedEvidence) -> str:
    """An answer in words from the evidence alone (no LLM): what is written when the question is about text, what
    is heard when it is about sound, else what is seen, most related to the question first."""
    where = format_moment(*evidence.span)
    if is_text_question(question) and evidence.written:
        quoted = "; ".join(f'"{t.text}" ({format_moment(t.start, t.end)})' for t in evidence.written[:4])
        return f"It says {quoted}."
    if is_monochrome_question(question) and evidence.coloured is not None:
        share = f"{100 * evidence.coloured:.0f} % of the pixels have a colour"
        if evidence.coloured < MONOCHROME_LEVEL:
            return f"It is in black and white ({share}), {where}."
        mostly = f"; mostly {_listed(evidence.colours)}" if evidence.colours else ""
        return f"It is in colour ({share}{mostly}), {where}."
    if is_colour_question(question) and evidence.thing is not None:
        named = _listed(evidence.thing.colours)
        seen_as = evidence.thing.seen_as
        thing = f"I take {evidence.thing.phrase} to be where I see {_article(seen_as)} {seen_as}"
        return f"{thing}; the colours there are {named}, {where}."
    if is_colour_question(question) and evidence.colours:
        named = _listed(evidence.colours)
        return f"I can't single out that thing's colour; the main colours I see are {named}, {where}."
    if is_sound_question(question) and (evidence.heard or evidence.said):
        heard = []
        for label in sorted({e.label for e in evidence.heard}, key=lambda k: -_heard_seconds(evidence.heard, k)):
            events = [e for e in evidence.heard if e.label == label]
            parts = f" (in {len(events)} stretches)" if len(events) > 1 else ""
            heard.append(f"{label} {format_moment(events[0].start, max(e.end for e in events))}{parts}")
        answer = f"I hear {' and '.join(heard)}." if heard else f"I hear speech ({where})."
        if evidence.said:
            answer += f' It is said: "{" ".join(s.text.strip() for s in evidence.said[:2])}"'
        return answer
    if is_place_question(question) and evidence.place is not None:
        place, because = evidence.place
        return f"It looks like {place} (I see {' and '.join(f'{_article(n)} {n}' for n in because)}), {where}."
    if evidence.seen:
        first, *rest = [name for name, _ in evidence.seen]
        kind = kind_of(first)
        said_first = f"{_article(kind)} {kind}" if kind is not None else f"{_article(first)} {first}"
        details = [f"{_article(first)} {first}"] if kind is not None else []  # "a dog (a malinois)"
        if rest:
            details.append("I also see " + " and ".join(f"{_article(n)} {n}" for n in rest))
        answer = f"It looks like {said_first}" + (f" ({'; '.join(details)})" if details else "") + f", {where}."
        if evidence.written:
            answer += f' On screen: "{evidence.written[0].text}".'
        return answer
    if evidence.written:
        return f'I can\'t tell; on screen it says "{evidence.written[0].text}".'
    return "I can't tell from what I can see or hear in this video."


def _listed(names: list[str]) -> str:
    *most, last = names
    return f"{', '.join(most)} and {last}" if most else last


def _heard_seconds(events: list[SoundEvent], label: str) -> float:
    return sum(e.end - e.start for e in events if e.label == label)


def _article(name: str) -> str:
    return "an" if name[:1].lower() in "aeiou" else "a"
