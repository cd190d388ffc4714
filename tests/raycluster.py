"""Start a throwaway two-node Ray cluster on this machine for the tests (no pytest needed here).

``start_cluster()`` runs a head node (``ray start --head --block``) and a second, worker node
(``ray start --block --address=...``) as subprocesses, each in its own session and process
group, with one CPU and no GPU each, and waits until the cluster shows two alive nodes::

    cluster = start_cluster()
    cluster.address            # 127.0.0.1:PORT, for RAY_ADDRESS / ray.init(address=...)
    cluster.driver_env()       # os.environ plus RAY_ADDRESS and the cluster's auth settings
    cluster.node_ids           # [head node id, worker node id]
    cluster.alive_node_ids()   # asks the cluster now (a short driver in a subprocess)
    cluster.kill_worker_node() # SIGKILL the worker node's processes (fault tests)
    cluster.stop()             # SIGTERM both nodes, SIGKILL what is left, remove the folder

``ray stop`` is never used: it kills every Ray on the machine, the test session's own local
Ray included. Each node is torn down by signalling its own session (``start_new_session``).

Details that matter:

- Token authentication. Ray 2.60's ``ray start --head`` turns token auth on by itself when
  ``~/.ray/auth_token`` exists (any earlier local ``ray.init()`` writes that file), but a worker
  node joining with ``--address`` and a driver calling ``ray.init(address=...)`` never turn it
  on by themselves: the worker node then fails with "InvalidAuthToken: Authentication token is
  missing or incorrect". So whether it "just works" would depend on what ran before. The
  cluster therefore uses token auth explicitly, with its own token: every node gets
  ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH=<cluster dir>/auth_token``, and a driver
  must have the same two variables; :meth:`RayCluster.driver_env` adds them. ``~/.ray`` is
  neither read nor written.
- Addresses. Ray maps ``--node-ip-address=127.0.0.1`` to the machine's primary address (see
  ``ray._private.services.resolve_ip_for_localhost``), so the nodes register under that IP;
  the GCS listens on all interfaces, so ``127.0.0.1:PORT`` reaches it. Both nodes share that
  IP; node ids tell them apart, and a driver on this machine attaches to the head node.
- Own temp dir (short, under /dev/shm or /tmp: Unix socket paths are limited to ~107 characters). It keeps
  ``ray_current_cluster`` out of /tmp/ray, so a plain ``ray.init()`` elsewhere in the test
  session still starts its own local Ray rather than joining this cluster.
- In memory where there is room (:func:`base_parent`): for a job with pip requirements, each
  node's runtime-env agent clones this whole virtualenv (2.6 GB, 75,000 files) into the node's
  temp dir before pip runs. On a 2-core test machine's disk that took 28 s per node (the two at
  once), and 6 s more to delete; on /dev/shm 4.5 s, and under a second. What the nodes do is the
  same either way.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 90
# /dev/shm holds the cluster's folder when it has this much room and the machine this much memory
# to spare: each distinct set of pip requirements a test's job names costs a virtualenv clone per node.
SHM_MIN_FREE_BYTES = 12 * 2**30
STOP_GRACE_S = 3.0
NODES = 2
# Plenty for the tests (trial plans, small results); Ray's default is 30% of RAM per node.
OBJECT_STORE_BYTES = 200 * 1024 * 1024
AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
# Variables that would point a node or a driver somewhere else.
FOREIGN_ENV = ("RAY_ADDRESS", "RAY_NAMESPACE", "RAY_RUNTIME_ENV")


class RayClusterError(RuntimeError):
    """The cluster did not come up; the message carries both nodes' logs."""


def ray_executable() -> str:
    """The ``ray`` script of this interpreter's environment (next to ``sys.executable``)."""
    candidate = Path(sys.executable).parent / "ray"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if found is None:
        raise RayClusterError(f"no `ray` command next to {sys.executable} or on PATH")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A short driver: connect, wait until ``want`` nodes are alive, print them as JSON.
