"""``uv run python -m bench``: build a simulated source and benchmark the pipeline on it.

Options: ``--rows N`` (default 1,000,000) or ``--sizes A,B`` (the scaling pair, each measured in
full), ``--skip-dlt``, ``--skip-rollups``, ``--skip-postgres-target``, ``--keep`` (keep the
databases and warehouses), ``--reuse-source`` (keep the simulated databases and reuse them),
``--results-dir``, ``--no-results-md``. The server is ``BENCH_DATABASE_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``) or, when that does not answer, an embedded
one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from bench.harness import DEFAULT_SERVER, LoadSampler, git_revision, machine, resolve_server
from bench.report import RESULTS_DIR, render, write_json, write_results_md
from bench.suite import Options, run_size

MIN_ROWS = 1_000


def parse_sizes(text: str) -> list[int]:
    """``"250000,1000000"`` -> ``[250000, 1000000]`` (ascending); a clear error otherwise."""
    try:
        sizes = sorted(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--sizes must be comma-separated row counts like 250000,1000000 (got {text!r})"
        ) from exc
    if not sizes or min(sizes) < MIN_ROWS:
        raise argparse.ArgumentTypeError(
            f"--sizes needs row counts of at least {MIN_ROWS} (got {text!r})"
        )
    return sizes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    size = p.add_mutually_exclusive_group()
    size.add_argument("--rows", type=int, default=1_000_000, help="spend-log rows (default 1M)")
    size.add_argument("--sizes", type=parse_sizes, help="several sizes, e.g. 250000,1000000")
    p.add_argument(
        "--server",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER),
        help="PostgreSQL server URL (default: BENCH_DATABASE_URL or %(default)s)",
    )
    p.add_argument("--skip-dlt", action="store_true", help="do not run the dlt comparison")
    p.add_argument("--skip-rollups", action="store_true", help="no dbt / PostgreSQL rollups")
    p.add_argument(
        "--skip-postgres-target", action="store_true", help="no dbt build on the postgres target"
    )
    p.add_argument(
        "--skip-pipeline", action="store_true", help="no whole `spendwh run` measurements"
    )
    p.add_argument("--keep", action="store_true", help="keep the benchmark databases and files")
    p.add_argument(
        "--reuse-source",
        action="store_true",
        help="keep each size's simulated database and reuse it when a later run finds it",
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where the JSON files go (default: bench/results)",
    )
    p.add_argument("--no-results-md", action="store_true", help="do not rewrite bench/RESULTS.md")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    sizes = args.sizes or [args.rows]
    if min(sizes) < MIN_ROWS:
        parser().error(f"--rows must be at least {MIN_ROWS}")
    started = datetime.now(UTC)
    server = resolve_server(args.server, Path.home() / ".cache" / "spendwh-bench")
    postgres_target = not (args.skip_postgres_target or args.skip_rollups)
    if postgres_target and not urlsplit(server).hostname:
        print("the dbt postgres target needs a TCP server; skipping it on the embedded one")
        postgres_target = False
    opts = Options(
        server=server,
        keep=args.keep,
        reuse_source=args.reuse_source,
        dlt=not args.skip_dlt,
        rollups=not args.skip_rollups,
        postgres_target=postgres_target,
        pipeline=not args.skip_pipeline,
    )
    began = time.monotonic()
    with LoadSampler() as load:
        results = [run_size(rows, opts, lambda m: print(m, flush=True)) for rows in sizes]
    run = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": time.monotonic() - began,
        "commit": git_revision(),
        "machine": machine(server),
        "load_average": load.summary(),
        "options": {k: v for k, v in vars(args).items() if k != "server"},
        "sizes": results,
    }
    print()
    print(render(run))
    path = write_json(run, started.strftime("%Y%m%dT%H%M%SZ"), args.results_dir)
    print(f"wrote {path} and latest.json")
    if not args.no_results_md:
        print(f"wrote {write_results_md(run)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
