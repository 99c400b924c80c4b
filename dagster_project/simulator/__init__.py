"""Proxy traffic simulator: a seeded population and workload written like the proxy writes it.

``simulate(url, prefix, seed=..., end=..., days=...)`` fills a proxy database (schema built by
:func:`dagster_project.lib.migrations.apply_migrations`, any prefix and version) with
organizations, teams, users, keys (some deleted, some rotated, a few capped: their requests over
budget refused), end users, memberships, budgets (a few edited mid-period) and model
deployments, and with spend logs and error logs flushed in the proxy's order. It
returns a :class:`SimulationResult` whose ``population`` carries every generated entity, its
budgets and its live counters, so tests can compute expected values independently of the rows.

Modules: :mod:`.catalog` (models, prices, failure kinds), :mod:`.population` (entities),
:mod:`.workload` (requests and flush order), :mod:`.budgets` (windows, sizing, counters),
:mod:`.rows` (row rendering), :mod:`.writer` (database writes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from dagster_project.lib.migrations import apply_migrations
from dagster_project.lib.postgres import connect
from dagster_project.settings import ConfigError
from dagster_project.simulator.budgets import (
    HOUR_MS,
    SpendLedger,
    epoch_ms,
    finalize,
    size_caps,
    tags_carried,
)
from dagster_project.simulator.catalog import FLUSH_INTERVAL_S
from dagster_project.simulator.daily import (
    DailyAggregates,
    DailyDifferences,
    apply_retention,
    counted,
    split_logged,
)
from dagster_project.simulator.population import Population, PopulationSpec, generate_population
from dagster_project.simulator.rows import (
    TextPlan,
    build_text_plan,
    error_log_columns,
    population_rows,
    spend_log_columns,
)
from dagster_project.simulator.workload import (
    Batch,
    BudgetGate,
    FlushClock,
    TrafficPlan,
    TrafficStream,
    batch_len,
    build_plan,
    concat,
    expected_key_spend,
    generate_requests,
    hourly_counts,
    rate_per_ms,
)
from dagster_project.simulator.writer import (
    ERROR_LOGS,
    SPEND_LOGS,
    ParallelCopier,
    TableShape,
    apply_counter_deltas,
    counter_deltas,
    insert_rows,
    table_shapes,
)

__all__ = [
    "DailyDifferences",
    "Population",
    "PopulationSpec",
    "SimulationResult",
    "default_end",
    "simulate",
]

Progress = Callable[[str], None]
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class SimulationResult:
    """What one simulation wrote."""

    population: Population
    start: datetime
    end: datetime
    spend_logs: int
    error_logs: int
    failures: int
    cache_hits: int
    pending_at_end: int
    load_seconds: float
    live_spend_logs: int = 0

    @property
    def rows_per_second(self) -> float:
        """Historical spend-log rows written per second of loading."""
        return self.spend_logs / self.load_seconds if self.load_seconds > 0 else 0.0


def default_end() -> datetime:
    """Now (naive UTC), truncated to the minute."""
    return datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _LogSink:
    """Renders flushed batches of spend logs (and their error logs), hands them to the copier,
    and keeps the tallies."""

    def __init__(
        self,
        copier: ParallelCopier,
        shapes: dict[str, TableShape],
        text: TextPlan,
        *,
        stamp_created: bool,
    ) -> None:
        self.copier, self.text = copier, text
        self.stamp_created = stamp_created and "created_at" in shapes[SPEND_LOGS].columns
        self.failures = self.cache_hits = 0

    @property
    def spend_logs(self) -> int:
        """Spend-log rows committed so far."""
        return self.copier.rows_written[SPEND_LOGS]

    @property
    def error_logs(self) -> int:
        """Error-log rows committed so far."""
        return self.copier.rows_written[ERROR_LOGS]

    def write(self, batch: Batch) -> None:
        """Queue one batch of rows in flush order (one transaction)."""
        if not batch_len(batch):
            return
        spend = spend_log_columns(batch, self.text, stamp_created=self.stamp_created)
        errors = error_log_columns(batch, self.text)
        self.copier.submit([(SPEND_LOGS, spend), (ERROR_LOGS, errors)])
        self.failures += int((batch["failure_kind"] >= 0).sum())
        self.cache_hits += int(batch["cache_hit"].sum())


def _prepare_schema(url: str, prefix: str, init_schema: bool) -> None:
    with connect(url, name="the proxy database") as conn:
        shapes = table_shapes(conn, prefix)
    if SPEND_LOGS in shapes:
        return
    if not init_schema:
        raise ConfigError(
            f"No table {prefix}{SPEND_LOGS} in the database; pass --init-schema to create the "
            "proxy schema, or set PROXY_TABLE_PREFIX to the prefix the proxy uses."
        )
    apply_migrations(url, prefix)


def simulate(
    database_url: str,
    prefix: str,
    *,
    seed: int = 42,
    end: datetime | None = None,
    days: float = 30.0,
    requests_per_day: float = 2000.0,
    rows: int | None = None,
    init_schema: bool = False,
    spec: PopulationSpec | None = None,
    live: bool = False,
    live_duration_s: float | None = None,
    batch_rows: int = 20_000,
    writers: int = 2,
    flush_interval_s: float = FLUSH_INTERVAL_S,
    progress: Progress | None = None,
    daily_differences: DailyDifferences | None = None,
) -> SimulationResult:
    """Simulate ``days`` of traffic ending at ``end`` into the proxy database at ``database_url``.

    ``rows`` (if given) is the number of requests to generate, else ``requests_per_day x days``;
    requests still queued in a proxy instance at ``end`` are not written (``pending_at_end``)
    unless ``live`` continues the stream. Deterministic for a given seed and explicit ``end``.
    Batches of about ``batch_rows`` rows are copied over ``writers`` connections.
    ``flush_interval_s`` is the proxy's ``proxy_batch_write_at`` (each flush adds 0-5 s jitter).
    The daily aggregate tables get the same requests as the spend logs, except where
    ``daily_differences`` parts them (retention, disabled spend logs, a lost flush).
    """
    if days < 0:
        raise ConfigError(f"--days must not be negative (got {days}); use e.g. --days 30.")
    say = progress or (lambda _msg: None)
    end = end or default_end()
    if end.tzinfo is not None:
        end = end.astimezone(UTC).replace(tzinfo=None)
    start = end - timedelta(days=days)
    _prepare_schema(database_url, prefix, init_schema)
    population = generate_population(seed, start, end, spec)
    plan = build_plan(population)
    total = int(rows if rows is not None else round(requests_per_day * days))
    chunks = hourly_counts(seed, epoch_ms(start), epoch_ms(end), total)
    hours = np.array([t0 // HOUR_MS for t0, _, _ in chunks], dtype=np.int64)
    population = size_caps(population, hours, expected_key_spend(plan, chunks))
    text = build_text_plan(population)
    ledger = SpendLedger.empty(
        start, end, len(population.keys), len(population.end_users), len(population.tags)
    )
    if flush_interval_s <= 0:
        raise ConfigError(f"flush interval must be positive (got {flush_interval_s}); use 10.")
    stream = TrafficStream(FlushClock(seed, interval_ms=int(flush_interval_s * 1000)))
    gate = BudgetGate(population.capped_keys, stream.clock, written_before_ms=epoch_ms(end))

    with psycopg.connect(database_url, autocommit=True) as conn:
        shapes = table_shapes(conn, prefix)
    began = reported = time.perf_counter()
    daily = _DailySink(DailyAggregates(text, seed, end), daily_differences)
    with ParallelCopier(database_url, prefix, shapes, workers=writers) as copier:
        logs = _LogSink(copier, shapes, text, stamp_created=True)
        buffered: list[Batch] = []
        for index, (t0, t1, n) in enumerate(chunks):
            rng = np.random.default_rng([seed, 1, epoch_ms(end), index])
            starts = np.sort(rng.integers(t0, t1, size=n))
            requests = generate_requests(rng, plan, starts, plan.active_keys(t0, t1))
            stream.add(gate.apply(requests))  # refused at authentication, before the queue
            buffered.append(stream.drain(t1))
            if sum(batch_len(b) for b in buffered) >= batch_rows:
                _flush(logs, ledger, population, concat(buffered), daily, gate)
                buffered = []
                if time.perf_counter() - reported >= PROGRESS_EVERY_S:
                    _report(say, logs.spend_logs, total, began)
                    reported = time.perf_counter()
        _flush(logs, ledger, population, concat(buffered), daily, gate)
    load_seconds = time.perf_counter() - began
    _report(say, logs.spend_logs, total, began)

    population = replace(
        population,
        capped_keys=tuple(
            replace(c, rejected=gate.rejected_written.get(c.key_index, 0))
            for c in population.capped_keys
        ),
    )
    population = finalize(population, ledger)
    with psycopg.connect(database_url) as conn:
        for table, table_rows in population_rows(population, prefix).items():
            if table in shapes:
                insert_rows(conn, prefix, shapes[table], table_rows)
        daily_rows = daily.aggregates.write(conn, prefix, shapes)
        deleted = apply_retention(conn, prefix, daily_differences)
        conn.commit()
    if daily_rows or deleted:
        say(f"daily tables: {daily_rows:,} rows; {deleted:,} spend logs deleted by retention")
    say(
        f"population: {len(population.organizations)} organizations, "
        f"{len(population.teams)} teams, {len(population.users)} users, "
        f"{len(population.keys)} keys ({len(population.deleted_keys)} deleted, "
        f"{len(population.rotations)} rotations), "
        f"{len(population.end_users)} end users, {len(population.tags)} tags, "
        f"{len(population.projects)} projects, "
        f"{len(population.budgets)} budgets ({len(population.limit_changes)} edited mid-period); "
        f"{population.rejected_requests:,} requests of {len(population.capped_keys)} capped keys "
        "refused for budget"
    )
    result = SimulationResult(
        population=population,
        start=start,
        end=end,
        spend_logs=logs.spend_logs,
        error_logs=logs.error_logs,
        failures=logs.failures,
        cache_hits=logs.cache_hits,
        pending_at_end=stream.pending,
        load_seconds=load_seconds,
    )
    if live:
        live_rows = _run_live(
            database_url,
            prefix,
            shapes,
            population,
            plan,
            text,
            stream,
            gate,
            seed,
            end,
            requests_per_day,
            live_duration_s,
            say,
        )
        result = replace(result, live_spend_logs=live_rows)
    return result


@dataclass(frozen=True)
class _DailySink:
    """The daily aggregate tables' side of each flush, and where they part from the logs."""

    aggregates: DailyAggregates
    differences: DailyDifferences | None

    def write(self, batch: Batch) -> Batch:
        """Count the batch into the daily tables; return its rows that get a spend log."""
        self.aggregates.add(counted(batch, self.differences))
        return split_logged(batch, self.differences)


