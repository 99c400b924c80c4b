"""Lossless at any lateness: rows inserted now with a weeks-old startTime, ties, retention.

Real Dagster runs of the raw assets and their checks against a real PostgreSQL, in both cursor
modes (``created_at`` with and without an index leading with it, ``startTime`` on an older
schema) and, where cheap, both table prefixes.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from dagster_project.defs.pipeline.schedules import rollback_run_config
from dagster_project.settings import LAKE_FORMAT_ENV
from tests.ingest.helpers import Warehouse, insert_spend, ms, spend_row, utcnow
from tests.ingest.test_dagster import check_results, materialize
from tests.ingest.test_incremental import OLD_SCHEMA
from tests.prefixes import BOTH_PREFIXES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("lake_format")]


@pytest.fixture
def configure(tmp_path, monkeypatch):
    """Point the pipeline's settings at ``source`` and a fresh warehouse."""

    def factory(source) -> Warehouse:
        monkeypatch.setenv("DATABASE_URL", source.url)
        monkeypatch.setenv("PROXY_TABLE_PREFIX", source.prefix)
        monkeypatch.setenv("SPEND_WAREHOUSE_DIR", str(tmp_path / "wh"))
        monkeypatch.chdir(tmp_path)  # no stray .env
        wh = Warehouse(tmp_path / "wh")
        monkeypatch.setenv(LAKE_FORMAT_ENV, wh.lake_format)  # the job writes the format we read
        return wh

    return factory


def spend_metadata(result) -> dict:
    """Materialization metadata of raw/spend_logs in ``result``."""
    (mat,) = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key.to_user_string() == "raw/spend_logs"
    ]
    return {k: v.value for k, v in mat.metadata.items()}


def stored_ids(wh: Warehouse) -> list[str]:
    return [r[0] for r in wh.query("SELECT request_id FROM raw.spend_logs ORDER BY 1")]


def recent_rows(n: int = 5) -> list[dict]:
    now = ms(utcnow())
    return [spend_row(f"r{i}", now - timedelta(hours=i + 1)) for i in range(n)]


@pytest.mark.parametrize("prefix", BOTH_PREFIXES)
@pytest.mark.parametrize("until", [None, OLD_SCHEMA], ids=["created_at", "startTime"])
def test_weeks_old_row_inserted_now_fails_the_check_until_the_rollback_reads_it(
    make_source, configure, prefix, until
):
    source = make_source(prefix=prefix, until=until)
    wh = configure(source)
    insert_spend(source, recent_rows())
    first = materialize()
    assert first.success
    assert check_results(first)["spend_logs:reconciliation"].passed

    old = ms(utcnow() - timedelta(days=30))
    insert_spend(source, [spend_row("backlog", old, spend=3.0)])  # inserted now, 30 days old
    second = materialize(raise_on_error=False)
    assert not second.success  # the blocking check failed: no alert from incomplete data
    evaluation = check_results(second)["spend_logs:reconciliation"]
    assert not evaluation.passed
    assert old.date().isoformat() in evaluation.description
    assert evaluation.metadata["mismatched_days"].value == old.date().isoformat()
    assert "backlog" not in stored_ids(wh)

    repaired = materialize(run_config=rollback_run_config())
    assert repaired.success
    assert check_results(repaired)["spend_logs:reconciliation"].passed
    assert spend_metadata(repaired)["repaired_days"] == old.date().isoformat()
    assert ("backlog", 3.0) in wh.query("SELECT request_id, spend FROM raw.spend_logs")


def test_a_row_committed_later_than_the_overlap_inside_the_horizon_fails_the_check(
    make_source, configure
):
    """created_at older than the overlap, startTime 5 days back (inside the 7-day horizon but
    before the fully compared last 3 days): the next run cannot read it, the check names it."""
    source = make_source()
    wh = configure(source)
    insert_spend(source, recent_rows())
    assert materialize().success
    five_days = ms(utcnow() - timedelta(days=5))
    stale_stamp = ms(utcnow() - timedelta(hours=1))
    insert_spend(source, [spend_row("slow", five_days, created_at=stale_stamp)])
    second = materialize(raise_on_error=False)
    assert "slow" not in stored_ids(wh)
    evaluation = check_results(second)["spend_logs:reconciliation"]
    assert not evaluation.passed
    assert evaluation.metadata["mismatched_days"].value == five_days.date().isoformat()
    repaired = materialize(run_config=rollback_run_config())
    assert repaired.success
    assert "slow" in stored_ids(wh)


