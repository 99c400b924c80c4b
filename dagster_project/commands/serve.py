"""``spendwh ui`` and ``spendwh docs``: the two local web sites of the project.

- ``spendwh ui`` runs ``dagster dev`` on the code location ``dagster_project.definitions``, with
  ``DAGSTER_HOME`` under the warehouse's state directory (runs, schedules and sensor ticks survive
  restarts) and the writer pool limited to one step at a time. Without ``DATABASE_URL`` it uses
  the demo proxy that ``make demo`` created, kept running by this process.
- ``spendwh docs`` runs ``dbt docs generate`` against the build database (under its writer lock,
  so it never interleaves with a pipeline run) and serves the site on localhost.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dagster_project.lib.dagster_instance import dagster_home, prepare_dagster_home
from dagster_project.settings import (
    DBT_PROJECT_DIR,
    ENV_FILE_ENV,
    REPO_ROOT,
    ConfigError,
    Settings,
    env_file_path,
    load_settings,
)

CODE_LOCATION_MODULE = "dagster_project.definitions"
PYPROJECT = REPO_ROOT / "pyproject.toml"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_UI_PORT = 3000
DEFAULT_DOCS_PORT = 8080
DOCS_LOCK_TIMEOUT_S = 120.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ui`` and ``docs`` subcommands."""
    ui = subparsers.add_parser(
        "ui",
        help="run the Dagster UI and daemon (dagster dev) on this code location",
        description=(
            "Runs 'dagster dev' on the code location dagster_project.definitions with "
            "DAGSTER_HOME under <SPEND_WAREHOUSE_DIR>/state/dagster. Schedules and sensors run "
            "while it runs."
        ),
    )
    ui.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    ui.add_argument(
        "--port", type=int, default=DEFAULT_UI_PORT, help=f"port (default {DEFAULT_UI_PORT})"
    )
    ui.set_defaults(func=run_ui)

    docs = subparsers.add_parser(
        "docs",
        help="generate the dbt docs site against the build database and serve it on localhost",
        description=(
            "Runs 'dbt docs generate' (models, columns, tests, lineage, exposures, and the "
            "tables' catalog from the build database), then serves the site until Ctrl-C."
        ),
    )
    docs.add_argument("--host", default=DEFAULT_HOST, help=f"bind address (default {DEFAULT_HOST})")
    docs.add_argument(
        "--port",
        type=int,
        default=DEFAULT_DOCS_PORT,
        help=f"port (default {DEFAULT_DOCS_PORT}; 0 picks a free one)",
    )
    docs.add_argument(
        "--no-generate",
        action="store_true",
        help="serve the last generated site without running dbt",
    )
    docs.set_defaults(func=run_docs)


# --- spendwh ui --------------------------------------------------------------------------------


def code_location_name(pyproject: Path = PYPROJECT) -> str:
    """The name the project declares for its code location (``[tool.dg.project]``).

    The workspace registers the location under that name; a mismatch makes Dagster warn on
    every load.
    """
    project = tomllib.loads(pyproject.read_text())["tool"]["dg"]["project"]
    return project.get("code_location_name") or pyproject.parent.name


def workspace_yaml(
    location_name: str,
    working_directory: Path = REPO_ROOT,
    written_by: str = "'spendwh ui' on every start",
) -> str:
    """A Dagster workspace holding the project's one code location."""
    return (
        f"# Written by {written_by}.\n"
        "load_from:\n"
        "  - python_module:\n"
        f"      module_name: {CODE_LOCATION_MODULE}\n"
        f"      location_name: {location_name}\n"
        f"      working_directory: {json.dumps(str(working_directory))}\n"
    )


def write_workspace(home: Path) -> Path:
    """Write ``workspace.yaml`` into the instance directory; return its path."""
    path = home / "workspace.yaml"
    path.write_text(workspace_yaml(code_location_name()))
    return path


def ui_command(workspace: Path, host: str, port: int) -> list[str]:
    """The ``dagster dev`` command line, run with this interpreter."""
    return [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "--workspace",
        str(workspace),
        "--host",
        host,
        "--port",
        str(port),
    ]


def ui_environment(settings: Settings, environ: Mapping[str, str], home: Path) -> dict[str, str]:
    """The child's environment: ``environ`` plus the instance home, and where this command found
    its configuration: the ``.env`` file and the warehouse directory as absolute paths, because
    the code server runs in the project directory, not in this one. The code server loads the
    settings itself, from the same file (:class:`~dagster_project.defs.resources.SettingsResource`).
    """
    env = dict(environ)
    env["DAGSTER_HOME"] = str(home)
    env["SPEND_WAREHOUSE_DIR"] = str(settings.warehouse_dir)
    dotenv = env_file_path(environ)
    if dotenv.is_file():
        env[ENV_FILE_ENV] = str(dotenv.resolve())
    return env


def url_for(host: str, port: int) -> str:
    """The address a browser on this machine opens."""
    shown = "127.0.0.1" if host in {"0.0.0.0", ""} else host
    return f"http://{shown}:{port}"


def resolve_ui_source(settings: Settings) -> Settings:
    """``settings`` with the demo proxy's URL when ``DATABASE_URL`` is unset and a demo exists.

    The embedded demo server lives as long as this process, which waits for ``dagster dev``.
    """
    if settings.database_url is not None:
        return settings
    from dagster_project.lib.demo import resolve_source

    return resolve_source(settings)


