"""Times in text: one formatter and one tolerant parser, used by the prompts, the training data and the evaluation.

The paper does not say how timestamps are written; docs/architecture.md §2 fixes it: absolute seconds with one decimal,
`from 24.3 s to 30.4 s`. The model is trained to write that; the parser also accepts what people and other models
write instead:

    from 24.3 s to 30.4 s      from 24 to 30 seconds      24.3-30.4s      24.3 s – 30.4 s
    00:24 - 00:30              1:02:03 to 1:02:10.5       between 24 and 30 seconds
    [24.3, 30.4]               at 12.5 s / around 00:12   several of these in one answer

Rules (each one is tested in tests/test_timestamps.py):
- A range needs a range word ("from X to Y", "between X and Y") or an explicit time on one side ("24-30 s",
  "00:24 - 00:30", "[24.3, 30.4]" brackets count as explicit): a bare "2023-2024" is not a moment.
- A unit written on one side applies to both ("24.3-30.4s", "from 1 to 2 minutes"); units: s, sec(s), second(s),
  min(s), minute(s), h, hr(s), hour(s). Clock times are m:ss or h:mm:ss (with optional decimals); fields past 59 where
  a larger field follows are rejected ("00:75").
- A single point ("at 12.5 s", "around 00:12") becomes the window point ± POINT_HALF_WIDTH (1 s), clipped at 0 (and
  at the duration): a zero-length window would score IoU 0 against anything, a 2 s window is what a person means by
  "at 12 s" in a video.
- Rejected (the moment is dropped, the rest of the answer still counts): negative times, start > end, a start past
  the duration or an end more than DURATION_TOLERANCE (0.5 s) past it when the duration is known (an end within the
  tolerance is clipped to the duration). Text with no moment gives []; an unparsable answer is a miss, never an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

POINT_HALF_WIDTH = 1.0
DURATION_TOLERANCE = 0.5

_UNIT_SECONDS = {
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
}  # fmt: skip
_RANGE_OPENERS = {"from", "between"}
_RANGE_JOINERS = {"to", "until", "till", "through", "thru", "and"}
_POINT_WORDS = {"at", "around", "about", "near", "approximately", "approx"}
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2212~"

_LEXER = re.compile(
    r"""
      (?P<value>
          (?<![^\W_])(?<![.:])                       # not glued to a letter, digit, dot or colon before it
          (?:(?P<clock>\d+(?::\d{1,2}){1,2}(?:\.\d+)?)|(?P<number>\d+(?:\.\d+)?|\.\d+))
          (?:\s*(?P<unit>seconds?|secs?|minutes?|mins?|hours?|hrs?|s|h)(?![^\W_]))?
          (?![^\W_])                                 # nor glued to a letter or digit after it
      )
    | (?P<dash>["""
    + _DASHES
    + r"""])
    | (?P<word>[^\W\d_]+)
    | (?P<other>\S)
    """,
    re.VERBOSE | re.IGNORECASE,
)


@dataclass(frozen=True)
class _Value:
    seconds: float | None  # None: a clock time with an out-of-range field (the moment using it is rejected)
    unit: str | None  # the unit written right after it, lower case
    clock: bool
    negative: bool = False

    @property
    def explicit(self) -> bool:
        return self.clock or self.unit is not None


@dataclass(frozen=True)
class _Moment:
    start: float
    end: float
    point: bool  # written as one time ("at 12 s") and widened


@dataclass(frozen=True)
class _Token:
    kind: str  # "value", "dash", "word", "other"
    text: str
    value: _Value | None = None


# ----------------------------------------------------------------------------------------------------- formatting


def _check_time(seconds: float) -> float:
    seconds = float(seconds)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a time must be a finite number of seconds >= 0, not {seconds!r}")
    return seconds + 0.0  # turns -0.0 into 0.0


def format_time(seconds: float) -> str:
    """`24.3 s`: absolute seconds, one decimal (docs/architecture.md §2)."""
    return f"{_check_time(seconds):.1f} s"


def format_moment(start: float, end: float) -> str:
    """`from 24.3 s to 30.4 s`: the one way the model writes a moment."""
    if _check_time(start) > _check_time(end):
        raise ValueError(f"a moment must not end before it starts: {start} > {end}")
    return f"from {format_time(start)} to {format_time(end)}"


def format_moments(moments: Iterable[tuple[float, float]]) -> str:
    """Several moments in one phrase: `from 1.0 s to 3.0 s and from 10.0 s to 12.5 s`."""
    return " and ".join(format_moment(start, end) for start, end in moments)


def format_clock(seconds: float) -> str:
    """`01:02.5` or `1:02:03.5`: for people (subtitles, tables); the model itself writes seconds."""
    tenths = round(_check_time(seconds) * 10)
    hours, rest = divmod(tenths, 36000)
    minutes, rest = divmod(rest, 600)
    secs = f"{rest // 10:02d}.{rest % 10}"
    return f"{hours}:{minutes:02d}:{secs}" if hours else f"{minutes:02d}:{secs}"


# -------------------------------------------------------------------------------------------------------- parsing


def _clock_seconds(text: str) -> float | None:
    fields = text.split(":")
    *whole, last = fields
    values = [int(f) for f in whole] + [float(last)]
    # every field after the first must stay below 60 (00:75 and 1:75:00 are nonsense)
    if any(v >= 60 for v in values[1:]):
        return None
    total = 0.0
    for value in values:
        total = total * 60 + value
    return total


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    for match in _LEXER.finditer(text):
        kind = match.lastgroup if match.lastgroup in ("dash", "word", "other") else "value"
        if match.group("value") is not None:
            clock = match.group("clock")
            unit = match.group("unit")
            seconds = _clock_seconds(clock) if clock else float(match.group("number"))
            tokens.append(_Token("value", match.group(0), _Value(seconds, unit.lower() if unit else None, bool(clock))))
        else:
            tokens.append(_Token(kind, match.group(0).lower()))
    # A dash right before a number is a minus sign unless a time precedes it (then it joins a range: "24-30 s").
    signed: list[_Token] = []
    for index, token in enumerate(tokens):
        after = tokens[index + 1] if index + 1 < len(tokens) else None
        before = signed[-1] if signed else None
        is_sign = token.kind == "dash" and after is not None and after.kind == "value"
        if is_sign and (before is None or before.kind != "value"):
            assert after is not None
            tokens[index + 1] = _Token("value", after.text, _negated(after.value))
            continue
        signed.append(token)
    return signed


def _negated(value: _Value | None) -> _Value:
    assert value is not None
    return _Value(value.seconds, value.unit, value.clock, negative=True)


def _seconds(value: _Value, unit: str | None) -> float | None:
    if value.seconds is None or value.negative:
        return None
    if value.clock:
        return value.seconds
    return value.seconds * _UNIT_SECONDS[unit or "s"]


def _range(first: _Value, second: _Value) -> tuple[float, float] | None:
    start = _seconds(first, first.unit or second.unit)
    end = _seconds(second, second.unit or first.unit)
    if start is None or end is None or start > end:
        return None
    return start, end


def _is(token: _Token | None, kind: str, words: set[str] | None = None) -> bool:
    if token is None or token.kind != kind:
        return False
    return words is None or token.text in words


def _candidates(tokens: Sequence[_Token]) -> list[_Moment | None]:
    """Moments in reading order; None marks a moment-shaped phrase that is nonsense (kept only to be dropped)."""
    found: list[_Moment | None] = []
    i = 0

    def at(k: int) -> _Token | None:
        return tokens[k] if 0 <= k < len(tokens) else None

    def ranged(first: _Token, second: _Token) -> _Moment | None:
        assert first.value is not None and second.value is not None
        bounds = _range(first.value, second.value)
        return None if bounds is None else _Moment(*bounds, point=False)

    while i < len(tokens):
        tok, nxt, sep, last = at(i), at(i + 1), at(i + 2), at(i + 3)
        # "from X to Y", "between X and Y", "from X - Y"
        if (
            _is(tok, "word", _RANGE_OPENERS)
            and _is(nxt, "value")
            and (_is(sep, "word", _RANGE_JOINERS) or _is(sep, "dash"))
            and _is(last, "value")
        ):
            found.append(ranged(nxt, last))  # type: ignore[arg-type]
            i += 4
            continue
        # "[24.3, 30.4]" or "(24.3 - 30.4)"
        if (
            _is(tok, "other", {"[", "("})
            and _is(nxt, "value")
            and (_is(sep, "other", {","}) or _is(sep, "dash") or _is(sep, "word", _RANGE_JOINERS))
            and _is(last, "value")
            and _is(at(i + 4), "other", {"]", ")"})
        ):
            found.append(ranged(nxt, last))  # type: ignore[arg-type]
            i += 5
            continue
        # "24.3-30.4s", "00:24 - 00:30", "24 s to 30 s": needs an explicit time on one side
        if (
            _is(tok, "value")
            and (_is(nxt, "dash") or _is(nxt, "word", _RANGE_JOINERS - {"and"}))
            and _is(sep, "value")
            and (tok.value.explicit or sep.value.explicit)  # type: ignore[union-attr]
        ):
            found.append(ranged(tok, sep))  # type: ignore[arg-type]
            i += 3
            continue
        # "at 12.5 s", "around 00:12": a point, widened to a short window
        if _is(tok, "word", _POINT_WORDS) and _is(nxt, "value") and nxt.value.explicit:  # type: ignore[union-attr]
            point = _seconds(nxt.value, nxt.value.unit)  # type: ignore[union-attr, arg-type]
            if point is None:
                found.append(None)
            else:
                found.append(_Moment(max(0.0, point - POINT_HALF_WIDTH), point + POINT_HALF_WIDTH, point=True))
            i += 2
            continue
        i += 1
    return found


def parse_moments(text: str, duration: float | None = None) -> list[tuple[float, float]]:
    """Every well-formed moment in `text`, in reading order, as (start, end) seconds; [] when there is none.

    With `duration`, moments starting past it or ending more than DURATION_TOLERANCE after it are dropped, and
    ends within the tolerance are clipped to it. A point window ("at 59.5 s" in a 60 s clip) is judged by its
    point, then clipped.
    """
    if not isinstance(text, str) or not text:
        return []
    moments: list[tuple[float, float]] = []
    for moment in _candidates(_lex(text)):
        if moment is None:
            continue
        start, end = moment.start, moment.end
        if not (math.isfinite(start) and math.isfinite(end)):
            continue
        if duration is not None:
            latest = start + POINT_HALF_WIDTH if moment.point else end
            if start > duration or latest > duration + DURATION_TOLERANCE:
                continue
            end = min(end, duration)
        if (start, end) not in moments:
            moments.append((start, end))
    return moments
