"""``spendwh simulate``: fill a proxy database with simulated, deterministic traffic."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

from dagster_project.lib.postgres import redact
from dagster_project.settings import ConfigError, load_settings, validate_database_url
from dagster_project.settings import validate_prefix as check_prefix


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="write a simulated proxy population and traffic into a proxy database",
        description=(
            "Writes organizations, teams, users, keys, end users, budgets and model deployments, "
            "then spend logs and error logs flushed like several proxy instances write them. "
            "Deterministic for a given --seed and --end."
        ),
    )
    parser.add_argument("--database-url", help="proxy PostgreSQL URL (default: DATABASE_URL)")
    parser.add_argument("--prefix", help="table-name prefix (default: PROXY_TABLE_PREFIX)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument(
        "--end",
        type=parse_end,
        help="end of the simulated range, ISO timestamp in UTC (default: now, to the minute)",
    )
    parser.add_argument("--days", type=float, default=30.0, help="days of history (default: 30)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--requests-per-day",
        type=float,
        default=2000.0,
        help="average requests per day (default: 2000)",
    )
    size.add_argument("--rows", type=int, help="total requests to generate over --days")
    parser.add_argument(
        "--init-schema",
        action="store_true",
        help="apply the proxy migrations first if the SpendLogs table is missing",
    )
    parser.add_argument(
        "--live", action="store_true", help="afterwards keep appending like a running proxy"
    )
    parser.add_argument("--duration", type=float, help="with --live: stop after this many seconds")
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=10.0,
        help="seconds between flushes of one proxy instance, proxy_batch_write_at (default: 10)",
    )
    parser.add_argument(
        "--daily-differences",
        action="store_true",
        help=(
            "make the proxy's daily aggregate tables differ from the spend logs like a real "
            "deployment: spend logs deleted for the first tenth of the range (retention), 30 h "
            "with spend logs disabled from the middle, an hour of one instance's daily-table "
            "flushes lost at three quarters"
        ),
    )
    parser.set_defaults(func=run)


def parse_end(value: str) -> datetime:
    """An ISO timestamp as naive UTC (aware values are converted, naive ones taken as UTC)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--end {value!r} is not an ISO timestamp; use e.g. 2026-11-26T18:00:00"
        ) from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def run(args: argparse.Namespace) -> int:
    """Run the simulation and print a summary."""
    from dagster_project.simulator import DailyDifferences, default_end, simulate

    settings = load_settings()
    url = args.database_url or settings.database_url
    if url is None:
        raise ConfigError(
            "No database to simulate into; pass --database-url or set DATABASE_URL to the "
            "proxy's PostgreSQL URL."
        )
    validate_database_url(url)
    prefix = check_prefix(args.prefix) if args.prefix else settings.table_prefix
    if args.duration is not None and not args.live:
        raise ConfigError("--duration only applies to --live; add --live or drop --duration.")
    if args.rows is not None and args.rows < 0:
        raise ConfigError(f"--rows must not be negative (got {args.rows}).")

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    print(f"simulating into {redact(url)} with prefix {prefix!r}", file=sys.stderr)
    end = args.end or default_end()
    differences = (
        DailyDifferences.spread_over(end - timedelta(days=args.days), end)
        if args.daily_differences
        else None
    )
    result = simulate(
        url,
        prefix,
        seed=args.seed,
        end=end,
        days=args.days,
        requests_per_day=args.requests_per_day,
        rows=args.rows,
        init_schema=args.init_schema,
        live=args.live,
        live_duration_s=args.duration,
        flush_interval_s=args.flush_interval,
        progress=progress,
        daily_differences=differences,
    )
    print(
        f"simulated {result.start:%Y-%m-%d %H:%M} .. {result.end:%Y-%m-%d %H:%M} UTC: "
        f"{result.spend_logs:,} spend logs ({result.failures:,} failures, "
        f"{result.cache_hits:,} cache hits), {result.error_logs:,} error logs, "
        f"{result.rows_per_second:,.0f} rows/s"
        + (f"; live: {result.live_spend_logs:,} more" if args.live else "")
    )
    return 0
