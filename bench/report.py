"""Turning the figures into a printed table, JSON files and the committed ``bench/RESULTS.md``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"

MEMORY_LIMIT_MB = 500
# dbt models doing the work of the hand-written PostgreSQL rollups (bench/pg_rollups.py)
MART_PAIRS = (
    "fct_spend_daily",
    "fct_spend_by_tag_daily",
    "fct_errors_daily",
    "int_budget_spend_hourly",
    "int_budget_limit_crossings",
    "fct_budget_periods",
)
NOTHING_NEW_LIMIT_S = 3.0


@dataclass(frozen=True)
class Target:
    """One target of the issues and whether a size met it."""

    name: str
    value: float | None
    goal: str
    met: bool | None

    def text(self) -> str:
        if self.value is None:
            return f"{self.name}: not measured (goal {self.goal})"
        verdict = "met" if self.met else "MISSED"
        return f"{self.name}: {self.value:,.2f} (goal {self.goal}) {verdict}"


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def peak_memories(size: dict[str, Any]) -> dict[str, int]:
    """Peak RSS (MB) of every pipeline process measured at one size (not the peers)."""
    found = {
        "cold extract": _get(size, "extraction", "ours", "peak_rss_mb"),
        "nothing new": _get(size, "incremental", "nothing_new", "peak_rss_mb"),
        "nothing new (Dagster job)": _get(
            size, "incremental", "nothing_new_dagster", "peak_rss_mb"
        ),
        "1% new": _get(size, "incremental", "one_percent_new", "peak_rss_mb"),
        "dbt build DuckDB": _get(size, "rollups", "dbt_duckdb", "peak_rss_mb"),
        "whole run, cold": _get(size, "pipeline", "cold", "peak_rss_mb"),
        "whole run, nothing new": _get(size, "pipeline", "nothing_new", "peak_rss_mb"),
        "whole run, 1% new": _get(size, "pipeline", "one_percent_new", "peak_rss_mb"),
    }
    return {k: v for k, v in found.items() if v is not None}


def targets(size: dict[str, Any]) -> list[Target]:
    """The issues' targets evaluated on one size's figures."""

    def at_least(name: str, value: float | None, goal: float, unit: str = "x") -> Target:
        met = None if value is None else value >= goal
        return Target(name, value, f">= {goal:g}{unit}", met)

    memory = peak_memories(size)
    worst = max(memory.values()) if memory else None
    # the whole `spendwh run` with nothing new, less its start-up (imports and definitions)
    nothing_new = _get(size, "pipeline", "nothing_new", "beyond_startup_seconds")
    return [
        at_least(
            "extraction vs COPY (rows/s ratio)", _get(size, "extraction", "ours_vs_copy"), 0.85
        ),
        at_least("extraction vs dlt (rows/s ratio)", _get(size, "extraction", "ours_vs_dlt"), 2),
        Target(
            "peak memory of the pipeline's processes (MB)",
            worst,
            f"< {MEMORY_LIMIT_MB} MB",
            None if worst is None else worst < MEMORY_LIMIT_MB,
        ),
        Target(
            "whole nothing-new run beyond start-up (s)",
            nothing_new,
            f"< {NOTHING_NEW_LIMIT_S:g} s",
            None if nothing_new is None else nothing_new < NOTHING_NEW_LIMIT_S,
        ),
        at_least(
            "dbt build DuckDB vs same rollups on PostgreSQL",
            _get(size, "rollups", "duckdb_vs_postgres_direct"),
            10,
        ),
    ]


def _row(label: str, seconds: float | None, extra: str = "", rss: int | None = None) -> str:
    secs = "" if seconds is None else f"{seconds:10.2f}"
    mem = "" if rss is None else f"{rss:6d}"
    return f"| {label:<44} | {secs:>10} | {mem:>6} | {extra} |"


def _failed(build: dict[str, Any]) -> str:
    """A note on the dbt nodes that failed (tests), or nothing."""
    failed = build.get("failed_nodes") or []
    return f"; {len(failed)} node(s) FAILED: {', '.join(failed[:3])}" if failed else ""


def size_table(size: dict[str, Any]) -> list[str]:
    """Markdown table lines of one size's figures."""
    ex = size.get("extraction", {})
    inc = size.get("incremental", {})
    ro = size.get("rollups", {})
    lines = [
        f"#### {size['rows']:,} spend-log rows",
        "",
        "| measure | seconds | peak MB | throughput / notes |",
        "|---|---:|---:|---|",
    ]
    add = lines.append
    copy, ours, dlt = ex.get("copy"), ex.get("ours"), ex.get("dlt")
    if copy:
        add(
            _row(
                "COPY (same SELECT) TO STDOUT binary (limit)",
                copy["seconds"],
                f"{copy['rows_per_s']:,.0f} rows/s, {copy['mb_per_s']:.1f} MB/s of COPY output "
                f"({copy['bytes'] / 1e6:.0f} MB)",
                copy["peak_rss_mb"],
            )
        )
    if ours:
        add(
            _row(
                "our cold extract (lake + DuckDB)",
                ours["seconds"],
                f"{ours['rows_per_s']:,.0f} rows/s, {ours['copy_mb_per_s']:.1f} MB/s of COPY "
                f"bytes, {ours['parquet_mb']:.0f} MB Parquet; "
                f"{ex['ours_vs_copy']:.0%} of COPY",
                ours["peak_rss_mb"],
            )
        )
        add(
            _row(
                "  of which source -> Parquet lake",
                ours["read_seconds"],
                f"{ex['ours_lake_vs_copy']:.0%} of COPY",
            )
        )
        add(_row("  of which Parquet -> DuckDB raw", ours["load_seconds"]))
        add(_row("  process incl. Python start-up", ours["process_seconds"]))
    iceberg = ex.get("ours_iceberg")
    if iceberg:
        add(
            _row(
                "our cold extract, lake as Iceberg tables",
                iceberg["seconds"],
                f"local disk, SQLite catalog; source -> lake {iceberg['read_seconds']:.1f} s; "
                f"{ex['ours_iceberg_vs_copy']:.0%} of COPY",
                iceberg["peak_rss_mb"],
            )
        )
    iceberg_s3 = ex.get("ours_iceberg_s3")
    if iceberg_s3:
        add(
            _row(
                "our cold extract, Iceberg tables on S3",
                iceberg_s3["seconds"],
                "SeaweedFS on this machine (loopback), SQLite catalog; source -> lake "
                f"{iceberg_s3['read_seconds']:.1f} s; {ex['ours_iceberg_s3_vs_copy']:.0%} of COPY",
                iceberg_s3["peak_rss_mb"],
            )
        )
    elif "ours_iceberg_s3_error" in ex:
        reason = ex["ours_iceberg_s3_error"].splitlines()[0].replace("|", "/")
        add(_row("our cold extract, Iceberg tables on S3", None, f"NOT MEASURED: {reason}"))
    if dlt:
        add(
            _row(
                "dlt sql_table pyarrow -> Parquet",
                dlt["seconds"],
                f"{dlt['rows_per_s']:,.0f} rows/s, {dlt['parquet_mb']:.0f} MB Parquet; "
                f"ours is {ex['ours_vs_dlt']:.1f}x",
                dlt["peak_rss_mb"],
            )
        )
    nn = inc.get("nothing_new")
    if nn:
        add(
            _row(
                "nothing new (extract, in process)",
                nn["seconds"],
                f"+{nn['startup_seconds']:.1f} s process start-up",
                nn["peak_rss_mb"],
            )
        )
    dj = inc.get("nothing_new_dagster")
    if dj:
        add(
            _row(
                "nothing new (Dagster extract_job, 23 assets)",
                dj["seconds"],
                f"+{dj['startup_seconds']:.1f} s start-up and definitions",
                dj["peak_rss_mb"],
            )
        )
    one = inc.get("one_percent_new")
    if one:
        add(
            _row(
                "1% new rows (half late)",
                one["seconds"],
                f"{one['inserted']:,} inserted, {one['late']:,} late, "
                f"{one['rows_stored']:,} stored; cold was {inc['cold_seconds']:.1f} s",
                one["peak_rss_mb"],
            )
        )
    pipe = size.get("pipeline", {})
    whole = (
        ("cold", "whole `spendwh run`, cold (user's wait)"),
        ("nothing_new", "whole `spendwh run`, nothing new"),
        ("one_percent_new", "whole `spendwh run`, 1% new rows (half late)"),
    )
    for key, label in whole:
        m = pipe.get(key)
        if not m:
            continue
        if key == "cold":
            note = f"{m['vs_copy']:.1%} of COPY; extract, dbt build, alerts, publish"
        elif key == "nothing_new":
            note = "published again" if m["published"] else "dbt, alerts and publish skipped"
            if m.get("beyond_startup_seconds") is not None:
                note += f"; {m['beyond_startup_seconds']:.1f} s after loading the definitions"
        else:
            note = f"{m['inserted']:,} inserted; published: {m['published']}"
        add(_row(label, m["seconds"], note + " (process incl. start-up)", m["peak_rss_mb"]))
    pg = ro.get("postgres_direct")
    if pg:
        detail = ", ".join(f"{k} {v:.1f}" for k, v in pg["queries"].items())
        add(_row("rollup SQL on the proxy's PostgreSQL", pg["seconds"], detail))
    duck = ro.get("dbt_duckdb")
    if duck:
        add(
            _row(
                "dbt build on DuckDB (models + data tests)",
                duck["seconds"],
                f"process incl. dbt start-up; run phase {duck['run_seconds']:.1f} s "
                f"(node times: models {duck['models_seconds']:.1f} s, "
                f"tests {duck['tests_seconds']:.1f} s, 4 threads); "
                f"{ro['duckdb_vs_postgres_direct']:.1f}x faster than PostgreSQL "
                f"({ro['duckdb_run_vs_postgres_direct']:.1f}x run phase)"
                f"{_failed(duck)}",
                duck["peak_rss_mb"],
            )
        )
    if duck and duck.get("models"):
        paired = ", ".join(
            f"{name} {duck['models'][name]:.1f}" for name in MART_PAIRS if name in duck["models"]
        )
        add(_row("  DuckDB model times of the matching marts", None, paired))
    pgt = ro.get("dbt_postgres")
    if pgt:
        add(_row("raw layer copy DuckDB -> PostgreSQL", ro["pg_raw_copy"]["seconds"]))
        add(
            _row(
                "dbt build on the postgres target",
                pgt["seconds"],
                f"models {pgt['models_seconds']:.1f} s; DuckDB is "
                f"{ro['duckdb_vs_postgres_target']:.1f}x faster",
            )
        )
    lines.append("")
    lines += [f"- {t.text()}" for t in targets(size)]
    lines.append("")
    return lines


