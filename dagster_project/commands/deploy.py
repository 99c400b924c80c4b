"""``spendwh deploy DIR``: the files of a production deployment on one server.

Writes into ``DIR`` (the ``DAGSTER_HOME`` of the deployment):

- ``dagster.yaml``: the instance, with its storage in PostgreSQL at the URL in
  ``$DAGSTER_POSTGRES_URL`` (see :mod:`dagster_project.lib.dagster_instance`);
- ``workspace.yaml``: the project's code location;
- ``systemd/spendwh-daemon.service``, ``spendwh-webserver.service``, ``spendwh-docs.service``:
  the three services, running this virtual environment's executables with absolute paths, so
  they need no activated environment and no ``PATH``;
- ``systemd/spendwh-worker.service`` when the ``.env`` chooses ``SPEND_WAREHOUSE_EXECUTOR=celery``:
  a Celery worker that executes the steps (install it on every worker host).

The configuration stays in the project's ``.env`` (``--env-file``): the units load it into the
environment (Dagster reads the PostgreSQL URL from there) and point ``SPEND_WAREHOUSE_ENV_FILE``
at it (the pipeline reads its settings from there).
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dagster_project.commands.serve import (
    DEFAULT_DOCS_PORT,
    DEFAULT_HOST,
    DEFAULT_UI_PORT,
    code_location_name,
    url_for,
    workspace_yaml,
)
from dagster_project.lib.dagster_instance import (
    DEFAULT_POSTGRES_URL_ENV,
    POSTGRES_URL_SCHEME,
    instance_yaml,
)
from dagster_project.settings import CELERY, ENV_FILE_ENV, REPO_ROOT, ConfigError, load_settings

UNIT_TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "unit.service"
DAEMON_UNIT = "spendwh-daemon.service"
WEBSERVER_UNIT = "spendwh-webserver.service"
DOCS_UNIT = "spendwh-docs.service"
WORKER_UNIT = "spendwh-worker.service"
UNITS = (DAEMON_UNIT, WEBSERVER_UNIT, DOCS_UNIT)
WORKER_NAME = "spendwh"  # Celery calls it spendwh@<host>
# A worker stops warm: the step in progress finishes first (a dbt build may take minutes).
WORKER_STOP_SECONDS = 900
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_PLAIN_ARG = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``deploy`` subcommand."""
    parser = subparsers.add_parser(
        "deploy",
        help="write dagster.yaml, workspace.yaml and systemd units for a production server",
        description=(
            "Writes into DIR (the deployment's DAGSTER_HOME) a PostgreSQL-backed dagster.yaml, "
            "a workspace.yaml and systemd units for the Dagster daemon, the Dagster UI and the "
            "dbt docs site, then prints how to install them."
        ),
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="the deployment's DAGSTER_HOME")
    parser.add_argument(
        "--dagster-postgres-url-env",
        default=DEFAULT_POSTGRES_URL_ENV,
        metavar="NAME",
        help=f"variable holding the Dagster instance's PostgreSQL URL "
        f"(default {DEFAULT_POSTGRES_URL_ENV})",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=REPO_ROOT / ".env",
        help="the configuration the services read (default: the project's .env)",
    )
    parser.add_argument(
        "--user", default=getpass.getuser(), help="user the services run as (default: you)"
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"bind address of both sites (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_UI_PORT, help=f"Dagster UI (default {DEFAULT_UI_PORT})"
    )
    parser.add_argument(
        "--docs-port",
        type=int,
        default=DEFAULT_DOCS_PORT,
        help=f"dbt docs site (default {DEFAULT_DOCS_PORT})",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite an existing deployment in DIR"
    )
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class Deployment:
    """What ``spendwh deploy`` renders, all paths absolute."""

    home: Path
    env_file: Path
    user: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_UI_PORT
    docs_port: int = DEFAULT_DOCS_PORT
    postgres_url_env: str = DEFAULT_POSTGRES_URL_ENV
    project_dir: Path = REPO_ROOT
    bin_dir: Path = Path(sys.executable).parent  # the venv's scripts, beside its python

    @property
    def workspace(self) -> Path:
        return self.home / "workspace.yaml"

    def executable(self, name: str) -> str:
        """The venv's ``name`` script; it must exist, or the unit could never start."""
        path = self.bin_dir / name
        if not path.is_file():
            raise ConfigError(
                f"{path} does not exist; run 'make install' in {self.project_dir} first."
            )
        return str(path)

    @property
    def runs_workers(self) -> bool:
        """Whether the ``.env`` sends the steps to Celery workers: then a worker unit is written."""
        if not self.env_file.is_file():
            return False
        # what the units see: the file alone, not this shell's environment
        return load_settings(env={}, dotenv_path=self.env_file).executor.name == CELERY

    def commands(self) -> dict[str, list[str]]:
        """The command line of each unit."""
        workspace = str(self.workspace)
        worker = {WORKER_UNIT: [self.executable("spendwh"), "worker", "--name", WORKER_NAME]}
        return {
            DAEMON_UNIT: [self.executable("dagster-daemon"), "run", "-w", workspace],
            WEBSERVER_UNIT: [
                self.executable("dagster-webserver"),
                *("-w", workspace, "-h", self.host, "-p", str(self.port)),
            ],
            DOCS_UNIT: [
                self.executable("spendwh"),
                *("docs", "--host", self.host, "--port", str(self.docs_port)),
            ],
            **(worker if self.runs_workers else {}),
        }