_NODES_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys, time
    import ray

    address, want, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    deadline = time.monotonic() + timeout
    while True:
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            break
        except Exception as exc:  # the head may not be up yet
            if time.monotonic() > deadline:
                raise SystemExit(f"cannot connect to {address}: {exc!r}")
            time.sleep(0.5)
    while True:
        nodes = [
            {"id": n["NodeID"], "head": "node:__internal_head__" in n["Resources"], "ip": n["NodeManagerAddress"],
             "cpus": n["Resources"].get("CPU", 0)}
            for n in ray.nodes() if n["Alive"]
        ]
        if want <= 0 or len(nodes) >= want or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    ray.shutdown()
    print(json.dumps(nodes))
    """
)


@dataclass
class RayCluster:
    """A running two-node cluster; see the module docstring."""

    base_dir: Path
    port: int
    ray: str
    head: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None
    head_node_id: str | None = None
    worker_node_id: str | None = None
    _stopped: bool = field(default=False, repr=False)

    # -- addresses, environments, logs ---------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def node_ids(self) -> list[str]:
        return [n for n in (self.head_node_id, self.worker_node_id) if n]

    @property
    def temp_dir(self) -> Path:
        return self.base_dir / "t"

    @property
    def token_path(self) -> Path:
        return self.base_dir / "auth_token"

    def auth_env(self) -> dict[str, str]:
        """The variables every node and driver of this cluster needs for token auth."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}

    def driver_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default ``os.environ``) set up to drive this cluster: RAY_ADDRESS and auth."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if k not in AUTH_ENV + FOREIGN_ENV}
        env.update(self.auth_env(), RAY_ADDRESS=self.address)
        return env

    def node_dir(self, node: str) -> Path:
        """The node's own working directory; its ``HOME`` and ``AUTOML_HOME`` are inside. The nodes
        share no folder with each other or with a driver (what a job needs must travel with it)."""
        return self.base_dir / node

    def _node_env(self, node: str) -> dict[str, str]:
        env = self.driver_env()
        del env["RAY_ADDRESS"]
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        home = self.node_dir(node) / "home"
        home.mkdir(parents=True, exist_ok=True)
        env.update(HOME=str(home), AUTOML_HOME=str(self.node_dir(node) / "automl"))
        env.pop("AUTOML_DATA_CACHE", None)
        return env

    def log_file(self, node: str) -> Path:
        return self.base_dir / f"{node}.log"

    def logs(self, lines: int = 40) -> str:
        """The tail of both nodes' ``ray start`` output and of the Ray session's main logs."""
        parts = []
        files = [self.log_file("head"), self.log_file("worker")]
        session_logs = self.temp_dir / "session_latest" / "logs"
        for name in ("gcs_server.out", "raylet.out", "raylet.err"):
            files.extend(sorted(session_logs.glob(name)))
        for path in files:
            try:
                text = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            parts.append(f"--- {path} (tail) ---\n" + "\n".join(text[-lines:]))
        return "\n".join(parts) or "(no logs)"

    # -- starting ----------------------------------------------------------------------------

    def _spawn(self, node: str, args: list[str]) -> subprocess.Popen:
        log = open(self.log_file(node), "ab")  # noqa: SIM115 - the child keeps it; closed below
        try:
            return subprocess.Popen(
                [self.ray, "start", "--block", *args],
                cwd=self.node_dir(node),
                env=self._node_env(node),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group: stop() signals just these
            )
        finally:
            log.close()

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start both nodes and wait until the cluster shows two alive nodes."""
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        if not self.token_path.exists():
            self.token_path.write_text(secrets.token_hex(32))
            self.token_path.chmod(0o600)
        common = [
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--num-gpus=0",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            "--disable-usage-stats",
        ]
        self.head = self._spawn(
            "head",
            ["--head", f"--port={self.port}", "--include-dashboard=false", f"--temp-dir={self.temp_dir}", *common],
        )
        # The worker node retries the GCS until the head is up, so both start at once.
        # Its own temp dir too, as on a machine of its own: on one shared with the head, the two
        # nodes' runtime-env agents would build a job's pip environment in the same folder at once.
        (self.base_dir / "w").mkdir(exist_ok=True)
        self.worker = self._spawn("worker", [f"--address={self.address}", f"--temp-dir={self.base_dir / 'w'}", *common])
        nodes = self._wait_for_nodes(NODES, timeout, watch=("head", "worker"))
        heads = [n["id"] for n in nodes if n["head"]]
        others = [n["id"] for n in nodes if not n["head"]]
        if len(heads) != 1 or len(others) != 1:
            raise RayClusterError(f"expected a head and a worker node, the cluster shows {nodes}\n{self.logs()}")
        self.head_node_id, self.worker_node_id = heads[0], others[0]

    def _wait_for_nodes(self, want: int, timeout: float, watch: tuple[str, ...] = ("head",)) -> list[dict]:
        """Ask the cluster (a short driver) for its alive nodes, waiting until there are ``want``;
        fail early if a ``watch``ed node's ``ray start`` exits meanwhile."""
        deadline = time.monotonic() + timeout
        probe = None
        err_file = self.base_dir / "probe.err"  # a file, not a pipe: Ray's retry warnings can be long
        try:
            with open(err_file, "w") as err_out:
                probe = subprocess.Popen(
                    [sys.executable, "-c", _NODES_SCRIPT, self.address, str(want), str(timeout)],
                    cwd=self.base_dir,
                    env=self.driver_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=err_out,
                    text=True,
                    start_new_session=True,
                )
            while probe.poll() is None:
                for node in watch:
                    proc = self.head if node == "head" else self.worker
                    if proc is not None and proc.poll() is not None:
                        raise RayClusterError(
                            f"the {node} node's `ray start` exited with code {proc.returncode} while waiting for "
                            f"{want} alive nodes\n{self.logs()}"
                        )
                if time.monotonic() > deadline + 15:
                    raise RayClusterError(f"no {want} alive nodes after {timeout:.0f}s\n{self.logs()}")
                time.sleep(0.2)
            out, _ = probe.communicate()
            err = err_file.read_text(errors="replace")
        finally:
            if probe is not None and probe.poll() is None:
                _kill_session(probe.pid, signal.SIGKILL)
                probe.wait()
        try:
            nodes = json.loads(out.strip().splitlines()[-1]) if probe.returncode == 0 else None
        except (ValueError, IndexError):
            nodes = None
        if nodes is None or len(nodes) < want:
            raise RayClusterError(
                f"the cluster at {self.address} did not show {want} alive nodes within {timeout:.0f}s "
                f"(probe exit {probe.returncode}, nodes {nodes}):\n{err.strip()[-2000:]}\n{self.logs()}"
            )
        return nodes

    def alive_node_ids(self, timeout: float = 30) -> list[str]:
        """The ids of the nodes the cluster shows alive now (a short driver in a subprocess)."""
        return [n["id"] for n in self._wait_for_nodes(0, timeout)]

    # -- stopping ----------------------------------------------------------------------------

    def kill_worker_node(self) -> None:
        """SIGKILL the worker node's processes (its raylet and Ray workers) at once: a node failure."""
        if self.worker is not None:
            _kill_session(self.worker.pid, signal.SIGKILL)
            self.worker.wait()

    def stop(self) -> None:
        """SIGTERM both nodes, SIGKILL whatever is left after a few seconds, remove the folder.

        Safe to call twice. Ray's head drains for up to 30 s on SIGTERM; the grace here is shorter
        because nothing in a test cluster needs draining.
        """
        if self._stopped:
            return
        self._stopped = True
        procs = [p for p in (self.worker, self.head) if p is not None]
        try:
            for proc in procs:
                _kill_session(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            for proc in procs:
                while time.monotonic() < deadline and _session_pids(proc.pid):
                    time.sleep(0.1)
            for proc in procs:
                _kill_session(proc.pid, signal.SIGKILL)
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
            # Wait for the processes to go, and briefly for init to reap them (no zombies left).
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(_session_pids(p.pid) for p in procs):
                time.sleep(0.1)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and any(_session_pids(p.pid, zombies=True) for p in procs):
                time.sleep(0.1)
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def _session_pids(sid: int, *, zombies: bool = False) -> list[int]:
    """Live processes (and zombies too, with ``zombies``) in session ``sid``: a node's ``ray start``
    and all it spawned.

    Ray's processes stay in the session even where one moves to another process group.
    """
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp session ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid and (zombies or fields[0] != "Z"):
            pids.append(int(entry))
    return pids


def _kill_session(sid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group ``sid`` and to any process of session ``sid`` outside it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, sig)
    for pid in _session_pids(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _memory_available_bytes() -> int:
    """MemAvailable from /proc/meminfo (0 where it cannot be read)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def base_parent() -> str | None:
    """Where a cluster's folder goes: /dev/shm when it is a tmpfs with room to spare (see the
    module docstring: a job's pip environment clones the virtualenv there, seconds instead of half
    a minute), else /tmp, else the default temporary directory."""
    shm = "/dev/shm"
    with contextlib.suppress(OSError):
        if (
            os.path.isdir(shm)
            and os.access(shm, os.W_OK | os.X_OK)
            and shutil.disk_usage(shm).free >= SHM_MIN_FREE_BYTES
            and _memory_available_bytes() >= SHM_MIN_FREE_BYTES
        ):
            return shm
    return "/tmp" if os.path.isdir("/tmp") else None


def start_cluster(*, timeout: float = START_TIMEOUT_S, attempts: int = 2) -> RayCluster:
    """Start a two-node cluster on a free port; it is stopped at exit at the latest."""
    last: RayClusterError | None = None
    for _ in range(attempts):
        base = Path(tempfile.mkdtemp(prefix="rayc-", dir=base_parent()))
        cluster = RayCluster(base_dir=base, port=free_port(), ray=ray_executable())
        try:
            cluster.start(timeout=timeout)
        except RayClusterError as exc:  # most likely someone took the port; try once more
            last = exc
            cluster.stop()
            continue
        except BaseException:
            cluster.stop()
            raise
        atexit.register(cluster.stop)
        return cluster
    assert last is not None
    raise last
