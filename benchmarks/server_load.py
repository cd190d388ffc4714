"""Load on ``automl server`` (issue 17): clients reading jobs while a runner runs them.

It starts ``automl server`` as a subprocess on loopback with a state directory of its own (the job
store in SQLite there, or ``--postgres URL``), adds a user who owns the jobs (one token per client)
and an admin, submits jobs through the server as ``automl submit`` does (their code package
uploaded), and starts a runner (``automl worker -n 2``, its own local Ray) that keeps two of them
running: an objective that sleeps per step, so trials end, events come and the progress snapshot
changes all through the run; the other jobs wait in the queue, one is cancelled. Then ``--clients``
processes (httpx, one connection each) send a paced mix of reads for ``--duration`` seconds at
``--rate`` requests/s in total (0: as fast as each gets answers): list, status, get, events,
whoami, best; and ``--streams`` server-sent-event connections follow the running jobs.

Reported per endpoint: requests, errors (anything but a 2xx, or no answer), latency p50/p95/p99/max
(from sending the request to the whole body read); in total: the achieved rate, the server's CPU
(its process tree, from /proc) per request and as a share of one core, the machine's busy share.
The goal: no errors. The smoke run has no runner (its jobs stay queued) and lasts 3 s.

    .venv/bin/python benchmarks/server_load.py [--smoke] [--out PATH] [--clients 4] [--duration 30]
        [--rate 300] [--streams 2] [--server-workers 1] [--postgres postgresql://...]
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

# What each client sends, by weight: the reads a dashboard, a CLI user and a script make.
MIX = {"list": 25, "status": 25, "get": 15, "events": 15, "whoami": 10, "best": 10}
OBJECTIVE = """
import time

def objective(params, ctx):
    for step in range(1, ctx.max_epochs + 1):
        time.sleep({step_s})
        ctx.report(loss=(params["x"] - 0.3) ** 2 + 1.0 / step, step=step)
"""
SERVICE_ENV = ("AUTOML_DB_URL", "AUTOML_STORAGE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "AUTOML_TRIAL_STORAGE")


# -- the server and the runner ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def automl(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``automl ARGS`` in a session of its own (stopped with its children), its output to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "automl.cli", *args],
            env=env,
            cwd=log.parent,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the process (as ``docker stop`` does: not its Ray's processes, which it shuts down itself),
    then SIGKILL whatever is left of its session after ``grace_s``."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def wait_until(predicate: Any, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")


def process_tree(pid: int) -> dict[int, list[str]]:
    """``pid`` and every process below it, each with the fields of its /proc/PID/stat after the name."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, fields in stats.items() if int(fields[1]) == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return {p: stats[p] for p in tree if p in stats}


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and every process below it."""
    ticks = os.sysconf("SC_CLK_TCK")
    return sum((int(fields[11]) + int(fields[12])) / ticks for fields in process_tree(pid).values())


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and every process below it (uvicorn's workers are its children)."""
    page = os.sysconf("SC_PAGE_SIZE")
    return sum(int(fields[21]) * page for fields in process_tree(pid).values()) / 2**20


# -- one client ----------------------------------------------------------------------------------


def request_for(endpoint: str, job: str) -> tuple[str, dict[str, Any] | None]:
    """The path and query of one request to ``endpoint`` about ``job``."""
    return {
        "list": ("/jobs", {"limit": 50}),
        "status": (f"/jobs/{job}/status", {"events": 10}),
        "get": (f"/jobs/{job}", None),
        "events": (f"/jobs/{job}/events", {"limit": 20}),
        "whoami": ("/whoami", None),
        "best": (f"/jobs/{job}/best", None),
    }[endpoint]


def client_main(spec: dict[str, Any], ready: Any, results: Any) -> None:
    """One client process: connects, waits at ``ready`` for the others, then sends paced requests for
    ``spec['duration']`` seconds; puts its figures on ``results``."""
    try:
        results.put(run_client(spec, ready))
    except BaseException as exc:  # noqa: BLE001 - the parent reports it; never leave it waiting on the barrier
        ready.abort()
        results.put({"crashed": f"{type(exc).__name__}: {exc}"})


