"""A run with nothing new stays cheap without missing a change: snapshot tables compared by the
content digest PostgreSQL computes, reconciliation counting old days from the lake's manifest.

Real PostgreSQL, real lakes (Parquet and Iceberg), real DuckDB.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from dagster_project.defs.ingest import checks
from dagster_project.lib.duckdb import connect_writer
from dagster_project.lib.ingest import reconcile as reconcile_module
from dagster_project.lib.ingest.extract import extract_snapshots
from dagster_project.lib.ingest.lake import Lake
from dagster_project.lib.ingest.limit_history import record_limit_history
from dagster_project.lib.ingest.reconcile import compare_history
from dagster_project.lib.ingest.source import SPEND_LOGS, SourceSession, snapshot_hash_select
from dagster_project.settings import LAKE_FORMAT_ENV, load_settings
from tests.ingest.helpers import Warehouse, insert_spend, ms, spend_row, utcnow

pytestmark = pytest.mark.integration


class RecordingSession(SourceSession):
    """A real source session that records the SELECTs whose rows it fetched."""

    fetched: list[str]

    def fetch_table(self, sql: str):
        self.fetched.append(sql)
        return super().fetch_table(sql)


def snapshot(source, wh: Warehouse) -> tuple[dict, list[str]]:
    """One snapshot pass with the limit history, as the asset runs it: results by raw table,
    and the SELECTs that fetched rows."""
    session = RecordingSession(source.url, source.prefix)
    session.fetched = []
    with session, connect_writer(wh.build) as con:
        results = {r.raw_table: r for r in extract_snapshots(session, con, wh.store)}
        record_limit_history(con, wh.store, utcnow())
    return results, session.fetched


def fetched_tables(fetched: list[str], source) -> set[str]:
    return {
        name for name in ("UserTable", "TeamTable") if any(source.table(name) in s for s in fetched)
    }


@pytest.mark.usefixtures("lake_format")
def test_an_unchanged_snapshot_is_not_fetched_and_any_change_is_detected(make_source, tmp_path):
    source = make_source()
    users = source.table("UserTable")

    def execute(sql: str, *params) -> None:
        with source.connect() as conn:
            conn.execute(sql, params)

    execute(
        f"INSERT INTO {users} (user_id, password, max_budget) VALUES "
        "('u1', 'a', 10), ('u2', 'b', 20)"
    )
    wh = Warehouse(tmp_path / "wh")
    first, fetched = snapshot(source, wh)
    assert first["users"].changed
    assert first["users"].rows == 2
    assert fetched_tables(fetched, source) == {"UserTable", "TeamTable"}
    version = wh.manifest("snapshots/users").version

    quiet, fetched = snapshot(source, wh)
    assert not any(r.changed for r in quiet.values())
    assert quiet["users"].rows == 2
    assert fetched_tables(fetched, source) == set()  # nothing transferred
    assert wh.manifest("snapshots/users").version == version  # nothing published

    # a secret is not landed: changing it changes nothing
    execute(f"UPDATE {users} SET password = 'rotated' WHERE user_id = 'u1'")
    assert not snapshot(source, wh)[0]["users"].changed

    # one value, same row count
    execute(f"UPDATE {users} SET max_budget = 11 WHERE user_id = 'u1'")
    changed, fetched = snapshot(source, wh)
    assert changed["users"].changed
    assert not changed["teams"].changed
    assert fetched_tables(fetched, source) == {"UserTable"}
    assert wh.query("SELECT user_id, max_budget FROM raw.users ORDER BY 1") == [
        ("u1", 11.0),
        ("u2", 20.0),
    ]
    history = wh.query(
        "SELECT CAST(json_extract(limits_json, '$.max_budget') AS DOUBLE) "
        "FROM raw.budget_limit_history "
        "WHERE source_table = 'users' AND entity_id = 'u1' ORDER BY observed_at"
    )
    assert history == [(10.0,), (11.0,)]

    # a deleted row and an inserted one: the same count again
    execute(f"DELETE FROM {users} WHERE user_id = 'u2'")
    execute(f"INSERT INTO {users} (user_id, password, max_budget) VALUES ('u3', 'c', 20)")
    replaced, _ = snapshot(source, wh)
    assert replaced["users"].changed
    assert replaced["users"].rows == 2
    assert wh.query("SELECT user_id FROM raw.users ORDER BY 1") == [("u1",), ("u3",)]
    tombstones = wh.query(
        "SELECT entity_id FROM raw.budget_limit_history WHERE is_deleted AND source_table = 'users'"
    )
    assert tombstones == [("u2",)]


@pytest.fixture
def env(make_source, tmp_path, monkeypatch, lake_format):
    """A source and a warehouse configured through the environment, as the checks read it."""
    source = make_source()
    monkeypatch.setenv("DATABASE_URL", source.url)
    monkeypatch.setenv("PROXY_TABLE_PREFIX", source.prefix)
    monkeypatch.setenv("SPEND_WAREHOUSE_DIR", str(tmp_path / "wh"))
    monkeypatch.setenv(LAKE_FORMAT_ENV, lake_format)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return source, Warehouse(tmp_path / "wh")


def noon(moment: datetime) -> datetime:
    """Noon of ``moment``'s day: rows a few hours on stay in that day whatever the clock says."""
    return moment.replace(hour=12, minute=0, second=0, microsecond=0)