@pytest.mark.parametrize("prefix", BOTH_PREFIXES)
def test_with_a_created_at_index_the_next_run_reads_a_weeks_old_row(make_source, configure, prefix):
    source = make_source(prefix=prefix)
    with source.connect(autocommit=True) as conn:
        conn.execute(f"CREATE INDEX ON {source.table('SpendLogs')} (created_at)")
    wh = configure(source)
    old = ms(utcnow() - timedelta(days=30))
    hour_ago = ms(utcnow() - timedelta(hours=1))  # long settled: compared, not subtracted
    same_day = spend_row("same-day", old - timedelta(seconds=1), created_at=hour_ago)
    insert_spend(source, [*recent_rows(), same_day])
    first = materialize()
    assert first.success
    assert spend_metadata(first)["created_at_index"] is True

    insert_spend(source, [spend_row("backlog", old, spend=3.0)])
    second = materialize()
    assert second.success
    assert "backlog" in stored_ids(wh)
    evaluation = check_results(second)["spend_logs:reconciliation"]
    assert evaluation.passed
    assert evaluation.metadata["created_at_index"].value is True


def test_a_created_at_index_that_is_not_leading_does_not_count(make_source, configure):
    source = make_source()
    with source.connect(autocommit=True) as conn:
        conn.execute(f'CREATE INDEX ON {source.table("SpendLogs")} ("startTime", created_at)')
    configure(source)
    insert_spend(source, recent_rows())
    assert spend_metadata(materialize())["created_at_index"] is False


# --- ties at the watermark ---------------------------------------------------------------------


@pytest.mark.parametrize("prefix", BOTH_PREFIXES)
def test_rows_sharing_one_old_created_at_are_read_once(make_source, tmp_path, prefix):
    """The migration instant (or a bulk copy long ago): every row has the same created_at."""
    source = make_source(prefix=prefix)
    wh = Warehouse(tmp_path / "wh")
    stamp = ms(utcnow() - timedelta(days=1))
    rows = [
        spend_row(f"t{i:03d}", stamp - timedelta(hours=i), created_at=stamp, updated_at=stamp)
        for i in range(120)
    ]
    insert_spend(source, rows)
    first = wh.extract(source)
    assert first.rows_read == 120
    version = wh.manifest().version
    second = wh.extract(source)
    assert (second.rows_read, second.rows_stored) == (0, 0)  # not the 120 tied rows again
    assert wh.manifest().version == version
    # a new row after the tie is still read, and only it
    insert_spend(source, [spend_row("new", ms(utcnow()))])
    third = wh.extract(source)
    assert (third.rows_read, third.rows_stored) == (1, 1)
    assert len(wh.rows()) == 121


def test_a_fresh_bulk_copy_is_re_read_once_then_settles(make_source, tmp_path):
    """Rows stamped within the overlap may still have company in flight: one re-read, no more."""
    import time

    from dagster_project.lib.ingest.windows import WindowOptions

    source = make_source()
    wh = Warehouse(tmp_path / "wh")
    stamp = ms(utcnow())
    insert_spend(
        source,
        [spend_row(f"b{i}", stamp - timedelta(hours=i), created_at=stamp) for i in range(50)],
    )
    options = WindowOptions(overlap=timedelta(seconds=1))
    assert wh.extract(source, options=options).rows_read == 50
    time.sleep(1.5)
    again = wh.extract(source, options=options)  # the overlap: read, nothing stored
    assert (again.rows_read, again.rows_stored) == (50, 0)
    assert wh.extract(source, options=options).rows_read == 0


def test_start_time_mode_quiet_proxy_reads_nothing(make_source, tmp_path):
    source = make_source(until=OLD_SCHEMA)
    wh = Warehouse(tmp_path / "wh")
    now = ms(utcnow())
    insert_spend(
        source, [spend_row(f"q{i}", now - timedelta(hours=3, minutes=i)) for i in range(30)]
    )
    assert wh.extract(source).rows_read == 30
    # the look-back (2 h) reaches rows up to 5 h old, but they had all arrived by the last run
    assert wh.extract(source).rows_read == 0
    late = spend_row("late", now - timedelta(minutes=10))
    insert_spend(source, [late])
    assert wh.extract(source).rows_stored == 1