def run_client(spec: dict[str, Any], ready: Any) -> dict[str, Any]:
    import httpx

    rng = random.Random(spec["seed"])
    names, weights = list(MIX), list(MIX.values())
    jobs = spec["job_ids"]
    latencies: dict[str, list[float]] = {name: [] for name in MIX}
    errors: dict[str, int] = dict.fromkeys(MIX, 0)
    samples: list[str] = []
    rate = spec["rate"]
    cpu0 = time.process_time()
    with httpx.Client(base_url=spec["url"] + "/api/v1", headers={"Authorization": f"Bearer {spec['token']}"}, timeout=30) as http:
        http.get("/whoami").raise_for_status()  # connected, token checked: not counted
        ready.wait(timeout=120)
        t0 = time.perf_counter()
        end = t0 + spec["duration"]
        sent = 0
        behind = 0.0
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            if rate > 0:
                due = t0 + sent / rate
                if due > now:
                    time.sleep(due - now)
                else:
                    behind = max(behind, now - due)
            name = rng.choices(names, weights)[0]
            job = rng.choice(jobs)
            path, params = request_for(name, job)
            start = time.perf_counter()
            try:
                answer = http.get(path, params=params)
                took = time.perf_counter() - start
                ok = answer.is_success
                problem = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                took = time.perf_counter() - start
                ok, problem = False, f"{type(exc).__name__}: {exc}"
            sent += 1
            latencies[name].append(took)
            if not ok:
                errors[name] += 1
                if len(samples) < 5:
                    samples.append(f"{name} {path}: {problem}")
        wall = time.perf_counter() - t0
    return {
        "latencies": latencies,
        "errors": errors,
        "error_samples": samples,
        "wall_s": wall,
        "sent": sent,
        "max_behind_s": behind,
        "cpu_s": time.process_time() - cpu0,
    }


# -- streams -------------------------------------------------------------------------------------


class StreamFollower(threading.Thread):
    """One server-sent-events connection to a job's stream, held until :meth:`close`.

    A plain socket, not httpx: a read blocked in another thread must end when the run does, and
    the stream may stay quiet for 15 s (its keep-alive) while the job does not change."""

    def __init__(self, url: str, token: str, job_id: str) -> None:
        super().__init__(daemon=True)
        host, port = url.removeprefix("http://").split(":")
        self.address, self.token, self.job_id = (host, int(port)), token, job_id
        self.result: dict[str, Any] = {"job": job_id, "messages": 0, "error": None, "first_message_s": None, "ended": False}
        self.closing = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        request = (
            f"GET /api/v1/jobs/{self.job_id}/stream?every_s=1 HTTP/1.1\r\nHost: {self.address[0]}:{self.address[1]}\r\n"
            f"Authorization: Bearer {self.token}\r\nAccept: text/event-stream\r\n\r\n"
        )
        try:
            with socket.create_connection(self.address, timeout=10) as sock:
                sock.sendall(request.encode())
                sock.settimeout(0.25)
                pending, headers = b"", None
                while not self.closing.is_set():
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:  # the server ended it: right only after an `end` event
                        if not self.result["ended"]:
                            self.result["error"] = "the server closed the stream before the job ended"
                        return
                    pending += data
                    if headers is None:
                        if b"\r\n\r\n" not in pending:
                            continue
                        headers, pending = pending.split(b"\r\n\r\n", 1)
                        status = headers.split(b"\r\n", 1)[0].decode(errors="replace")
                        if " 200 " not in status + " ":
                            self.result["error"] = status
                            return
                    *lines, pending = pending.split(b"\n")  # each message is one chunk: its lines arrive whole
                    for line in lines:
                        if line.startswith(b"event:"):
                            self.result["messages"] += 1
                            if self.result["first_message_s"] is None:
                                self.result["first_message_s"] = time.perf_counter() - start
                            self.result["ended"] = line.strip() == b"event: end"
        except OSError as exc:
            self.result["error"] = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        self.closing.set()
        self.join(timeout=10)


