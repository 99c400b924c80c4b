"""Delivering alerts from the ledger's outbox: exactly once per destination, with back-off.

The outbox (see :mod:`dagster_project.lib.alerts.ledger`) holds one row per (message,
destination). :func:`deliver_pending` sends the due rows, one sender at a time:

1. record the attempt (``attempts + 1`` and an attempt row ``sending``) and COMMIT;
2. POST the payload, with ``Idempotency-Key: <alert_id>``;
3. record the outcome: ``sent`` (2xx; never sent again), ``retry`` (timeout, connection error,
   408, 429 or 5xx: ``next_attempt_at`` moves by an exponential back-off) or ``failed`` (another
   4xx, or ``max_attempts`` reached: kept, reported, never silently dropped).

A crash after step 1 leaves the row ``pending`` and due, so the next tick sends it: no alert is
lost. A crash after the receiver got the request but before step 3 makes the next tick send it
again with the same idempotency key, which the receiver uses to drop the copy (at least once plus
idempotent, like SNS). A row marked ``sent`` is never sent again, also after a restart.

Webhook URLs are secrets: they come from the settings, are never stored in the ledger (only
the destination's name is) and are redacted from every error text.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from filelock import FileLock, Timeout

from dagster_project.lib.alerts.ledger import alert_from_row, connect_ledger, transaction
from dagster_project.lib.alerts.messages import (
    health_json_payload,
    health_slack_payload,
    json_payload,
    redact,
    slack_payload,
)
from dagster_project.lib.times import iso, parse_iso
from dagster_project.settings import Settings

USER_AGENT = "spendwh-alerts/1"


@dataclass(frozen=True)
class Destination:
    """A configured receiver. ``name`` is what the ledger stores; ``url`` is a secret."""

    name: str  # "slack" or "webhook"
    url: str = field(repr=False)

    @property
    def host(self) -> str:
        """The receiver's host, safe to show."""
        return urlsplit(self.url).hostname or "?"


def configured_destinations(settings: Settings) -> list[Destination]:
    """The destinations the settings name (none is fine: alerts are still recorded)."""
    found = (("slack", settings.slack_webhook_url), ("webhook", settings.webhook_url))
    return [Destination(name, url) for name, url in found if url]


def destination_names(settings: Settings) -> list[str]:
    """The names of the configured destinations: what the ledger stores (never the URLs)."""
    return [d.name for d in configured_destinations(settings)]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a destination is retried."""

    max_attempts: int = 10
    base_delay_s: float = 30.0
    max_delay_s: float = 3600.0
    timeout_s: float = 10.0

    def delay(self, attempt: int, retry_after_s: float | None = None) -> timedelta:
        """Back-off after failed attempt number ``attempt`` (1-based): 30 s, 60 s, 120 s, …"""
        seconds = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempt - 1))
        if retry_after_s is not None:
            seconds = max(seconds, min(retry_after_s, self.max_delay_s))
        return timedelta(seconds=seconds)


@dataclass(frozen=True)
class SendOutcome:
    """The result of one POST."""

    status: str  # "sent", "retry" or "failed"
    http_status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


Poster = Callable[[str, bytes, Mapping[str, str], float], SendOutcome]


def classify_http_status(code: int) -> str:
    """``sent`` for 2xx; ``retry`` for 408, 429 and 5xx; ``failed`` for other codes."""
    if 200 <= code < 300:
        return "sent"
    if code in {408, 429} or code >= 500:
        return "retry"
    return "failed"


def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> SendOutcome:
    """POST ``body`` to ``url`` with the standard library; never raises, never leaks ``url``."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
            code = response.status
    except urllib.error.HTTPError as exc:
        code = exc.code
        retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        detail = exc.read(500).decode("utf-8", "replace").strip()
        return SendOutcome(
            classify_http_status(code),
            code,
            redact(f"HTTP {code} {exc.reason}: {detail}".strip(": "), [url]),
            retry_after,
        )
    except TimeoutError:
        return SendOutcome("retry", None, f"timed out after {timeout_s:g} s")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return SendOutcome("retry", None, f"timed out after {timeout_s:g} s")
        return SendOutcome("retry", None, redact(f"connection error: {reason}", [url]))
    except (ConnectionError, OSError) as exc:
        return SendOutcome("retry", None, redact(f"connection error: {exc}", [url]))
    status = classify_http_status(code)
    return SendOutcome(status, code, None if status == "sent" else f"HTTP {code}")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


@dataclass
class DeliveryReport:
    """What one delivery pass did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    deferred: int = 0  # due but not tried this pass (destination backed off, time budget used)
    waiting_for_destination: int = 0  # queued for a destination that is no longer configured
    busy: bool = False  # another sender held the lock
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs and sensor ticks."""
        if self.busy:
            return "another delivery pass is running; skipped"
        text = (
            f"sent {self.sent}, retrying {self.retrying}, failed {self.failed}, "
            f"deferred {self.deferred}"
        )
        if self.waiting_for_destination:
            text += f", {self.waiting_for_destination} queued for an unconfigured destination"
        return text