def scaling_lines(sizes: list[dict[str, Any]]) -> list[str]:
    """How the main costs grow between the smallest and the largest size."""
    if len(sizes) < 2:
        return []
    small, big = sizes[0], sizes[-1]
    factor = big["rows"] / small["rows"]
    lines = [
        f"#### Scaling: {small['rows']:,} -> {big['rows']:,} rows ({factor:g}x the data)",
        "",
        "| measure | small (s) | large (s) | growth |",
        "|---|---:|---:|---:|",
    ]
    for label, path in (
        ("COPY limit", ("extraction", "copy", "seconds")),
        ("our cold extract", ("extraction", "ours", "seconds")),
        ("our cold extract, Iceberg lake", ("extraction", "ours_iceberg", "seconds")),
        ("our cold extract, Iceberg on S3", ("extraction", "ours_iceberg_s3", "seconds")),
        ("dlt", ("extraction", "dlt", "seconds")),
        ("nothing new", ("incremental", "nothing_new", "seconds")),
        ("nothing new (Dagster job)", ("incremental", "nothing_new_dagster", "seconds")),
        ("1% new rows", ("incremental", "one_percent_new", "seconds")),
        ("whole run, cold", ("pipeline", "cold", "seconds")),
        ("whole run, nothing new", ("pipeline", "nothing_new", "seconds")),
        ("whole run, 1% new", ("pipeline", "one_percent_new", "seconds")),
        ("rollup SQL on PostgreSQL", ("rollups", "postgres_direct", "seconds")),
        ("dbt build on DuckDB", ("rollups", "dbt_duckdb", "seconds")),
        ("dbt build on postgres target", ("rollups", "dbt_postgres", "seconds")),
    ):
        a, b = _get(small, *path), _get(big, *path)
        if a and b:
            lines.append(f"| {label} | {a:.2f} | {b:.2f} | {b / a:.2f}x |")
    mem = [(k, peak_memories(small).get(k), v) for k, v in peak_memories(big).items()]
    lines += [
        "",
        "Peak memory (MB), small -> large: " + "; ".join(f"{k} {a} -> {b}" for k, a, b in mem if a),
        "",
    ]
    return lines


