"""Fixtures for the alert tests: settings of a fresh warehouse and a real local webhook receiver.

The receiver is a real ``http.server`` on 127.0.0.1 that can be scripted to fail (5xx), to time
out after accepting (the request is processed but the answer comes too late), or to succeed; it
deduplicates on the ``Idempotency-Key`` header like a well-behaved receiver.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dagster_project.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """Settings pointing at a fresh warehouse directory, with no alert destination configured."""
    monkeypatch.setenv("SPEND_WAREHOUSE_DIR", str(tmp_path / "warehouse"))
    monkeypatch.delenv("SPEND_ALERTS_SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("SPEND_ALERTS_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return load_settings(dotenv_path=tmp_path / "no.env")


# --- the webhook receiver --------------------------------------------------------------------


@dataclass
class Receiver:
    """A scripted webhook receiver; ``script`` is consumed one entry per request."""

    url: str
    script: list[str] = field(default_factory=list)  # "ok", "500", "timeout", "400"
    path_scripts: dict[str, list[str]] = field(default_factory=dict)  # per path prefix
    requests: list[dict[str, Any]] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # idempotency key -> body
    duplicates: int = 0
    timeout_sleep_s: float = 1.5
    lock: threading.Lock = field(default_factory=threading.Lock)

    def path_url(self, path: str) -> str:
        """A URL of this receiver with ``path`` (one receiver can play several destinations)."""
        return self.url + path

    def accepted_on(self, path: str) -> dict[str, dict[str, Any]]:
        """Accepted messages by idempotency key, for one path."""
        return {k.split(" ", 1)[1]: v for k, v in self.accepted.items() if k.startswith(path + " ")}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on 127.0.0.1 in a thread."""
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest output clean
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            key = self.headers.get("Idempotency-Key")
            with state.lock:
                script = next(
                    (v for k, v in state.path_scripts.items() if self.path.startswith(k)),
                    state.script,
                )
                action = script.pop(0) if script else "ok"
                state.requests.append(
                    {"path": self.path, "key": key, "action": action, "body": json.loads(body)}
                )
                if action in {"ok", "timeout"}:  # a timeout is processed, then answered late
                    dedup_key = f"{self.path} {key}"
                    if dedup_key in state.accepted:
                        state.duplicates += 1
                    else:
                        state.accepted[dedup_key] = json.loads(body)
            if action == "timeout":
                time.sleep(state.timeout_sleep_s)
            code = {"ok": 200, "timeout": 200, "500": 500, "400": 400, "429": 429}[action]
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            try:
                # Error bodies echo the path, as some receivers do: it must be redacted.
                self.wfile.write(b"ok" if code == 200 else b"rejected " + self.path.encode())
            except (BrokenPipeError, ConnectionResetError):
                return  # the client gave up waiting (the timeout case)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
