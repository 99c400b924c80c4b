"""Reading the systemd units ``spendwh deploy`` writes, as systemd would (the parts we use)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from dotenv import dotenv_values


def parse_unit(path: Path) -> dict[str, list[str]]:
    """``Key`` -> its values in order (``Environment=`` may repeat); no comments, no sections."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unescape(value: str) -> str:
    """A unit value with the ``%%`` specifier escape undone."""
    return value.replace("%%", "%")


def exec_argv(unit: dict[str, list[str]]) -> list[str]:
    """The ``ExecStart=`` command line as the argument vector systemd passes."""
    [line] = unit["ExecStart"]
    return [unescape(word).replace("$$", "$") for word in shlex.split(line)]


def unit_environment(unit: dict[str, list[str]], base: dict[str, str]) -> dict[str, str]:
    """``base`` plus ``EnvironmentFile=`` then ``Environment=``, as systemd builds it."""
    env = dict(base)
    for value in unit.get("EnvironmentFile", []):
        path = Path(unescape(value.removeprefix("-")))
        if path.is_file():  # a leading '-' makes a missing file fine
            env.update({k: v for k, v in dotenv_values(path).items() if v is not None})
        elif not value.startswith("-"):
            raise FileNotFoundError(path)
    for value in unit.get("Environment", []):
        for word in shlex.split(value):
            key, _, val = unescape(word).partition("=")
            env[key] = val
    return env


def service_base_env() -> dict[str, str]:
    """The environment systemd starts a service from, before its unit's own ``Environment``."""
    return {
        "PATH": systemd_path(),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }


def systemd_path() -> str:
    """The ``PATH`` systemd gives a service: no virtual environment on it."""
    return os.pathsep.join(
        ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    )
