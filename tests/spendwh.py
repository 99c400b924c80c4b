"""Run the real ``spendwh`` entry point the way cron or systemd start it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

# The script the virtualenv installed (``.venv/bin/spendwh``), beside this Python.
SPENDWH = Path(sys.executable).with_name("spendwh")
# A service manager's PATH: the virtualenv is not on it.
PLAIN_PATH = "/usr/bin:/bin"


def run_spendwh(
    args: list[str],
    cwd: Path,
    env: Mapping[str, str],
    timeout: float = 300,
    python: Path | None = None,
) -> subprocess.CompletedProcess:
    """``spendwh <args>`` in ``cwd`` with only ``env`` (plus a plain PATH and HOME) set.

    With ``python``, the same entry point run by that interpreter (another environment).
    """
    program = [str(python), "-m", "dagster_project.cli"] if python else [str(SPENDWH)]
    return subprocess.run(
        [*program, *args],
        env={"PATH": PLAIN_PATH, "HOME": str(cwd), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_sentence(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """``result`` failed with ``code`` and one ``spendwh: ...`` line on stderr holding
    ``fragments``; return that line."""
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-4000:]
    assert result.returncode == code, result.stderr
    [line] = lines
    assert line.startswith("spendwh: "), line
    for fragment in fragments:
        assert fragment in line
    return line