def reconcile(source):
    settings = load_settings()
    with SourceSession(source.url, source.prefix) as session:
        return checks.reconcile(SPEND_LOGS, session, settings)


@pytest.mark.parametrize("age_days", [12, 5], ids=["history", "inside-the-horizon"])
@pytest.mark.parametrize("change", ["lake-misses-a-row", "source-lost-a-row"])
@pytest.mark.parametrize("indexed", [False, True], ids=["no-index", "created-at-index"])
def test_reconciliation_counted_from_the_manifest_still_finds_a_row_too_many_or_few(
    env, age_days, change, indexed
):
    """Old days are counted from the manifest (every file's bounds inside the compared rows),
    yet a row missing on either side still fails the check, naming its day; with an index on
    ``created_at`` the source side is counted through the indexes alone."""
    source, wh = env
    if indexed:
        with source.connect() as conn:
            conn.execute(f"CREATE INDEX ON {source.table('SpendLogs')} (created_at)")
    now = ms(utcnow())
    day = noon(now - timedelta(days=age_days))
    old = [spend_row(f"o{i}", day + timedelta(minutes=i), created_at=day) for i in range(4)]
    insert_spend(source, [*old, spend_row("new", now - timedelta(hours=1))])
    wh.extract(source)
    old_files = [f for f in wh.manifest().files if f.partition == day.date().isoformat()]
    assert len(old_files) == 1
    assert old_files[0].upper("created_at") == day
    assert reconcile(source).passed

    if change == "lake-misses-a-row":  # committed late with an old created_at: never read
        insert_spend(source, [spend_row("late", day + timedelta(hours=1), created_at=day)])
    else:
        with source.connect() as conn:
            conn.execute(f"DELETE FROM {source.table('SpendLogs')} WHERE request_id = 'o1'")
    result = reconcile(source)
    assert not result.passed
    assert result.metadata["mismatched_days"].value == day.date().isoformat()
    assert result.metadata["created_at_index"].value is indexed


