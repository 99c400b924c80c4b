"""Plumbing of the benchmark: the server, measured subprocesses, the machine, the load average.

Peak memory of a measured thing is the maximum resident set size of its process tree as the
kernel reports it on ``wait4``. A child started directly by the harness would inherit the
harness's own peak in that figure (Linux carries the forking process's RSS high-water mark
through ``fork``/``vfork`` + ``exec`` into the child's ``ru_maxrss``; the harness holds the
simulator's buffers), so every measured command is started by a tiny launcher process
(:data:`LAUNCHER`, about 10 MB) that forks, execs the command, and reports the ``wait4`` figure of
that grandchild: the floor is the launcher's size, not the harness's.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.extract import REPO, parse_result
from dagster_project.lib.postgres import (
    create_database,
    drop_database,
    redact,
    start_embedded_server,
)
from dagster_project.settings import DBT_PROJECT_DIR

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Measured:
    """One measured process: wall seconds, peak RSS (MB) and the JSON it printed last."""

    seconds: float
    peak_rss_mb: int
    result: dict[str, Any] = field(default_factory=dict)


LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(
    argv: list[str], env: dict[str, str] | None = None, *, check: bool = True
) -> tuple[float, int, str]:
    """Run ``argv`` through :data:`LAUNCHER`; return wall seconds, peak RSS (MB) and stdout.

    Raises ``RuntimeError`` with the tail of stderr and stdout when the command fails, unless
    ``check`` is false (the caller then judges the outcome from what the command wrote).
    """
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        rss_file, out_file, err_file = (Path(tmp) / n for n in ("maxrss", "stdout", "stderr"))
        command = [sys.executable, "-S", "-c", LAUNCHER, str(rss_file), *argv]
        with out_file.open("wb") as out, err_file.open("wb") as err:
            began = time.monotonic()
            code = subprocess.run(command, stdout=out, stderr=err, env=env, cwd=REPO).returncode
            wall = time.monotonic() - began
        if code != 0 and check:
            tail = err_file.read_text(errors="replace")[-2000:]
            tail += out_file.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(argv[:3])}... failed with exit code {code}: {tail}")
        return wall, int(rss_file.read_text()) // 1024, out_file.read_text(errors="replace")


def measure(
    argv: list[str],
    env: dict[str, str] | None = None,
    *,
    json_out: bool = True,
    check: bool = True,
) -> Measured:
    """Run ``argv`` in its own process and measure it (its ``BENCH_JSON`` line parsed if asked)."""
    seconds, rss, out = run_measured(argv, env=env, check=check)
    result = parse_result(out) if json_out else {"stdout": out}
    return Measured(seconds, rss, result)


def measure_task(name: str, env: dict[str, str] | None = None, **kwargs: Any) -> Measured:
    """Run :mod:`bench.tasks` task ``name`` in its own process and measure it."""
    return measure([sys.executable, "-m", "bench.tasks", name, json.dumps(kwargs)], env=env)


def measure_copy(url: str, select: str) -> Measured:
    """``COPY (select) TO STDOUT (FORMAT binary)`` through psql, its bytes counted by ``wc -c``.

    The pipe into ``wc`` stands in for /dev/null and tells the size of the COPY stream; the peak
    RSS is the largest of psql and wc (the kernel's figure for the process tree).
    """
    sql = f"COPY ({select}) TO STDOUT (FORMAT binary)"
    script = 'psql -X -q --set ON_ERROR_STOP=1 "$1" -c "$2" | wc -c; exit ${PIPESTATUS[0]}'
    seconds, rss, out = run_measured(["bash", "-c", script, "copy", url, sql])
    return Measured(seconds, rss, {"bytes": int(out.split()[0])})


def server_reachable(url: str) -> bool:
    """Whether a PostgreSQL server answers at ``url``."""
    try:
        with psycopg.connect(url, connect_timeout=5):
            return True
    except psycopg.OperationalError:
        return False


def resolve_server(url: str, work_dir: Path, say: Any = print) -> str:
    """``url`` if reachable, else an embedded server (pgserver) started under ``work_dir``."""
    if server_reachable(url):
        return url
    say(f"{redact(url)} is unreachable; starting an embedded PostgreSQL under {work_dir}")
    return start_embedded_server(work_dir / "pgdata")


@contextmanager
def bench_database(server: str, name: str, keep: bool, reuse: bool = False) -> Iterator[str]:
    """Database ``name`` on ``server``: fresh, or as left by an earlier run when ``reuse`` and it
    exists; dropped afterwards unless ``keep`` or ``reuse``."""
    url = create_database(server, name, drop=not reuse)
    try:
        yield url
    finally:
        if not (keep or reuse):
            drop_database(server, name)


def settle_server(url: str) -> float:
    """Flush PostgreSQL's dirty pages (``CHECKPOINT``) so that the next measurement does not share
    the machine with writes left by earlier steps (hint bits set by the extraction's scans, the
    reuse clean-up); return the seconds it took. Needs a superuser or ``pg_checkpoint``."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    return time.perf_counter() - started


def server_version(url: str) -> str:
    """The PostgreSQL server's version string."""
    with psycopg.connect(url) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def machine(url: str) -> dict[str, Any]:
    """What the figures were taken on: cores, memory, CPU model, PostgreSQL version."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    mem_kb = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        first = meminfo.read_text().splitlines()[0].split()
        mem_kb = int(first[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "postgresql": server_version(url),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }


class LoadSampler:
    """Samples the 1-minute load average every few seconds while the benchmark runs."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self.samples.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        """Mean and maximum of the sampled 1-minute load average."""
        if not self.samples:
            return {"mean": 0.0, "max": 0.0}
        return {
            "mean": round(sum(self.samples) / len(self.samples), 2),
            "max": round(max(self.samples), 2),
        }


def dbt_command(args: list[str], work_dir: Path) -> list[str]:
    """The dbt CLI the pipeline runs, on the project, with target and logs under ``work_dir``."""
    from dagster_project.defs.dbt.resources import dbt_executable  # imports dagster-dbt

    return [
        dbt_executable(),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(work_dir / "target"),
        "--log-path",
        str(work_dir / "logs"),
    ]


def dbt_run_results(work_dir: Path, output: str) -> tuple[list[dict[str, Any]], float]:
    """Node id, status and execution seconds of the last dbt invocation (``run_results.json``),
    and dbt's own elapsed time: the run phase, after start-up and parsing.

    Raises ``RuntimeError`` with dbt's output when there is none (dbt failed before running).
    """
    path = work_dir / "target" / "run_results.json"
    if not path.exists():
        raise RuntimeError(f"dbt wrote no run_results.json; its output:\n{output[-3000:]}")
    data = json.loads(path.read_text())
    nodes = [
        {"id": r["unique_id"], "status": r["status"], "seconds": r["execution_time"]}
        for r in data["results"]
    ]
    return nodes, float(data["elapsed_time"])


def temp_dir(prefix: str) -> Path:
    """A new temporary directory (removed by the caller)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def git_revision() -> str:
    """The repository's HEAD commit (short), or 'unknown'."""
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"
