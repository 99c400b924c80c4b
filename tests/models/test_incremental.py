"""An incremental re-build of the daily facts equals a full re-build on the same raw data."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import duckdb
import pytest

from tests.models.dbt_runner import AS_OF, duckdb_env, run_dbt
from tests.models.raw_data import insert_rows, make_dataset, write_raw_layer

pytestmark = pytest.mark.integration

INCREMENTAL = ("fct_spend_daily", "fct_spend_by_tag_daily", "fct_errors_daily")
SELECT = ["--select", "+fct_spend_daily +fct_spend_by_tag_daily +fct_errors_daily"]


def _snapshot(path, table):
    with duckdb.connect(str(path), read_only=True) as conn:
        return sorted(conn.execute(f"select * from main.{table}").fetchall(), key=str)


def test_incremental_rebuild_equals_full_rebuild(tmp_path):
    data = make_dataset(seed=11, requests=1500)
    path = tmp_path / "build.duckdb"
    write_raw_layer(path, data)
    vars_yaml = f'{{budget_as_of: "{AS_OF}"}}'
    run_dbt(["run", *SELECT], tmp_path, duckdb_env(path), vars_yaml)
    before = {t: _snapshot(path, t) for t in INCREMENTAL}

    # New rows: late arrivals inside the re-build window and a new day.
    newest = max(r["start_time"] for r in data.rows("spend_logs"))
    late = make_dataset(seed=12, requests=200, start=newest - timedelta(days=2), days=3)
    for row in late.rows("spend_logs"):
        row["request_id"] = "late_" + row["request_id"]
    # A very late row: an old day, far outside the re-build window, extracted now.
    oldest = min(r["start_time"] for r in data.rows("spend_logs"))
    very_late = dict(late.rows("spend_logs")[0], request_id="very_late_1", start_time=oldest)
    very_late["_extracted_at"] = newest + timedelta(days=1)
    late.rows("spend_logs").append(very_late)
    for row in late.rows("error_logs"):
        row["request_id"] = "late_" + row["request_id"]
    with duckdb.connect(str(path)) as conn:
        insert_rows(conn, "spend_logs", late.rows("spend_logs"))
        insert_rows(conn, "error_logs", late.rows("error_logs"))

    run_dbt(["run", *SELECT], tmp_path, duckdb_env(path), vars_yaml)
    incremental = {t: _snapshot(path, t) for t in INCREMENTAL}

    full_path = tmp_path / "full.duckdb"
    shutil.copy(path, full_path)
    run_dbt(["run", "--full-refresh", *SELECT], tmp_path, duckdb_env(full_path), vars_yaml)
    full = {t: _snapshot(full_path, t) for t in INCREMENTAL}

    for table in INCREMENTAL:
        assert incremental[table] != before[table], f"{table} did not change"
        assert incremental[table] == full[table], f"{table}: incremental != full re-build"
    with duckdb.connect(str(path), read_only=True) as conn:
        first_day = conn.execute(
            "select sum(request_count) from main.fct_spend_daily where spend_date = ?",
            [oldest.date()],
        ).fetchone()[0]
    expected = sum(1 for r in data.rows("spend_logs") if r["start_time"].date() == oldest.date())
    assert first_day == expected + 1


def _attributed_days(path, column, value):
    """Days of fct_spend_daily with rows attributed to ``column = value``."""
    with duckdb.connect(str(path), read_only=True) as conn:
        query = f"select distinct spend_date from main.fct_spend_daily where {column} = ?"
        return sorted(day for (day,) in conn.execute(query, [value]).fetchall())


def test_a_key_or_team_moved_to_another_owner_rebuilds_its_days(tmp_path):
    """Logs without their own owner or organization take them from the key and team: when those
    change, the incremental facts re-build every day of that key or team, not only recent days."""
    data = make_dataset(seed=11, requests=1500)
    path = tmp_path / "build.duckdb"
    write_raw_layer(path, data)
    vars_yaml = f'{{budget_as_of: "{AS_OF}"}}'
    run_dbt(["run", *SELECT], tmp_path, duckdb_env(path), vars_yaml)
    with duckdb.connect(str(path)) as conn:
        # a key whose requests carry no user of their own, and a team whose requests carry no
        # organization of their own (nor do their keys)
        key = ("hash_k1",)
        conn.execute("update raw.spend_logs set user_id = null where api_key = ?", key)
        conn.execute(
            "update raw.verification_tokens set user_id = 'moved_user' where token = ?", key
        )
        team = ("team_1",)
        conn.execute(
            "update raw.spend_logs set organization_id = null, meta_organization_id = null "
            "where team_id = ?",
            team,
        )
        conn.execute(
            "update raw.verification_tokens set organization_id = null where team_id = ?", team
        )
        conn.execute("update raw.teams set organization_id = 'moved_org' where team_id = ?", team)
    # the edits to the logs above stand for their state at the first build: re-build from them
    run_dbt(["run", "--full-refresh", *SELECT], tmp_path, duckdb_env(path), vars_yaml)
    with duckdb.connect(str(path)) as conn:
        conn.execute("update raw.verification_tokens set user_id = 'owner_2' where token = ?", key)
        conn.execute("update raw.teams set organization_id = 'org_2' where team_id = ?", team)
    before_user = _attributed_days(path, "user_id", "moved_user")
    before_org = _attributed_days(path, "organization_id", "moved_org")
    assert len(before_user) > 4  # older days than the re-build window
    assert len(before_org) > 4

    run_dbt(["run", *SELECT], tmp_path, duckdb_env(path), vars_yaml)
    incremental = {t: _snapshot(path, t) for t in INCREMENTAL}
    assert _attributed_days(path, "user_id", "moved_user") == []
    assert _attributed_days(path, "user_id", "owner_2") == before_user
    assert _attributed_days(path, "organization_id", "moved_org") == []
    assert _attributed_days(path, "organization_id", "org_2") == before_org

    full_path = tmp_path / "full.duckdb"
    shutil.copy(path, full_path)
    run_dbt(["run", "--full-refresh", *SELECT], tmp_path, duckdb_env(full_path), vars_yaml)
    for table in INCREMENTAL:
        assert incremental[table] == _snapshot(full_path, table), f"{table}: != full re-build"
    with duckdb.connect(str(path), read_only=True) as conn:
        versions = conn.execute(
            "select holder_type, holder_id, version_number, is_change "
            "from main_intermediate.int_spend_attribution_versions "
            "where is_change order by holder_type"
        ).fetchall()
    assert versions == [("key", key[0], 2, True), ("team", team[0], 2, True)]


BUCKETS = "main_intermediate.int_entity_spend_buckets"


def _buckets(path):
    """The buckets without their inputs' fingerprint, which differs after a full refresh of the
    attribution versions (no changes recorded yet)."""
    query = f"select * exclude (inputs_fingerprint) from {BUCKETS}"
    with duckdb.connect(str(path), read_only=True) as conn:
        return sorted(conn.execute(query).fetchall(), key=str)


def _full_build(tmp_path, path, vars_yaml, model):
    """A copy of the warehouse at ``path`` with ``model`` and its parents fully re-built."""
    full_path = tmp_path / "full.duckdb"
    shutil.copy(path, full_path)
    select = ["--select", f"+{model}"]
    run_dbt(["run", "--full-refresh", *select], tmp_path, duckdb_env(full_path), vars_yaml)
    return full_path


def _full_buckets(tmp_path, path, vars_yaml):
    return _buckets(_full_build(tmp_path, path, vars_yaml, "int_entity_spend_buckets"))


def _first_build(tmp_path, select):
    """The test dataset's raw layer, built once with ``select``: (data, path, vars)."""
    data = make_dataset(seed=11, requests=1500)
    path = tmp_path / "build.duckdb"
    write_raw_layer(path, data)
    vars_yaml = f'{{budget_as_of: "{AS_OF}"}}'
    run_dbt(["run", *select], tmp_path, duckdb_env(path), vars_yaml)
    return data, path, vars_yaml


