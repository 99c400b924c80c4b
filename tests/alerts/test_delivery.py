"""Delivery against a real local HTTP receiver: retries, back-off, exactly once, crashes.

The receiver (see conftest) fails with 500, times out *after* processing (so the sender cannot
know the message arrived), or accepts; it deduplicates on ``Idempotency-Key`` and counts the
copies it dropped. "Exactly once" means: every alert is accepted once per destination, and no
alert is sent again after the sender recorded it as sent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from dagster_project.lib.alerts.delivery import (
    Destination,
    RetryPolicy,
    deliver_due,
    deliver_pending,
    post,
)
from dagster_project.lib.alerts.ledger import connect_ledger, record_evaluation
from tests.alerts.designed import EXPECTED, NOW
from tests.alerts.test_ledger import _decide

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRET = "/services/T0SECRET/B0SECRET/xoxbSECRETtoken"
FAST = RetryPolicy(max_attempts=4, base_delay_s=30, max_delay_s=600, timeout_s=0.5)


class Clock:
    """A controllable ``now`` for back-off (the HTTP traffic itself is real)."""

    def __init__(self, start):
        self.value = start

    def __call__(self):
        return self.value

    def advance(self, **kwargs) -> None:
        self.value += timedelta(**kwargs)


@pytest.fixture
def ledger_file(tmp_path) -> Path:
    """A ledger with the designed alerts decided at NOW and queued for slack and webhook."""
    path = tmp_path / "alerts.sqlite"
    conn = connect_ledger(path)
    record_evaluation(conn, _decide(), ["slack", "webhook"], NOW)
    conn.close()
    return path


def _queued_ids(path: Path) -> set[str]:
    conn = connect_ledger(path)
    try:
        return {
            r[0] for r in conn.execute("select alert_id from alerts where notification = 'queued'")
        }
    finally:
        conn.close()


def _destinations(receiver) -> list[Destination]:
    return [
        Destination("slack", receiver.path_url("/slack" + SECRET)),
        Destination("webhook", receiver.path_url("/hook" + SECRET)),
    ]


def _statuses(path: Path) -> dict[str, int]:
    conn = connect_ledger(path)
    try:
        rows = conn.execute("select status, count(*) from outbox group by status").fetchall()
        return {r[0]: r[1] for r in rows}
    finally:
        conn.close()


def test_fail_timeout_recover_delivers_each_alert_exactly_once(ledger_file, receiver):
    ids = _queued_ids(ledger_file)
    assert len(ids) == 9
    # The webhook's first request fails, its retry times out; Slack always answers.
    receiver.path_scripts = {"/hook": ["500", "timeout"]}
    clock = Clock(NOW)
    dests = _destinations(receiver)

    first = deliver_pending(ledger_file, dests, now=clock, policy=FAST)
    # The failing destination is backed off for the rest of the pass, the other one is served.
    assert (first.sent, first.retrying) == (len(ids), 1)
    assert first.deferred == len(ids) - 1
    clock.advance(seconds=31)
    second = deliver_pending(ledger_file, dests, now=clock, policy=FAST)
    assert (second.sent, second.retrying) == (0, 1)  # the timeout
    clock.advance(seconds=10)
    others = deliver_pending(ledger_file, dests, now=clock, policy=FAST)
    # The other webhook rows go; the timed-out one waits for its back-off (60 s).
    assert (others.sent, others.deferred) == (len(ids) - 1, 0)
    assert _statuses(ledger_file) == {"sent": 2 * len(ids) - 1, "pending": 1}
    clock.advance(minutes=2)
    third = deliver_pending(ledger_file, dests, now=clock, policy=FAST)
    assert third.sent == 1
    assert _statuses(ledger_file) == {"sent": 2 * len(ids)}

    for path in ("/slack", "/hook"):
        assert set(receiver.accepted_on(path + SECRET)) == ids
    assert receiver.duplicates == 1  # the timed-out request, re-sent with the same key
    sent_after_success = [r for r in receiver.requests if r["action"] == "ok" and r["key"] in ids]
    assert len(sent_after_success) == 2 * len(ids)

    # A restart (new process, new connection) sends nothing more.
    clock.advance(hours=5)
    after = deliver_pending(ledger_file, dests, now=clock, policy=FAST)
    assert (after.sent, after.retrying, after.failed) == (0, 0, 0)
    assert len(receiver.requests) == 2 * len(ids) + 2


def test_payloads_slack_and_json(ledger_file, receiver):
    deliver_pending(ledger_file, _destinations(receiver), policy=FAST, now=Clock(NOW))
    hook = next(iter(receiver.accepted_on("/hook" + SECRET).values()))
    assert hook["event"] == "budget_alert"
    assert hook["idempotency_key"] == hook["alert_id"]
    slack = next(iter(receiver.accepted_on("/slack" + SECRET).values()))
    assert slack["blocks"][0]["type"] == "header"
    assert "budget" in slack["text"]


def test_permanent_4xx_fails_without_retry_and_without_leaking_the_url(ledger_file, receiver):
    receiver.script = ["400"]
    dests = [Destination("webhook", receiver.path_url("/hook" + SECRET))]
    report = deliver_pending(ledger_file, dests, now=Clock(NOW), policy=FAST)
    assert report.failed == 1
    conn = connect_ledger(ledger_file)
    [row] = conn.execute("select * from outbox where status = 'failed'").fetchall()
    assert row["last_http_status"] == 400
    texts = [row["last_error"], *report.errors]
    texts += [r[0] for r in conn.execute("select error from delivery_attempts")]
    conn.close()
    for text in filter(None, texts):
        assert "SECRET" not in text
    assert "HTTP 400" in row["last_error"]


def test_attempts_are_bounded_and_the_alert_is_kept(ledger_file, receiver):
    receiver.script = ["500"] * 10
    dests = [Destination("webhook", receiver.path_url("/hook" + SECRET))]
    clock = Clock(NOW)
    for _ in range(FAST.max_attempts):
        deliver_pending(ledger_file, dests, now=clock, policy=FAST, limit=1)
        clock.advance(hours=1)
    conn = connect_ledger(ledger_file)
    rows = conn.execute("select status, attempts from outbox where attempts > 0").fetchall()
    conn.close()
    assert [tuple(r) for r in rows] == [("failed", FAST.max_attempts)]
    assert len(receiver.requests) == FAST.max_attempts


def test_unreachable_destination_is_retried_and_redacted(ledger_file):
    dests = [Destination("webhook", "http://127.0.0.1:9" + SECRET)]  # discard port: refused
    report = deliver_pending(ledger_file, dests, now=Clock(NOW), policy=FAST)
    assert report.retrying == 1
    assert report.errors
    assert all("SECRET" not in e for e in report.errors)


def test_a_second_sender_is_turned_away(ledger_file, receiver):
    from filelock import FileLock

    with FileLock(str(ledger_file) + ".send.lock"):
        report = deliver_pending(ledger_file, _destinations(receiver), policy=FAST)
    assert report.busy
    assert receiver.requests == []


def test_rows_for_an_unconfigured_destination_wait(ledger_file, receiver):
    dests = [Destination("webhook", receiver.path_url("/hook"))]
    report = deliver_pending(ledger_file, dests, now=Clock(NOW), policy=FAST)
    assert report.sent == 9
    assert report.waiting_for_destination == 9
    assert "unconfigured destination" in report.summary()


# --- SIGKILL in the middle -------------------------------------------------------------------

_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from dagster_project.lib.alerts.delivery import Destination, RetryPolicy, deliver_pending, post

    ledger, url, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

    def poster(url, body, headers, timeout):
        if mode == "after_send":
            post(url, body, headers, timeout)  # the receiver has it ...
        os.kill(os.getpid(), signal.SIGKILL)  # ... but the outcome is never recorded

    deliver_pending(ledger, [Destination("webhook", url)], poster=poster)
    """
)


