"""Sample efficiency at equal compute: the service default (TPE + ASHA) against random search.

Three methods, each given the same budget of E trained epochs (steps), not trials:

(1) service: ``automl.search(..., sampler="tpe", scheduler="asha")`` (the service default;
    ASHA reduction factor 2, grace period 1);
(2) random: ``automl.search(..., sampler="random", scheduler="fifo")``: random search, no early stopping;
(3) tune: plain ``tune.Tuner`` with Tune's default search (``BasicVariantGenerator``, random
    sampling from the equivalent ``tune.uniform/loguniform/choice`` space, seeded) and its
    default FIFO scheduler; ``reuse_actors=True``, loggers off, ``verbose=0``.

Epochs are counted from what each trial reported: for the service paths, the steps of every
trial in the Optuna study (``len(trial.intermediate_values)``); for Tune, each trial's last
``training_iteration``. FIFO trials cost ``max_steps`` epochs each, so (2) and (3) run
``E / max_steps`` trials. The service (1) runs more trials than it can afford; then, reading its
study in trial-number order, only the trials whose cumulative epochs fit in E are kept, and its
result is the best COMPLETE value among those (a PRUNED trial's value is from an earlier step and
is not compared).

Tasks:
(a) synthetic functions with known optima (Branin, and a shifted 4-D Rosenbrock), reported as a
    learning curve ``f(x) + c / step``: the final value is ``f(x) + c / max_steps`` and
    regret = best final value - (f* + c / max_steps) = best f(x) - f*. (Idealised: at any step
    the ranking of trials is exactly their final ranking, so early stopping has a perfect signal.)
(b) the built-in MLP trainer on the bundled wine data, space ``mlp-small``, metric val_accuracy;
    the Tune path runs the same trainer code (``workers.trainable.run_trial``) on the same split.

Per task: the median (over seeds) regret or best accuracy per method, and the ratio
"epochs random search (2) needed to reach its own final best / epochs a method needed to first
reach that value" (a method that does not reach it within E counts as ratio 0 in the median).
Targets (the issue): the service reaches random search's best validation score with at most a
third of its epochs (ratio >= 3), and has a lower median regret than random on the synthetic functions.

    .venv/bin/python benchmarks/sample_efficiency.py [--smoke] [--seeds N] [--out PATH]
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

CURVE_C = 1.0  # the learning-curve term c / step
METHODS = ("service", "random", "tune")
LABELS = {
    "service": "(1) TPE+ASHA",
    "random": "(2) random+FIFO",
    "tune": "(3) Tune default",
}
RATIO_TARGET = 3.0


# -- the synthetic functions -------------------------------------------------------------------


def branin(p: dict[str, Any]) -> float:
    x1, x2 = float(p["x1"]), float(p["x2"])
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


ROSEN_SHIFT = (0.6, -0.4, 0.9, -0.2)


def rosen4(p: dict[str, Any]) -> float:
    """4-D Rosenbrock moved so its minimum (0) is at x = ROSEN_SHIFT, not at a corner or the centre."""
    z = [float(p[f"x{i}"]) - ROSEN_SHIFT[i] + 1.0 for i in range(4)]
    return sum(100.0 * (z[i + 1] - z[i] ** 2) ** 2 + (1.0 - z[i]) ** 2 for i in range(3))


SYNTHETIC: dict[str, dict[str, Any]] = {
    "branin": {
        "fn": branin,
        "optimum": 0.397887357729738,
        "space": {"x1": {"type": "float", "low": -5.0, "high": 10.0}, "x2": {"type": "float", "low": 0.0, "high": 15.0}},
    },
    "rosenbrock4": {
        "fn": rosen4,
        "optimum": 0.0,
        "space": {f"x{i}": {"type": "float", "low": -2.0, "high": 2.0} for i in range(4)},
    },
}


def branin_objective(params: dict[str, Any], ctx: Any) -> None:
    value = branin(params)
    for step in range(1, ctx.max_epochs + 1):
        ctx.report(loss=value + CURVE_C / step, step=step)


def rosen4_objective(params: dict[str, Any], ctx: Any) -> None:
    value = rosen4(params)
    for step in range(1, ctx.max_epochs + 1):
        ctx.report(loss=value + CURVE_C / step, step=step)


OBJECTIVES = {"branin": branin_objective, "rosenbrock4": rosen4_objective}


# -- shared helpers ----------------------------------------------------------------------------


def tune_space(space: dict[str, Any]) -> dict[str, Any]:
    """Our space format as the equivalent Tune sampling domains."""
    from ray import tune

    out: dict[str, Any] = {}
    for name, p in space.items():
        if p["type"] == "categorical":
            out[name] = tune.choice(list(p["choices"]))
        elif p["type"] == "float":
            out[name] = (tune.loguniform if p.get("log") else tune.uniform)(p["low"], p["high"])
        else:  # int
            out[name] = (tune.lograndint if p.get("log") else tune.randint)(p["low"], p["high"] + 1)
    return out


def service_env(home: Path) -> Any:
    # What the service sets for itself (setdefault) is left for it to set: start each call clean.
    return C.env(
        AUTOML_HOME=str(home), AUTOML_STORAGE_URL=None, AUTOML_DB_URL=None, MLFLOW_TRACKING_URI=None,
        RAY_ADDRESS=None, TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=None, RAY_AIR_NEW_OUTPUT=None,
    )


def study_trials(result: Any, home: Path) -> list[dict[str, Any]]:
    """The study's trials in trial-number order: state, final value, epochs reported."""
    import optuna

    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{home}/studies.db")
    return [
        {"number": t.number, "state": t.state.name, "value": t.value, "epochs": len(t.intermediate_values)}
        for t in sorted(study.trials, key=lambda t: t.number)
    ]