def render(run: dict[str, Any]) -> str:
    """The whole report as Markdown (printed, and the body of ``RESULTS.md``)."""
    m = run["machine"]
    load = run["load_average"]
    lines = [
        f"Run {run['started']} (commit {run['commit']}), {run['seconds'] / 60:.1f} min; "
        f"machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gb']} GB RAM, PostgreSQL "
        f"{m['postgresql']}, Python {m['python']}, {m['os']}; 1-minute load average during the "
        f"run: mean {load['mean']}, max {load['max']} (the machine was shared).",
        "",
    ]
    for size in run["sizes"]:
        lines += size_table(size)
    lines += scaling_lines(run["sizes"])
    return "\n".join(lines)


def write_json(run: dict[str, Any], stamp: str, directory: Path = RESULTS_DIR) -> Path:
    """``<directory>/<stamp>.json`` and ``latest.json``; returns the first."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(run, indent=1, default=str)
    path = directory / f"{stamp}.json"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path


RESULTS_HEADER = """# Benchmark results

Latest figures of `uv run python -m bench` (`make bench`); the JSON of every run is in
`bench/results/` (not committed). What is measured and how: `bench/__init__.py`.

Reproduce: PostgreSQL reachable at `BENCH_DATABASE_URL` (default
`postgresql://postgres@127.0.0.1:5432/postgres`; the harness creates and drops its own
`spendwh_bench_<rows>` databases, or starts an embedded server when none answers), then

    uv run python -m bench                              # 1 M rows
    uv run python -m bench --sizes 250000,1000000       # scaling pair
    uv run python -m bench --rows 5000000 --skip-dlt    # 5 M rows

"""


NOTES_MARKER = "## Notes"


def write_results_md(run: dict[str, Any]) -> Path:
    """Rewrite ``bench/RESULTS.md`` with the figures of ``run``, keeping its hand-written notes.

    Everything from the ``## Notes`` heading on is the analysis of the figures (why a target is
    missed, by how much); it survives re-runs.
    """
    notes = ""
    if RESULTS_MD.exists():
        old = RESULTS_MD.read_text()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER) :]
    body = RESULTS_HEADER + "## Figures\n\n" + render(run) + "\n"
    RESULTS_MD.write_text(body + ("\n" + notes if notes else ""))
    return RESULTS_MD
