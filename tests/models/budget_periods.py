"""Reference implementation of budget durations and period alignment (pure Python).

The dbt project computes periods in SQL (``dbt/macros/budget_periods.sql`` and
``int_budget_durations_parsed``); this module states the same rules independently so tests can
check the SQL against it. Rules (proxy-db.md §4.2):

- grammar: the whole value is ``<1-6 digits><unit>``, unit ``s`` seconds, ``m`` minutes,
  ``h`` hours, ``d`` days, ``w`` weeks, ``mo`` months (only ``1mo``); or ``hourly`` (1h),
  ``daily`` (1d), ``weekly`` (7d), ``monthly`` (30d). ``None``, ``''``, ``none``, ``null``: no reset
  (one open-ended period). Anything else, and zero lengths, are invalid.
- alignment, in the budget time zone: ``1d`` local midnight; ``7d`` / ``1w`` Monday 00:00;
  ``30d`` / ``1mo`` the 1st of the month; other ``Nd`` / ``Nw`` N-day periods counted from the
  anchor day (the day the budget was created); ``Nh`` / ``Nm`` / ``Ns`` periods counted from each
  local midnight, the last of a day ending at the next midnight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_GRAMMAR = re.compile(r"(\d{1,6})(mo|[smhdw])")
_OPEN = frozenset({"", "none", "null", "None"})
_NAMED = {"hourly": (1, "h"), "daily": (1, "d"), "weekly": (7, "d"), "monthly": (30, "d")}
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
EPOCH = datetime(1970, 1, 1)


class InvalidDurationError(ValueError):
    """A budget_duration the grammar rejects; the message says why."""


@dataclass(frozen=True)
class Duration:
    """A parsed budget_duration: its alignment kind and step."""

    kind: str  # open, day, week, month, days, seconds
    step_days: int | None = None
    step_seconds: int | None = None


def parse_duration(text: str | None) -> Duration:
    """Parse a budget_duration strictly; raise :class:`InvalidDurationError` when invalid."""
    value = (text or "").strip()
    if value in _OPEN:
        return Duration("open")
    if value in _NAMED:
        count, unit = _NAMED[value]
    else:
        match = _GRAMMAR.fullmatch(value)
        if match is None:
            raise InvalidDurationError(
                f"budget_duration {text!r} is not <number><unit> with unit s, m, h, d, w or mo, "
                "nor hourly/daily/weekly/monthly"
            )
        count, unit = int(match.group(1)), match.group(2)
    if count == 0:
        raise InvalidDurationError(f"budget_duration {text!r} has zero length")
    if unit == "mo":
        if count != 1:
            raise InvalidDurationError(f"budget_duration {text!r}: only 1mo is a valid month")
        return Duration("month")
    if unit == "d":
        named = {1: "day", 7: "week", 30: "month"}
        return Duration(named[count]) if count in named else Duration("days", step_days=count)
    if unit == "w":
        return Duration("week") if count == 1 else Duration("days", step_days=7 * count)
    return Duration("seconds", step_seconds=count * _UNIT_SECONDS[unit])


def to_local(at_utc: datetime, tz: str) -> datetime:
    """Naive UTC -> naive wall-clock time in ``tz``."""
    return at_utc.replace(tzinfo=UTC).astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def to_utc(local: datetime, tz: str) -> datetime:
    """Naive wall-clock time in ``tz`` -> naive UTC."""
    return local.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC).replace(tzinfo=None)


def _midnight(local: datetime) -> datetime:
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _add_month(local: datetime) -> datetime:
    return local.replace(year=local.year + local.month // 12, month=local.month % 12 + 1)


def period_start_local(local: datetime, duration: Duration, anchor_local: datetime) -> datetime:
    """Start of the bounded period containing the wall-clock time ``local``."""
    day = _midnight(local)
    if duration.kind == "day":
        return day
    if duration.kind == "week":
        return day - timedelta(days=day.weekday())
    if duration.kind == "month":
        return day.replace(day=1)
    if duration.kind == "days":
        assert duration.step_days is not None
        anchor_day = _midnight(anchor_local)
        periods = (day - anchor_day).days // duration.step_days
        return anchor_day + timedelta(days=periods * duration.step_days)
    if duration.kind == "seconds":
        assert duration.step_seconds is not None
        elapsed = int((local - day).total_seconds())
        return day + timedelta(seconds=elapsed // duration.step_seconds * duration.step_seconds)
    raise ValueError(f"an open-ended duration has no aligned periods ({duration})")


def period_end_local(start_local: datetime, duration: Duration) -> datetime:
    """Exclusive end of the bounded period starting at ``start_local``."""
    if duration.kind == "day":
        return start_local + timedelta(days=1)
    if duration.kind == "week":
        return start_local + timedelta(days=7)
    if duration.kind == "month":
        return _add_month(start_local)
    if duration.kind == "days":
        assert duration.step_days is not None
        return start_local + timedelta(days=duration.step_days)
    if duration.kind == "seconds":
        assert duration.step_seconds is not None
        return min(
            start_local + timedelta(seconds=duration.step_seconds),
            _midnight(start_local) + timedelta(days=1),
        )
    raise ValueError(f"an open-ended duration has no aligned periods ({duration})")


def period_bounds(
    at_utc: datetime, duration: Duration, tz: str = "UTC", anchor_utc: datetime | None = None
) -> tuple[datetime, datetime]:
    """UTC start and exclusive end of the period containing the UTC instant ``at_utc``."""
    anchor_local = to_local(anchor_utc or EPOCH, tz)
    start = period_start_local(to_local(at_utc, tz), duration, anchor_local)
    return to_utc(start, tz), to_utc(period_end_local(start, duration), tz)