@pytest.mark.parametrize("mode", ["before_send", "after_send"])
def test_sigkill_during_delivery_then_next_tick_delivers_once(ledger_file, receiver, mode):
    url = receiver.path_url("/hook" + SECRET)
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, str(ledger_file), url, mode],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    conn = connect_ledger(ledger_file)
    [attempt] = conn.execute("select * from delivery_attempts").fetchall()
    assert attempt["outcome"] == "sending"  # the decision to send was recorded, not the result
    conn.close()
    assert len(receiver.requests) == (1 if mode == "after_send" else 0)

    report = deliver_pending(ledger_file, [Destination("webhook", url)], policy=FAST)
    ids = _queued_ids(ledger_file)
    assert report.sent == len(ids)
    assert set(receiver.accepted_on("/hook" + SECRET)) == ids
    assert receiver.duplicates == (1 if mode == "after_send" else 0)  # dropped by its key
    assert _statuses(ledger_file) == {"sent": len(ids), "pending": len(ids)}  # slack: unconfigured
    again = deliver_pending(ledger_file, [Destination("webhook", url)], policy=FAST)
    assert again.sent == 0


def test_post_reports_timeouts_as_retry(receiver):
    receiver.script = ["timeout"]
    outcome = post(receiver.path_url("/x"), b"{}", {"Idempotency-Key": "k"}, 0.3)
    assert outcome.status == "retry"
    assert "timed out" in outcome.error


def test_deliver_due_with_no_due_rows_is_a_no_op(tmp_path, receiver):
    conn = connect_ledger(tmp_path / "empty.sqlite")
    report = deliver_due(conn, _destinations(receiver), policy=FAST)
    conn.close()
    assert (report.sent, report.retrying, report.failed, report.deferred) == (0, 0, 0, 0)


_KILL_WHILE_DECIDING = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from dagster_project.lib.alerts import ledger as alert_ledger
    from tests.alerts.designed import EXPECTED, NOW
    from tests.alerts.test_ledger import _decide

    conn = alert_ledger.connect_ledger(Path(sys.argv[1]))
    alert_ledger.record_evaluation(conn, [], ["webhook"], NOW)  # armed earlier, nothing open

    def die(*args, **kwargs):  # inside the transaction, after the first alert row
        os.kill(os.getpid(), signal.SIGKILL)

    alert_ledger._enqueue = die
    alert_ledger.record_evaluation(conn, _decide(), ["webhook"], NOW)
    """
)


def test_sigkill_while_recording_the_decision_leaves_no_half_decision(tmp_path, receiver):
    path = tmp_path / "alerts.sqlite"
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_WHILE_DECIDING, str(path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    conn = connect_ledger(path)
    assert conn.execute("select count(*) from alerts").fetchone()[0] == 0  # rolled back
    result = record_evaluation(conn, _decide(), ["webhook"], NOW)  # the next run decides again
    conn.close()
    assert result.queued == len(EXPECTED)  # armed before: late alerts are sent too
    dest = [Destination("webhook", receiver.path_url("/hook"))]
    assert deliver_pending(path, dest, policy=FAST).sent == len(EXPECTED)
    assert deliver_pending(path, dest, policy=FAST).sent == 0
    assert len(receiver.accepted_on("/hook")) == len(EXPECTED)
    assert receiver.duplicates == 0
