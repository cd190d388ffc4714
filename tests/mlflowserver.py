"""Start the production MLflow tracking server (mlflow/start-server.sh) for a test (no pytest needed here).

``start_server(log_dir, backend=..., artifacts=..., env=...)`` runs the script on a free loopback
port in its own session, its backend store and artifact destination as given (a bucket with the
S3 server's variables in ``env``), and waits until ``/health`` answers; ``stop_server`` kills its
session. Returns the URL and the process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_server(
    log_dir: Path, *, backend: str, artifacts: str, env: dict[str, str], timeout: float = 120
) -> tuple[str, subprocess.Popen]:
    from s3server import free_port

    port = free_port()
    server_env = {
        **os.environ,
        **env,
        "MLFLOW_BACKEND_STORE_URI": backend,
        "MLFLOW_ARTIFACTS_DESTINATION": artifacts,
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_WORKERS": "1",
        "MLFLOW_PYTHON": sys.executable,
    }
    log = log_dir / "mlflow.log"
    with log.open("ab") as out:
        server = subprocess.Popen(
            ["bash", str(REPO / "mlflow" / "start-server.sh")],
            env=server_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow/start-server.sh exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return url, server
        except OSError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise AssertionError(f"the MLflow server at {url} was not healthy within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=30)