# -- the run -------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def write_project(folder: Path, step_s: float, trials: int, steps: int) -> Path:
    import yaml

    folder.mkdir(parents=True)
    (folder / "sleepy.py").write_text(OBJECTIVE.format(step_s=step_s))
    spec = {
        "name": "load",
        "objective": "sleepy:objective",
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
        "metric": "loss",
        "mode": "min",
        "scheduler": {"name": "fifo"},
        "budget": {"trials": trials, "max_epochs": steps},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 1},
        "tracking": {"register_model": False, "plots": False},
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main() -> int:
    def extra(p: Any) -> None:
        p.add_argument("--clients", type=int, help="client processes (default 4; smoke 2)")
        p.add_argument("--duration", type=float, help="seconds of load (default 30; smoke 3)")
        p.add_argument("--rate", type=float, help="requests/s from all clients together, 0: unpaced (default 300; smoke 50)")
        p.add_argument("--streams", type=int, help="event-stream connections held open (default 2; smoke 1)")
        p.add_argument("--server-workers", type=int, default=1, help="uvicorn worker processes of the server (default 1)")
        p.add_argument("--jobs", type=int, default=4, help="jobs submitted; the runner runs two at once (default 4)")
        p.add_argument("--postgres", metavar="URL", help="the job store and studies in this (empty) PostgreSQL database")
        p.add_argument("--no-runner", action="store_true", help="no runner: every job stays queued (the smoke's default)")

    args = C.parse_args("server_load", "Load on automl server: clients reading jobs while a runner runs them (issue 17).", extra)
    clients = args.clients or (2 if args.smoke else 4)
    duration = args.duration or (3.0 if args.smoke else 30.0)
    rate = args.rate if args.rate is not None else (50.0 if args.smoke else 300.0)
    streams = args.streams if args.streams is not None else (1 if args.smoke else 2)
    runner_on = not (args.no_runner or args.smoke)
    out = C.console()
    info = C.machine()

    phases: dict[str, float] = {}
    t_phase = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal t_phase
        now = time.perf_counter()
        phases[name] = now - t_phase
        t_phase = now

    with tempfile.TemporaryDirectory(prefix="automl-bench-server-") as tmp:
        root = Path(tmp)
        base = {k: v for k, v in os.environ.items() if k not in SERVICE_ENV and not k.startswith("AUTOML_SERVER")}
        service = {**base, "AUTOML_HOME": str(root / "home")}
        if args.postgres:
            service.update(AUTOML_DB_URL=args.postgres, AUTOML_STORAGE_URL=args.postgres)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with C.env(**{k: service.get(k) for k in ("AUTOML_HOME", "AUTOML_DB_URL", "AUTOML_STORAGE_URL")}):
            from automl.service import open_job_store
            from automl.settings import redact_url, resolve_settings

            settings = resolve_settings()
            store = open_job_store(settings)
            store.users.add_user("team", role="user")
            store.users.add_user("ops", role="admin")
            tokens = [store.users.create_token("team", label=f"load client {i}")[1] for i in range(clients)]
            admin_token = store.users.create_token("ops", label="load admin")[1]
            store_url = redact_url(settings.db_url)
            store.engine.dispose()
        phase("users")

        server_log, runner_log = root / "server.log", root / "runner.log"
        server_env = {**service, "AUTOML_SERVER_PORT": str(port), "AUTOML_SERVER_WORKERS": str(args.server_workers)}
        t_server = time.perf_counter()
        server = automl(["server"], server_env, server_log)
        runner = None
        runner_stop_s = None
        try:
            import httpx

            def healthy() -> bool:
                if server.poll() is not None:
                    raise RuntimeError(f"automl server exited with {server.returncode}:\n{server_log.read_text()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    return httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200
                return False

            wait_until(healthy, 60, "automl server to answer /api/v1/health", server_log)
            server_start_s = time.perf_counter() - t_server
            phase("server_start")

            # The jobs, through the server as `automl submit` sends them (the code package uploaded once).
            from automl.client.remote import RemoteJobService
            from automl.service import check_job_file

            spec_path = write_project(root / "project", step_s=0.25, trials=10_000, steps=4)
            remote = RemoteJobService(url, tokens[0])
            checked = check_job_file(spec_path)
            job_ids = [remote.submit(checked).id for _ in range(args.jobs)]
            extra_job = remote.submit(checked).id
            remote.cancel(extra_job)  # one final job among them
            job_ids.append(extra_job)
            admin = RemoteJobService(url, admin_token)
            phase("submit")

            if runner_on:
                runner = automl(["worker", "-n", "2", "--poll", "0.5"], service, runner_log)

                def two_running() -> bool:
                    if runner is not None and runner.poll() is not None:
                        raise RuntimeError(f"automl worker exited with {runner.returncode}:\n{runner_log.read_text()[-3000:]}")
                    jobs = admin.list(states=("running",))
                    return len(jobs) >= 2 and all(j.trials_finished >= 1 for j in jobs)

                with out.status("the runner starts two jobs (its own local Ray) and finishes a trial of each"):
                    wait_until(two_running, 300, "two jobs running with a trial finished each", runner_log)
            phase("runner_start")
            running = [j.id for j in admin.list(states=("running",))]
            before = {j.id: j.trials_finished for j in admin.list()}
            # Each endpoint's first call, on a running job where there is one: what a fresh server pays
            # once (imports: MLflow's for `best` on a running job); the load that follows does not.
            first_calls: dict[str, float] = {}
            with httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=60) as http:
                for name in MIX:
                    path, params = request_for(name, (running or job_ids)[0])
                    t_call = time.perf_counter()
                    http.get(path, params=params).raise_for_status()
                    first_calls[name] = (time.perf_counter() - t_call) * 1000

            # The load: client processes (spawned: a clean interpreter each), and the streams in threads here.
            stream_jobs = running or job_ids[: max(1, streams)]
            followers = [StreamFollower(url, tokens[0], stream_jobs[i % len(stream_jobs)]) for i in range(streams)]
            context = multiprocessing.get_context("spawn")
            ready, queue = context.Barrier(clients + 1), context.Queue()
            processes = [
                context.Process(
                    target=client_main,
                    args=(
                        {
                            "url": url,
                            "token": tokens[i],
                            "job_ids": job_ids,
                            "rate": rate / clients,
                            "duration": duration,
                            "seed": i,
                        },
                        ready,
                        queue,
                    ),
                )
                for i in range(clients)
            ]
            for process in processes:
                process.start()
            with out.status(f"{clients} clients for {duration:g} s at {rate:g} requests/s in total"):
                ready.wait(timeout=120)  # every client connected and checked its token
                cpu0, busy0, t0 = tree_cpu_s(server.pid), C.machine_busy_s(), time.perf_counter()
                for follower in followers:
                    follower.start()
                results = [queue.get(timeout=duration + 120) for _ in processes]
                wall = time.perf_counter() - t0
                cpu1, busy1 = tree_cpu_s(server.pid), C.machine_busy_s()
                for follower in followers:
                    follower.close()
                for process in processes:
                    process.join(timeout=30)
            crashed = [r["crashed"] for r in results if "crashed" in r]
            if crashed:
                raise RuntimeError(f"a client failed: {crashed[0]}")
            stream_results = [f.result for f in followers]
            phase("load")
            rss = tree_rss_mb(server.pid)
            after = {j.id: j.trials_finished for j in admin.list()}
            for job_id in job_ids:  # the runner stops their trials; then it is stopped
                with contextlib.suppress(Exception):
                    admin.cancel(job_id)
            t_cancel = time.perf_counter()
            with contextlib.suppress(RuntimeError):
                wait_until(lambda: not admin.list(states=("running",)), 60, "the runner to stop the cancelled jobs")
            cancel_s = time.perf_counter() - t_cancel
            remote.close()
            admin.close()
        finally:
            if runner is not None:
                t_stop = time.perf_counter()
                stop(runner, grace_s=60)
                runner_stop_s = time.perf_counter() - t_stop
            stop(server, grace_s=15)
        phase("stop")

    # -- figures -----------------------------------------------------------------------------
    endpoints: dict[str, Any] = {}
    for name in MIX:
        values = [v for r in results for v in r["latencies"][name]]
        errors = sum(r["errors"][name] for r in results)
        endpoints[name] = {
            "requests": len(values),
            "errors": errors,
            "rate_per_s": len(values) / duration,
            **{f"p{q}_ms": (percentile(values, q) or 0) * 1000 for q in (50, 95, 99)},
            "max_ms": max(values, default=0) * 1000,
            "mean_ms": (sum(values) / len(values) * 1000) if values else None,
        }
    total = sum(e["requests"] for e in endpoints.values())
    total_errors = sum(e["errors"] for e in endpoints.values())
    all_values = [v for r in results for values in r["latencies"].values() for v in values]
    stream_errors = sum(1 for s in stream_results if s.get("error"))
    server_cpu = cpu1 - cpu0
    payload = {
        "benchmark": "server_load",
        "smoke": args.smoke,
        "machine": info,
        "command": " ".join(["benchmarks/server_load.py", *sys.argv[1:]]),
        "settings": {
            "clients": clients,
            "duration_s": duration,
            "target_rate_per_s": rate,
            "streams": streams,
            "server_workers": args.server_workers,
            "job_store": "postgresql" if args.postgres else "sqlite",
            "job_store_url": store_url,
            "runner": "automl worker -n 2 (its own local Ray), objective sleeping 0.25 s per step, 4 steps"
            if runner_on
            else "none: every job queued",
            "jobs": {"submitted": len(job_ids), "running": len(running), "cancelled": 1},
            "mix": MIX,
            "auth_cache_s": "the server's default (AUTOML_SERVER_AUTH_CACHE_S unset)",
            "definition": "latency: from the request's send to its body read (httpx, one kept-alive connection per "
            "client process); paced: client i sends its k-th request at start + k / (rate / clients), at once when "
            "behind; errors: any answer but 2xx, or none; server CPU: user + system of the server's process tree "
            "(/proc) over the load; machine busy: /proc/stat over the load, every process (clients, runner, Ray)",
        },
        "server_start_s": server_start_s,
        "phases_s": phases,
        "endpoints": endpoints,
        "first_call_ms": first_calls,
        "total": {
            "requests": total,
            "errors": total_errors,
            "rate_per_s": total / wall,
            "wall_s": wall,
            **{f"p{q}_ms": (percentile(all_values, q) or 0) * 1000 for q in (50, 95, 99)},
            "max_ms": max(all_values, default=0) * 1000,
            "max_client_behind_s": max(r["max_behind_s"] for r in results),
            "client_cpu_s": sum(r["cpu_s"] for r in results),
        },
        "error_samples": [s for r in results for s in r["error_samples"]][:10],
        "streams": {
            "connections": streams,
            "errors": stream_errors,
            "messages": sum(s.get("messages", 0) for s in stream_results),
            "first_message_ms": [
                None if s.get("first_message_s") is None else s["first_message_s"] * 1000 for s in stream_results
            ],
            "detail": stream_results,
        },
        "server": {
            "cpu_s": server_cpu,
            "cpu_share_of_one_core": server_cpu / wall,
            "cpu_ms_per_request": server_cpu / total * 1000 if total else None,
            "rss_mb": rss,
        },
        "machine_busy_share": None if busy0 is None or busy1 is None else (busy1 - busy0) / wall / (os.cpu_count() or 1),
        "cancel_to_stopped_s": cancel_s,
        "runner_stop_s": runner_stop_s,
        "trials_finished_during_load": sum(after.get(j, 0) - before.get(j, 0) for j in job_ids),
        "no_errors": total_errors == 0 and stream_errors == 0,
    }
    C.write_json(args.out, payload)

    rows = [
        [name, e["requests"], e["errors"], e["rate_per_s"], e["p50_ms"], e["p95_ms"], e["p99_ms"], e["max_ms"]]
        for name, e in endpoints.items()
    ]
    t = payload["total"]
    rows.append(["all", t["requests"], t["errors"], t["rate_per_s"], t["p50_ms"], t["p95_ms"], t["p99_ms"], t["max_ms"]])
    s = payload["server"]
    out.print(
        C.table(
            f"automl server under load: {clients} clients, {duration:g} s, target {rate:g}/s, "
            f"{payload['settings']['job_store']}, {args.server_workers} worker(s)",
            ["endpoint", "requests", "errors", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms"],
            rows,
            caption=f"server CPU {s['cpu_s']:.1f} s ({s['cpu_share_of_one_core']:.0%} of a core, "
            f"{s['cpu_ms_per_request']:.2f} ms/request); machine busy {payload['machine_busy_share'] or 0:.0%}; "
            f"{streams} stream(s): {payload['streams']['messages']} messages, {stream_errors} errors; "
            f"{payload['trials_finished_during_load']} trials finished during the load; "
            f"{'no errors' if payload['no_errors'] else 'ERRORS'}",
        )
    )
    out.print(f"JSON: {args.out}")
    return 0 if payload["no_errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
