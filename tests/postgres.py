"""Start a throwaway PostgreSQL server for the tests (no pytest needed here).

``start_server()`` runs ``initdb`` into a fresh temporary directory and starts ``postgres`` on a
free loopback port (TCP on 127.0.0.1 plus a Unix socket in the same temporary directory), with
durability turned off for speed. initdb and postgres refuse to run as root, so as root both run as
the ``postgres`` system user (made by the Debian package) or, failing that, ``nobody``; as any
other user they run as that user. The superuser inside the server is always ``postgres``, with
``trust`` authentication, so URLs carry no password::

    server = start_server()
    server.url                      # postgresql+psycopg2://postgres@127.0.0.1:PORT/automl_test
    server.new_database("jobs_1")   # CREATE DATABASE, returns its URL
    server.restart()                # pg_ctl restart (connections drop; data stays)
    server.stop()                   # pg_ctl stop -m fast, then the directory is removed

Binaries are looked up in /usr/lib/postgresql/*/bin (newest first), then on PATH;
``scripts/ensure-postgres.sh`` installs them when missing.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "postgres"
DEFAULT_DATABASE = "automl_test"
DRIVER = "postgresql+psycopg2"

# Settings for a disposable server: no durability, small footprint, quick to start and stop.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "log_min_messages": "warning",
}

START_TIMEOUT_S = 60


class PostgresNotFound(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl, postgres) on this machine."""


class PostgresError(RuntimeError):
    """initdb / pg_ctl failed; the message carries their output and the server log's tail."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres: /usr/lib/postgresql/*/bin, else PATH."""

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in re.findall(r"\d+", name)) or (0,)

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    for bindir in candidates:
        if all(os.access(os.path.join(bindir, tool), os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(bindir)
    raise PostgresNotFound(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in /usr/lib/postgresql/*/bin "
        "or on PATH; run `bash scripts/ensure-postgres.sh` (as root it installs them)."
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_account() -> pwd.struct_passwd | None:
    """Who runs initdb/postgres: ``None`` (this process's user) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresError("running as root, and neither a 'postgres' nor a 'nobody' user exists to run the server as")


def _make_base_dir(account: pwd.struct_passwd | None) -> Path:
    """A fresh temporary directory; as root, one the server account owns and can reach."""
    parent = tempfile.gettempdir()
    if account is not None:
        # The server account must be able to walk down to the directory; the default /tmp
        # allows that, a root-only TMPDIR (e.g. under /root) does not.
        probe = Path(parent)
        reachable = all(os.stat(p).st_mode & 0o001 for p in [probe, *probe.parents])
        if not reachable and os.path.isdir("/tmp"):
            parent = "/tmp"
    base = Path(tempfile.mkdtemp(prefix="automl-pg-", dir=parent))
    if account is not None:
        os.chown(base, account.pw_uid, account.pw_gid)
    return base


@dataclass
class PostgresServer:
    """A running throwaway server; see the module docstring."""

    bindir: Path
    base_dir: Path
    port: int
    account: pwd.struct_passwd | None = None
    database: str = DEFAULT_DATABASE
    _stopped: bool = field(default=False, repr=False)

    # -- paths and URLs ----------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def user(self) -> str:
        return SUPERUSER

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"{DRIVER}://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> dict[str, object]:
        """Keyword arguments for ``psycopg2.connect``."""
        return {"host": self.host, "port": self.port, "user": SUPERUSER, "dbname": database}

    # -- running the binaries ----------------------------------------------------------------

    def _run(self, tool: str, *args: str, timeout: float = START_TIMEOUT_S + 30) -> str:
        """Run a PostgreSQL binary as the server account; return its output, raise on failure."""
        cmd = [str(self.bindir / tool), *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", HOME=str(self.base_dir), TZ="UTC")
        kwargs: dict[str, object] = {}
        if self.account is not None:
            # Same effect as `runuser -u postgres --`: drop to the account's uid/gid, no extra groups.
            env.update(USER=self.account.pw_name, LOGNAME=self.account.pw_name)
            kwargs.update(user=self.account.pw_uid, group=self.account.pw_gid, extra_groups=[])
        # stdout/stderr to a pipe is safe: pg_ctl always gets -l, so the daemon never inherits it.
        proc = subprocess.run(
            cmd,
            cwd=self.base_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,  # type: ignore[arg-type]
        )
        if proc.returncode != 0:
            raise PostgresError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout.strip()}\n{self.log_tail()}")
        return proc.stdout

    def _server_options(self) -> str:
        settings = {**SERVER_SETTINGS, "port": str(self.port), "unix_socket_directories": str(self.socket_dir)}
        return " ".join(f"-c {key}={value}" for key, value in settings.items())

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "server log (tail):\n" + "\n".join(text[-lines:])

    def initdb(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            self._server_options(),
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "start",
        )
        self._stopped = False

    def restart(self) -> None:
        """Restart the server (fast shutdown: open connections are cut; committed data stays)."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            self._server_options(),
            "-m",
            "fast",
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "restart",
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if (self.data_dir / "postmaster.pid").exists():
                try:
                    self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop")
                except (PostgresError, subprocess.TimeoutExpired):
                    self._kill_postmaster()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        """Last resort when pg_ctl stop fails: SIGQUIT (immediate shutdown), then SIGKILL."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        for sig in (signal.SIGQUIT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)

    # -- databases -----------------------------------------------------------------------------

    def connect(self, database: str = "postgres"):  # -> psycopg2 connection
        import psycopg2

        return psycopg2.connect(**self.dsn(database))

    def new_database(self, name: str) -> str:
        """``CREATE DATABASE name`` (empty, UTF8) and return its SQLAlchemy URL."""
        from psycopg2 import sql

        conn = self.connect()
        try:
            conn.autocommit = True
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if conn.server_version >= 150000:
                # PostgreSQL 15's default (WAL_LOG) writes the template through the WAL; a file copy
                # is several times quicker here, and its checkpoints cost nothing with fsync off.
                statement += sql.SQL(" STRATEGY = FILE_COPY")
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """``DROP DATABASE IF EXISTS name WITH (FORCE)``: ends its open connections first."""
        from psycopg2 import sql

        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            conn.close()


def start_server(database: str = DEFAULT_DATABASE, *, attempts: int = 3) -> PostgresServer:
    """initdb + start on a free port + create ``database``; the server is stopped at exit at the latest."""
    bindir = find_bindir()
    account = _server_account()
    base = _make_base_dir(account)
    server = PostgresServer(bindir=bindir, base_dir=base, port=free_port(), account=account, database=database)
    try:
        server.initdb()
        for attempt in range(attempts):
            try:
                server.start()
                break
            except PostgresError:
                # Most likely someone took the port between free_port() and the bind; try another.
                if attempt == attempts - 1:
                    raise
                server.port = free_port()
        server.new_database(database)
    except BaseException:
        server.stop()
        raise
    # If the caller never gets to stop() (an interrupted test run), still leave no server behind.
    atexit.register(server.stop)
    return server