# --- retention and disabled spend logs -------------------------------------------------------


@pytest.mark.parametrize("until", [None, OLD_SCHEMA], ids=["created_at", "startTime"])
def test_days_pruned_at_the_source_are_reported_as_pruned_and_kept(make_source, configure, until):
    source = make_source(until=until)
    wh = configure(source)
    now = ms(utcnow())
    insert_spend(source, [spend_row(f"h{i:02d}", now - timedelta(hours=6 * i)) for i in range(40)])
    assert materialize().success
    cutoff = now - timedelta(days=5, hours=3)  # retention: the oldest days, one of them partly
    with source.connect() as conn:
        conn.execute(f'DELETE FROM {source.table("SpendLogs")} WHERE "startTime" < %s', [cutoff])
    pruned = sorted(
        {(now - timedelta(hours=6 * i)).date() for i in range(40)}
        - {
            (now - timedelta(hours=6 * i)).date()
            for i in range(40)
            if now - timedelta(hours=6 * i) >= cutoff
        }
    )
    assert len(pruned) >= 4
    result = materialize()
    assert result.success  # pruning is not loss
    evaluation = check_results(result)["spend_logs:reconciliation"]
    assert evaluation.passed
    assert evaluation.metadata["pruned_days"].value == ", ".join(d.isoformat() for d in pruned)
    rollback = materialize(run_config=rollback_run_config())
    assert rollback.success
    assert spend_metadata(rollback)["pruned_days"] == ", ".join(d.isoformat() for d in pruned)
    assert spend_metadata(rollback)["repaired_days"] == "none"
    assert len(stored_ids(wh)) == 40  # nothing in the lake is removed


@pytest.mark.parametrize("prefix", BOTH_PREFIXES)
def test_emptied_spend_logs_are_source_disabled_not_zero_spend(make_source, configure, prefix):
    source = make_source(prefix=prefix)
    wh = configure(source)
    insert_spend(source, recent_rows())
    assert materialize().success
    with source.connect() as conn:
        conn.execute(f"DELETE FROM {source.table('SpendLogs')}")
    result = materialize(raise_on_error=False)
    assert not result.success  # blocking: no rollup or alert says "under budget"
    evaluation = check_results(result)["spend_logs:reconciliation"]
    assert not evaluation.passed
    assert evaluation.description.startswith("source disabled:")
    assert evaluation.metadata["status"].value == "source_disabled"
    assert spend_metadata(result)["status"] == "source_disabled"
    assert wh.query("SELECT status FROM raw._source_tables WHERE source_table = 'SpendLogs'") == [
        ("source_disabled",)
    ]
    assert len(stored_ids(wh)) == 5  # history untouched


@pytest.mark.parametrize("prefix", BOTH_PREFIXES)
def test_upgrade_to_created_at_rereads_a_bounded_window_once(make_source, tmp_path, prefix):
    """The migration gives every old row the same created_at: one bounded re-read, then none."""
    import time

    from dagster_project.lib.ingest.windows import WindowOptions
    from dagster_project.lib.migrations import apply_migrations

    source = make_source(prefix=prefix, until=OLD_SCHEMA)
    wh = Warehouse(tmp_path / "wh")
    now = ms(utcnow())
    insert_spend(
        source, [spend_row(f"o{i:03d}", now - timedelta(hours=2 * i + 1)) for i in range(120)]
    )
    options = WindowOptions(overlap=timedelta(seconds=1), horizon=timedelta(days=7))
    assert wh.extract(source, options=options).cursor == "startTime"
    apply_migrations(source.url, prefix)  # the upgrade: created_at = the migration instant
    time.sleep(1.5)
    upgraded = wh.extract(source, options=options)
    assert upgraded.cursor == "created_at"
    within_horizon = sum(1 for i in range(120) if timedelta(hours=2 * i) <= timedelta(days=7))
    assert upgraded.rows_read == within_horizon < 120  # bounded by the startTime horizon
    insert_spend(source, [spend_row("after", ms(utcnow()))])
    after = wh.extract(source, options=options)
    assert (after.rows_read, after.rows_stored) == (1, 1)  # not the tie at the migration instant
    assert len(wh.rows()) == 121