def validate(deployment: Deployment) -> Deployment:
    """``deployment`` if every value can go into a unit file, else :class:`ConfigError`."""
    if not _ENV_NAME.match(deployment.postgres_url_env):
        raise ConfigError(
            f"--dagster-postgres-url-env {deployment.postgres_url_env!r} is not a variable name; "
            f"use letters, digits and underscores, e.g. {DEFAULT_POSTGRES_URL_ENV}."
        )
    if not _USER_NAME.match(deployment.user):
        raise ConfigError(
            f"--user {deployment.user!r} is not a user name; pass e.g. --user spendwh."
        )
    for name, port in (("--port", deployment.port), ("--docs-port", deployment.docs_port)):
        if not 0 < port < 65536:
            raise ConfigError(f"{name} {port} is not a TCP port; use 1 to 65535.")
    if deployment.port == deployment.docs_port:
        raise ConfigError(f"--port and --docs-port are both {deployment.port}; pick two ports.")
    for path in (deployment.home, deployment.env_file, deployment.project_dir):
        if "\n" in str(path) or '"' in str(path) or "\\" in str(path):
            raise ConfigError(f"{str(path)!r} cannot go into a systemd unit; use a plainer path.")
    return deployment


def check_env_file(deployment: Deployment) -> None:
    """Refuse an instance URL in the ``.env`` that dagster-postgres cannot use (if it is there)."""
    if not deployment.env_file.is_file():
        return  # written later; next_steps says what goes in
    from dotenv import dotenv_values

    url = dotenv_values(deployment.env_file).get(deployment.postgres_url_env)
    if url and urlsplit(url).scheme != POSTGRES_URL_SCHEME:
        raise ConfigError(
            f"{deployment.postgres_url_env} in {deployment.env_file} must start with "
            f"{POSTGRES_URL_SCHEME}:// (dagster-postgres runs on psycopg2), not "
            f"{urlsplit(url).scheme}://; change its scheme."
        )


def exec_arg(arg: str) -> str:
    """``arg`` as one word of a systemd ``ExecStart=`` (quoted; ``%`` and ``$`` literal)."""
    escaped = arg.replace("%", "%%")
    return escaped if _PLAIN_ARG.match(arg) else '"' + escaped.replace("$", "$$") + '"'


def unit_path(path: Path) -> str:
    """``path`` for a systemd path setting (``%`` is a specifier there)."""
    return str(path).replace("%", "%%")


