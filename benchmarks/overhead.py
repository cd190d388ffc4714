"""Per-trial overhead: no-op trials (one report each) through four paths, side by side in one process.

(a) bare Optuna: an in-memory study, ``study.optimize`` on a trivial objective;
(b) bare Ray Tune: a function trainable that reports once, actors reused, Tune's per-trial
    loggers off, ``verbose=0``, ``OptunaSearch`` in memory, FIFO, 2 trials at once;
(c) the hand-wired default: Tune's defaults (no actor reuse, its CSV/JSON/TensorBoard loggers)
    + ``OptunaSearch`` on an Optuna RDBStorage in SQLite + ``MLflowLoggerCallback`` to an MLflow
    SQLite store (fewer trials: it costs seconds per trial);
(d) the service: ``automl.search(..., scheduler="fifo", max_steps=1)`` with a temporary
    ``AUTOML_HOME`` (durable SQLite study, an MLflow child run per trial, Ray Tune).

Every path uses TPE with the same seed (``--sampler random`` to take the sampler out of the
picture). Each path first runs a short warm-up on the same stores (imports, schema creation:
not counted); then ``--repeats`` times, every path in turn runs a short and the full run
(``ray.init`` excluded), so the paths are measured side by side in time: wall / N is the issue's
per-trial figure, the two sizes split it into a fixed cost per call and a marginal cost per trial,
and SQL statements and write transactions are counted per database file. Then the service
path runs once more under cProfile (every Python thread), and once with perf_counter wrappers
on its own driver hooks, and the calls it spends its time in are reported per trial.

    .venv/bin/python benchmarks/overhead.py [--smoke] [--out PATH]
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

SPACE_LOW, SPACE_HIGH = -1.0, 1.0
TARGETS = {"service_over_bare_tune": ("≤", 1.5), "handwired_over_service": ("≥", 5.0)}


# -- the no-op trials --------------------------------------------------------------------------


def tune_noop(config: dict[str, Any]) -> None:
    """Paths (b) and (c): a Tune function trainable that reports once."""
    from ray import tune

    tune.report({"loss": float(config["x"]) ** 2})


def service_noop(params: dict[str, Any]) -> float:
    """Path (d): the service's objective; its return value is the trial's one (final) report."""
    return float(params["x"]) ** 2


# -- the four paths ----------------------------------------------------------------------------


def make_sampler(kind: str, seed: int) -> Any:
    import optuna

    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def run_bare_optuna(n: int, sampler: str, seed: int) -> dict[str, Any]:
    import optuna

    study = optuna.create_study(direction="minimize", sampler=make_sampler(sampler, seed))

    def objective(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", SPACE_LOW, SPACE_HIGH) ** 2

    wall, _ = C.timed(lambda: study.optimize(objective, n_trials=n))
    return {"wall_s": wall, "trials": n, "complete": sum(t.state.name == "COMPLETE" for t in study.trials)}


def run_bare_tune(n: int, sampler: str, seed: int, workdir: Path) -> dict[str, Any]:
    from optuna.distributions import FloatDistribution
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(
        space={"x": FloatDistribution(SPACE_LOW, SPACE_HIGH)},
        metric="loss",
        mode="min",
        sampler=make_sampler(sampler, seed),
    )
    tuner = tune.Tuner(
        tune_noop,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=FIFOScheduler(),
            num_samples=n,
            max_concurrent_trials=2,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=f"bare-{uuid.uuid4().hex[:6]}", storage_path=str(workdir), verbose=0),
    )
    with C.bare_tune_env():
        wall, grid = C.timed(tuner.fit)
    return {"wall_s": wall, "trials": len(grid), "complete": sum(r.error is None for r in grid)}


def run_handwired(n: int, sampler: str, seed: int, workdir: Path) -> dict[str, Any]:
    import optuna
    from optuna.distributions import FloatDistribution
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.search.optuna import OptunaSearch

    storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / 'handwired-optuna.db'}")
    searcher = OptunaSearch(
        space={"x": FloatDistribution(SPACE_LOW, SPACE_HIGH)},
        metric="loss",
        mode="min",
        sampler=make_sampler(sampler, seed),
        study_name=f"handwired-{uuid.uuid4().hex[:6]}",
        storage=storage,
    )
    tuner = tune.Tuner(
        tune_noop,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=n),  # Tune's defaults otherwise
        run_config=tune.RunConfig(
            name=f"handwired-{uuid.uuid4().hex[:6]}",
            storage_path=str(workdir / "ray_results"),  # the default is ~/ray_results
            callbacks=[
                MLflowLoggerCallback(tracking_uri=f"sqlite:///{workdir / 'handwired-mlflow.db'}", experiment_name="handwired")
            ],
        ),
    )
    # Tune's defaults: its CSV/JSON/TensorBoard loggers on, its own console output (discarded here).
    with C.env(TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=None, RAY_AIR_NEW_OUTPUT=None), C.quiet_fds():
        wall, grid = C.timed(tuner.fit)
    return {"wall_s": wall, "trials": len(grid), "complete": sum(r.error is None for r in grid)}


def run_service(n: int, sampler: str, seed: int, home: Path, *, write_behind: bool = True, plots: bool = True) -> dict[str, Any]:
    """Path (d), or (e) with ``write_behind=False``: the study and MLflow trial writes made in the
    driver process instead of the job's writer process (``AUTOML_WRITE_BEHIND=0``). ``plots``: the
    end-of-job plots, as a user gets them (the smoke leaves them out: seconds of CPU, no figure needs them)."""
    import automl

    with C.service_env(home, AUTOML_WRITE_BEHIND="1" if write_behind else "0"):
        wall, result = C.timed(
            lambda: automl.search(
                service_noop,
                {"x": {"type": "float", "low": SPACE_LOW, "high": SPACE_HIGH}},
                n_trials=n,
                metric="loss",
                mode="min",
                max_steps=1,
                scheduler="fifo",
                sampler=sampler,
                max_concurrent=2,
                seed=seed,
                name="overhead",
                plots=plots,
            )
        )
    return {
        "wall_s": wall,
        "trials": len(result.trials),
        "complete": result.state_counts.get("COMPLETE", 0),
        "tracking_errors": len(result.tracking_errors),
        # the run's own breakdown of its wall time (SearchResult.phases): where the fixed cost goes
        "phases": dict(getattr(result, "phases", {})),  # {} from a version before phases (a before/after run)
    }


# -- profile -----------------------------------------------------------------------------------

# (label, file path fragment, function name): driver-side calls worth a line of their own.
FOCUS: list[tuple[str, str, str]] = [
    ("Tuner.fit (the whole driver)", "ray/tune/tuner.py", "fit"),
    ("TuneController.step (driver loop)", "tune/execution/tune_controller.py", "step"),
    ("  ray.wait/ray.get in the event loop (idle + IPC)", "ray/_private/worker.py", "wait"),
    ("  Tune: _maybe_add_actors/_schedule (start trials)", "tune/execution/tune_controller.py", "_maybe_add_actors"),
    ("  Tune: experiment checkpoint (driver state)", "tune/execution/tune_controller.py", "checkpoint"),
    ("  Tune: _process_trial_result", "tune/execution/tune_controller.py", "_process_trial_result"),
    ("  Tune: callbacks on_trial_result (all)", "tune/callback.py", "on_trial_result"),
    ("  Tune: callbacks on_trial_complete (all)", "tune/callback.py", "on_trial_complete"),
    ("  Tune: callbacks on_trial_start (all)", "tune/callback.py", "on_trial_start"),
    ("  Tune: SearchGenerator.next_trial (suggest)", "tune/search/search_generator.py", "next_trial"),
    ("searcher: StudySearch.suggest", "automl/engine/study_search.py", "suggest"),
    ("  OptunaSearch.suggest (study.ask + sample)", "tune/search/optuna/optuna_search.py", "suggest"),
    ("    optuna Study.ask", "optuna/study/study.py", "ask"),
    ("    TPE sample_relative", "optuna/samplers/_tpe/sampler.py", "sample_relative"),
    ("    TPE sample_independent", "optuna/samplers/_tpe/sampler.py", "sample_independent"),
    ("  Trial.set_user_attr (ray_trial_id)", "optuna/trial/_trial.py", "set_user_attr"),
    ("searcher: StudySearch.on_trial_result (report step)", "automl/engine/study_search.py", "on_trial_result"),
    ("  optuna Trial.report", "optuna/trial/_trial.py", "report"),
    ("searcher: StudySearch.on_trial_complete", "automl/engine/study_search.py", "on_trial_complete"),
    ("  StudySearch.settle -> study.tell", "automl/engine/study_search.py", "settle"),
    ("    optuna Study.tell", "optuna/study/study.py", "tell"),
    ("callback: JobCallback.on_trial_start", "automl/engine/callbacks.py", "on_trial_start"),
    ("callback: JobCallback.on_trial_result", "automl/engine/callbacks.py", "on_trial_result"),
    ("callback: JobCallback.on_trial_complete", "automl/engine/callbacks.py", "on_trial_complete"),
    ("writer process: WriteBehind.send (driver side)", "automl/engine/write_behind.py", "send"),
    ("writer process: RemoteTrialRuns.create_trial_run (waits)", "automl/engine/write_behind.py", "create_trial_run"),
    ("writer process: RemoteTrialRuns.update_run (waits)", "automl/engine/write_behind.py", "update_run"),
    ("mlflow: MlflowClient.create_run", "mlflow/tracking/client.py", "create_run"),
    ("mlflow: MlflowClient.log_batch", "mlflow/tracking/client.py", "log_batch"),
    ("mlflow: MlflowClient.set_terminated", "mlflow/tracking/client.py", "set_terminated"),
    ("optuna RDB: _create_new_trial", "optuna/storages/_rdb/storage.py", "_create_new_trial"),
    ("optuna RDB: set_trial_param", "optuna/storages/_rdb/storage.py", "set_trial_param"),
    ("optuna RDB: set_trial_user_attr", "optuna/storages/_rdb/storage.py", "set_trial_user_attr"),
    ("optuna RDB: set_trial_intermediate_value", "optuna/storages/_rdb/storage.py", "set_trial_intermediate_value"),
    ("optuna RDB: set_trial_state_values", "optuna/storages/_rdb/storage.py", "set_trial_state_values"),
    ("optuna RDB: get_all_trials", "optuna/storages/_rdb/storage.py", "get_all_trials"),
    ("optuna RDB: get_trial", "optuna/storages/_rdb/storage.py", "get_trial"),
    ("optuna cached storage: get_all_trials", "optuna/storages/_cached_storage.py", "get_all_trials"),
    ("summary: summarize (end of job)", "automl/engine/summary.py", "summarize"),
    ("engine: MlflowTracker.start_job", "automl/tracking/mlflow_tracker.py", "start_job"),
    ("sqlalchemy: Session.commit (all)", "sqlalchemy/orm/session.py", "commit"),
    ("sqlite3: Connection.commit / execute (C)", "~", "<method 'execute' of 'sqlite3.Cursor' objects>"),
]


# (label, module, class, method): the service's own driver-side hooks, timed with a plain
# perf_counter wrapper (no profiler overhead) in a separate run.
TIMED_HOOKS: list[tuple[str, str, str, str]] = [
    ("StudySearch.suggest (Optuna ask + sample + user attr)", "automl.engine.study_search", "StudySearch", "suggest"),
    ("StudySearch.on_trial_result (Optuna report)", "automl.engine.study_search", "StudySearch", "on_trial_result"),
    ("StudySearch.on_trial_complete (Optuna tell)", "automl.engine.study_search", "StudySearch", "on_trial_complete"),
    ("JobCallback.on_trial_start (MLflow child run)", "automl.engine.callbacks", "JobCallback", "on_trial_start"),
    ("JobCallback.on_trial_result (MLflow metrics)", "automl.engine.callbacks", "JobCallback", "on_trial_result"),
    ("JobCallback.on_trial_complete (MLflow end)", "automl.engine.callbacks", "JobCallback", "on_trial_complete"),
    ("WriteBehind.send (a write to the writer process)", "automl.engine.write_behind", "WriteBehind", "send"),
    ("  RemoteTrialRuns.create_trial_run (tracking thread)", "automl.engine.write_behind", "RemoteTrialRuns", "create_trial_run"),
    ("  RemoteTrialRuns.update_run (tracking thread)", "automl.engine.write_behind", "RemoteTrialRuns", "update_run"),
    ("JobStopper.stop_all (per loop step)", "automl.engine.callbacks", "JobStopper", "stop_all"),
    ("TuneController.step (whole driver loop)", "ray.tune.execution.tune_controller", "TuneController", "step"),
    ("Tuner.fit", "ray.tune.tuner", "Tuner", "fit"),
]


def timed_hooks_service(n: int, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``call`` (the service path) with perf_counter wrappers on its driver hooks: ms per trial."""
    import functools
    import importlib
    import threading

    # per label: [calls, total seconds, first start, last end (perf_counter clock), calls off the main thread]
    totals: dict[str, list[float]] = {label: [0, 0.0, float("inf"), 0.0, 0] for label, *_ in TIMED_HOOKS}
    main_thread = threading.main_thread()
    restore = []
    for label, module, cls_name, meth in TIMED_HOOKS:
        cls = getattr(importlib.import_module(module), cls_name, None)
        original = None if cls is None else cls.__dict__.get(meth)
        if original is None:  # renamed or gone in this version of the code: reported with 0 calls
            continue

        def wrapper(*a: Any, __orig: Any = original, __acc: list[float] = totals[label], **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return __orig(*a, **k)
            finally:
                end = time.perf_counter()
                __acc[0] += 1
                __acc[1] += end - start
                __acc[2] = min(__acc[2], start)
                __acc[3] = end
                if threading.current_thread() is not main_thread:
                    __acc[4] += 1

        setattr(cls, meth, functools.wraps(original)(wrapper))
        restore.append((cls, meth, original))
    t_call = time.perf_counter()
    try:
        with C.TransactionCounter() as txns:
            run = call()
    finally:
        t_return = time.perf_counter()
        for cls, meth, original in restore:
            setattr(cls, meth, original)
    rows = [
        {
            "call": label,
            "calls": int(c),
            "total_s": t,
            "ms_per_trial": 1000 * t / n,
            "thread": "-" if not c else "main" if not off else "other" if off == c else "both",
        }
        for label, (c, t, _first, _last, off) in totals.items()
    ]
    fit = totals["Tuner.fit"]
    starts = totals["JobCallback.on_trial_start (MLflow child run)"]
    completes = totals["JobCallback.on_trial_complete (MLflow end)"]
    first_start, last_complete = starts[2], completes[3]
    if not (fit[0] and starts[0] and completes[0]):  # a hook renamed in this version of the code
        phases: dict[str, float | None] = {
            "before_tune_s": None,
            "tune_start_to_first_trial_s": None,
            "first_trial_to_last_trial_s": None,
            "last_trial_to_tune_end_s": None,
            "after_tune_s": None,
        }
    else:
        phases = {
            "before_tune_s": fit[2] - t_call,  # spec, plan, storage, MLflow parent run, sampler, Tuner built
            "tune_start_to_first_trial_s": first_start - fit[2],  # trial actors starting (their imports)
            "first_trial_to_last_trial_s": last_complete - first_start,
            "last_trial_to_tune_end_s": fit[3] - last_complete,  # Tune stopping actors, final experiment state
            "after_tune_s": t_return - fit[3],  # reading the study back, the job's MLflow summary
        }
    return {"trials": n, "wall_s": run["wall_s"], "calls": rows, "phases": phases, "sql_per_trial": txns.per(n)}


def worker_import_s() -> dict[str, float]:
    """What a fresh Tune actor of each path imports before its first trial, timed in a subprocess."""
    import subprocess

    code = (
        "import time; t = time.perf_counter(); import ray.tune; a = time.perf_counter();"
        "import workers.trainable; b = time.perf_counter(); print(a - t, b - a)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=str(C.REPO_ROOT)
    ).stdout.split()
    return {"import_ray_tune_s": float(out[0]), "then_import_workers_trainable_s": float(out[1])}


def profile_service(n: int, call: Callable[[], dict[str, Any]], text_out: Path) -> dict[str, Any]:
    """The service path under cProfile: the main thread (Tune's driver loop, where the searcher
    and callbacks run) and every Python thread started during the call (a tracking writer...)."""
    import threading

    prof = cProfile.Profile()
    thread_profiles: list[tuple[threading.Thread, cProfile.Profile]] = []

    def start_thread_profile(*_args: Any) -> None:
        sys.setprofile(None)
        p = cProfile.Profile()
        thread_profiles.append((threading.current_thread(), p))
        p.enable()

    threading.setprofile(start_thread_profile)
    prof.enable()
    try:
        run = call()
    finally:
        prof.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
    stats = pstats.Stats(prof)
    threads = []
    for thread, p in thread_profiles:
        if thread.is_alive():  # still running (Ray's own): its profile cannot be read safely
            threads.append({"name": thread.name, "merged": False})
            continue
        tstats = pstats.Stats(p)
        total = sum(v[2] for v in tstats.stats.values())  # type: ignore[attr-defined]
        idle = sum(
            v[2]
            for (f, _l, name), v in tstats.stats.items()  # type: ignore[attr-defined]
            if f == "~" and ("acquire" in name or "wait" in name or "sleep" in name)
        )
        threads.append({"name": thread.name, "merged": True, "busy_ms_per_trial": 1000 * (total - idle) / n})
        stats.add(p)
    rows = []
    for label, path_part, func in FOCUS:
        ncalls, cum = 0, 0.0
        for (filename, _line, name), (_cc, nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            if name == func and path_part in filename.replace("\\", "/"):
                ncalls += nc
                cum = max(cum, ct) if label.startswith("Tuner.fit") else cum + ct
        rows.append({"call": label, "calls": ncalls, "cum_s": cum, "ms_per_trial": 1000 * cum / n})
    main_stats = pstats.Stats(prof)
    fit = max((v[3] for (f, _l, name), v in main_stats.stats.items() if name == "fit" and "ray/tune/tuner.py" in f), default=0.0)  # type: ignore[attr-defined]
    wait = sum(v[3] for (f, _l, name), v in main_stats.stats.items() if name == "wait" and "ray/_private/worker.py" in f)  # type: ignore[attr-defined]
    buf = io.StringIO()
    s = pstats.Stats(prof, stream=buf)
    for thread, p in thread_profiles:
        if not thread.is_alive():
            s.add(p)
    s.sort_stats("cumulative").print_stats(r"automl|optuna|mlflow|tune/execution|tune/search|tune/callback", 100)
    buf.write("\n\n==== top 60 by own (total) time ====\n")
    s.sort_stats("tottime").print_stats(60)
    text_out.parent.mkdir(parents=True, exist_ok=True)
    text_out.write_text(
        f"cProfile of the service path, {n} no-op trials: the main thread (the Tune driver) and the Python threads "
        f"started during the call ({', '.join(t['name'] for t in threads if t['merged']) or 'none'}), merged; "
        f"wall under profile {run['wall_s']:.2f} s\n\n" + buf.getvalue()
    )
    return {
        "trials": n,
        "wall_s_under_profile": run["wall_s"],
        "driver_busy_ms_per_trial": 1000 * (fit - wait) / n,
        "driver_waiting_ms_per_trial": 1000 * wait / n,
        "threads": threads,
        "calls": rows,
        "text": str(text_out),
    }


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    def extra(p: Any) -> None:
        p.add_argument("--trials", type=int, help="trials for (a), (b), (d) (default 200; smoke 8)")
        p.add_argument("--handwired-trials", type=int, help="trials for (c) (default 40; smoke 2)")
        p.add_argument(
            "--profile-trials",
            type=int,
            help="trials for the profiled service runs (default 100; 0 = skip; smoke: the service's full run is the profiled one)",
        )
        p.add_argument("--sampler", choices=["tpe", "random"], default="tpe")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--repeats",
            type=int,
            default=1,
            help="time each path's full run this many times, the paths interleaved; the median counts",
        )

    args = C.parse_args("overhead", "Per-trial overhead: bare Optuna, bare Ray Tune, hand-wired, the service.", extra)
    n = args.trials or (8 if args.smoke else 200)
    n_hw = args.handwired_trials or (2 if args.smoke else 40)
    n_prof = args.profile_trials if args.profile_trials is not None else 100
    # A short run on the same stores first (imports, schema creation: discarded), then a small and
    # the full run: wall(N)/N is the per-trial figure; the two sizes split it into a fixed
    # cost per search call (Ray actors starting, the job's MLflow run...) and a marginal cost per trial.
    warm = 0 if args.smoke else 4
    # (smoke: no second run; the marginal and fixed costs are not measured)
    small = {} if args.smoke else {"bare_optuna": 20, "bare_tune": 20, "handwired": 4, "service": 20, "service_inline": 20}
    plots = not args.smoke  # the service's end-of-job plots: the smoke's paths run without them
    out = C.console()
    C.quiet_logging()
    info = C.machine()

    with tempfile.TemporaryDirectory(prefix="automl-bench-overhead-") as tmp:
        workdir = Path(tmp)
        home = workdir / "automl-home"
        t0 = time.perf_counter()
        C.init_ray()
        ray_init_s = time.perf_counter() - t0
        import automl  # noqa: F401 - imported before timing, like ray

        paths: dict[str, dict[str, Any]] = {}
        text_out = Path(args.out).with_name(Path(args.out).stem + "_profile.txt")
        smoke_profile: dict[str, Any] = {}

        def service_path(k: int) -> dict[str, Any]:
            if not (args.smoke and k == n and n_prof > 0 and not smoke_profile):
                return run_service(k, args.sampler, args.seed, home, plots=plots)
            # smoke: the service's one full run is also its instrumented run (the figures are not the point)
            result: dict[str, Any] = {}
            hooks: dict[str, Any] = {}

            def plain() -> dict[str, Any]:
                result.update(run_service(k, args.sampler, args.seed, home, plots=plots))
                return result

            def hooked() -> dict[str, Any]:
                hooks.update(timed_hooks_service(k, plain))
                return {"wall_s": hooks["wall_s"]}

            smoke_profile.update(profile_service(k, hooked, text_out), timed_hooks=hooks)
            return result

        plan = [
            ("bare_optuna", n, lambda k: run_bare_optuna(k, args.sampler, args.seed)),
            ("bare_tune", n, lambda k: run_bare_tune(k, args.sampler, args.seed, workdir / "bare")),
            ("handwired", n_hw, lambda k: run_handwired(k, args.sampler, args.seed, workdir)),
            ("service", n, service_path),
            (
                "service_inline",
                n,
                lambda k: run_service(k, args.sampler, args.seed, workdir / "home-inline", write_behind=False, plots=plots),
            ),
        ]
        warmups: dict[str, Any] = {}
        if warm:
            for name, _trials, call in plan:
                with out.status(f"{name}: warm-up ({warm} trials)"):
                    warmups[name] = call(warm)
        # Each repeat runs every path, one after the other (side by side in time): its short run
        # (for the marginal/fixed split), then its full run, counted in SQL.
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in plan}
        for rep in range(args.repeats):
            for name, trials, call in plan:
                tag = f" (repeat {rep + 1}/{args.repeats})" if args.repeats > 1 else ""
                short = None
                if name in small:
                    with out.status(f"{name}: {small[name]} trials{tag}"):
                        short = call(small[name])
                busy = C.machine_busy_s()
                with out.status(f"{name}: {trials} trials{tag}"), C.TransactionCounter() as txns:
                    run = call(trials)
                after = C.machine_busy_s()
                run["machine_cpu_s"] = after - busy if busy is not None and after is not None else None
                run["short_wall_s"] = short["wall_s"] if short else None
                run["marginal_per_trial_s"] = (run["wall_s"] - short["wall_s"]) / (trials - small[name]) if short else None
                run["txns"] = txns
                runs[name].append(run)
        for name, trials, _call in plan:
            walls = [r["wall_s"] for r in runs[name]]
            run = dict(sorted(runs[name], key=lambda r: r["wall_s"])[len(walls) // 2])  # the median run
            txns = run.pop("txns")
            margins = [r["marginal_per_trial_s"] for r in runs[name] if r["marginal_per_trial_s"] is not None]
            marginal = C.median(margins) if margins else None
            run.update(
                walls_s=walls,
                per_trial_s=run["wall_s"] / trials,
                trials_per_s=trials / run["wall_s"],
                small_trials=small.get(name),
                small_walls_s=[r["short_wall_s"] for r in runs[name]] if name in small else None,
                marginal_per_trial_s=marginal,
                machine_cpu_per_trial_s=None if run.get("machine_cpu_s") is None else run["machine_cpu_s"] / trials,
                marginals_s=margins or None,
                fixed_per_call_s=run["wall_s"] - marginal * trials if marginal is not None else None,
                warmup_trials=warm,
                warmup_wall_s=warmups[name]["wall_s"] if name in warmups else None,
                # SQL per trial, by database file (the job's whole call, divided by its trials)
                sql_per_trial=txns.per(trials),
                write_transactions_per_trial=sum(v["write_transactions"] for v in txns.per(trials).values()),
                statements_per_trial=sum(v["statements"] for v in txns.per(trials).values()),
            )
            run.pop("short_wall_s", None)
            paths[name] = run
        # The same ratio within each repeat (runs minutes apart see different loads on a shared machine).
        per_repeat = {
            "service_over_bare_tune": [
                C.ratio(s["wall_s"] / n, b["wall_s"] / n) for s, b in zip(runs["service"], runs["bare_tune"], strict=True)
            ],
            "handwired_over_service": [
                C.ratio(h["wall_s"] / n_hw, s["wall_s"] / n) for h, s in zip(runs["handwired"], runs["service"], strict=True)
            ],
        }

        profile = smoke_profile or None
        if n_prof > 0 and not args.smoke:

            def service_call() -> dict[str, Any]:
                return run_service(n_prof, args.sampler, args.seed, home)

            with out.status(f"service under cProfile: {n_prof} trials"):
                profile = profile_service(n_prof, service_call, text_out)
            with out.status(f"service with timed hooks: {n_prof} trials"):
                profile["timed_hooks"] = timed_hooks_service(n_prof, service_call)
        if profile is not None:
            profile["worker_imports"] = None if args.smoke else worker_import_s()

    per = {k: v["per_trial_s"] for k, v in paths.items()}
    marg = {k: v["marginal_per_trial_s"] for k, v in paths.items()}
    ratios = {
        "service_over_bare_tune": C.ratio(per["service"], per["bare_tune"]),
        "handwired_over_service": C.ratio(per["handwired"], per["service"]),
        "service_over_bare_optuna": C.ratio(per["service"], per["bare_optuna"]),
        "bare_tune_over_bare_optuna": C.ratio(per["bare_tune"], per["bare_optuna"]),
        "handwired_over_bare_tune": C.ratio(per["handwired"], per["bare_tune"]),
        "service_inline_over_service": C.ratio(per["service_inline"], per["service"]),
    }
    marginal_ratios = {
        "service_over_bare_tune": C.ratio(marg["service"], marg["bare_tune"]),
        "handwired_over_service": C.ratio(marg["handwired"], marg["service"]),
        "service_over_bare_optuna": C.ratio(marg["service"], marg["bare_optuna"]),
    }
    payload = {
        "benchmark": "overhead",
        "smoke": args.smoke,
        "machine": info,
        "settings": {
            "trials": n,
            "handwired_trials": n_hw,
            "handwired_note": f"the hand-wired default runs {n_hw} trials, not {n}: it costs seconds per trial; "
            "per-trial figures are comparable, totals are not",
            "warmup_trials": warm,
            "repeats": args.repeats,
            "sampler": f"{args.sampler} (optuna, seed {args.seed}) on every path; bare Tune uses OptunaSearch in memory",
            "ray_init": "ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False), once, shared by (b)-(d)",
            "ray_init_s": ray_init_s,
            "bare_tune": "function trainable, one tune.report; reuse_actors=True; TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1; "
            "verbose=0; OptunaSearch in memory; FIFOScheduler; max_concurrent_trials=2",
            "handwired": "Tune defaults (reuse_actors=False, CSV/JSON/TBX loggers, default verbosity, output discarded) + "
            "OptunaSearch(storage=RDBStorage(sqlite)) + MLflowLoggerCallback(sqlite); storage_path in a temp dir",
            "service": "automl.search(n_trials=N, max_steps=1, scheduler='fifo', max_concurrent=2) with a temp AUTOML_HOME "
            "(Optuna on SQLite, MLflow on SQLite, Ray Tune); the study and MLflow trial writes in the job's writer process",
            "service_inline": "the same with AUTOML_WRITE_BEHIND=0: those writes made in the driver process (a thread for MLflow)",
            "plots": "the service's end-of-job plots drawn, as by default" if plots else "no end-of-job plots (smoke)",
            "machine_cpu": "machine_cpu_per_trial_s: CPU seconds the whole machine spent busy during the full run (/proc/stat, "
            "every process: the driver, Ray's workers and daemons, the writer process), per trial",
        },
        "paths": paths,
        "ratios": ratios,
        "ratios_note": "ratios of wall(N)/N per trial, each path with its own N (hand-wired: fewer trials, so its fixed "
        "cost weighs more per trial); marginal_ratios compare the marginal cost per extra trial, fixed costs taken out",
        "marginal_ratios": marginal_ratios,
        "ratios_per_repeat": per_repeat,
        "targets": {
            "service_over_bare_tune_at_most": 1.5,
            "handwired_over_service_at_least": 5.0,
            "service_over_bare_tune_met": ratios["service_over_bare_tune"] is not None
            and ratios["service_over_bare_tune"] <= 1.5,
            "handwired_over_service_met": ratios["handwired_over_service"] is not None
            and ratios["handwired_over_service"] >= 5.0,
        },
        "profile": profile,
    }
    C.write_json(args.out, payload)

    labels = {
        "bare_optuna": "(a) bare Optuna",
        "bare_tune": "(b) bare Tune",
        "handwired": "(c) hand-wired",
        "service": "(d) service",
        "service_inline": "(e) service, writes in driver",
    }
    out.print(
        C.table(
            f"Per-trial overhead of no-op trials ({args.sampler} sampler, 2 CPUs)",
            [
                "path",
                "trials",
                "wall s",
                "ms / trial",
                "trials / s",
                "complete",
                "marginal ms / trial",
                "fixed s / call",
                "machine CPU ms / trial",
                "SQL stmts / trial",
                "write txns / trial",
            ],
            [
                [
                    labels[k],
                    v["trials"],
                    v["wall_s"],
                    1000 * v["per_trial_s"],
                    v["trials_per_s"],
                    v["complete"],
                    None if v["marginal_per_trial_s"] is None else 1000 * v["marginal_per_trial_s"],
                    v["fixed_per_call_s"],
                    None if v["machine_cpu_per_trial_s"] is None else 1000 * v["machine_cpu_per_trial_s"],
                    v["statements_per_trial"],
                    v["write_transactions_per_trial"],
                ]
                for k, v in paths.items()
            ],
            caption="(a) in-memory study.optimize; (b) Tune, actors reused, loggers off, OptunaSearch in memory; "
            "(c) Tune defaults + OptunaSearch on SQLite + MLflowLoggerCallback; (d) automl.search; (e) the same, its study and MLflow "
            "trial writes in the driver (AUTOML_WRITE_BEHIND=0). machine CPU: all processes, /proc/stat. "
            f"median of {args.repeats} run(s). ms / trial = wall / trials. "
            + (
                f"marginal (median over repeats) and fixed: from a short run of {', '.join(f'{k} {v}' for k, v in small.items())} trials. "
                if small
                else "smoke: marginal and fixed not measured. "
            )
            + f"ray.init {ray_init_s:.1f} s, excluded.",
        )
    )
    rep_note = (
        ""
        if args.repeats == 1
        else (
            f"; within each repeat: service / bare Tune {', '.join(C.fmt(x) for x in per_repeat['service_over_bare_tune'])}, "
            f"hand-wired / service {', '.join(C.fmt(x) for x in per_repeat['handwired_over_service'])}"
        )
    )
    out.print(
        C.table(
            "Ratios of per-trial time (median runs" + rep_note + ")",
            ["ratio", "wall / trials", "marginal", "target (wall / trials)"],
            [
                [
                    "service / bare Tune",
                    ratios["service_over_bare_tune"],
                    marginal_ratios["service_over_bare_tune"],
                    C.verdict(ratios["service_over_bare_tune"], 1.5, at_most=True),
                ],
                [
                    "hand-wired / service",
                    ratios["handwired_over_service"],
                    marginal_ratios["handwired_over_service"],
                    C.verdict(ratios["handwired_over_service"], 5.0, at_most=False),
                ],
                ["service / bare Optuna", ratios["service_over_bare_optuna"], marginal_ratios["service_over_bare_optuna"], ""],
                ["bare Tune / bare Optuna", ratios["bare_tune_over_bare_optuna"], None, ""],
                ["hand-wired / bare Tune", ratios["handwired_over_bare_tune"], None, ""],
                ["service, writes in driver / service", ratios["service_inline_over_service"], None, ""],
            ],
        )
    )
    out.print(
        C.table(
            "SQL per trial, by database file (whole search call / trials)",
            ["path", "database", "statements", "commits", "write transactions"],
            [
                [labels[k], db, c["statements"], c["commits"], c["write_transactions"]]
                for k, v in paths.items()
                for db, c in sorted(v["sql_per_trial"].items())
            ],
            caption="counted in this process: (d)'s trial writes are made by its writer process and are not in its rows; "
            "(e) makes the same writes here.",
        )
    )
    if profile is not None:
        out.print(
            C.table(
                f"Service path under cProfile ({profile['trials']} trials, wall {profile['wall_s_under_profile']:.1f} s; "
                "cumulative, all Python threads)",
                ["call", "calls", "cum s", "ms / trial"],
                [[r["call"], r["calls"], r["cum_s"], r["ms_per_trial"]] for r in profile["calls"] if r["calls"]],
                caption=f"main thread: busy {profile['driver_busy_ms_per_trial']:.1f} ms/trial, waiting in ray.wait "
                f"{profile['driver_waiting_ms_per_trial']:.1f} ms/trial. Other threads merged: "
                + (
                    ", ".join(
                        f"{t['name']} (busy {t['busy_ms_per_trial']:.1f} ms/trial)" for t in profile["threads"] if t["merged"]
                    )
                    or "none"
                )
                + f". Full listing: {profile['text']}",
            )
        )
        hooks = profile["timed_hooks"]
        out.print(
            C.table(
                f"Service driver hooks, perf_counter wrappers, no profiler ({hooks['trials']} trials, wall {hooks['wall_s']:.1f} s)",
                ["call", "thread", "calls", "total s", "ms / trial"],
                [[r["call"], r["thread"], r["calls"], r["total_s"], r["ms_per_trial"]] for r in hooks["calls"]],
                caption="thread: main = Tune's driver loop (on the critical path); other = a background thread",
            )
        )
        imports = profile["worker_imports"]
        out.print(
            C.table(
                "Where one service search call's time goes (same run)",
                ["phase", "s"],
                [[k.removesuffix("_s").replace("_", " "), v] for k, v in hooks["phases"].items()],
                caption=None
                if imports is None
                else f"a fresh process: import ray.tune {imports['import_ray_tune_s']:.2f} s, then "
                f"import workers.trainable (what every service trial actor imports) {imports['then_import_workers_trainable_s']:.2f} s",
            )
        )
    print_phases(out, paths)
    out.print(f"JSON: {args.out}")
    return 0


def print_phases(out: Any, paths: dict[str, dict[str, Any]]) -> None:
    """The service's own phase times (SearchResult.phases) of each service path's median run, side by side."""
    names = [name for name in ("service", "service_inline") if paths.get(name, {}).get("phases")]
    if not names:
        return
    phases = list(paths[names[0]]["phases"])
    rows = [[phase, *(paths[name]["phases"].get(phase) for name in names)] for phase in phases]
    rows.append(["in all (the call's wall time)", *(paths[name]["wall_s"] for name in names)])
    out.print(
        C.table(
            "Where the service's time goes, by its own phases (median run, seconds)",
            ["phase", *names],
            rows,
            caption="trials: Tune's fit, the trials themselves included; the rest is the search's fixed cost",
        )
    )


if __name__ == "__main__":
    sys.exit(main())
