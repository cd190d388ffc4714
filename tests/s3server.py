"""Start a throwaway S3-protocol server for the tests (no pytest needed here).

``start_server()`` runs moto's server mode (``python -m moto.server``, from the ``moto[server]``
package of the dev extra) as a subprocess on a free loopback port, in its own session, waits
until it answers S3 requests and creates a bucket. It is a real HTTP server speaking the S3
protocol: Ray workers, MLflow servers and runners in other processes reach it like any
S3-compatible store (MinIO, Ceph, ...); nothing in the client is mocked::

    server = start_server()
    server.endpoint_url       # http://127.0.0.1:PORT
    server.bucket             # automl-test
    server.uri("checkpoints") # s3://automl-test/checkpoints
    server.env                # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
                              # AWS_DEFAULT_REGION, AWS_REGION, MLFLOW_S3_ENDPOINT_URL
    server.keys("checkpoints")# every object key under that prefix
    server.stop()             # SIGTERM its session, SIGKILL what is left

The keys are moto's dummies (moto accepts any); they are set anyway, as every S3 client refuses
to sign without credentials. ``server.env`` is what a process needs to use the bucket: merge it
into a subprocess's environment, or ``monkeypatch.setenv`` it for this one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 60
STOP_GRACE_S = 3.0
BUCKET = "automl-test"
REGION = "us-east-1"
ACCESS_KEY = "automl-test-key"
SECRET_KEY = "automl-test-secret"  # moto accepts any key: this one opens nothing


class S3ServerError(RuntimeError):
    """The server did not come up; the message carries its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    """A running moto S3 server; see the module docstring."""

    port: int
    log_file: Path
    bucket: str = BUCKET
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The variables a process (a Ray node, an MLflow server, a runner) needs to use the bucket."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            # MLflow's S3 artifact store reads its own variable (older boto3 ignore AWS_ENDPOINT_URL).
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
        }

    def uri(self, prefix: str = "") -> str:
        """``s3://BUCKET/prefix``."""
        return f"s3://{self.bucket}/{prefix.strip('/')}".rstrip("/")

    def client(self):  # -> a boto3 S3 client for this server
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix`` (sorted)."""
        paginator = self.client().get_paginator("list_objects_v2")
        keys = [
            item["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix.lstrip("/"))
            for item in page.get("Contents", [])
        ]
        return sorted(keys)

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "moto server log (tail):\n" + "\n".join(text[-lines:])

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() signals just this server
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise S3ServerError(f"moto server exited with code {self.process.returncode}\n{self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.1)
        raise S3ServerError(f"moto server did not answer on {self.endpoint_url} within {timeout:.0f} s\n{self.log_tail()}")

    def _answers(self) -> bool:
        # moto's own health route: 200 once the server serves requests.
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after a grace. Safe to call twice."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait)
                return


def start_server(bucket: str = BUCKET, *, attempts: int = 3) -> S3Server:
    """Start moto on a free port and create ``bucket``; the server is stopped at exit at the latest."""
    log_file = Path(tempfile.mkdtemp(prefix="automl-s3-")) / "moto.log"
    server = S3Server(port=free_port(), log_file=log_file, bucket=bucket)
    try:
        for attempt in range(attempts):
            try:
                server.start()
                break
            except S3ServerError:
                # Most likely someone took the port between free_port() and the bind; try another.
                server.stop()
                if attempt == attempts - 1:
                    raise
                server.port = free_port()
        server.create_bucket(bucket)
    except BaseException:
        server.stop()
        raise
    # If the caller never gets to stop() (an interrupted test run), still leave no server behind.
    atexit.register(server.stop)
    return server


if __name__ == "__main__":  # a manual check: start, write and list one object, stop
    s3 = start_server()
    try:
        s3.client().put_object(Bucket=s3.bucket, Key="hello/world.txt", Body=b"hi")
        print(s3.endpoint_url, s3.keys("hello"))
    finally:
        s3.stop()