def render_unit(deployment: Deployment, unit: str) -> str:
    """The text of the systemd ``unit``."""
    environment = [f"{ENV_FILE_ENV}={deployment.env_file}"]
    description = {
        DAEMON_UNIT: "Dagster daemon (schedules, sensors, run queue, run monitoring)",
        WEBSERVER_UNIT: "Dagster UI on " + url_for(deployment.host, deployment.port),
        DOCS_UNIT: "dbt docs site on " + url_for(deployment.host, deployment.docs_port),
        WORKER_UNIT: "Celery worker executing the pipeline's steps",
    }[unit]
    comment = {
        DAEMON_UNIT: (
            "# The runs it launches are its children: a run whose worker is killed is marked\n"
            "# failed by run monitoring, and the next scheduled run starts from the watermark."
        ),
        WEBSERVER_UNIT: "# Stateless: restart it at will.",
        DOCS_UNIT: (
            "# The site is regenerated from the build database on every start; if a run holds\n"
            "# that database for more than 2 minutes it exits and is started again."
        ),
        WORKER_UNIT: (
            "# SIGTERM to the worker alone: it finishes the step in progress, then exits; its\n"
            "# pool processes are killed only when that takes longer than TimeoutStopSec.\n"
            "KillMode=mixed"
        ),
    }[unit]
    if unit != DOCS_UNIT:  # the worker runs steps on the instance of the daemon's runs
        environment.insert(0, f"DAGSTER_HOME={deployment.home}")
    return UNIT_TEMPLATE.read_text().format(
        unit_name=unit,
        description=description,
        readme=unit_path(deployment.project_dir / "README.md"),
        user=deployment.user,
        project_dir=unit_path(deployment.project_dir),
        environment="\n".join(f'Environment="{e.replace("%", "%%")}"' for e in environment),
        env_file=unit_path(deployment.env_file),
        exec_start=" ".join(exec_arg(a) for a in deployment.commands()[unit]),
        comment=comment,
        restart_sec=30 if unit == DOCS_UNIT else 5,
        timeout_stop_sec=WORKER_STOP_SECONDS if unit == WORKER_UNIT else 60,
    )


def write_deployment(deployment: Deployment, force: bool = False) -> list[Path]:
    """Write every file of ``deployment``; return their paths."""
    validate(deployment)
    check_env_file(deployment)
    config = deployment.home / "dagster.yaml"
    if config.exists() and not force:
        raise ConfigError(
            f"{config} exists (a deployment is there already); pass --force to overwrite it "
            "and the units, or pick another DIR."
        )
    units = {unit: render_unit(deployment, unit) for unit in deployment.commands()}
    files = {
        config: instance_yaml(deployment.postgres_url_env, written_by="deploy"),
        deployment.workspace: workspace_yaml(
            code_location_name(), deployment.project_dir, written_by="'spendwh deploy'"
        ),
        **{deployment.home / "systemd" / unit: text for unit, text in units.items()},
    }
    (deployment.home / "systemd").mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return list(files)


def next_steps(deployment: Deployment) -> str:
    """What the operator does after ``spendwh deploy``."""
    units = " ".join(unit.removesuffix(".service") for unit in deployment.commands())
    env = deployment.env_file
    missing = ""
    if not env.is_file():
        missing = f" (it does not exist yet: copy {deployment.project_dir / '.env.example'})"
    return "\n".join(
        [
            "next steps:",
            f"  1. in {env}{missing}, set DATABASE_URL (a read-only role on the proxy), "
            f"{deployment.postgres_url_env} (an empty database for Dagster, "
            f"{POSTGRES_URL_SCHEME}://user:password@host:5432/dagster), "
            "SPEND_WAREHOUSE_DIR and the alert webhooks;",
            f"  2. sudo install -m 644 {deployment.home / 'systemd'}/*.service "
            "/etc/systemd/system/",
            "  3. sudo systemctl daemon-reload",
            f"  4. sudo systemctl enable --now {units}"
            + (
                f" (on other worker hosts, with the same checkout and .env: {WORKER_UNIT} alone)"
                if deployment.runs_workers
                else ""
            ),
            f"  5. open {url_for(deployment.host, deployment.port)} (Dagster UI) and "
            f"{url_for(deployment.host, deployment.docs_port)} (dbt docs); "
            "logs: journalctl -u spendwh-daemon -f",
        ]
    )


def run(args: argparse.Namespace) -> int:
    """Write the deployment and print what was written and what to do next."""
    deployment = Deployment(
        home=args.dir.expanduser().absolute(),
        env_file=args.env_file.expanduser().absolute(),
        user=args.user,
        host=args.host,
        port=args.port,
        docs_port=args.docs_port,
        postgres_url_env=args.dagster_postgres_url_env,
    )
    written = write_deployment(deployment, force=args.force)
    print(f"spendwh deploy: wrote {len(written)} files:")
    for path in written:
        print(f"  {path}")
    print(next_steps(deployment))
    return 0
