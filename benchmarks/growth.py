"""Growth: the sampler's time per trial and ``automl status`` latency as a study grows to 5,000 trials.

One Optuna study in the service's own storage (``$AUTOML_HOME/studies.db``, SQLite), under the
study name of a job queued in the service's job store (``$AUTOML_HOME/jobs.db``), so
``automl status JOB`` reads it exactly as it reads a real job. The study is grown with
``study.add_trials`` (trials shaped like the service's: the ``mlp-small`` space's five
parameters, three intermediate values, a ``ray_trial_id`` user attribute; 80 % COMPLETE,
15 % PRUNED, 5 % FAIL), and at each size we measure:

- the sampler: one ``study.ask`` (the sampler's ``sample_relative`` and ``sample_independent``
  for every parameter, what ``OptunaSearch.suggest`` does) and one ``study.tell``, median of a
  few, for TPE exactly as ``automl.engine.samplers.create_sampler("tpe", ...)`` builds it for a job
  running 2 trials at once (multivariate, constant liar) and for random search; each on a
  study object kept across sizes, as a job keeps its own (warm Optuna cache);
- the job row's snapshot, as the runner keeps it: every trial the study gained is added to a
  ``SnapshotBuilder`` one at a time (what ``StoreControl.on_progress`` does per finished trial,
  plus the JSON encoding), and the row is written with ``store.record_progress``; both timed;
- ``automl status JOB`` in a subprocess (``python -m automl.cli status JOB``; interpreter start
  and imports included), and in-process the calls the command makes (``store.get``,
  ``store.events``, ``service.job_snapshot``, rendering ``views.status_view``), each timed;
- what a job written before the snapshot existed costs ``status`` instead, and what a runner
  pays once when it takes (or resumes) a job: ``service.snapshot_from_study``, every trial read
  through Optuna's RDB storage. Its result must equal the snapshot built trial by trial.

    .venv/bin/python benchmarks/growth.py [--smoke] [--out PATH]
"""

from __future__ import annotations

import functools
import io
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

FULL_SIZES = [100, 500, 1000, 2000, 5000]
SMOKE_SIZES = [50, 200]


def distributions() -> dict[str, Any]:
    """The ``mlp-small`` preset's space, as the service hands it to Optuna."""
    from automl.spaces import load_space

    return load_space("mlp-small").to_optuna()


def make_trials(start: int, count: int, dists: dict[str, Any], rng: random.Random) -> list[Any]:
    import optuna
    from optuna.distributions import CategoricalDistribution

    trials = []
    for i in range(start, start + count):
        params = {}
        for name, d in dists.items():
            if isinstance(d, CategoricalDistribution):
                params[name] = rng.choice(d.choices)
            elif getattr(d, "log", False):
                params[name] = math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
            elif isinstance(d.low, int) and isinstance(d.high, int):
                params[name] = rng.randint(d.low, d.high)
            else:
                params[name] = rng.uniform(d.low, d.high)
        draw = rng.random()
        curve = {step: 1.0 / step + rng.random() for step in (1, 2, 3)}
        attrs: dict[str, Any] = {"ray_trial_id": f"{i:08x}"}
        if draw < 0.80:
            state, value = optuna.trial.TrialState.COMPLETE, curve[3]
        elif draw < 0.95:
            state, value, curve = optuna.trial.TrialState.PRUNED, None, {1: curve[1]}
        else:
            state, value, curve = optuna.trial.TrialState.FAIL, None, {}
            attrs["fail_reason"] = "RuntimeError: boom"
        trials.append(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=value,
                intermediate_values=curve,
                user_attrs=attrs,
                state=state,
            )
        )
    return trials


def sampler_step(study: Any, dists: dict[str, Any], rng: random.Random) -> tuple[float, float]:
    """One ask (all parameters sampled, as OptunaSearch does) and one tell: their seconds."""
    t0 = time.perf_counter()
    trial = study.ask(fixed_distributions=dists)
    t1 = time.perf_counter()
    study.tell(trial, rng.random())
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def status_in_process(settings: Any, store: Any, job_id: str) -> dict[str, float]:
    """What ``automl status JOB`` does after its imports, call by call (seconds)."""
    from rich.console import Console

    from automl import service
    from automl.cli import views

    times: dict[str, float] = {}

    def step(name: str, call: Any) -> Any:
        start = time.perf_counter()
        value = call()
        times[name] = time.perf_counter() - start
        return value

    start = time.perf_counter()
    job = step("store.get", lambda: store.get(job_id))
    events = step("store.events", lambda: store.events(job.id, limit=10))
    snapshot = step("service.job_snapshot", lambda: service.job_snapshot(settings, job))
    if job.snapshot is None:
        raise RuntimeError(f"job {job_id} has no snapshot: status would have read the study")
    step(
        "views.status_view (render)",
        lambda: Console(file=io.StringIO(), width=120).print(views.status_view(job, events, snapshot, ["loss"])),
    )
    times["total"] = time.perf_counter() - start
    return times


