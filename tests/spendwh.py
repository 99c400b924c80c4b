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
    args: list[str], cwd: Path, env: Mapping[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    """``spendwh <args>`` in ``cwd`` with only ``env`` (plus a plain PATH and HOME) set."""
    return subprocess.run(
        [str(SPENDWH), *args],
        env={"PATH": PLAIN_PATH, "HOME": str(cwd), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
