"""Time conventions shared by every layer: naive UTC in the lake and the raw layer, aware UTC in
the alerts, one canonical ISO text form for storage."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (naive values are UTC, as everywhere in the warehouse)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    """Canonical text form of a timestamp: UTC, microseconds, ``Z`` suffix (sorts correctly)."""
    value = as_utc(value)
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str | None) -> datetime | None:
    """Inverse of :func:`iso`."""
    if value is None:
        return None
    return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


def utcnow() -> datetime:
    """Naive UTC now: the lake's and the raw layer's timestamp convention."""
    return datetime.now(UTC).replace(tzinfo=None)
