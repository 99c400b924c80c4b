"""The pipeline as deployed: two services on a PostgreSQL-backed instance, fired by a schedule.

``spendwh deploy`` writes the instance, the workspace and the systemd units; the test starts the
daemon and the webserver exactly as their units say (executable, arguments, working directory,
``Environment=`` and ``EnvironmentFile=`` on a systemd-like ``PATH`` without the virtual
environment), each in its own process group, against a proxy database the simulator keeps
writing to, with alert webhooks on a real local receiver that fails its first requests.

Then: scheduled extractions succeed and the builds the build sensor launches after them
republish ``warehouse.duckdb``; a run killed with SIGKILL in the middle of a step (daemon,
webserver, code servers and run worker, as an OOM kill or a power cut would) is marked failed by
run monitoring after the restart, its pool slot is freed, a pipeline-health alert goes out and
the next scheduled extraction and build succeed; in the end every alert reached each
destination exactly once, the warehouse holds exactly the source's rows, and the marts equal
those of one uninterrupted ``spendwh run`` on the same data. The latencies from a
request's ``startTime`` to its row in the warehouse and to its alert's delivery are printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.dagster_run import RunsFilter

from dagster_project.defs.pipeline.schedules import EXTRACTION_TAG
from dagster_project.lib.alerts.ledger import connect_ledger_readonly
from dagster_project.lib.duckdb import WRITER_POOL
from dagster_project.simulator.workload import rate_per_ms
from tests.deploy.units import (
    exec_argv,
    parse_unit,
    service_base_env,
    unescape,
    unit_environment,
)
from tests.experience.processes import Command, start_spendwh, wait_until_answers
from tests.ingest.helpers import insert_spend, ms, spend_row

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXTRACT_JOB = "extract_job"
BUILD_JOB = "build_job"
SCHEDULE = "spend_warehouse_schedule"
SCHEDULE_TAG = "dagster/schedule_name"
BUILD_SENSOR = "spend_warehouse_build_sensor"
SENSOR_TAG = "dagster/sensor_name"
VENV_BIN = Path(sys.executable).parent
FAILING_REQUESTS = 3  # the receiver answers 503 to its first requests
LIVE_REQUESTS_PER_MINUTE = 10.0  # simulated traffic at the time of the test
UNFINISHED = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
}


# --- a webhook receiver that fails first ------------------------------------------------------


@dataclass
class Delivery:
    path: str
    key: str | None
    body: bytes
    status: int
    at: datetime


@dataclass
class Receiver:
    """Records every POST; answers 503 to the first ``failing`` ones, then 200."""

    failing: int
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, path: str, key: str | None, body: bytes) -> int:
        with self.lock:
            status = 503 if len(self.deliveries) < self.failing else 200
            self.deliveries.append(Delivery(path, key, body, status, datetime.now(UTC)))
            return status

    def accepted(self, path: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.path == path and d.status == 200]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    """A real HTTP receiver on 127.0.0.1 and its base URL."""
    state = Receiver(FAILING_REQUESTS)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = state.handle(self.path, self.headers.get("Idempotency-Key"), body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# --- the services, started as systemd would ---------------------------------------------------


def spendwh_deploy(home: Path, env_file: Path, env: dict[str, str], cwd: Path, port: int) -> None:
    """``spendwh deploy`` as an operator runs it: the web UI on ``port``, the docs on a free one."""
    deployed = subprocess.run(
        [
            *(str(VENV_BIN / "spendwh"), "deploy", str(home), "--env-file", str(env_file)),
            *("--port", str(port), "--docs-port", str(free_port())),
        ],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert deployed.returncode == 0, deployed.stderr


@dataclass
class Service:
    """One systemd unit written by ``spendwh deploy``, run as its own process group."""

    unit: Path
    log: Path
    process: subprocess.Popen | None = None

    def start(self, base_env: dict[str, str]) -> None:
        unit = parse_unit(self.unit)
        with self.log.open("a") as log:
            log.write(f"\n--- started {datetime.now(UTC):%H:%M:%S} ---\n")
            self.process = subprocess.Popen(
                exec_argv(unit),
                env=unit_environment(unit, base_env),
                cwd=unescape(unit["WorkingDirectory"][0]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group, then reap the main process."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # children left in the group

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def processes_of(home: Path) -> list[int]:
    """Pids of live processes whose environment has ``DAGSTER_HOME=home`` (not this one)."""
    marker = f"DAGSTER_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            found.append(int(entry.name))
    return found


def kill_processes_of(home: Path) -> list[int]:
    """SIGKILL every process of the deployment that outlived its process group."""
    pids = processes_of(home)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- reading the instance, the warehouse and the ledger ---------------------------------------


def scheduled_runs(instance: dg.DagsterInstance) -> list:
    """Run records of the daemon's pipeline runs, oldest first: the schedule's extractions and
    the builds the build sensor launched after them."""
    extractions = instance.get_run_records(
        filters=RunsFilter(job_name=EXTRACT_JOB, tags={SCHEDULE_TAG: SCHEDULE})
    )
    builds = instance.get_run_records(
        filters=RunsFilter(job_name=BUILD_JOB, tags={SENSOR_TAG: BUILD_SENSOR})
    )
    return sorted([*extractions, *builds], key=lambda r: r.create_timestamp)


def run_table(records) -> str:
    """One line per run, for failure messages."""
    return "\n".join(
        f"  {r.dagster_run.run_id[:8]} {r.dagster_run.status.value:<9} created "
        f"{r.create_timestamp:%H:%M:%S} start {_clock(r.start_time)} end {_clock(r.end_time)}"
        for r in records
    )


def _clock(epoch: float | None) -> str:
    return "--:--:--" if epoch is None else f"{datetime.fromtimestamp(epoch, UTC):%H:%M:%S}"


def steps_in_progress(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    """Steps of ``run_id`` that started and have not finished."""
    kinds = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
        dg.DagsterEventType.STEP_SKIPPED,
    }
    started, finished = set(), set()
    for record in instance.get_records_for_run(run_id, of_type=kinds, limit=10_000).records:
        event = record.event_log_entry.dagster_event
        bucket = started if event.event_type == dg.DagsterEventType.STEP_START else finished
        bucket.add(event.step_key)
    return started - finished


def spend_watermark(instance: dg.DagsterInstance, run_id: str) -> datetime:
    """The ``watermark`` the run's raw/spend_logs materialization reported."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    for record in records:
        materialization = record.event_log_entry.dagster_event.step_materialization_data
        if materialization.materialization.asset_key == dg.AssetKey(["raw", "spend_logs"]):
            value = materialization.materialization.metadata["watermark"].value
            return datetime.fromisoformat(value).replace(tzinfo=None)
    raise AssertionError(f"run {run_id} has no raw/spend_logs materialization")


