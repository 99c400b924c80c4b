"""The pooled SQLite event log of the local instance, on real Dagster runs and real files.

What it must keep from Dagster's own storage: every event of a run stored and indexed (asset
materializations and checks readable across runs and from another process), several writing
processes at once, and a forked child that never shares its parent's connections.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.lib import dagster_storage
from dagster_project.lib.dagster_instance import prepare_dagster_home

pytestmark = pytest.mark.integration

ASSETS = 12


def assets() -> list[dg.AssetsDefinition]:
    def make(index: int) -> dg.AssetsDefinition:
        @dg.asset(name=f"a{index}", check_specs=[dg.AssetCheckSpec("positive", asset=f"a{index}")])
        def _asset():
            yield dg.MaterializeResult(metadata={"index": index})
            yield dg.AssetCheckResult(passed=True)

        return _asset

    return [make(i) for i in range(ASSETS)]


def run_job(home: Path) -> str:
    """One real run of a job of :data:`ASSETS` assets and checks on the instance at ``home``."""
    job = dg.Definitions(assets=assets()).resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = job.execute_in_process(instance=instance)
        assert result.success
        return result.run_id


READER = """
import sys, dagster as dg
with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    run_id = sys.argv[2]
    events = [e for e in instance.all_logs(run_id) if e.is_dagster_event]
    keys = instance.get_latest_materialization_events([dg.AssetKey(f"a{i}") for i in range(12)])
    print(len(events), sum(v is not None and v.run_id == run_id for v in keys.values()))
"""


def read_elsewhere(home: Path, run_id: str) -> tuple[int, int]:
    """(Dagster events of the run, assets whose latest materialization it is), read by a new
    process (plain log lines are left out: their number may vary)."""
    out = subprocess.run(
        [sys.executable, "-c", READER, str(home), run_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


def test_every_event_of_a_run_is_stored_and_indexed_for_other_processes(tmp_path):
    home = prepare_dagster_home(tmp_path / "dagster")
    first = run_job(home)
    second = run_job(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is dagster_storage.PooledSqliteEventLogStorage
        events = [e for e in instance.all_logs(second) if e.is_dagster_event]
        kinds = [e.dagster_event_type for e in events]
        assert kinds.count(dg.DagsterEventType.ASSET_MATERIALIZATION) == ASSETS
        assert kinds.count(dg.DagsterEventType.ASSET_CHECK_EVALUATION) == ASSETS
        assert kinds[-1] == dg.DagsterEventType.RUN_SUCCESS
        assert len([e for e in instance.all_logs(first) if e.is_dagster_event]) == len(events)
    assert read_elsewhere(home, second) == (len(events), ASSETS)


def test_processes_writing_at_once_lose_no_event(tmp_path):
    home = prepare_dagster_home(tmp_path / "dagster")
    dg.DagsterInstance.from_config(str(home)).dispose()  # created once, as by the first run
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        run_ids = pool.map(run_job, [home] * 6)
    counts = [read_elsewhere(home, run_id)[0] for run_id in run_ids]
    assert len(set(run_ids)) == 6
    assert len(set(counts)) == 1
    assert counts[0] > 3 * ASSETS
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(dg.AssetKey("a0"), limit=100).records
        assert sorted(r.run_id for r in records) == sorted(run_ids)


def store_in_child(home: str, run_id: str) -> None:
    with dg.DagsterInstance.from_config(home) as instance:
        run = instance.get_run_by_id(run_id)
        instance.report_engine_event("from the child", run)


def test_at_most_a_few_databases_stay_open_and_a_forked_child_opens_its_own(tmp_path):
    home = prepare_dagster_home(tmp_path / "dagster")
    job = dg.GraphDefinition("noop").to_job()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        runs = [instance.create_run_for_job(job) for _ in range(dagster_storage.OPEN_ENGINES + 4)]
        for run in runs:
            instance.report_engine_event("hello", run)
        assert len(storage._engines) == dagster_storage.OPEN_ENGINES
        assert runs[-1].run_id in storage._engines
        opened = dict(storage._engines)
        child = multiprocessing.get_context("fork").Process(
            target=_report_in_forked_child, args=(storage, runs[-1].run_id)
        )
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert storage._engines == opened  # the parent's connections untouched
        instance.report_engine_event("after the fork", runs[-1])
        messages = [e.message for e in instance.all_logs(runs[-1].run_id)]
        assert messages == ["hello", "from the forked child", "after the fork"]
        instance.dispose()
        assert not storage._engines


def _report_in_forked_child(storage: dagster_storage.PooledSqliteEventLogStorage, run_id: str):
    parent_engines = dict(storage._engines)
    storage.store_event(
        dg.EventLogEntry(
            error_info=None,
            level="INFO",
            user_message="from the forked child",
            run_id=run_id,
            timestamp=time.time(),
        )
    )
    engine = storage._engines[run_id]
    if any(engine is e for e in parent_engines.values()):
        raise SystemExit(3)