def test_a_file_holding_rows_not_yet_covered_is_read_not_counted(env):
    """A compacted old day whose file holds a row created after the compared limit: the row is
    left out on both sides, so the file must be read, not counted from the manifest."""
    source, wh = env
    now = ms(utcnow())
    day = noon(now - timedelta(days=5))
    old = [spend_row(f"o{i}", day + timedelta(minutes=i), created_at=day) for i in range(4)]
    insert_spend(source, old)
    wh.extract(source)
    insert_spend(source, [spend_row("fresh", day + timedelta(hours=2), created_at=now)])
    wh.extract(source, maintenance=True)  # the day compacted into one file with the new row
    (file,) = [f for f in wh.manifest().files if f.partition == day.date().isoformat()]
    assert file.rows == 5
    assert file.upper("created_at") == now
    result = reconcile(source)
    assert result.passed, result.description


@pytest.mark.parametrize("server_version", [130000, 150000], ids=["md5-of-text", "hash-record"])
def test_the_row_hash_of_either_server_version_sees_a_same_count_change(
    make_source, server_version
):
    """Before PostgreSQL 14 the digest hashes each row's text (no ``hash_record_extended``)."""
    source = make_source()
    users = source.table("UserTable")

    def digest() -> tuple:
        with SourceSession(source.url, source.prefix) as session:
            select = snapshot_hash_select(
                session, "UserTable", session.columns("UserTable"), server_version
            )
            return session.query(select)[0]

    with source.connect() as conn:
        conn.execute(f"INSERT INTO {users} (user_id, max_budget) VALUES ('u1', 10), ('u2', 20)")
    before = digest()
    assert before == digest()
    with source.connect() as conn:
        conn.execute(f"UPDATE {users} SET max_budget = 11 WHERE user_id = 'u1'")
    after = digest()
    assert after[0] == before[0] == 2
    assert after[1] != before[1]


def test_a_long_history_is_reconciled_a_slice_per_run_and_every_day_in_turn(env, monkeypatch):
    """Beyond ``HISTORY_ROWS_PER_RUN`` lake rows the old days are compared one slice per run:
    a row lost on an old day fails exactly the turn whose slice holds that day, and the turns
    together compare every day."""
    source, wh = env
    now = ms(utcnow())
    days = [now - timedelta(days=age) for age in range(14, 9, -1)]  # five days, all history
    insert_spend(
        source,
        [spend_row(f"d{i}", day, created_at=day) for i, day in enumerate(days)]
        + [spend_row("new", now - timedelta(hours=1))],
    )
    wh.extract(source)
    monkeypatch.setattr(reconcile_module, "HISTORY_ROWS_PER_RUN", 1)  # one slice per day
    with source.connect() as conn:
        conn.execute(f"DELETE FROM {source.table('SpendLogs')} WHERE request_id = 'd2'")
    lost = days[2].date()
    before = (now - timedelta(days=7)).date()
    lake = Lake.from_settings(load_settings()).table(SPEND_LOGS.raw_table)
    with SourceSession(source.url, source.prefix) as session:
        columns = session.columns(SPEND_LOGS.source)
        turns = [
            compare_history(
                session, lake, SPEND_LOGS, columns, before_day=before, full=False, turn=turn
            )
            for turn in range(len(days) + 3)
        ]
    assert len({h.compared for h in turns}) > 1  # the slices move from run to run
    compared = {
        h.compared[0] + timedelta(days=d)
        for h in turns
        for d in range((h.compared[1] - h.compared[0]).days)
    }
    assert {day.date() for day in days} <= compared
    failing = [h for h in turns if h.mismatches]
    assert failing, "no turn compared the day that lost a row"
    assert all([m.day for m in h.mismatches] == [lost] for h in failing)
    assert all(h.compared[0] <= lost < h.compared[1] for h in failing)
    assert len(failing) < len(turns)  # the other turns compared other days only
    # the check reports its slice, and without a turn every day is compared (the rollback)
    assert reconcile(source).metadata["history_slice"].value != "all"
    with SourceSession(source.url, source.prefix) as session:
        everything = compare_history(
            session, lake, SPEND_LOGS, session.columns(SPEND_LOGS.source), before_day=before
        )
    assert [m.day for m in everything.mismatches] == [lost]
    assert everything.compared is None
