"""The reference rules for budget durations and periods (dagster_project/lib/budget_periods.py)."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.models.budget_periods import (
    Duration,
    InvalidDurationError,
    parse_duration,
    period_bounds,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, Duration("open")),
        ("", Duration("open")),
        ("null", Duration("open")),
        ("1d", Duration("day")),
        ("daily", Duration("day")),
        ("7d", Duration("week")),
        ("1w", Duration("week")),
        ("weekly", Duration("week")),
        ("30d", Duration("month")),
        ("1mo", Duration("month")),
        ("monthly", Duration("month")),
        ("10d", Duration("days", step_days=10)),
        ("2w", Duration("days", step_days=14)),
        ("6h", Duration("seconds", step_seconds=21600)),
        ("hourly", Duration("seconds", step_seconds=3600)),
        ("30m", Duration("seconds", step_seconds=1800)),
        ("45s", Duration("seconds", step_seconds=45)),
        (" 1d ", Duration("day")),
    ],
)
def test_parse_valid(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["2mo", "1M", "1d trailing", "0d", "d", "1y", "-1d", "1234567d"])
def test_parse_invalid_names_the_value(text):
    with pytest.raises(InvalidDurationError, match=repr(text).replace("[", r"\[")):
        parse_duration(text)


@pytest.mark.parametrize(
    ("at", "duration", "tz", "anchor", "start", "end"),
    [
        # 1d: midnight; leap day
        ("2028-02-29 23:59:59", "1d", "UTC", None, "2028-02-29 00:00:00", "2028-03-01 00:00:00"),
        # 7d / 1w: Monday (2028-03-01 is a Wednesday)
        ("2028-03-01 12:00:00", "7d", "UTC", None, "2028-02-28 00:00:00", "2028-03-06 00:00:00"),
        # 30d / 1mo: the 1st; February of a leap year
        ("2028-02-29 10:00:00", "30d", "UTC", None, "2028-02-01 00:00:00", "2028-03-01 00:00:00"),
        ("2027-12-31 23:00:00", "1mo", "UTC", None, "2027-12-01 00:00:00", "2028-01-01 00:00:00"),
        # Nd: counted from the anchor day
        ("2028-03-01 12:00:00", "10d", "UTC", "2028-02-15 17:00:00", "2028-02-25", "2028-03-06"),
        # Nh: from midnight; the last period of a day ends at midnight
        ("2028-03-01 23:30:00", "5h", "UTC", None, "2028-03-01 20:00:00", "2028-03-02 00:00:00"),
        ("2028-03-01 12:44:59", "45s", "UTC", None, "2028-03-01 12:44:15", "2028-03-01 12:45:00"),
        # time zone: 23:30 UTC on the 29th is already March 1st in Berlin
        (
            "2028-02-29 23:30:00",
            "1mo",
            "Europe/Berlin",
            None,
            "2028-02-29 23:00:00",
            "2028-03-31 22:00:00",
        ),
        # New York day across the DST switch (2028-03-12): a 23-hour day
        (
            "2028-03-12 12:00:00",
            "1d",
            "America/New_York",
            None,
            "2028-03-12 05:00:00",
            "2028-03-13 04:00:00",
        ),
    ],
)
def test_period_bounds(at, duration, tz, anchor, start, end):
    parse = datetime.fromisoformat
    bounds = period_bounds(
        parse(at), parse_duration(duration), tz, parse(anchor) if anchor else None
    )
    assert bounds == (parse(start), parse(end))


def test_open_duration_has_no_aligned_period():
    with pytest.raises(ValueError, match="open-ended"):
        period_bounds(datetime(2028, 1, 1), parse_duration(None))