def _payload(conn: sqlite3.Connection, kind: str, message_id: str, destination: str) -> dict:
    if kind == "budget_alert":
        row = conn.execute("select * from alerts where alert_id = ?", (message_id,)).fetchone()
        alert = alert_from_row(row)
        return slack_payload(alert) if destination == "slack" else json_payload(alert)
    row = conn.execute("select * from health_events where event_id = ?", (message_id,)).fetchone()
    build = health_slack_payload if destination == "slack" else health_json_payload
    return build(row["event_id"], row["message"], parse_iso(row["first_seen_at"]))


def _begin_attempt(conn: sqlite3.Connection, message_id: str, destination: str, now: str) -> int:
    with transaction(conn):
        conn.execute(
            "update outbox set attempts = attempts + 1 where message_id = ? and destination = ?",
            (message_id, destination),
        )
        attempt = conn.execute(
            "select attempts from outbox where message_id = ? and destination = ?",
            (message_id, destination),
        ).fetchone()["attempts"]
        conn.execute(
            "insert into delivery_attempts (message_id, destination, attempt, started_at, outcome)"
            " values (?, ?, ?, ?, 'sending')",
            (message_id, destination, attempt, now),
        )
    return attempt


def _finish_attempt(
    conn: sqlite3.Connection,
    message_id: str,
    destination: str,
    attempt: int,
    outcome: SendOutcome,
    policy: RetryPolicy,
    started: datetime,
    finished: datetime,
) -> str:
    status = outcome.status
    if status == "retry" and attempt >= policy.max_attempts:
        status = "failed"
    next_at = iso(started + policy.delay(attempt, outcome.retry_after_s))
    with transaction(conn):
        conn.execute(
            "update outbox set status = ?, next_attempt_at = ?, last_http_status = ?, "
            "last_error = ?, sent_at = ? where message_id = ? and destination = ?",
            (
                "pending" if status == "retry" else status,
                next_at if status == "retry" else iso(finished),
                outcome.http_status,
                outcome.error,
                iso(finished) if status == "sent" else None,
                message_id,
                destination,
            ),
        )
        conn.execute(
            "update delivery_attempts set outcome = ?, finished_at = ?, http_status = ?, "
            "error = ? where message_id = ? and destination = ? and attempt = ?",
            (
                status,
                iso(finished),
                outcome.http_status,
                outcome.error,
                message_id,
                destination,
                attempt,
            ),
        )
    return status


def deliver_due(
    conn: sqlite3.Connection,
    destinations: list[Destination],
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    policy: RetryPolicy | None = None,
    poster: Poster = post,
    limit: int = 200,
    time_budget_s: float = 40.0,
) -> DeliveryReport:
    """Send every due outbox row once; see the module docstring for the guarantees.

    A destination that asks for a retry is not tried again in the same pass (its other messages
    are ``deferred``), so a dead receiver costs one timeout per pass, not one per alert.
    """
    policy = policy or RetryPolicy()
    by_name = {d.name: d for d in destinations}
    report = DeliveryReport()
    report.waiting_for_destination = conn.execute(
        f"select count(*) from outbox where status = 'pending' "
        f"and destination not in ({','.join('?' * len(by_name))})",
        list(by_name),
    ).fetchone()[0]
    due = conn.execute(
        f"select message_id, kind, destination from outbox where status = 'pending' "
        f"and next_attempt_at <= ? and destination in ({','.join('?' * len(by_name))}) "
        "order by created_at, message_id, destination limit ?",
        [iso(now()), *by_name, limit],
    ).fetchall()
    backed_off: set[str] = set()
    deadline = time.monotonic() + time_budget_s
    secrets = [d.url for d in destinations]
    for row in due:
        message_id, kind, name = row["message_id"], row["kind"], row["destination"]
        if name in backed_off or time.monotonic() > deadline:
            report.deferred += 1
            continue
        destination = by_name[name]
        body = json.dumps(_payload(conn, kind, message_id, name)).encode()
        started = now()
        attempt = _begin_attempt(conn, message_id, name, iso(started))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message_id,
            "User-Agent": USER_AGENT,
        }
        outcome = poster(destination.url, body, headers, policy.timeout_s)
        outcome = SendOutcome(
            outcome.status,
            outcome.http_status,
            redact(outcome.error, secrets) if outcome.error else None,
            outcome.retry_after_s,
        )
        status = _finish_attempt(conn, message_id, name, attempt, outcome, policy, started, now())
        if status == "sent":
            report.sent += 1
            continue
        if status == "retry":
            report.retrying += 1
            backed_off.add(name)
        else:
            report.failed += 1
        report.errors.append(f"{kind} {message_id} → {name}: {outcome.error}")
    return report


def requeue_failed(conn: sqlite3.Connection, now: datetime) -> int:
    """Give every ``failed`` outbox row a fresh set of attempts (after fixing the receiver)."""
    with transaction(conn):
        return conn.execute(
            "update outbox set status = 'pending', attempts = 0, next_attempt_at = ? "
            "where status = 'failed'",
            (iso(now),),
        ).rowcount


def deliver_pending(
    ledger: Path,
    destinations: list[Destination],
    **kwargs,
) -> DeliveryReport:
    """:func:`deliver_due` on the ledger file, under a lock that admits one sender at a time."""
    lock = FileLock(str(ledger) + ".send.lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return DeliveryReport(busy=True)
    try:
        conn = connect_ledger(ledger)
        try:
            return deliver_due(conn, destinations, **kwargs)
        finally:
            conn.close()
    finally:
        lock.release()