@dataclass(frozen=True)
class Published:
    """What one look at ``warehouse.duckdb`` saw."""

    mtime: float
    request_starts: dict[str, datetime]
    rows: int

    @property
    def newest(self) -> datetime | None:
        return max(self.request_starts.values(), default=None)


def look_at_warehouse(path: Path) -> Published | None:
    if not path.exists():
        return None
    mtime = path.stat().st_mtime
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute("select request_id, start_time from raw.spend_logs").fetchall()
    return Published(mtime, dict(rows), len(rows))


def ledger_rows(ledger: Path, sql: str) -> list[dict]:
    conn = connect_ledger_readonly(ledger)
    try:
        return [dict(row) for row in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def wait_for(check: Callable[[], object], timeout: float, explain: Callable[[], str]) -> object:
    """Poll ``check`` until it returns something truthy; fail with ``explain()`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f} s: {explain()}")


# Columns that depend on when a run evaluated, not on the data: when it ran, and the budget
# projections, which extrapolate from the time elapsed in the period at that moment.
CLOCK_COLUMNS = ("_extracted_at", "_built_at")


def mart_rows(path: Path, table: str) -> list[tuple]:
    """Every row of ``table`` without the columns that depend on the time of the run."""
    with duckdb.connect(str(path), read_only=True) as con:
        columns = [
            name
            for (name,) in con.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'main' and table_name = ? order by ordinal_position",
                [table],
            ).fetchall()
            if not name.endswith(CLOCK_COLUMNS)
        ]
        quoted = ", ".join(f'"{c}"' for c in columns)
        return sorted(con.execute(f"select {quoted} from main.{table}").fetchall(), key=repr)


def source_requests(source, watermark: datetime | None = None) -> dict[str, datetime]:
    """``request_id -> startTime`` of the source's spend logs (up to ``watermark``)."""
    where = "" if watermark is None else "where created_at <= %s"
    with source.connect() as conn:
        rows = conn.execute(
            f'select request_id, "startTime" from {source.table("SpendLogs")} {where}',
            [] if watermark is None else [watermark],
        ).fetchall()
    return dict(rows)


def summary(values: list[float]) -> str:
    if not values:
        return "none measured"
    return (
        f"n={len(values)} min {min(values):.1f} s, median {statistics.median(values):.1f} s, "
        f"max {max(values):.1f} s"
    )


def requests_per_day_for_live_traffic() -> float:
    """A daily volume whose diurnal rate right now is about LIVE_REQUESTS_PER_MINUTE."""
    per_minute_at_10k = rate_per_ms(10_000, int(time.time() * 1000)) * 60_000
    return round(min(60_000.0, max(2_000.0, 10_000 * LIVE_REQUESTS_PER_MINUTE / per_minute_at_10k)))


# --- the test ---------------------------------------------------------------------------------


@pytest.mark.timeout(1500)
def test_deployed_pipeline_survives_a_kill_and_delivers_everything_once(
    make_source, dagster_postgres_url, receiver, tmp_path, monkeypatch, capsys
):
    receiver_state, receiver_url = receiver
    source = make_source()
    home = tmp_path / "dagster-home"
    warehouse_dir = tmp_path / "warehouse"
    warehouse = warehouse_dir / "warehouse.duckdb"
    ledger = warehouse_dir / "state" / "alerts.sqlite"
    env_file = tmp_path / "spendwh.env"
    env_file.write_text(
        "\n".join(
            [
                f"DATABASE_URL={source.url}",
                f"DAGSTER_POSTGRES_URL={dagster_postgres_url}",
                f"SPEND_WAREHOUSE_DIR={warehouse_dir}",
                "SPEND_WAREHOUSE_SCHEDULE=* * * * *",
                f"SPEND_ALERTS_WEBHOOK_URL={receiver_url}/hook",
                f"SPEND_ALERTS_SLACK_WEBHOOK_URL={receiver_url}/slack",
                "SPEND_ALERTS_RETRY_BASE_SECONDS=2",
                "",
            ]
        )
    )
    # What systemd gives a service: no virtual environment, no variables of this shell.
    base_env = service_base_env()
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_postgres_url)  # for this test's instance
    figures: dict[str, object] = {}
    simulator: Command | None = None
    services: list[Service] = []
    instance: dg.DagsterInstance | None = None
    try:
        # 1. Two days of traffic, then live traffic for the rest of the test.
        requests_per_day = requests_per_day_for_live_traffic()
        simulator = start_spendwh(
            *("simulate", "--days", "2", "--requests-per-day", str(requests_per_day)),
            *("--live", "--flush-interval", "2"),
            env={**base_env, "DATABASE_URL": source.url},
            cwd=tmp_path,
        )
        simulator.wait_for(re.compile(r"live: appending"), timeout=300)
        live_since = datetime.now(UTC).replace(tzinfo=None)
        figures["requests_per_day"] = requests_per_day
        figures["history_rows"] = len(source_requests(source))

        # 2. The deployment, as an operator writes it.
        port = free_port()
        spendwh_deploy(home, env_file, base_env, tmp_path, port)
        daemon = Service(home / "systemd" / "spendwh-daemon.service", tmp_path / "daemon.log")
        webserver = Service(
            home / "systemd" / "spendwh-webserver.service", tmp_path / "webserver.log"
        )
        services = [daemon, webserver]
        for service in services:
            service.start(base_env)
        wait_until_answers(f"http://127.0.0.1:{port}/server_info", timeout=180)
        instance = dg.DagsterInstance.from_config(str(home))

        def explain(what: str) -> Callable[[], str]:
            return lambda: (
                f"{what}\nscheduled runs:\n{run_table(scheduled_runs(instance))}\n"
                f"daemon log tail:\n{daemon.tail()}"
            )

        def successes() -> list:
            """The successful builds: each one publishes the warehouse."""
            return [
                r
                for r in scheduled_runs(instance)
                if r.dagster_run.job_name == BUILD_JOB
                and r.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            ]

        # 3. Two scheduled runs succeed, the second republishing the warehouse with newer rows.
        first_seen: dict[str, float] = {}  # request_id -> when the warehouse first held it
        looks: list[Published] = []

        def observe() -> Published:
            seen = look_at_warehouse(warehouse)
            assert seen is not None, f"{warehouse} was not published:\n{daemon.tail()}"
            for request_id in seen.request_starts.keys() - first_seen.keys():
                first_seen[request_id] = seen.mtime
            looks.append(seen)
            return seen

        def wait_for_success_after(count: int, timeout: float, what: str) -> list:
            return wait_for(
                lambda: len(successes()) > count and successes(), timeout, explain(what)
            )

        def cross_a_budget() -> tuple[str, datetime]:
            """Insert a request that crosses a key's max budget now; its alert's latency is
            measured (the token and the request's startTime). The request alone exceeds the
            max: the period current at the build's evaluation instant may have ended since (an
            hourly budget at the top of the hour, a daily one at midnight), and in the next
            period the headroom left in the last one may not reach the max."""
            with duckdb.connect(str(warehouse), read_only=True) as con:
                budget = con.execute(
                    "select p.entity_id, p.max_budget_usd, k.user_id, "
                    "k.team_id from fct_budget_periods as p join raw.verification_tokens as k "
                    "on k.token = p.entity_id where p.entity_type = 'key' and p.is_current_period "
                    "and p.max_budget_usd is not null and p.max_budget_crossed_at is null "
                    "order by p.max_budget_usd limit 1"
                ).fetchone()
            assert budget is not None, "no key with an uncrossed max budget in its current period"
            token, max_budget, key_user, key_team = budget
            crossing_start = ms(datetime.now(UTC).replace(tzinfo=None))
            insert_spend(
                source,
                [
                    spend_row(
                        "deployed-budget-crossing",
                        crossing_start,
                        spend=float(max_budget) + 1.0,
                        api_key=token,
                        user=key_user or "",
                        team_id=key_team,
                    )
                ],
            )
            return token, crossing_start

        for number in range(2):
            done = wait_for_success_after(number, 360, f"scheduled run {number + 1} to succeed")
            seen = observe()
            if number == 0:  # the next run, uninterrupted, alerts on it
                token, crossing_start = cross_a_budget()
            if len(looks) > 1:
                before = looks[-2]
                assert seen.mtime > before.mtime, (
                    f"run {done[-1].dagster_run.run_id} did not republish {warehouse}"
                )
                assert seen.newest > before.newest, (
                    f"the warehouse's newest request did not move after run "
                    f"{done[-1].dagster_run.run_id}: {before.newest} -> {seen.newest}"
                )
        failed = dg.DagsterRunStatus.FAILURE
        failures = [r for r in scheduled_runs(instance) if r.dagster_run.status == failed]
        assert not failures, explain("scheduled runs failed before any kill")()

        # 4. Kill everything while a run is inside a step, as an OOM kill would.
        def run_inside_a_step():
            for record in scheduled_runs(instance):
                run = record.dagster_run
                if run.status == dg.DagsterRunStatus.STARTED:
                    steps = steps_in_progress(instance, run.run_id)
                    if steps:
                        return run.run_id, steps
            return None

        killed_run, killed_steps = wait_for(
            run_inside_a_step, 180, explain("a run to be inside a step")
        )
        for service in services:
            service.kill()
        leftovers = kill_processes_of(home)
        killed_at = datetime.now(UTC)
        time.sleep(1)
        assert processes_of(home) == [], f"processes survived SIGKILL: {processes_of(home)}"
        figures["killed"] = f"run {killed_run[:8]} in {sorted(killed_steps)}; "
        figures["killed"] += f"{len(leftovers)} processes outside the two groups"
        assert instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.STARTED

        # While the services are down the simulator stops: the first run after the restart must
        # find every row (those since the last publish make it publish newer data than before).
        wait_for(
            lambda: max(source_requests(source).values()) > looks[-1].newest,
            120,
            lambda: f"no request newer than {looks[-1].newest} arrived:\n{simulator.transcript()}",
        )
        simulator.stop()
        for service in services:
            service.start(base_env)
        restarted = time.time()
        wait_until_answers(f"http://127.0.0.1:{port}/server_info", timeout=180)

        # Run monitoring marks the dead run failed ...
        def worker_verdict() -> str:
            run = instance.get_run_by_id(killed_run)
            verdict = instance.run_launcher.check_run_worker_health(run)
            return (
                f"run monitoring to mark the killed run {killed_run} FAILURE; "
                f"{type(instance.run_launcher).__name__}.check_run_worker_health says "
                f"{verdict.status.value}: {verdict.msg}"
            )

        wait_for(
            lambda: instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.FAILURE,
            180,
            lambda: explain(worker_verdict())(),
        )
        figures["killed run marked failed after restart (s)"] = round(time.time() - restarted, 1)
        # ... and a run created after the restart succeeds and republishes.
        before = looks[-1]

        def success_after_restart():
            return [r for r in successes() if r.create_timestamp.timestamp() > restarted]

        [final, *_] = wait_for(success_after_restart, 420, explain("a run after the restart"))
        seen = observe()
        assert seen.mtime > before.mtime, f"{warehouse} was not republished after the restart"
        assert seen.newest > before.newest, "no newer request in the warehouse after the restart"
        claimed = instance.event_log_storage.get_concurrency_info(WRITER_POOL).claimed_slots
        assert killed_run not in {slot.run_id for slot in claimed}, "the dead run holds a slot"

        # Every queued message reached each destination once (retries after the 503s).
        def outbox_drained():
            rows = ledger_rows(ledger, "select * from outbox")
            return rows and all(r["status"] == "sent" for r in rows) and rows

        outbox = wait_for(
            outbox_drained,
            180,
            lambda: (
                f"outbox not drained: {ledger_rows(ledger, 'select * from outbox')}\n"
                f"{daemon.tail()}"
            ),
        )
        assert len(receiver_state.deliveries) > len(outbox), "no delivery was retried"
        assert [d.status for d in receiver_state.deliveries[:FAILING_REQUESTS]] == [503] * 3
        for destination, path in (("webhook", "/hook"), ("slack", "/slack")):
            accepted = receiver_state.accepted(path)
            keys = Counter(d.key for d in accepted)
            assert set(keys) == {r["message_id"] for r in outbox if r["destination"] == destination}
            # One copy is admitted where lib/alerts/delivery.py admits it: the kill fell after the
            # receiver accepted a request and before the sender recorded it sent, so the next
            # sender sends it again, same key and body (a receiver drops it by Idempotency-Key).
            for key in [k for k, count in keys.items() if count > 1]:
                copies = [d for d in accepted if d.key == key]
                assert len(copies) == 2, f"delivered {len(copies)} times to {destination}: {key}"
                first, again = copies
                assert killed_at - timedelta(seconds=30) < first.at < killed_at <= again.at, (
                    f"delivered twice to {destination}, not across the kill: {key} at "
                    f"{first.at} and {again.at}, killed at {killed_at}"
                )
                assert first.body == again.body, f"a copy with another body to {destination}"
                figures[f"resent across the kill to {destination}"] = key
            bodies = {d.body: d.key for d in accepted}
            assert len(bodies) == len(keys), f"one message, several bodies to {destination}"
        alerts = ledger_rows(ledger, "select * from alerts")
        queued = {a["alert_id"] for a in alerts if a["notification"] == "queued"}
        assert {r["message_id"] for r in outbox if r["kind"] == "budget_alert"} == queued
        history = {a["alert_id"] for a in alerts if a["notification"] == "history"}
        assert not history & {d.key for d in receiver_state.deliveries}, "history was sent"
        health = ledger_rows(ledger, "select * from health_events")
        crash_alerts = [
            h
            for h in health
            if datetime.fromisoformat(h["first_seen_at"]) >= killed_at
            and f"run of {instance.get_run_by_id(killed_run).job_name} failed" in h["message"]
        ]
        assert crash_alerts, f"no pipeline-health alert for the killed run: {health}"
        for event in crash_alerts:
            assert {r["destination"] for r in outbox if r["message_id"] == event["event_id"]} == {
                "webhook",
                "slack",
            }

        # The warehouse holds the source's rows up to the last watermark, each once.
        watermark = spend_watermark(instance, final.dagster_run.tags[EXTRACTION_TAG])
        expected = source_requests(source, watermark)
        with duckdb.connect(str(warehouse), read_only=True) as con:
            total, distinct = con.execute(
                "select count(*), count(distinct request_id) from raw.spend_logs"
            ).fetchone()
        assert total == distinct, f"{total - distinct} duplicate request_ids in the warehouse"
        assert set(seen.request_starts) == set(expected), (
            f"warehouse vs source up to {watermark}: "
            f"{len(set(expected) - set(seen.request_starts))} missing, "
            f"{len(set(seen.request_starts) - set(expected))} extra"
        )
        assert set(expected) == set(source_requests(source)), "rows after the final watermark"

        # The marts equal one uninterrupted run on the same data, evaluated at the same instant.
        with duckdb.connect(str(warehouse), read_only=True) as con:
            (evaluated_at,) = con.execute(
                "select distinct evaluated_at from main.fct_budget_periods"
            ).fetchone()
        fresh = tmp_path / "uninterrupted"
        fresh.mkdir()
        uninterrupted = subprocess.run(
            [str(VENV_BIN / "spendwh"), "run"],
            env={
                **base_env,
                "DATABASE_URL": source.url,
                "SPEND_WAREHOUSE_DIR": str(fresh),
                "SPEND_WAREHOUSE_BUDGET_AS_OF": evaluated_at.isoformat(),
            },
            cwd=fresh,
            capture_output=True,
            text=True,
            check=False,
        )
        assert uninterrupted.returncode == 0, uninterrupted.stdout + uninterrupted.stderr
        for mart in ("fct_spend_daily", "fct_spend_by_tag_daily", "fct_budget_periods"):
            deployed_rows = mart_rows(warehouse, mart)
            assert deployed_rows == mart_rows(fresh / "warehouse.duckdb", mart), mart
        assert deployed_rows

        # Nothing is left unfinished behind the last success.
        latest = successes()[-1]
        stuck = [
            r
            for r in scheduled_runs(instance)
            if r.dagster_run.status in UNFINISHED and r.create_timestamp < latest.create_timestamp
        ]
        assert not stuck, explain(f"runs stuck behind {latest.dagster_run.run_id}")()

        # The figures.
        crossing_alerts = {
            a["alert_id"]
            for a in alerts
            if a["entity_id"] == token and a["alert_type"] == "max_budget"
        }
        crossing = [
            d for d in receiver_state.deliveries if d.status == 200 and d.key in crossing_alerts
        ]
        assert {d.path for d in crossing} == {"/hook", "/slack"}, "the crossing was not alerted"
        when = "uninterrupted" if all(d.at < killed_at for d in crossing) else "across the kill"
        figures[f"startTime -> alert delivered, {when} (s)"] = summary(
            [(d.at.replace(tzinfo=None) - crossing_start).total_seconds() for d in crossing]
        )
        latencies: dict[bool, list[float]] = {True: [], False: []}  # published before the kill?
        for rid, start in looks[-1].request_starts.items():
            if start >= live_since:
                published = first_seen[rid]
                latency = published - start.replace(tzinfo=UTC).timestamp()
                latencies[published < killed_at.timestamp()].append(latency)
        for before_kill, label in ((True, "uninterrupted"), (False, "across the kill")):
            name = f"startTime -> row in warehouse.duckdb, {label} (s)"
            figures[name] = summary(latencies[before_kill])
        durations = [
            r.end_time - r.start_time
            for r in successes()
            if r.start_time is not None and r.end_time is not None
        ]
        figures["successful scheduled run duration (s)"] = summary(durations)
        figures["runs"] = Counter(r.dagster_run.status.value for r in scheduled_runs(instance))
        figures["deliveries"] = f"{len(receiver_state.deliveries)} requests, "
        figures["deliveries"] += f"{len(outbox)} messages x destinations"
        with capsys.disabled():
            print("\ndeployed pipeline figures:")
            for name, value in figures.items():
                print(f"  {name}: {value}")
        (tmp_path / "figures.json").write_text(json.dumps(figures, default=str, indent=2))
    finally:
        for service in services:
            service.kill(signal.SIGTERM)
        kill_processes_of(home)
        if simulator is not None:
            simulator.stop()
        if instance is not None:
            instance.dispose()
