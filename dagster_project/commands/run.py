"""``spendwh run``: run the pipeline once, in this process, and print its progress.

Validates the configuration and the source first (one-line errors), then does what the schedule
and the build sensor do, with the same jobs, assets, checks, hooks and resources, on the
persistent Dagster instance the UI and the daemon use: ``extract_job``, then, when the sensor's
decision (:func:`~dagster_project.defs.pipeline.schedules.build_due`) says a build is due,
``build_job`` (dbt models, alerts, publish of ``warehouse.duckdb``). It prints one line per asset
and check as they complete. A run from here, the UI or the schedule leaves the same warehouse
and alert ledger.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from dagster_project.lib.postgres import inspect_source, redact
from dagster_project.settings import ConfigError, load_settings

ROLLBACK_JOB = "spend_warehouse_rollback_job"
EXTRACT_JOB = "extract_job"
BUILD_JOB = "build_job"
LOUD_CHECK_PREFIXES = ("raw/", "fct_budget_alerts:")
SHOWN_METADATA = ("status", "rows_read", "rows_stored", "dagster/row_count", "watermark")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="extract, model and alert once (in process), then publish the warehouse"
    )
    parser.add_argument(
        "--rollback",
        action="store_true",
        help="also re-read the last days of spend logs (repairs what reconciliation found)",
    )
    parser.add_argument(
        "--extract-only",
        action="store_true",
        help="only the raw layer (extract_job): no dbt models, no alerts",
    )
    parser.set_defaults(func=run)


def job_name(args: argparse.Namespace) -> str:
    """The job a ``spendwh run`` invocation runs first (``build_job`` may follow it)."""
    if args.extract_only and args.rollback:
        raise ConfigError("--rollback and --extract-only cannot be combined; pick one.")
    return ROLLBACK_JOB if args.rollback else EXTRACT_JOB


def _metadata_text(metadata: dict[str, Any]) -> str:
    parts = []
    for key in SHOWN_METADATA:
        if key in metadata:
            value = getattr(metadata[key], "value", metadata[key])
            parts.append(f"{key.removeprefix('dagster/')}={value}")
    return " ".join(parts)


def format_event(event: Any) -> str | None:
    """One progress line for a Dagster event log entry, or None to stay quiet."""
    dagster_event = event.dagster_event
    if dagster_event is None:
        return f"  {event.step_key or ''}: {event.user_message}" if event.step_key else None
    kind = dagster_event.event_type_value
    data = dagster_event.event_specific_data
    if kind == "ASSET_MATERIALIZATION":
        mat = data.materialization
        return f"ok    {mat.asset_key.to_user_string()} {_metadata_text(dict(mat.metadata))}"
    if kind == "ASSET_CHECK_EVALUATION":
        verdict = "pass" if data.passed else "FAIL"
        name = f"{data.asset_key.to_user_string()}:{data.check_name}"
        if data.passed and not name.startswith(LOUD_CHECK_PREFIXES):
            return None  # the many passing dbt tests are counted in the summary instead
        detail = f" ({data.description})" if data.description else ""
        return f"{verdict}  {name}{detail}"
    if kind == "STEP_FAILURE":
        error = data.error
        while error is not None and error.cause is not None:  # the user's error, not the wrapper
            error = error.cause
        message = error.message.strip().splitlines()[0] if error else "unknown error"
        return f"ERROR {dagster_event.step_key}: {message}"
    if kind == "STEP_UP_FOR_RETRY":
        return f"retry {dagster_event.step_key}"
    if kind == "STEP_SKIPPED":
        return f"skip  {dagster_event.step_key}"
    return None


def run(args: argparse.Namespace) -> int:
    from dagster_project.lib.demo import no_source_message, resolve_source

    settings = resolve_source(load_settings())
    if settings.database_url is None:
        raise ConfigError(no_source_message(settings))
    inspect_source(settings.database_url, settings.table_prefix)
    print(
        f"spendwh run: source {redact(settings.database_url)}, warehouse {settings.warehouse_dir}"
    )

    import logging

    from dagster_project.definitions import defs
    from dagster_project.defs.pipeline.schedules import build_due
    from dagster_project.defs.warehouse.assets import WAREHOUSE_KEY
    from dagster_project.lib.run_launcher import in_process_run_tags

    logging.getLogger("alembic").setLevel(logging.WARNING)  # instance set-up chatter
    logging.getLogger("dagster").setLevel(logging.WARNING)  # progress is printed here instead
    started = time.monotonic()
    definitions = defs()
    loaded = time.monotonic()  # the rest is what a run costs beyond start-up
    run_id = str(uuid.uuid4())
    log_path = settings.state_dir / "logs" / f"run-{run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console = sys.stdout
    print(f"spendwh run: full log (dbt output included) in {log_path}")
    with (
        open_instance(settings) as instance,
        open(log_path, "w", encoding="utf-8") as log_file,
        contextlib.redirect_stdout(log_file),
    ):
        recover_runs(instance, settings, console)

        def execute(name: str, run_id: str, config: dict[str, Any]):
            instance.add_event_listener(run_id, lambda event: _progress(event, console, log_file))
            return definitions.resolve_job_def(name).execute_in_process(
                instance=instance,
                run_id=run_id,
                raise_on_error=False,
                run_config=config,
                tags=in_process_run_tags(),
            )

        results = [execute(job_name(args), run_id, run_config(args))]
        if results[0].success and job_name(args) == EXTRACT_JOB and not args.extract_only:
            decision = build_due(settings, datetime.now(UTC))
            _echo(f"spendwh run: {decision.reason}", console, log_file)
            if decision.build:
                results.append(execute(BUILD_JOB, str(uuid.uuid4()), run_config(args)))
    ended = time.monotonic()
    elapsed = ended - started
    print(summary(results))
    failed_results = [r for r in results if not r.success]
    if failed_results:
        failed = [
            e.step_key
            for r in failed_results
            for e in r.all_events
            if e.event_type_value == "STEP_FAILURE"
        ]
        print(
            f"spendwh run: FAILED after {elapsed:.1f} s (failed: {', '.join(failed) or 'run'}); "
            f"{settings.warehouse_path} was not updated; a pipeline-health alert was recorded",
            file=sys.stderr,
        )
        return 1
    published = any(
        e.asset_key == WAREHOUSE_KEY for r in results for e in r.get_asset_materialization_events()
    )
    if args.extract_only:
        outcome = f"raw layer only, {settings.warehouse_path} not republished"
    elif published:
        outcome = f"published {settings.warehouse_path}"
    else:
        outcome = f"nothing new: {settings.warehouse_path} is up to date"
    print(
        f"spendwh run: done in {elapsed:.1f} s ({ended - loaded:.1f} s after loading the "
        f"definitions); {outcome}"
    )
    return 0


def open_instance(settings):
    """The Dagster instance the UI uses too (``<state>/dagster``), so its runs show up there.

    ``DAGSTER_HOME``, when set, wins.
    """
    import dagster as dg

    from dagster_project.lib.dagster_instance import dagster_home, prepare_dagster_home

    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    home = prepare_dagster_home(dagster_home(settings))
    return dg.DagsterInstance.from_config(str(home))


def recover_runs(instance, settings, console) -> None:
    """Fail runs whose process died and free their pool slots, as the daemon would.

    Without a daemon (a laptop, cron) nothing else does it, and a killed run would hold the
    writer pool's slot forever; each recovered run opens a pipeline-health alert, because the
    run-failure sensor that would open it runs in the daemon too.
    """
    from datetime import UTC, datetime

    from dagster_project.lib.alerts.delivery import destination_names
    from dagster_project.lib.alerts.ledger import ledger_path, record_run_failure
    from dagster_project.lib.run_launcher import recover_dead_runs

    for dead in recover_dead_runs(instance):
        run = instance.get_run_by_id(dead)
        problem = record_run_failure(
            ledger_path(settings.state_dir),
            job_name=run.job_name,
            failed_steps=[],
            reason=f"run {dead} died (its process was killed) and was marked failed",
            destinations=destination_names(settings),
            now=datetime.now(UTC),
        )
        _echo(f"note  {problem.message}", console)


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """Quiet Dagster's console logger (progress is printed here) plus the job's own config."""
    from dagster_project.defs.pipeline.schedules import rollback_run_config

    config: dict[str, Any] = rollback_run_config() if args.rollback else {}
    config["loggers"] = {"console": {"config": {"log_level": "CRITICAL"}}}
    return config


def summary(results: list[Any]) -> str:
    """One line: how many assets materialized and how the checks went, over the runs."""
    materialized = sum(len(r.get_asset_materialization_events()) for r in results)
    checks = [c for r in results for c in r.get_asset_check_evaluations()]
    failed = sorted(
        f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed
    )
    text = f"summary: {materialized} assets materialized, {len(checks) - len(failed)} checks passed"
    return text + (f", {len(failed)} failed ({', '.join(failed)})" if failed else "")


CONSOLE_LINE_LIMIT = 400


def shorten(line: str | None, limit: int = CONSOLE_LINE_LIMIT) -> str | None:
    """``line`` cut to ``limit`` characters for the console (the run log keeps it whole)."""
    if line is None or len(line) <= limit:
        return line
    tail = " ... (whole line in the run log)"
    return line[: limit - len(tail)].rstrip() + tail


def _progress(event: Any, console, log_file) -> None:
    line = format_event(event)
    _echo(shorten(line), console)
    _echo(line, log_file)


def _echo(line: str | None, *streams) -> None:
    """Print one progress line to the console (and the run log)."""
    if line:
        for stream in streams or (sys.stdout,):
            print(line, file=stream, flush=True)