def within_budget(trials: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The trials, in order, whose cumulative epochs fit in ``budget``; each with ``cum_epochs``."""
    kept, cum = [], 0
    for t in trials:
        if cum + t["epochs"] > budget:
            break
        cum += t["epochs"]
        kept.append({**t, "cum_epochs": cum})
    return kept


def better(a: float, b: float, mode: str) -> bool:
    """``a`` at least as good as ``b``."""
    return a <= b if mode == "min" else a >= b


def best_complete(kept: list[dict[str, Any]], mode: str) -> float | None:
    values = [t["value"] for t in kept if t["state"] == "COMPLETE" and t["value"] is not None]
    if not values:
        return None
    return min(values) if mode == "min" else max(values)


def epochs_to_reach(kept: list[dict[str, Any]], threshold: float | None, mode: str) -> int | None:
    """Cumulative epochs when a COMPLETE trial first reached ``threshold`` (None: never, within the budget)."""
    if threshold is None:
        return None
    for t in kept:
        if t["state"] == "COMPLETE" and t["value"] is not None and better(t["value"], threshold, mode):
            return t["cum_epochs"]
    return None


def summarise(trials: list[dict[str, Any]], budget: int, mode: str, wall_s: float) -> dict[str, Any]:
    kept = within_budget(trials, budget)
    return {
        "trials_run": len(trials),
        "trials_in_budget": len(kept),
        "epochs_spent": kept[-1]["cum_epochs"] if kept else 0,
        "complete_in_budget": sum(t["state"] == "COMPLETE" for t in kept),
        "best": best_complete(kept, mode),
        "wall_s": wall_s,
        "_kept": kept,
    }


# -- the three methods -------------------------------------------------------------------------


def run_service(objective: Callable[..., Any], space: Any, *, sampler: str, scheduler: str, n_trials: int, max_steps: int,
                metric: str, mode: str, seed: int, home: Path) -> tuple[float, list[dict[str, Any]]]:
    import automl

    with service_env(home):
        wall, result = C.timed(
            lambda: automl.search(
                objective, space, n_trials=n_trials, metric=metric, mode=mode, max_steps=max_steps,
                sampler=sampler, scheduler=scheduler, max_concurrent=2, seed=seed, name="sample-efficiency",
                register_model=False,
            )
        )
        trials = study_trials(result, home)
    return wall, trials


def run_service_spec(sampler: str, scheduler: str, n_trials: int, max_steps: int, seed: int,
                     home: Path) -> tuple[float, list[dict[str, Any]]]:
    import automl

    spec = automl.JobSpec.model_validate(mlp_spec(sampler, scheduler, n_trials, max_steps, seed))
    with service_env(home):
        wall, result = C.timed(lambda: automl.run_spec(spec))
        trials = study_trials(result, home)
    return wall, trials


def mlp_spec(sampler: str, scheduler: str, n_trials: int, max_steps: int, seed: int) -> dict[str, Any]:
    return {
        "name": "sample-efficiency-wine",
        "trainer": {"name": "mlp", "dataset": "wine"},
        "space": "mlp-small",
        "metric": "val_accuracy",
        "mode": "max",
        "sampler": {"name": sampler},
        "scheduler": {"name": scheduler, "grace_period": 1},
        "budget": {"trials": n_trials, "max_epochs": max_steps},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
        "seed": seed,
        "tracking": {"register_model": False},
    }


def run_tune(trainable: Callable[..., Any], param_space: dict[str, Any], *, n_trials: int, metric: str,
             workdir: Path, seed: int) -> tuple[float, list[dict[str, Any]]]:
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=BasicVariantGenerator(random_state=seed),  # Tune's default search, seeded
            num_samples=n_trials,
            max_concurrent_trials=2,
            reuse_actors=True,
        ),  # no scheduler: Tune's default FIFO
        run_config=tune.RunConfig(name=f"tune-{uuid.uuid4().hex[:6]}", storage_path=str(workdir), verbose=0),
    )
    with C.env(TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1", RAY_AIR_NEW_OUTPUT="0"):
        wall, grid = C.timed(tuner.fit)
    trials = []
    for r in grid:
        m = r.metrics or {}
        trials.append({
            "number": m.get("trial_id", ""),
            "state": "COMPLETE" if r.error is None and metric in m else "FAIL",
            "value": m.get(metric),
            "epochs": int(m.get("training_iteration", 0)),
        })
    # Trial ids end in a zero-padded creation index: sort into creation order, like trial numbers.
    trials.sort(key=lambda t: str(t["number"]).rsplit("_", 1)[-1])
    return wall, trials


def make_synthetic_trainable(fn: Callable[[dict[str, Any]], float], max_steps: int) -> Callable[[dict[str, Any]], None]:
    def trainable(config: dict[str, Any]) -> None:
        from ray import tune

        value = fn(config)
        for step in range(1, max_steps + 1):
            tune.report({"loss": value + CURVE_C / step})

    return trainable


def make_mlp_trainable(max_steps: int, seed: int) -> Callable[[dict[str, Any]], None]:
    """The service's own trial code (same trainer, same train/validation split, a seed per trial)."""

    def trainable(config: dict[str, Any]) -> None:
        from ray import tune

        import automl
        from automl.spec import data_config
        from workers.trainable import TRIAL_NUMBER_KEY, TrialPlan, run_trial

        spec = automl.JobSpec.model_validate(mlp_spec("random", "fifo", 1, max_steps, seed))
        plan = TrialPlan(max_epochs=max_steps, seed=seed, cpus=1, gpus=0, metric="val_accuracy",
                         metrics=("val_accuracy",), trainer="mlp", data=data_config(spec))
        number = int(tune.get_context().get_trial_id().rsplit("_", 1)[-1])
        run_trial({**config, TRIAL_NUMBER_KEY: number}, plan)

    return trainable


# -- one task, one seed ------------------------------------------------------------------------


def run_synthetic(name: str, seed: int, max_steps: int, budget: int, service_trials: int, home: Path,
                  workdir: Path) -> dict[str, Any]:
    task = SYNTHETIC[name]
    n_fifo = budget // max_steps
    runs: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        if method == "tune":
            wall, trials = run_tune(make_synthetic_trainable(task["fn"], max_steps), tune_space(task["space"]),
                                    n_trials=n_fifo, metric="loss", workdir=workdir, seed=seed)
        else:
            sampler, scheduler, n = ("tpe", "asha", service_trials) if method == "service" else ("random", "fifo", n_fifo)
            wall, trials = run_service(OBJECTIVES[name], task["space"], sampler=sampler, scheduler=scheduler, n_trials=n,
                                       max_steps=max_steps, metric="loss", mode="min", seed=seed, home=home)
        runs[method] = summarise(trials, budget, "min", wall)
    final_opt = task["optimum"] + CURVE_C / max_steps
    for run in runs.values():
        run["regret"] = None if run["best"] is None else run["best"] - final_opt
    return finish_seed(runs, "min")


def run_mlp(seed: int, max_steps: int, budget: int, service_trials: int, home: Path, workdir: Path) -> dict[str, Any]:
    import yaml

    from automl.spaces import presets_dir

    space = yaml.safe_load((presets_dir() / "mlp-small.yaml").read_text())["params"]
    n_fifo = budget // max_steps
    runs: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        if method == "tune":
            wall, trials = run_tune(make_mlp_trainable(max_steps, seed), tune_space(space), n_trials=n_fifo,
                                    metric="val_accuracy", workdir=workdir, seed=seed)
        else:
            sampler, scheduler, n = ("tpe", "asha", service_trials) if method == "service" else ("random", "fifo", n_fifo)
            wall, trials = run_service_spec(sampler, scheduler, n, max_steps, seed, home)
        runs[method] = summarise(trials, budget, "max", wall)
    return finish_seed(runs, "max")


def finish_seed(runs: dict[str, dict[str, Any]], mode: str) -> dict[str, Any]:
    """Epochs each method needed to first reach random search's final best, and the ratios."""
    target = runs["random"]["best"]
    random_needed = epochs_to_reach(runs["random"]["_kept"], target, mode)
    for run in runs.values():
        run["epochs_to_random_best"] = epochs_to_reach(run["_kept"], target, mode)
        run["ratio_vs_random"] = C.ratio(random_needed, run["epochs_to_random_best"])
    for run in runs.values():
        del run["_kept"]
    return {"random_best": target, "random_epochs_to_own_best": random_needed, "methods": runs}


# -- aggregation and main ----------------------------------------------------------------------


def aggregate(seeds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in METHODS:
        runs = [s["methods"][method] for s in seeds]
        vals = [r[key] for r in runs if r[key] is not None]
        ratios = [r["ratio_vs_random"] or 0.0 for r in runs]  # not reached within E: 0
        out[method] = {
            f"median_{key}": C.median(vals) if vals else None,
            "median_ratio_vs_random": C.median(ratios),
            "reached_random_best": sum(r["epochs_to_random_best"] is not None for r in runs),
            "seeds": len(runs),
            "median_epochs_spent": C.median([r["epochs_spent"] for r in runs]),
            "median_epochs_to_random_best": C.median([r["epochs_to_random_best"] for r in runs if r["epochs_to_random_best"] is not None])
            if any(r["epochs_to_random_best"] is not None for r in runs) else None,
            "median_trials_in_budget": C.median([r["trials_in_budget"] for r in runs]),
            "wall_s": sum(r["wall_s"] for r in runs),
        }
    return out


def num(value: float | None) -> float | int | None:
    """A median of counts: shown as an integer when it is one."""
    return int(value) if value is not None and float(value).is_integer() else value


def main() -> int:
    def extra(p: Any) -> None:
        p.add_argument("--seeds", type=int, help="seeds per synthetic function (default 5; smoke 1); the MLP gets min(N, 3)")
        p.add_argument("--max-steps", type=int, default=8, help="steps (epochs) per trial at most (default 8)")

    args = C.parse_args("sample_efficiency", "Sample efficiency at equal epochs: TPE+ASHA vs random search vs Tune's default.", extra)
    n_seeds = args.seeds or (1 if args.smoke else 5)
    mlp_seeds = min(n_seeds, 3)
    max_steps = 4 if args.smoke else args.max_steps
    # The budget E in epochs: FIFO methods run E / max_steps trials. The service is given E / 2
    # trials (ASHA with reduction factor 2 costs about 2-2.5 epochs a trial), then cut at E.
    synth_budget = max_steps * (6 if args.smoke else 24)
    mlp_budget = max_steps * (4 if args.smoke else 12)
    functions = ["branin"] if args.smoke else list(SYNTHETIC)
    out = C.console()
    C.quiet_logging()
    info = C.machine()

    tasks: dict[str, Any] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="automl-bench-sample-eff-") as tmp:
        workdir = Path(tmp)
        home = workdir / "automl-home"
        C.init_ray()
        import automl  # noqa: F401

        for name in functions:
            seeds = []
            for seed in range(n_seeds):
                with out.status(f"{name}: seed {seed + 1}/{n_seeds}"):
                    seeds.append({"seed": seed, **run_synthetic(name, seed, max_steps, synth_budget, synth_budget // 2, home, workdir / "tune")})
            tasks[name] = {"kind": "synthetic", "mode": "min", "optimum": SYNTHETIC[name]["optimum"], "budget_epochs": synth_budget,
                           "seeds": seeds, "summary": aggregate(seeds, "regret")}
        seeds = []
        for seed in range(mlp_seeds):
            with out.status(f"mlp wine: seed {seed + 1}/{mlp_seeds}"):
                seeds.append({"seed": seed, **run_mlp(seed, max_steps, mlp_budget, mlp_budget // 2, home, workdir / "tune")})
        tasks["mlp_wine"] = {"kind": "mlp", "mode": "max", "budget_epochs": mlp_budget, "seeds": seeds,
                             "summary": aggregate(seeds, "best")}
    total_s = time.perf_counter() - started

    targets: dict[str, Any] = {}
    for name, task in tasks.items():
        s = task["summary"]
        targets[f"{name}_ratio_at_least_3"] = s["service"]["median_ratio_vs_random"] >= RATIO_TARGET
        if task["kind"] == "synthetic":
            sr, rr = s["service"]["median_regret"], s["random"]["median_regret"]
            targets[f"{name}_lower_regret_than_random"] = sr is not None and rr is not None and sr < rr
    payload = {
        "benchmark": "sample_efficiency",
        "smoke": args.smoke,
        "machine": info,
        "settings": {
            "seeds_synthetic": n_seeds,
            "seeds_mlp": mlp_seeds,
            "max_steps": max_steps,
            "budget_epochs_synthetic": synth_budget,
            "budget_epochs_mlp": mlp_budget,
            "service_trials_requested": {"synthetic": synth_budget // 2, "mlp": mlp_budget // 2},
            "fifo_trials": {"synthetic": synth_budget // max_steps, "mlp": mlp_budget // max_steps},
            "curve": f"report at step s = f(x) + {CURVE_C}/s; regret = best final value - (f* + {CURVE_C}/max_steps)",
            "methods": {
                "service": "automl.search / run_spec, sampler tpe (multivariate, constant liar), scheduler asha (rf 2, grace 1), max_concurrent 2",
                "random": "automl.search / run_spec, sampler random, scheduler fifo, max_concurrent 2",
                "tune": "tune.Tuner, BasicVariantGenerator(random_state=seed), FIFO, max_concurrent_trials 2, reuse_actors, "
                "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1, verbose 0",
            },
            "epochs": "service paths: len(intermediate_values) per Optuna trial; Tune: last training_iteration per trial; "
            "trials kept in trial-number order while cumulative epochs <= budget; best = best COMPLETE value among them",
            "ratio": "epochs random search needed to reach its own final best / epochs the method needed to first reach it "
            "(counted to the end of the reaching trial); not reached within budget -> 0 in the median",
            "ray_init": "ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False), once",
        },
        "tasks": tasks,
        "targets": targets,
        "total_wall_s": total_s,
    }
    C.write_json(args.out, payload)

    rows = []
    for name, task in tasks.items():
        key = "regret" if task["kind"] == "synthetic" else "best"
        for method in METHODS:
            s = task["summary"][method]
            rows.append([
                f"{name} (E={task['budget_epochs']})" if method == "service" else "",
                LABELS[method],
                s[f"median_{key}"] if key == "regret" else None,
                s[f"median_{key}"] if key == "best" else None,
                num(s["median_trials_in_budget"]),
                num(s["median_epochs_spent"]),
                num(s["median_epochs_to_random_best"]),
                f"{s['reached_random_best']}/{s['seeds']}",
                s["median_ratio_vs_random"],
                C.verdict(s["median_ratio_vs_random"], RATIO_TARGET, at_most=False) if method == "service" else "",
                s["wall_s"],
            ])
    out.print(
        C.table(
            f"Sample efficiency at equal epochs (max_steps {max_steps}; {n_seeds} seed(s) synthetic, {mlp_seeds} MLP; 2 CPUs)",
            ["task", "method", "regret", "best acc", "trials", "epochs", "to rnd best", "reached", "ratio", "target", "wall s"],
            rows,
            caption="Medians over seeds. regret / best acc: best COMPLETE final value within E. trials, epochs: kept within E. "
            "to rnd best: epochs to first reach random search's final best. (3) Tune default = BasicVariantGenerator + FIFO. "
            "ratio = epochs random search needed for its own final best / epochs the method needed to "
            "first reach it (median over seeds; not reached within E counts 0). Epochs: steps reported, trials in "
            "trial-number order, cut at E. Synthetic curves f(x) + c/step rank trials exactly at every step (idealised).",
        )
    )
    out.print(
        C.table(
            "Targets",
            ["target", "met"],
            [[k, v] for k, v in targets.items()],
            caption=f"total {total_s:.0f} s",
        )
    )
    out.print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
