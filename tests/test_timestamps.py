"""The one timestamp formatter and the one tolerant parser (damo_cli/timestamps.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damo_cli.timestamps import (
    POINT_HALF_WIDTH,
    format_clock,
    format_moment,
    format_moments,
    format_time,
    parse_moments,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from 24.3 s to 30.4 s", [(24.3, 30.4)]),
        ("It happens from 24.3s to 30.4s.", [(24.3, 30.4)]),
        ("from 24 to 30 seconds", [(24.0, 30.0)]),
        ("24.3-30.4s", [(24.3, 30.4)]),
        ("24.3 s – 30.4 s", [(24.3, 30.4)]),
        ("24.3 — 30.4 sec", [(24.3, 30.4)]),
        ("00:24 - 00:30", [(24.0, 30.0)]),
        ("00:24.5 to 00:30", [(24.5, 30.0)]),
        ("1:02:03 to 1:02:10.5", [(3723.0, 3730.5)]),
        ("between 24 and 30 seconds", [(24.0, 30.0)]),
        ("Between 00:24 and 00:30, the dog jumps.", [(24.0, 30.0)]),
        ("[24.3, 30.4]", [(24.3, 30.4)]),
        ("from 1 to 2 minutes", [(60.0, 120.0)]),
        ("at 12.5 s", [(12.5 - POINT_HALF_WIDTH, 12.5 + POINT_HALF_WIDTH)]),
        ("around 00:12", [(11.0, 13.0)]),
        ("at 0.4 s", [(0.0, 1.4)]),
        (
            "He waves from 1 s to 3 s, again 10-12.5 s, and finally between 00:40 and 00:42.",
            [(1.0, 3.0), (10.0, 12.5), (40.0, 42.0)],
        ),
        ("from 1.0 s to 3.0 s and from 1.0 s to 3.0 s", [(1.0, 3.0)]),
    ],
)
def test_parser_reads_every_phrasing(text: str, expected: list[tuple[float, float]]) -> None:
    got = parse_moments(text)
    assert len(got) == len(expected)
    for moment, want in zip(got, expected, strict=True):
        assert moment == pytest.approx(want)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no numbers here at all",
        "the video shows 3 dogs and 2 cats",  # numbers, but no time phrasing
        "at 12 the dog",  # a point needs a unit or a clock
        "released 2023-2024",  # a bare range with no unit is not a moment
        "from -3 s to 5 s",  # negative
        "at -2 s",
        "from 30 s to 20 s",  # start after end
        "00:75 - 01:20",  # seconds field past 59
        "1:75:00 to 1:80:00",
        "H264 at 30fps, v2.5-3.0s",  # numbers glued to words
        "s to seconds",
    ],
)
def test_parser_rejects_nonsense(text: str) -> None:
    assert parse_moments(text) == []


def test_parser_keeps_good_moments_beside_bad_ones() -> None:
    assert parse_moments("from 30 s to 20 s, then from 40 s to 45 s") == [(40.0, 45.0)]


def test_duration_rejects_and_clips() -> None:
    assert parse_moments("from 50 s to 70 s", duration=60.0) == []  # ends well past the video
    assert parse_moments("from 61 s to 62 s", duration=60.0) == []  # starts past it
    assert parse_moments("from 50 s to 60.3 s", duration=60.0) == [(50.0, 60.0)]  # rounding slack: clipped
    assert parse_moments("at 59.5 s", duration=60.0) == [(58.5, 60.0)]  # a point near the end is clipped
    assert parse_moments("from 10 s to 20 s", duration=60.0) == [(10.0, 20.0)]


def test_parse_moments_takes_one_positional_argument() -> None:
    """The evaluation imports `parse_moments(text)`: the signature must keep working with one argument."""
    assert parse_moments("from 1.0 s to 2.0 s") == [(1.0, 2.0)]


def test_formatter() -> None:
    assert format_time(24.34) == "24.3 s"
    assert format_time(-0.0) == "0.0 s"
    assert format_moment(24.3, 30.4) == "from 24.3 s to 30.4 s"
    assert format_moments([(1, 3), (10, 12.5)]) == "from 1.0 s to 3.0 s and from 10.0 s to 12.5 s"
    assert format_clock(59.96) == "01:00.0"
    assert format_clock(3725.26) == "1:02:05.3"
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            format_time(bad)
    with pytest.raises(ValueError):
        format_moment(5.0, 4.0)


tenths = st.integers(min_value=0, max_value=200_000).map(lambda n: n / 10)


@settings(max_examples=300, deadline=None)
@given(tenths, tenths)
def test_round_trip_seconds(a: float, b: float) -> None:
    start, end = min(a, b), max(a, b)
    assert parse_moments(format_moment(start, end)) == [(start, end)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(tenths, tenths).map(lambda p: (min(p), max(p))), min_size=1, max_size=5, unique=True))
def test_round_trip_several_moments(pairs: list[tuple[float, float]]) -> None:
    assert parse_moments(format_moments(pairs)) == pairs


@settings(max_examples=200, deadline=None)
@given(tenths, tenths)
def test_round_trip_clock(a: float, b: float) -> None:
    start, end = min(a, b), max(a, b)
    got = parse_moments(f"{format_clock(start)} - {format_clock(end)}")
    assert len(got) == 1
    assert got[0] == pytest.approx((start, end), abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=1e5, allow_nan=False), st.floats(min_value=0, max_value=1e5, allow_nan=False))
def test_round_trip_rounds_to_one_decimal(a: float, b: float) -> None:
    start, end = min(a, b), max(a, b)
    expected = (float(f"{start:.1f}"), float(f"{end:.1f}"))
    assert parse_moments(format_moment(start, end)) == [expected]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Nd",)), max_size=80))
def test_text_without_digits_has_no_moment(text: str) -> None:
    assert parse_moments(text) == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_parser_never_raises_and_returns_ordered_nonnegative_moments(text: str) -> None:
    for start, end in parse_moments(text):
        assert 0 <= start <= end


@settings(max_examples=200, deadline=None)
@given(tenths, tenths)
def test_reversed_moments_are_rejected(a: float, b: float) -> None:
    if a == b:
        return
    start, end = max(a, b), min(a, b)
    assert parse_moments(f"from {start:.1f} s to {end:.1f} s") == []
