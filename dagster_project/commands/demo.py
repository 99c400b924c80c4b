"""``spendwh demo``: the README's main command.

With ``DATABASE_URL`` set it runs the pipeline against that proxy database. Without it, it starts
an embedded PostgreSQL, creates the proxy schema from the upstream migrations, simulates 30 days of
traffic (only the first time), runs the whole pipeline once and prints a summary.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dagster_project.lib.postgres import redact
from dagster_project.settings import load_settings

DEMO_DAYS = 30
DEMO_REQUESTS_PER_DAY = 6000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the pipeline against DATABASE_URL, or against a simulated proxy if unset",
    )
    parser.add_argument("--days", type=float, default=DEMO_DAYS, help="days of simulated traffic")
    parser.add_argument(
        "--requests-per-day",
        type=float,
        default=DEMO_REQUESTS_PER_DAY,
        help="average simulated requests per day",
    )
    parser.add_argument("--seed", type=int, default=42, help="simulation seed")
    parser.set_defaults(func=run)


def _step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def run(args: argparse.Namespace) -> int:
    from dagster_project.commands import run as run_command
    from dagster_project.lib.demo import ensure_demo_source

    settings = load_settings()
    started = time.monotonic()
    if settings.database_url is None:
        _step("Starting the demo proxy database (embedded PostgreSQL)")
        demo = ensure_demo_source(settings)
        if demo.spend_log_rows:
            print(f"reusing the demo proxy: {demo.spend_log_rows:,} spend-log rows already there")
        else:
            from dagster_project.simulator import simulate

            _step(f"Simulating {args.days:g} days of proxy traffic")
            result = simulate(
                demo.url,
                settings.table_prefix,
                seed=args.seed,
                days=args.days,
                requests_per_day=args.requests_per_day,
                progress=lambda msg: print(f"  {msg}", flush=True),
            )
            print(
                f"  wrote {result.spend_logs:,} spend logs and {result.error_logs:,} error logs "
                f"({result.rows_per_second:,.0f} rows/s)"
            )
    else:
        _step(f"Using your proxy database {redact(settings.database_url)} (read-only)")

    _step("Running the pipeline: extract, dbt build, alerts")
    code = run_command.run(argparse.Namespace(rollback=False, extract_only=False))
    if code != 0:
        return code
    _step(f"Done in {time.monotonic() - started:.0f} s")
    print(summary(settings.warehouse_path))
    return 0


def _table(conn, name: str) -> str | None:
    row = conn.execute(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = ? "
        "ORDER BY table_schema = 'main' DESC LIMIT 1",
        [name],
    ).fetchone()
    return f'"{row[0]}"."{name}"' if row else None


def _rows(conn, sql: str) -> list[tuple]:
    return conn.execute(sql).fetchall()


def summary(warehouse: Path) -> str:
    """A short text summary of the published warehouse and where to look next."""
    from dagster_project.lib.duckdb import connect_reader

    lines: list[str] = []
    with connect_reader(warehouse) as conn:
        spend_logs = _table(conn, "spend_logs")
        daily = _table(conn, "fct_spend_daily")
        teams = _table(conn, "dim_teams")
        alerts = _table(conn, "fct_budget_alerts")
        if spend_logs:
            n, first, last = _rows(
                conn, f"SELECT count(*), min(start_time), max(start_time) FROM {spend_logs}"
            )[0]
            lines.append(f"Spend logs in the warehouse: {n:,} requests from {first} to {last}")
        if daily and teams:
            lines.append("\nSpend by team (USD):")
            for alias, spend in _rows(
                conn,
                f"SELECT coalesce(t.team_alias, d.team_id, '(no team)'), sum(d.spend_usd) "
                f"FROM {daily} AS d LEFT JOIN {teams} AS t ON t.team_id = d.team_id "
                "GROUP BY 1 ORDER BY 2 DESC LIMIT 8",
            ):
                lines.append(f"  {alias:<32} {spend:>14,.2f}")
        if daily:
            lines.append("\nSpend by model group (USD):")
            for model, spend in _rows(
                conn,
                f"SELECT coalesce(model_group, '(unknown)'), sum(spend_usd) FROM {daily} "
                "GROUP BY 1 ORDER BY 2 DESC LIMIT 8",
            ):
                lines.append(f"  {model:<32} {spend:>14,.2f}")
        if alerts:
            counts = _rows(conn, f"SELECT alert_type, count(*) FROM {alerts} GROUP BY 1 ORDER BY 1")
            total = sum(c for _, c in counts)
            detail = ", ".join(f"{c} {t}" for t, c in counts) or "none"
            lines.append(f"\nBudget alerts raised: {total} ({detail})")
    lines += [
        "",
        "Next:",
        "  uv run spendwh ui        # Dagster UI on http://127.0.0.1:3000",
        "  uv run spendwh docs      # dbt docs site on http://127.0.0.1:8080",
        "  uv run spendwh alerts    # open budget alerts",
        f"  uvx --from duckdb-cli duckdb -readonly {warehouse}",
        "  uv run --with jupyterlab jupyter lab notebooks/",
    ]
    return "\n".join(lines)