def test_entity_spend_buckets_rebuild_only_days_with_new_rows_until_their_inputs_change(tmp_path):
    """New requests re-build only their local days, late ones of any age included, and a new key
    nothing; a change to what the buckets take from outside the requests (a tag gaining a
    budget, a key moved to another owner or project) re-builds every day. Each build equals a
    full one."""
    select = ["--select", "+int_entity_spend_buckets"]
    data, path, vars_yaml = _first_build(tmp_path, select)

    # A marker on a day no new row touches: it survives a build that re-builds other days only.
    oldest = min(r["start_time"] for r in data.rows("spend_logs"))
    newest = max(r["start_time"] for r in data.rows("spend_logs"))
    untouched = (oldest + timedelta(days=3)).date()
    mark = f"update {BUCKETS} set request_count = -1 where bucket_date = ?"
    with duckdb.connect(str(path)) as conn:
        assert conn.execute(mark, [untouched]).fetchall()[0][0] > 0

    late = dict(data.rows("spend_logs")[0], request_id="very_late_1", start_time=oldest)
    late["_extracted_at"] = newest + timedelta(days=1)
    new = dict(data.rows("spend_logs")[1], request_id="new_1", start_time=newest)
    new["_extracted_at"] = newest + timedelta(days=1)
    with duckdb.connect(str(path)) as conn:
        insert_rows(conn, "spend_logs", [late, new])
    run_dbt(["run", *select], tmp_path, duckdb_env(path), vars_yaml)
    incremental = _buckets(path)
    marked = [row for row in incremental if row[5] == -1]
    assert marked
    assert {row[8] for row in marked} == {untouched}
    unmarked = [row for row in incremental if row[8] != untouched]
    full = _full_buckets(tmp_path, path, vars_yaml)
    assert unmarked == [row for row in full if row[8] != untouched]

    # A new key changes nothing that was built: the marker stays.
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            "insert into raw.verification_tokens by name "
            "select 'hash_new' as token, * exclude (token) from raw.verification_tokens "
            "where token = 'hash_k1'"
        )
    run_dbt(["run", *select], tmp_path, duckdb_env(path), vars_yaml)
    assert [row for row in _buckets(path) if row[5] == -1] == marked

    # Inputs from outside the requests change: every day is re-built, the marker goes.
    changes = [
        "update raw.tags set budget_id = 'b_tag_day' where tag_name = 'exp'",
        "update raw.verification_tokens set user_id = 'owner_2' where token = 'hash_k1'",
        "update raw.verification_tokens set project_id = 'proj_b' where token = 'hash_k1'",
    ]
    for change in changes:
        with duckdb.connect(str(path)) as conn:
            conn.execute(mark, [untouched])
            conn.execute(change)
        run_dbt(["run", *select], tmp_path, duckdb_env(path), vars_yaml)
        incremental = _buckets(path)
        assert not [row for row in incremental if row[5] == -1], change
        assert incremental == _full_buckets(tmp_path, path, vars_yaml), change
    with duckdb.connect(str(path), read_only=True) as conn:
        tagged = conn.execute(
            f"select count(distinct bucket_date) from {BUCKETS} "
            "where entity_type = 'tag' and entity_id = 'exp'"
        ).fetchone()[0]
    assert tagged > 4