def summaries(trials: list[Any]) -> list[Any]:
    """Optuna trials as the driver reports them to the runner when they finish."""
    from automl.results import TrialSummary

    return [
        TrialSummary(
            t.number,
            t.state.name,
            t.values[0] if t.values else None,
            dict(t.params),
            fail_reason=t.user_attrs.get("fail_reason"),
            values=tuple(t.values) if t.values else None,
        )
        for t in trials
    ]


def status_subprocess(home: Path, job_id: str, *, expect_found: bool = True) -> tuple[float, float]:
    """Run ``automl status JOB`` in a fresh interpreter: its wall seconds and its CPU seconds
    (user + system; on a loaded machine the wall time is mostly waiting for a core)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AUTOML_DB_URL", "AUTOML_STORAGE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS")
    }
    env["AUTOML_HOME"] = str(home)
    env["COLUMNS"] = "120"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "automl.cli", "status", job_id],
        env=env,
        cwd=str(C.REPO_ROOT),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if expect_found and (done.returncode != 0 or job_id not in done.stdout):
        raise RuntimeError(f"automl status failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-2000:]}")
    return wall, cpu


def import_cli_s() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import automl.cli"], cwd=str(C.REPO_ROOT), check=True, capture_output=True)
    return time.perf_counter() - start


def fit(sizes: list[int], seconds: list[float]) -> dict[str, float | None]:
    """Least-squares ``t = a + b n`` and the log-log slope ``k`` (``t ~ n^k``)."""
    n = len(sizes)
    if n < 2:
        return {"intercept_ms": None, "ms_per_1000_trials": None, "exponent": None}
    mx, my = sum(sizes) / n, sum(seconds) / n
    sxx = sum((x - mx) ** 2 for x in sizes)
    b = sum((x - mx) * (y - my) for x, y in zip(sizes, seconds, strict=True)) / sxx
    a = my - b * mx
    lx = [math.log(x) for x in sizes]
    ly = [math.log(max(y, 1e-9)) for y in seconds]
    mlx, mly = sum(lx) / n, sum(ly) / n
    k = sum((x - mlx) * (y - mly) for x, y in zip(lx, ly, strict=True)) / sum((x - mlx) ** 2 for x in lx)
    return {"intercept_ms": 1000 * a, "ms_per_1000_trials": 1000 * b * 1000, "exponent": k}


def main() -> int:
    def extra(p: Any) -> None:
        p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], help="study sizes, e.g. 100,500,1000")
        p.add_argument("--reps", type=int, help="ask+tell samples per size and sampler (default 7; smoke 2)")
        p.add_argument("--status-reps", type=int, help="automl status runs per size (default 3; smoke 1)")

    args = C.parse_args("growth", "Sampler time per trial and `automl status` latency as a study grows.", extra)
    sizes = sorted(args.sizes or (SMOKE_SIZES if args.smoke else FULL_SIZES))
    reps = args.reps or (2 if args.smoke else 7)
    status_reps = args.status_reps or (1 if args.smoke else 3)
    out = C.console()
    C.quiet_logging()
    info = C.machine()

    import optuna

    from automl import service
    from automl.engine.samplers import SamplerRequest, create_sampler
    from automl.spec import parse_spec, spec_to_yaml
    from automl.store.snapshot import SnapshotBuilder

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(0)
    dists = distributions()
    rows: list[dict[str, Any]] = []

    with (
        tempfile.TemporaryDirectory(prefix="automl-bench-growth-") as tmp,
        C.env(
            AUTOML_HOME=str(Path(tmp) / "home"),
            AUTOML_DB_URL=None,
            AUTOML_STORAGE_URL=None,
            MLFLOW_TRACKING_URI=None,
            RAY_ADDRESS=None,
        ),
    ):
        from automl.engine.studies import open_storage
        from automl.service import open_job_store
        from automl.settings import prepare, resolve_settings

        settings = resolve_settings()
        prepare(settings)
        store = open_job_store(settings)
        spec = parse_spec(
            {
                "name": "growth",
                "objective": "growth:objective",
                "space": "mlp-small",
                "metric": "loss",
                "mode": "min",
                "budget": {"trials": sizes[-1]},
            },
            source="benchmarks/growth.py",
        )
        job = store.submit(name=spec.name, spec_yaml=spec_to_yaml(spec), trials_total=sizes[-1])
        store.claim("bench-runner", lease_s=3600, job_id=job.id)
        for i in range(12):
            store.add_event(job.id, "trial_failed", f"trial {i} failed: RuntimeError: boom", runner_id="bench-runner")
        # The study under the job's study name, in the service's storage (what the runner would create).
        storage = open_storage(settings.storage_url)
        builder = optuna.create_study(study_name=job.study_name, storage=storage, direction="minimize")
        samplers = {
            "tpe": create_sampler("tpe", SamplerRequest(seed=0, concurrency=2)),
            "random": create_sampler("random", SamplerRequest(seed=0)),
        }
        studies = {name: optuna.load_study(study_name=job.study_name, storage=storage, sampler=s) for name, s in samplers.items()}
        cli_import = C.median([import_cli_s() for _ in range(status_reps)])
        # `automl status` of a job that does not exist: interpreter, imports, job store opened; no study read.
        unknown = [status_subprocess(settings.home, "no-such-job", expect_found=False) for _ in range(status_reps)]
        status_fixed = C.median([wall for wall, _ in unknown])
        status_fixed_cpu = C.median([cpu for _, cpu in unknown])

        added, build_s = 0, 0.0
        snapshot = SnapshotBuilder(["min"])  # the runner's, kept across sizes as a running job keeps it
        seen = 0
        for size in sizes:
            with out.status(f"growing the study to {size} trials"):
                have = len(builder.get_trials(deepcopy=False))
                if size > have:
                    batch = make_trials(have, size - have, dists, rng)
                    t, _ = C.timed(functools.partial(builder.add_trials, batch))
                    build_s += t
                    added += len(batch)
            row: dict[str, Any] = {"size": len(builder.get_trials(deepcopy=False))}
            with out.status(f"{size} trials: samplers"):
                for name, study in studies.items():
                    first_ask, _first_tell = sampler_step(study, dists, rng)  # the first after growth: cache refresh
                    samples = [sampler_step(study, dists, rng) for _ in range(reps)]
                    row[f"{name}_first_ask_ms"] = 1000 * first_ask
                    row[f"{name}_ask_ms"] = 1000 * C.median([a for a, _ in samples])
                    row[f"{name}_tell_ms"] = 1000 * C.median([b for _, b in samples])
                    row[f"{name}_ask_tell_ms"] = 1000 * C.median([a + b for a, b in samples])
            with out.status(f"{size} trials: the job row's snapshot"):
                # Every trial the study gained since the last size (grown ones and the samplers'),
                # added one at a time as the runner adds each finished trial.
                new = summaries(builder.get_trials(deepcopy=False)[seen:])
                seen += len(new)
                per_trial = []
                for trial in new:
                    start = time.perf_counter()
                    snapshot.add(trial)
                    snapshot.snapshot().to_json()
                    per_trial.append(time.perf_counter() - start)
                row["snapshot_update_us"] = 1e6 * C.median(per_trial)
                current = snapshot.snapshot()
                best = current.top[0].value if current.top else None
                record = functools.partial(
                    store.record_progress, job.id, "bench-runner", finished=current.finished, best_value=best, snapshot=current
                )
                writes = [C.timed(record)[0] for _ in range(reps)]
                row["record_progress_ms"] = 1000 * C.median(writes)
                row["snapshot_json_bytes"] = len(current.to_json())
            with out.status(f"{size} trials: automl status"):
                inproc = [status_in_process(settings, store, job.id) for _ in range(max(status_reps, 3))]
                row["status_in_process_ms"] = 1000 * C.median([r["total"] for r in inproc])
                row["status_in_process_parts_ms"] = {k: 1000 * C.median([r[k] for r in inproc]) for k in inproc[0]}
                runs = [status_subprocess(settings.home, job.id) for _ in range(status_reps)]
                row["status_subprocess_s"] = C.median([wall for wall, _ in runs])
                row["status_subprocess_min_s"] = min(wall for wall, _ in runs)
                row["status_subprocess_cpu_s"] = C.median([cpu for _, cpu in runs])
            row["status_under_1s"] = row["status_subprocess_s"] < 1.0
            row["status_cpu_under_1s"] = row["status_subprocess_cpu_s"] < 1.0
            with out.status(f"{size} trials: the snapshot from the whole study (pre-0002 status; a runner's claim)"):
                reads = [C.timed(lambda: service.snapshot_from_study(settings, job.study_name)) for _ in range(status_reps)]
                row["study_snapshot_ms"] = 1000 * C.median([t for t, _ in reads])
                row["snapshot_agrees_with_study"] = reads[-1][1] == current
                if not row["snapshot_agrees_with_study"]:
                    raise RuntimeError(f"at {size} trials the snapshot built trial by trial differs from the study's")
            rows.append(row)

    xs = [r["size"] for r in rows]
    fits = {
        "tpe_ask_tell": fit(xs, [r["tpe_ask_tell_ms"] / 1000 for r in rows]),
        "random_ask_tell": fit(xs, [r["random_ask_tell_ms"] / 1000 for r in rows]),
        "status_in_process": fit(xs, [r["status_in_process_ms"] / 1000 for r in rows]),
        "status_subprocess": fit(xs, [r["status_subprocess_s"] for r in rows]),
        "status_subprocess_cpu": fit(xs, [r["status_subprocess_cpu_s"] for r in rows]),
        "snapshot_update_per_trial": fit(xs, [r["snapshot_update_us"] / 1e6 for r in rows]),
        "snapshot_from_study": fit(xs, [r["study_snapshot_ms"] / 1000 for r in rows]),
    }
    last = rows[-1]
    parts = last["status_in_process_parts_ms"]
    dominant = max((k for k in parts if k != "total"), key=lambda k: parts[k])
    payload = {
        "benchmark": "growth",
        "smoke": args.smoke,
        "machine": info,
        "settings": {
            "sizes": sizes,
            "reps": reps,
            "status_reps": status_reps,
            "storage": "Optuna RDBStorage on SQLite ($AUTOML_HOME/studies.db), as the service opens it",
            "trials": "mlp-small space (5 params), 3 intermediate values, ray_trial_id user attr; 80% COMPLETE, 15% PRUNED, 5% FAIL",
            "tpe": "create_sampler('tpe', SamplerRequest(seed=0, concurrency=2)): multivariate, constant_liar",
            "sampler_timing": "median of `reps` study.ask(fixed_distributions=space) + study.tell, after one untimed (first) step",
            "status": "subprocess: python -m automl.cli status JOB (median of status_reps); in process: the command's calls",
            "snapshot": "per trial: SnapshotBuilder.add + snapshot().to_json() over the trials the study gained (median); "
            "record_progress: the job-row UPDATE with it (median of reps); study: service.snapshot_from_study (median of status_reps)",
            "build_s": build_s,
            "built_trials": added,
            "python_import_automl_cli_s": cli_import,
            "status_unknown_job_s": status_fixed,
            "status_unknown_job_cpu_s": status_fixed_cpu,
        },
        "rows": rows,
        "fits": fits,
        "status_under_1s_at_largest": last["status_under_1s"],
        "status_cpu_under_1s_at_largest": last["status_cpu_under_1s"],
        "status_dominant_call_at_largest": dominant,
    }
    C.write_json(args.out, payload)

    out.print(
        C.table(
            "Sampler time per trial (ms, median ask + tell) as the study grows",
            ["trials", "TPE ask", "TPE tell", "TPE ask+tell", "TPE first ask", "random ask+tell", "TPE / random"],
            [
                [
                    r["size"],
                    r["tpe_ask_ms"],
                    r["tpe_tell_ms"],
                    r["tpe_ask_tell_ms"],
                    r["tpe_first_ask_ms"],
                    r["random_ask_tell_ms"],
                    C.ratio(r["tpe_ask_tell_ms"], r["random_ask_tell_ms"]),
                ]
                for r in rows
            ],
            caption=f"study built with add_trials: {added} trials in {build_s:.1f} s",
        )
    )
    out.print(
        C.table(
            "`automl status JOB` latency as the study grows",
            [
                "trials",
                "subprocess s",
                "< 1 s",
                "CPU s",
                "in-process ms",
                "store.get ms",
                "events ms",
                "render ms",
                "from the study ms",
            ],
            [
                [
                    r["size"],
                    r["status_subprocess_s"],
                    r["status_under_1s"],
                    r["status_subprocess_cpu_s"],
                    r["status_in_process_ms"],
                    r["status_in_process_parts_ms"]["store.get"],
                    r["status_in_process_parts_ms"]["store.events"],
                    r["status_in_process_parts_ms"]["views.status_view (render)"],
                    r["study_snapshot_ms"],
                ]
                for r in rows
            ],
            caption=f"`automl status` of an unknown job (interpreter, imports, job store; no study read): {status_fixed:.2f} s "
            f"({status_fixed_cpu:.2f} s CPU). "
            "in-process: the command's calls after its imports, with the storage already open. 'from the study': "
            "service.snapshot_from_study, what status pays for a job written before migration 0002.",
        )
    )
    out.print(
        C.table(
            "The job row's snapshot, kept by the runner",
            ["trials", "update per trial µs", "record_progress ms", "JSON bytes", "equals the study's"],
            [
                [
                    r["size"],
                    r["snapshot_update_us"],
                    r["record_progress_ms"],
                    r["snapshot_json_bytes"],
                    r["snapshot_agrees_with_study"],
                ]
                for r in rows
            ],
        )
    )
    out.print(
        C.table(
            "Growth fits over the sizes measured: t = a + b·n, and t ~ n^k",
            ["what", "a (ms)", "b (ms per 1000 trials)", "k"],
            [[name, f["intercept_ms"], f["ms_per_1000_trials"], f["exponent"]] for name, f in fits.items()],
        )
    )
    out.print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
