"""Long-running ``spendwh`` commands in tests: start, read the announced URL, wait, stop."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

URL_PATTERN = re.compile(r"https?://[0-9.]+:\d+")


@dataclass
class Command:
    """A running ``spendwh`` subprocess (its own process group) and everything it printed."""

    process: subprocess.Popen
    lines: queue.Queue = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        """Everything the command printed so far."""
        return "".join(self.output)

    def transcript(self) -> str:
        """The tail of the output, for failure messages."""
        return self.text()[-6000:]

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first match of ``pattern`` in the output; fail if the command exits or is slow."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            if line is None:
                break
            match = pattern.search(line)
            if match:
                return match
        raise AssertionError(
            f"{self.process.args} did not print {pattern.pattern!r} within {timeout:.0f} s "
            f"(exit code {self.process.poll()}):\n{self.transcript()}"
        )

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C the whole process group (as a terminal would); kill it if it lingers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


def _interruptible() -> None:
    """In the child before exec: Ctrl-C (SIGINT) back to its default action.

    A command started in the background by a non-interactive shell (`make test &`, a CI runner)
    inherits SIGINT ignored, and Python keeps an inherited SIG_IGN: the command would never see
    the Ctrl-C that ``Command.stop`` sends. A terminal's foreground process has the default.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_spendwh(*args: str, env: dict[str, str], cwd: Path) -> Command:
    """Start ``spendwh <args>`` like a user's shell would, reading its output in a thread."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster_project.cli", *args],
        env={**env, "PYTHONUNBUFFERED": "1"},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_interruptible,
    )
    command = Command(process)

    def pump() -> None:
        for line in process.stdout:
            command.output.append(line)
            command.lines.put(line)
        command.lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return command


def wait_until_answers(url: str, timeout: float) -> bytes:
    """GET ``url`` until it answers 200; return the body."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s: {last}")