def test_attribution_versions_built_before_new_columns_upgrade_once(tmp_path):
    """A warehouse whose versions table predates project_id and key_identity: the next build adds
    the columns, records one change per key (its identity was unknown), and the facts and
    buckets it re-builds equal a full build; the build after records nothing more."""
    select = ["--select", "+fct_spend_daily +int_entity_spend_buckets"]
    _, path, vars_yaml = _first_build(tmp_path, select)
    versions = "main_intermediate.int_spend_attribution_versions"
    with duckdb.connect(str(path)) as conn:
        conn.execute(f"alter table {versions} drop column project_id")
        conn.execute(f"alter table {versions} drop column key_identity")
        keys = conn.execute(f"select count(*) from {versions} where holder_type = 'key'").fetchone()

    run_dbt(["run", *select], tmp_path, duckdb_env(path), vars_yaml)
    count = f"select holder_type, count(*) from {versions} where is_change group by all"
    with duckdb.connect(str(path), read_only=True) as conn:
        assert conn.execute(count).fetchall() == [("key", keys[0])]
    incremental = (_snapshot(path, "fct_spend_daily"), _buckets(path))
    full_path = tmp_path / "full.duckdb"
    shutil.copy(path, full_path)
    run_dbt(["run", "--full-refresh", *select], tmp_path, duckdb_env(full_path), vars_yaml)
    assert incremental == (_snapshot(full_path, "fct_spend_daily"), _buckets(full_path))

    run_dbt(["run", *select], tmp_path, duckdb_env(path), vars_yaml)
    with duckdb.connect(str(path), read_only=True) as conn:
        assert conn.execute(count).fetchall() == [("key", keys[0])]


CROSSINGS = "main_intermediate.int_budget_limit_crossings"
ALIGNED = "main_intermediate.int_budgets_aligned"


def _crossings(path):
    """The crossings without the build's watermark and shared inputs' fingerprint (after a full
    refresh of the attribution versions the buckets' fingerprint differs), with the entity and
    duration of their budget."""
    query = (
        f"select budgets.entity_type, budgets.entity_id, budgets.budget_duration, crossings.* "
        f"exclude (hours_extracted_at, inputs_fingerprint) from {CROSSINGS} as crossings "
        f"inner join {ALIGNED} as budgets using (entity_budget_id)"
    )
    with duckdb.connect(str(path), read_only=True) as conn:
        return sorted(conn.execute(query).fetchall(), key=str)


def _full_crossings(tmp_path, path, vars_yaml):
    return _crossings(_full_build(tmp_path, path, vars_yaml, "int_budget_limit_crossings"))


def _mark_day(path, day):
    """Set period_spend_at_crossing_usd to -1 on the crossings of the periods of at most a day
    that start on ``day``; return how many."""
    with duckdb.connect(str(path)) as conn:
        return conn.execute(
            f"update {CROSSINGS} set period_spend_at_crossing_usd = -1 "
            f"where cast(period_start as date) = ? and entity_budget_id in ("
            f"select entity_budget_id from {ALIGNED} "
            "where period_kind = 'seconds' or (period_kind = 'day' and step_days = 1))",
            [day],
        ).fetchall()[0][0]