def run_ui(args: argparse.Namespace) -> int:
    """Run ``dagster dev`` until it exits (Ctrl-C stops it)."""
    settings = resolve_ui_source(load_settings())
    home = prepare_dagster_home(dagster_home(settings))
    if settings.database_url is None:
        print(
            "spendwh ui: DATABASE_URL is not set and no demo proxy exists: the UI will start, "
            "but runs will fail until you set DATABASE_URL (or run 'make demo' first).",
            file=sys.stderr,
        )
    print(
        f"spendwh ui: Dagster UI on {url_for(args.host, args.port)} "
        f"(DAGSTER_HOME={home}, warehouse {settings.warehouse_dir}); Ctrl-C stops it",
        flush=True,
    )
    command = ui_command(write_workspace(home), args.host, args.port)
    return _wait(subprocess.Popen(command, env=ui_environment(settings, os.environ, home)))


def _wait(process: subprocess.Popen) -> int:
    """Wait for ``process``; on Ctrl-C give it time to shut down its own children."""
    try:
        return process.wait()
    except KeyboardInterrupt:
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.terminate()
            return process.wait()


# --- spendwh docs ------------------------------------------------------------------------------


def docs_dir(settings: Settings) -> Path:
    """Where the site of this warehouse is generated (its catalog describes this warehouse)."""
    return settings.state_dir / "dbt-docs"


def docs_generate_args(
    settings: Settings, target_path: Path, profiles_dir: Path, empty_catalog: bool
) -> list[str]:
    """Arguments of ``dbt docs generate`` for the configured target, into ``target_path``."""
    from dagster_project.defs.dbt.resources import vars_args

    return [
        "docs",
        "generate",
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(profiles_dir),
        "--target",
        settings.dbt_target,
        "--target-path",
        str(target_path),
        *vars_args(settings),
        *(["--empty-catalog"] if empty_catalog else []),
    ]


@contextlib.contextmanager
def build_database_guard(
    settings: Settings, timeout: float = DOCS_LOCK_TIMEOUT_S
) -> Iterator[bool]:
    """Hold the build database's writer lock (duckdb target); yield whether a catalog can be read.

    Without a build database (nothing has run yet) the site is generated with an empty catalog
    rather than creating an empty database file that would pass for a warehouse.
    """
    if settings.dbt_target != "duckdb":
        yield True
        return
    if not settings.build_path.exists():
        yield False
        return
    from filelock import Timeout

    from dagster_project.lib.duckdb import writer_lock

    lock = writer_lock(settings.build_path, timeout=timeout)
    try:
        lock.acquire()
    except Timeout as exc:
        raise ConfigError(
            f"the pipeline has been writing {settings.build_path} for more than "
            f"{timeout:g} s; try again when the run has finished "
            "(or serve the last site with --no-generate)."
        ) from exc
    try:
        yield True
    finally:
        lock.release()


def generate_docs(settings: Settings, target_path: Path) -> Path:
    """Run ``dbt docs generate`` into ``target_path``; return the site's ``index.html``.

    dbt runs as a child process, as the pipeline runs it, so the long-lived docs server carries
    none of dbt's threads, adapters or exit handlers (Ctrl-C then stops it at once).
    """
    from dagster_project.defs.dbt.resources import dbt_executable, write_profiles

    with build_database_guard(settings) as has_catalog:
        if not has_catalog:
            print(
                f"spendwh docs: no build database at {settings.build_path} yet; generating the "
                "site without table statistics (run 'spendwh run' for them)",
                file=sys.stderr,
            )
        profiles_dir = write_profiles(
            settings,
            settings.state_dir / "dbt-docs-profile",
            # dbt-duckdb connects even for an empty catalog: give it a database that is no file
            duckdb_path=None if has_catalog else ":memory:",
        )
        args = docs_generate_args(
            settings, target_path, profiles_dir, empty_catalog=not has_catalog
        )
        result = subprocess.run([dbt_executable(), *args], check=False)
    index = target_path / "index.html"
    if result.returncode != 0 or not index.is_file():
        raise ConfigError(
            f"dbt docs generate failed (exit code {result.returncode}; see the dbt output "
            "above); fix the dbt project and rerun."
        )
    return index


class QuietHandler(SimpleHTTPRequestHandler):
    """Static files without a log line per request."""

    def log_message(self, format: str, *args: object) -> None:
        return


def docs_server(directory: Path, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server for the static site in ``directory`` (``port`` 0 picks a free one)."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    return ThreadingHTTPServer((host, port), handler)


def serve_forever(server: ThreadingHTTPServer, announce: Callable[[str], None]) -> None:
    """Serve until Ctrl-C, announcing the URL first."""
    host, port = server.server_address[:2]
    announce(url_for(str(host), int(port)))
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the way to stop it
            server.serve_forever()
    finally:
        server.server_close()


def run_docs(args: argparse.Namespace) -> int:
    """Generate (unless ``--no-generate``) and serve the dbt docs site."""
    settings = load_settings()
    site = docs_dir(settings)
    if args.no_generate and not (site / "index.html").is_file():
        raise ConfigError(f"no generated site in {site}; run 'spendwh docs' without --no-generate.")
    try:  # take the port first: a busy port fails before the minute of dbt work
        server = docs_server(site, args.host, args.port)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror}); pick another --port."
        ) from exc
    with server:  # closes the socket on the way out
        if not args.no_generate:
            generate_docs(settings, site)
        serve_forever(
            server,
            lambda url: print(f"spendwh docs: dbt docs on {url}/ (Ctrl-C stops it)", flush=True),
        )
    return 0
