"""What every benchmark script shares: arguments, machine facts, tables, JSON output.

Not a package: each script puts this folder on ``sys.path`` (it is there already when the
script is run as ``python benchmarks/NAME.py``) and imports ``_common``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

if str(REPO_ROOT) not in sys.path:  # automl/ and workers/, also when not installed
    sys.path.insert(0, str(REPO_ROOT))


def parse_args(name: str, description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """``--smoke`` and ``--out PATH`` (default ``benchmarks/results/NAME.json``), plus ``extra``."""
    parser = argparse.ArgumentParser(prog=f"benchmarks/{name}.py", description=description)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds: what CI runs")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / f"{name}.json", help="where the JSON goes")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def machine() -> dict[str, Any]:
    """Where and with what the figures were measured."""
    import importlib.metadata as md

    versions = {}
    for dist in ("ray", "optuna", "mlflow", "torch", "sqlalchemy"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[dist] = md.version(dist)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    cuda = None
    with contextlib.suppress(Exception):
        import torch

        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "gpu": cuda,
        "load_avg_at_start": load,
        "versions": versions,
        "git": _git_state(),
    }


def _git_state() -> dict[str, Any]:
    """The commit measured, and which files of automl/ and workers/ differed from it (other
    engineers edit them while benchmarks run: the figures are for the tree as it was)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            # rstrip only: porcelain lines start with a status column that may be a space.
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "HEAD").strip() or None,
        "modified": [line[3:] for line in git("status", "--porcelain", "--", "automl", "workers").splitlines()],
    }


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    if isinstance(payload.get("machine"), dict):
        with contextlib.suppress(OSError):
            payload["machine"]["load_avg_at_end"] = os.getloadavg()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


@contextlib.contextmanager
def env(**values: str | None) -> Iterator[None]:
    """Set (or, with ``None``, unset) environment variables for a block, then put them back."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def service_env(home: Path, **extra: str | None) -> contextlib.AbstractContextManager[None]:
    """The environment of a service call on its own state folder ``home`` (plus ``extra``): what the
    service sets for itself (setdefault) is left for it to set, so every call starts clean."""
    return env(
        AUTOML_HOME=str(home),
        AUTOML_STORAGE_URL=None,
        AUTOML_DB_URL=None,
        MLFLOW_TRACKING_URI=None,
        RAY_ADDRESS=None,
        TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=None,
        RAY_AIR_NEW_OUTPUT=None,
        **extra,
    )


def bare_tune_env() -> contextlib.AbstractContextManager[None]:
    """Plain ``tune.Tuner`` as the bare-Tune paths run it: no automatic CSV/JSON/TensorBoard loggers, the old console output."""
    return env(TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1", RAY_AIR_NEW_OUTPUT="0")


@contextlib.contextmanager
def quiet_fds() -> Iterator[None]:
    """Silence a block's output at the file-descriptor level (Tune's status tables, MLflow's
    migration notices), so the benchmark's own table stays readable. Errors still raise."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def machine_busy_s() -> float | None:
    """CPU seconds every process on the machine has spent busy so far (all cores, from /proc/stat).

    The difference across a call says how much of the machine it kept busy, its own child
    processes, Ray's workers and daemons included; ``None`` off Linux.
    """
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(v) for v in handle.readline().split()[1:8]]
    except OSError:
        return None
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def quiet_logging() -> None:
    for name in ("ray", "ray.tune", "ray.train", "ray.air", "mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)


def init_ray() -> None:
    """The one local Ray every path shares: 2 CPUs, no dashboard (as the issue's 2-core machine)."""
    import ray

    if not ray.is_initialized():
        # address="local": a new local Ray even when RAY_ADDRESS points at a cluster.
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)


def console() -> Any:
    from rich.console import Console
    from rich.console import Console as _Console

    columns = int(os.environ.get("COLUMNS", "0") or 0)
    return Console(width=columns or (None if _Console().is_terminal else 130))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, caption: str | None = None) -> Any:
    from rich.table import Table

    t = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        t.add_row(*[fmt(v) for v in row])
    return t


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def verdict(value: float | None, target: float, *, at_most: bool) -> str:
    if value is None:
        return "-"
    ok = value <= target if at_most else value >= target
    return ("[green]met[/green]" if ok else "[red]missed[/red]") + f" ({'≤' if at_most else '≥'} {target:g})"


class TransactionCounter:
    """Counts SQL statements, commits and write transactions per database file, for every
    SQLAlchemy engine in this process (Optuna's, MLflow's, the job store's): a figure that,
    unlike time, does not move with the machine's load. A write transaction is a commit after
    at least one INSERT, UPDATE or DELETE (each costs SQLite a journal write and an fsync)."""

    def __init__(self) -> None:
        self.by_db: dict[str, dict[str, int]] = {}
        self._dirty: set[int] = set()

    def _entry(self, conn: Any) -> dict[str, int]:
        url = conn.engine.url
        name = Path(url.database).name if url.database else url.drivername
        return self.by_db.setdefault(name, {"statements": 0, "commits": 0, "write_transactions": 0})

    def _on_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self._entry(conn)["statements"] += 1
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            self._dirty.add(id(conn.connection.dbapi_connection))

    def _on_commit(self, conn: Any) -> None:
        entry = self._entry(conn)
        entry["commits"] += 1
        key = id(conn.connection.dbapi_connection)
        if key in self._dirty:
            entry["write_transactions"] += 1
            self._dirty.discard(key)

    def __enter__(self) -> TransactionCounter:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._on_execute)
        event.listen(Engine, "commit", self._on_commit)
        return self

    def __exit__(self, *exc: Any) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.remove(Engine, "before_cursor_execute", self._on_execute)
        event.remove(Engine, "commit", self._on_commit)

    def per(self, n: int) -> dict[str, dict[str, float]]:
        return {db: {k: v / n for k, v in counts.items()} for db, counts in self.by_db.items()}