def _marked(rows):
    return {row[:5] for row in rows if row[-3] == -1}


def test_limit_crossings_rebuild_only_touched_periods_until_their_budget_changes(tmp_path):
    """New requests re-build only the budget periods they fall in, a late one in an old period
    included; a budget whose limit changes re-builds all its periods, and a change shared by
    all budgets (attribution, thresholds) every period. Each build equals a full one."""
    select = ["--select", "+int_budget_limit_crossings"]
    data, path, vars_yaml = _first_build(tmp_path, select)
    logs = data.rows("spend_logs")
    newest = max(r["start_time"] for r in logs)
    before = _crossings(path)

    # A late request of hash_k4 (daily max budget 1 USD) starting a day with no crossing of it,
    # far outside the last days, and a day with crossings of the tag prod as well, to mark.
    crossed = {(row[1], row[2], row[4].date()) for row in before}
    days = sorted({r["start_time"].date() for r in logs})[5:-6]
    late_day = next(d for d in days if ("hash_k4", "1d", d) not in crossed)
    marker_day = next(
        d
        for d in days
        if d != late_day and ("prod", "1d", d) in crossed and ("user_2", "1d", d) in crossed
    )
    assert _mark_day(path, marker_day) > 0
    marked = _marked(_crossings(path))
    assert ("tag", "prod", "1d") in {m[:3] for m in marked}
    base = next(r for r in logs if r["api_key"] == "hash_k4")
    late_at = datetime.combine(late_day, datetime.min.time()) + timedelta(seconds=30)
    late = dict(base, request_id="very_late_1", start_time=late_at, end_time=late_at, spend=5.0)
    late["_extracted_at"] = newest + timedelta(days=1)
    new = dict(logs[1], request_id="new_1", start_time=newest)
    new["_extracted_at"] = newest + timedelta(days=1)
    with duckdb.connect(str(path)) as conn:
        insert_rows(conn, "spend_logs", [late, new])
    run_dbt(["run", *select], tmp_path, duckdb_env(path), vars_yaml)

    incremental = _crossings(path)
    assert _marked(incremental) == marked
    full = _full_crossings(tmp_path, path, vars_yaml)
    assert [r for r in incremental if r[:5] not in marked] == [
        r for r in full if r[:5] not in marked
    ]
    assert ("key", "hash_k4", "1d", late_at) in {(*r[:3], r[-2]) for r in incremental}

    # The tag's budget row lowers its max budget: its periods are re-built, the others stand.
    with duckdb.connect(str(path)) as conn:
        conn.execute("update raw.budgets set max_budget = 1 where budget_id = 'b_tag_day'")
    run_dbt(["run", *select], tmp_path, duckdb_env(path), vars_yaml)
    incremental = _crossings(path)
    still = {m for m in marked if m[:3] != ("tag", "prod", "1d")}
    assert _marked(incremental) == still
    assert [r for r in incremental if r[:5] not in still] == [
        r for r in _full_crossings(tmp_path, path, vars_yaml) if r[:5] not in still
    ]

    # Shared inputs change: every period is re-built.
    for change, variables in [
        ("update raw.verification_tokens set user_id = 'owner_2' where token = 'hash_k4'", None),
        (None, f'{{budget_as_of: "{AS_OF}", alert_threshold_pcts: [50]}}'),
    ]:
        assert _mark_day(path, marker_day) > 0
        if change:
            with duckdb.connect(str(path)) as conn:
                conn.execute(change)
        vars_yaml = variables or vars_yaml
        run_dbt(["run", *select], tmp_path, duckdb_env(path), vars_yaml)
        incremental = _crossings(path)
        assert not _marked(incremental), change or variables
        assert incremental == _full_crossings(tmp_path, path, vars_yaml), change or variables


def test_limit_crossings_built_as_a_table_before_their_fingerprints_are_rebuilt(tmp_path):
    """A warehouse whose crossings table predates the incremental build (no watermark, no
    fingerprints): the next build empties it, adds the columns and equals a full build."""
    select = ["--select", "+int_budget_limit_crossings"]
    _, path, vars_yaml = _first_build(tmp_path, select)
    full = _crossings(path)
    with duckdb.connect(str(path)) as conn:
        for column in ("hours_extracted_at", "inputs_fingerprint", "budget_fingerprint"):
            conn.execute(f"alter table {CROSSINGS} drop column {column}")
        conn.execute(f"update {CROSSINGS} set crossed_at = null")
    run_dbt(["run", *select], tmp_path, duckdb_env(path), vars_yaml)
    assert _crossings(path) == full