def _flush(
    logs: _LogSink,
    ledger: SpendLedger,
    population: Population,
    batch: Batch,
    daily: _DailySink,
    gate: BudgetGate,
) -> None:
    if batch_len(batch):
        gate.count_written(batch)
        logs.write(daily.write(batch))
        ledger.add(batch["key"], batch["end_user"], batch["start_ms"], batch["spend"])
        carried = tags_carried(population, batch["key"], batch["tag_variant"], batch["extra_tag"])
        ledger.add_tags(carried, batch["start_ms"], batch["spend"])


def _report(say: Progress, written: int, total: int, began: float) -> None:
    elapsed = max(time.perf_counter() - began, 1e-9)
    say(f"spend logs: {written:,} / ~{total:,} rows written ({written / elapsed:,.0f} rows/s)")


def _run_live(
    database_url: str,
    prefix: str,
    shapes: dict[str, TableShape],
    population: Population,
    plan: TrafficPlan,
    text: TextPlan,
    stream: TrafficStream,
    gate: BudgetGate,
    seed: int,
    end: datetime,
    requests_per_day: float,
    duration_s: float | None,
    say: Progress,
    tick_s: float = 1.0,
) -> int:
    """Keep appending like a running proxy (real clock) until interrupted or ``duration_s``.

    ``created_at`` is left to the database default; after each flush the live ``spend``
    counters are incremented like the proxy's batched counter updates. The capped keys stay
    capped (every request is charged from now on: nothing ends the run).
    """
    rng = np.random.default_rng([seed, 4, _now_ms()])
    gate.written_before_ms = None
    now = _now_ms()
    previous = epoch_ms(end) if 0 <= now - epoch_ms(end) <= 600_000 else now
    deadline = time.monotonic() + duration_s if duration_s is not None else None
    say("live: appending spend logs like a running proxy; Ctrl-C to stop")
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        ParallelCopier(database_url, prefix, shapes, workers=1) as copier,
    ):
        logs = _LogSink(copier, shapes, text, stamp_created=False)
        try:
            while deadline is None or time.monotonic() < deadline:
                now = _now_ms()
                expected = rate_per_ms(requests_per_day, now) * max(now - previous, 0)
                count = int(rng.poisson(expected))
                starts = np.sort(rng.integers(previous, max(now, previous + 1), count))
                requests = generate_requests(rng, plan, starts, plan.active_keys(previous, now))
                stream.add(gate.apply(requests))
                batch = stream.drain(now + 1)
                if batch_len(batch):
                    logs.write(batch)
                    copier.wait()
                    carried = (
                        tags_carried(
                            population, batch["key"], batch["tag_variant"], batch["extra_tag"]
                        )
                        if "TagTable" in shapes
                        else None
                    )
                    deltas = counter_deltas(
                        population,
                        batch["key"],
                        batch["end_user"],
                        batch["spend"],
                        carried,
                        with_projects="ProjectTable" in shapes,
                    )
                    apply_counter_deltas(conn, prefix, deltas)
                    say(f"live: {logs.spend_logs:,} rows appended")
                previous = now
                pause = tick_s if deadline is None else min(tick_s, deadline - time.monotonic())
                time.sleep(max(pause, 0.0))
        except KeyboardInterrupt:
            say("live: interrupted")
        return logs.spend_logs
