"""``--reuse-source``: a size's simulated database is found again by its marker and restored to
the simulated rows (the 1 %-new measurement's added rows removed); anything else is not reused."""

from __future__ import annotations

from datetime import datetime

import pytest

from bench.extract import PREFIX
from bench.suite import mark_source, reused_source
from tests.ingest.helpers import insert_spend, spend_row

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, 12, 0)


def _request_ids(source) -> set[str]:
    with source.connect() as conn:
        return {r[0] for r in conn.execute(f"select request_id from {source.table('SpendLogs')}")}


def test_a_marked_source_is_reused_without_the_added_rows(make_source):
    source = make_source(prefix=PREFIX)
    insert_spend(source, [spend_row(f"sim-{i}", START) for i in range(3)])
    figures = {"spend_logs": 3, "error_logs": 0, "build_seconds": 1.5}
    mark_source(source.url, 3_000, figures)
    insert_spend(source, [spend_row("bench-new-sim-0", START), spend_row("bench-new-sim-1", START)])

    said: list[str] = []
    reused = reused_source(source.url, 3_000, said.append)

    assert reused == {**figures, "reused": True}
    assert _request_ids(source) == {"sim-0", "sim-1", "sim-2"}
    assert "2 added rows removed" in said[0]


def test_an_unmarked_or_other_size_database_is_not_reused(make_source):
    source = make_source(prefix=PREFIX)
    insert_spend(source, [spend_row("sim-0", START), spend_row("bench-new-sim-0", START)])

    assert reused_source(source.url, 3_000, lambda _m: None) is None  # no marker
    mark_source(source.url, 1_000, {"spend_logs": 2})
    assert reused_source(source.url, 3_000, lambda _m: None) is None  # another size
    assert _request_ids(source) == {"sim-0", "bench-new-sim-0"}  # nothing touched
