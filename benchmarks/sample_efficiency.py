"""Sample efficiency at equal compute: the service default (TPE + ASHA) against random search.

Three methods, each given the same budget of E trained epochs (steps), not trials:

(1) service: ``automl.search(..., sampler="tpe", scheduler="asha")`` / ``automl.run_spec`` (the
    service default; ASHA reduction factor 2, grace period 1);
(2) random: the same calls with ``sampler="random", scheduler="fifo"``: random search, no early stopping;
(3) tune: plain ``tune.Tuner`` with Tune's default search (``BasicVariantGenerator``, random
    sampling from the equivalent ``tune.uniform/loguniform/choice`` space, seeded) and its
    default FIFO scheduler; ``reuse_actors=True``, loggers off, ``verbose=0``.

Epochs are counted from what each trial reported: for the service paths, the steps of every
trial in the Optuna study (``len(trial.intermediate_values)``); for Tune, each trial's last
``training_iteration``. FIFO trials cost ``max_steps`` epochs each, so (2) and (3) run
``E / max_steps`` trials. The service (1) is asked for more trials than it can afford; then,
reading its study in trial-number order, only the trials whose cumulative epochs fit in E are
kept. A method's *best-so-far curve* is, at each epoch count e <= E, the best COMPLETE final
value among the kept trials that had ended by e (a PRUNED trial's value is from an earlier step
and is not compared; its epochs count).

Tasks:
(a) synthetic functions with known optima (Branin, and a shifted 4-D Rosenbrock), reported as a
    learning curve ``f(x) + c / step``: the final value is ``f(x) + c / max_steps`` and
    regret = best final value - (f* + c / max_steps) = best f(x) - f*. (Idealised: at any step
    the ranking of trials is exactly their final ranking, so early stopping has a perfect signal.)
(b) the built-in MLP trainer through ``automl.run_spec`` on scikit-learn's bundled ``digits``
    (64 pixel features, 10 classes) with a hard split: 25 % of the rows train, 75 % validate
    (1,348 rows, so one example is 0.07 %), over the ``mlp`` preset (learning rate 1e-4..1e-1,
    batch size, dropout, L1, L2, width, depth), 16 epochs a trial. Random configurations score
    from 0.1 to 0.96 there: the hyperparameters matter and the top does not saturate at 1.0,
    unlike ``wine``. The Tune path runs the same trainer code (``workers.trainable.run_trial``)
    on the same split.

Per task, over seeds: the median best-so-far curve of each method (the median over seeds at
every epoch count), and from it the headline figures:
- the target: random search's final best (its median curve at E);
- the epochs each method's median curve needs to first reach that target;
- ratio = epochs random search's median curve needs / epochs the method's needs (the issue's
  "a third of the epochs of random search" is ratio >= 3), and ratio to the budget = E / epochs
  the method needs (random search spent all of E to find its best).
Per seed the same ratio is also given (epochs random search needed to reach its own final best
in that seed / epochs the method needed; not reached within E counts 0), with its median.
Targets (the issue): on the MLP, ratio >= 3; on the synthetic functions, a lower median regret
than random search. A PNG of the curves (per seed thin, median bold) is written beside the JSON.

The MLP's best score is one training's, and on this task one configuration's accuracy moves by
about 0.9 % with the trainer's seed alone (``seed_noise.py``): more than the top configurations
differ. So the MLP is also scored without that luck (``--reeval-seeds K``, default 5): every
incumbent (each trial that improved its search's best) is trained again K times with fresh trainer
seeds, the same K seeds for every configuration, outside every budget, and the best-so-far curve
is valued at the incumbent's mean: what a user would get from the configuration the search picked
at that point. The same figures are computed on those curves (``summary.reevaluated``).
And the other way round (``--random-budget-multiple M``, default 3): random search runs M x E
epochs, and the benchmark reports how many its median curve needs to reach the service's median
best at E, over the epochs the service needed (``summary.matching``).
The same figures at smaller budgets B come free (``summary.by_budget``): a run's first B epochs are
a run with budget B, since random search draws the same configurations in the same order and TPE
and ASHA do not know the budget; so one run at E = 1600 also shows how the ratio grows with B.

    .venv/bin/python benchmarks/sample_efficiency.py [--smoke] [--seeds N] [--mlp-seeds N] [--reeval-seeds K]
        [--random-budget-multiple M] [--mlp-budget-trials N] [--tasks A,B] [--out PATH]
    .venv/bin/python benchmarks/sample_efficiency.py --tasks mlp_digits --variants [A,B]   # + other ASHA/TPE settings
    .venv/bin/python benchmarks/sample_efficiency.py --report-only PATH.json         # tables and PNG again from a JSON

Latest figures and what they show: benchmarks/README.md, section "Sample efficiency".
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

CURVE_C = 1.0  # the learning-curve term c / step
METHODS = ("service", "random", "tune")
LABELS = {
    "service": "(1) TPE+ASHA",
    "random": "(2) random+FIFO",
    "tune": "(3) Tune default",
}
COLOURS = {"service": "tab:blue", "random": "tab:orange", "tune": "tab:green"}
# Other settings of the service's search, run on the MLP with --variants (for the lead to judge
# the defaults by): name -> (label, sampler, sampler options, scheduler, scheduler options).
VARIANTS: dict[str, tuple[str, str, dict[str, Any], str, dict[str, Any]]] = {
    "asha_rf3": ("(1b) TPE+ASHA rf 3", "tpe", {}, "asha", {"reduction_factor": 3}),
    "asha_rf4": ("(1c) TPE+ASHA rf 4", "tpe", {}, "asha", {"reduction_factor": 4}),
    "tpe_startup5": ("(1d) TPE 5 startup+ASHA", "tpe", {"n_startup_trials": 5}, "asha", {}),
    "hyperband": ("(1e) TPE+async Hyperband", "tpe", {}, "hyperband", {}),
    "gp": ("(1f) GP+ASHA", "gp", {}, "asha", {}),
    "tpe5_rf3": ("(1g) TPE 5 startup+ASHA rf 3", "tpe", {"n_startup_trials": 5}, "asha", {"reduction_factor": 3}),
    "grace2": ("(1h) TPE+ASHA grace 2", "tpe", {}, "asha", {"grace_period": 2}),
    "grace4": ("(1i) TPE+ASHA grace 4", "tpe", {}, "asha", {"grace_period": 4}),
    "median": ("(1j) TPE+median stopping", "tpe", {}, "median", {}),
}
VARIANT_COLOURS = ("tab:purple", "tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray", "gold", "lime")
for _i, (_name, _variant) in enumerate(VARIANTS.items()):
    LABELS[_name] = _variant[0]
    COLOURS[_name] = VARIANT_COLOURS[_i % len(VARIANT_COLOURS)]
RATIO_TARGET = 3.0
# The MLP's budget sweep: the ratio at these budgets (in full trainings) below E, read off the same runs.
BUDGET_SWEEP_TRIALS = (4, 8, 16, 24, 32, 48, 64, 80)
BY_BUDGET_NOTE = (
    "MLP: summary.by_budget (and summary.reevaluated.by_budget): the ratio at budgets B < E, from the same "
    "runs' curves cut at B (a run's first B epochs are a run with budget B)"
)
REEVAL_NUMBER_BASE = 1_000_000  # trial numbers (so trainer seeds) of re-evaluation trainings

# The MLP task: a bundled dataset and a split where the hyperparameters matter (see the docstring).
MLP_TASK = "mlp_digits"
MLP_DATASET = "digits"
MLP_SPACE = "mlp"
MLP_VAL_FRACTION = 0.75


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
        AUTOML_HOME=str(home),
        AUTOML_STORAGE_URL=None,
        AUTOML_DB_URL=None,
        MLFLOW_TRACKING_URI=None,
        RAY_ADDRESS=None,
        TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=None,
        RAY_AIR_NEW_OUTPUT=None,
    )


def study_trials(result: Any, home: Path) -> list[dict[str, Any]]:
    """The study's trials in trial-number order: state, final value, epochs reported."""
    import optuna

    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{home}/studies.db")
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "epochs": len(t.intermediate_values),
            "params": dict(t.params),
        }
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


def improving_trials(kept: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """The incumbents: each COMPLETE trial that improved on the best before it, in order."""
    out: list[dict[str, Any]] = []
    for t in kept:
        if t["state"] != "COMPLETE" or t["value"] is None:
            continue
        if not out or (t["value"] != out[-1]["value"] and better(t["value"], out[-1]["value"], mode)):
            out.append(t)
    return out


def improvements(kept: list[dict[str, Any]], mode: str, shift: float = 0.0) -> list[list[float]]:
    """The best-so-far curve as its steps: ``[epochs, best - shift]`` each time a COMPLETE trial improved the best."""
    return [[t["cum_epochs"], t["value"] - shift] for t in improving_trials(kept, mode)]


def curve_at(steps: list[list[float]], budget: int) -> list[float | None]:
    """The best-so-far value at every epoch count 1..budget (``None`` before the first COMPLETE trial)."""
    out: list[float | None] = []
    i, current = 0, None
    for e in range(1, budget + 1):
        while i < len(steps) and steps[i][0] <= e:
            current = steps[i][1]
            i += 1
        out.append(current)
    return out


def median_curve(curves: list[list[float | None]], mode: str) -> list[float | None]:
    """The median over seeds at every epoch count; a seed with nothing yet counts as the worst value."""
    import statistics

    worst = math.inf if mode == "min" else -math.inf
    out: list[float | None] = []
    for values in zip(*curves, strict=False):
        m = statistics.median_low([worst if v is None else v for v in values])
        out.append(None if math.isinf(m) else m)
    return out


def first_reach(curve: list[float | None], threshold: float | None, mode: str) -> int | None:
    """The first epoch count (1-based) where ``curve`` is at least as good as ``threshold``."""
    if threshold is None:
        return None
    for e, v in enumerate(curve, start=1):
        if v is not None and better(v, threshold, mode):
            return e
    return None


def as_steps(curve: list[float | None]) -> list[list[float]]:
    """A per-epoch curve back to its steps (what the JSON keeps: short, and exact)."""
    steps: list[list[float]] = []
    for e, v in enumerate(curve, start=1):
        if v is not None and (not steps or v != steps[-1][1]):
            steps.append([e, v])
    return steps


def summarise(trials: list[dict[str, Any]], budget: int, mode: str, wall_s: float, shift: float = 0.0) -> dict[str, Any]:
    """One method's run in one seed, cut at ``budget`` epochs; ``shift`` turns values into regret."""
    kept = within_budget(trials, budget)
    best = best_complete(kept, mode)
    return {
        "trials_run": len(trials),
        "trials_in_budget": len(kept),
        "epochs_spent": kept[-1]["cum_epochs"] if kept else 0,
        "complete_in_budget": sum(t["state"] == "COMPLETE" for t in kept),
        "pruned_in_budget": sum(t["state"] == "PRUNED" for t in kept),
        "best": best,
        "score": None if best is None else best - shift,
        "curve": improvements(kept, mode, shift),
        "incumbents": [t.get("params") for t in improving_trials(kept, mode)],  # the configuration behind each step
        "wall_s": wall_s,
        "_kept": kept,
    }


# -- the three methods -------------------------------------------------------------------------


def run_service(
    objective: Callable[..., Any],
    space: Any,
    *,
    sampler: str,
    scheduler: str,
    n_trials: int,
    max_steps: int,
    metric: str,
    mode: str,
    seed: int,
    home: Path,
    sampler_options: dict[str, Any] | None = None,
) -> tuple[float, list[dict[str, Any]]]:
    import automl

    with service_env(home):
        wall, result = C.timed(
            lambda: automl.search(
                objective,
                space,
                n_trials=n_trials,
                metric=metric,
                mode=mode,
                max_steps=max_steps,
                sampler=sampler,
                sampler_options=sampler_options,
                scheduler=scheduler,
                max_concurrent=2,
                seed=seed,
                name="sample-efficiency",
                register_model=False,
            )
        )
        trials = study_trials(result, home)
    return wall, trials


def run_service_spec(
    sampler: str,
    scheduler: str,
    n_trials: int,
    max_steps: int,
    seed: int,
    home: Path,
    sampler_options: dict[str, Any] | None = None,
    scheduler_options: dict[str, Any] | None = None,
) -> tuple[float, list[dict[str, Any]]]:
    import automl

    spec = automl.JobSpec.model_validate(
        mlp_spec(sampler, scheduler, n_trials, max_steps, seed, sampler_options, scheduler_options)
    )
    with service_env(home):
        wall, result = C.timed(lambda: automl.run_spec(spec))
        trials = study_trials(result, home)
    return wall, trials


def mlp_spec(
    sampler: str,
    scheduler: str,
    n_trials: int,
    max_steps: int,
    seed: int,
    sampler_options: dict[str, Any] | None = None,
    scheduler_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The MLP task as a job spec: what a user would submit (the sampler's and scheduler's defaults
    untouched unless a variant gives options)."""
    return {
        "name": f"sample-efficiency-{MLP_DATASET}",
        "trainer": {"name": "mlp", "dataset": MLP_DATASET, "val_fraction": MLP_VAL_FRACTION},
        "space": MLP_SPACE,
        "metric": "val_accuracy",
        "mode": "max",
        "sampler": {"name": sampler, "options": dict(sampler_options or {})},
        "scheduler": scheduler_section(scheduler, scheduler_options),
        "budget": {"trials": n_trials, "max_epochs": max_steps},
        "resources": {"cpus_per_trial": 1, "max_concurrent": 2},
        "seed": seed,
        "tracking": {"register_model": False},
    }


def scheduler_section(scheduler: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """The spec's scheduler section; a ``grace_period`` among a variant's options goes to its own field."""
    options = dict(options or {})
    grace = options.pop("grace_period", None)
    return {"name": scheduler, "options": options, **({"grace_period": grace} if grace is not None else {})}


def run_tune(
    trainable: Callable[..., Any], param_space: dict[str, Any], *, n_trials: int, metric: str, workdir: Path, seed: int
) -> tuple[float, list[dict[str, Any]]]:
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
        trials.append(
            {
                "number": m.get("trial_id", ""),
                "state": "COMPLETE" if r.error is None and metric in m else "FAIL",
                "value": m.get(metric),
                "epochs": int(m.get("training_iteration", 0)),
                "params": dict(r.config or {}),
            }
        )
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
    import automl
    from automl.spec import data_config
    from workers.trainable import TrialPlan

    spec = automl.JobSpec.model_validate(mlp_spec("random", "fifo", 1, max_steps, seed))
    plan = TrialPlan(
        max_epochs=max_steps,
        seed=seed,
        cpus=1,
        gpus=0,
        metric="val_accuracy",
        metrics=("val_accuracy",),
        trainer="mlp",
        data=data_config(spec),
    )

    def trainable(config: dict[str, Any]) -> None:
        from ray import tune

        from workers.trainable import TRIAL_NUMBER_KEY, run_trial

        # The trial number picks the trainer's seed: given in the config (re-evaluations), or Tune's creation index.
        number = config.get(TRIAL_NUMBER_KEY)
        if number is None:
            number = int(tune.get_context().get_trial_id().rsplit("_", 1)[-1])
        run_trial({**config, TRIAL_NUMBER_KEY: number}, plan)

    return trainable


def retrain(
    configs: list[dict[str, Any]], *, repeats: int, max_steps: int, job_seed: int, workdir: Path
) -> list[list[float | None]]:
    """Final validation accuracy of each configuration trained ``repeats`` times, on the job's split.

    Repeat k of every configuration uses the same trainer seed (trial number
    ``REEVAL_NUMBER_BASE + k``, far from any search's own numbers), so configurations are compared
    on common seeds. One Tune run for all of them; a training that fails scores ``None``.
    """
    from ray import tune

    from workers.trainable import TRIAL_NUMBER_KEY

    train_one = make_mlp_trainable(max_steps, job_seed)

    def trainable(config: dict[str, Any]) -> None:
        index, k = divmod(int(config["_retrain"]), repeats)
        train_one({**configs[index], TRIAL_NUMBER_KEY: REEVAL_NUMBER_BASE + k})

    tuner = tune.Tuner(
        trainable,
        param_space={"_retrain": tune.grid_search(list(range(len(configs) * repeats)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(name=f"retrain-{uuid.uuid4().hex[:6]}", storage_path=str(workdir), verbose=0),
    )
    scores: list[list[float | None]] = [[None] * repeats for _ in configs]
    with C.env(TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1", RAY_AIR_NEW_OUTPUT="0"):
        for r in tuner.fit():
            index, k = divmod(int(r.config["_retrain"]), repeats)
            if r.error is None and r.metrics and "val_accuracy" in r.metrics:
                scores[index][k] = float(r.metrics["val_accuracy"])
    return scores


def config_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def reevaluate_incumbents(
    runs: dict[str, dict[str, Any]], scores_of: Callable[[list[dict[str, Any]]], list[list[float | None]]]
) -> None:
    """Score every method's incumbents without the luck of their one training: the mean over trainer seeds.

    ``scores_of`` trains the distinct incumbents of all methods (one call, so they share seeds).
    Adds per method ``incumbent_scores``, ``reeval_curve`` (the best-so-far curve's steps, each
    valued at its incumbent's mean: it can go down when a luckier trial takes over) and
    ``reeval_score`` (the final incumbent's mean).
    """
    distinct: dict[str, dict[str, Any]] = {}
    for run in runs.values():
        for params in run["incumbents"]:
            distinct.setdefault(config_key(params), params)
    keys = list(distinct)
    scores = dict(zip(keys, scores_of([distinct[k] for k in keys]), strict=True)) if keys else {}
    for run in runs.values():
        run["incumbent_scores"] = [scores[config_key(p)] for p in run["incumbents"]]
        means = [
            statistics.fmean(v for v in s if v is not None) if any(v is not None for v in s) else None
            for s in run["incumbent_scores"]
        ]
        run["reeval_curve"] = [[step[0], m] for step, m in zip(run["curve"], means, strict=False) if m is not None]
        run["reeval_score"] = run["reeval_curve"][-1][1] if run["reeval_curve"] else None


# -- one task, one seed ------------------------------------------------------------------------


def run_synthetic(
    name: str,
    seed: int,
    max_steps: int,
    budget: int,
    service_trials: int,
    home: Path,
    workdir: Path,
    methods: tuple[str, ...] = METHODS,
) -> dict[str, Any]:
    task = SYNTHETIC[name]
    n_fifo = budget // max_steps
    final_opt = task["optimum"] + CURVE_C / max_steps
    runs: dict[str, dict[str, Any]] = {}
    for method in methods:
        if method == "tune":
            wall, trials = run_tune(
                make_synthetic_trainable(task["fn"], max_steps),
                tune_space(task["space"]),
                n_trials=n_fifo,
                metric="loss",
                workdir=workdir,
                seed=seed,
            )
        else:
            sampler, scheduler, n = ("tpe", "asha", service_trials) if method == "service" else ("random", "fifo", n_fifo)
            wall, trials = run_service(
                OBJECTIVES[name],
                task["space"],
                sampler=sampler,
                scheduler=scheduler,
                n_trials=n,
                max_steps=max_steps,
                metric="loss",
                mode="min",
                seed=seed,
                home=home,
            )
        runs[method] = summarise(trials, budget, "min", wall, shift=final_opt)
        runs[method]["regret"] = runs[method]["score"]
    return finish_seed(runs, "min")


def run_mlp(
    seed: int,
    max_steps: int,
    budget: int,
    service_trials: int,
    home: Path,
    workdir: Path,
    methods: tuple[str, ...] = METHODS,
    reeval_repeats: int = 0,
    random_multiple: int = 1,
) -> dict[str, Any]:
    """One seed of the MLP task; random search runs ``random_multiple`` x E epochs (its first E as every other method's)."""
    import yaml

    from automl.spaces import presets_dir

    space = yaml.safe_load((presets_dir() / f"{MLP_SPACE}.yaml").read_text())["params"]
    n_fifo = budget // max_steps
    runs: dict[str, dict[str, Any]] = {}
    extended: dict[str, Any] = {}
    for method in methods:
        if method == "tune":
            wall, trials = run_tune(
                make_mlp_trainable(max_steps, seed),
                tune_space(space),
                n_trials=n_fifo,
                metric="val_accuracy",
                workdir=workdir,
                seed=seed,
            )
        elif method in VARIANTS:
            _, sampler, sampler_options, scheduler, scheduler_options = VARIANTS[method]
            wall, trials = run_service_spec(
                sampler, scheduler, service_trials, max_steps, seed, home, sampler_options, scheduler_options
            )
        else:
            sampler, scheduler, n = (
                ("tpe", "asha", service_trials) if method == "service" else ("random", "fifo", n_fifo * random_multiple)
            )
            wall, trials = run_service_spec(sampler, scheduler, n, max_steps, seed, home)
            if method == "random" and random_multiple > 1:
                # Seeded random search samples the same configurations in the same order however many
                # trials it is given: its first E epochs are exactly a run of E.
                extended = summarise(trials, budget * random_multiple, "max", wall)
        runs[method] = summarise(trials, budget, "max", wall)
    with_extended = {**runs, "random_extended": extended} if extended else runs
    reeval_wall = None
    if reeval_repeats:
        reeval_wall, _ = C.timed(
            lambda: reevaluate_incumbents(
                with_extended,
                lambda configs: retrain(configs, repeats=reeval_repeats, max_steps=max_steps, job_seed=seed, workdir=workdir),
            )
        )
    extended.pop("_kept", None)
    return {**finish_seed(runs, "max"), "reeval_wall_s": reeval_wall, **({"random_extended": extended} if extended else {})}


def finish_seed(runs: dict[str, dict[str, Any]], mode: str) -> dict[str, Any]:
    """Per seed: epochs each method needed to first reach random search's final best, and the ratios."""
    target = runs["random"]["best"]
    random_needed = epochs_to_reach(runs["random"]["_kept"], target, mode)
    for run in runs.values():
        run["epochs_to_random_best"] = epochs_to_reach(run["_kept"], target, mode)
        run["ratio_vs_random"] = C.ratio(random_needed, run["epochs_to_random_best"])
    for run in runs.values():
        del run["_kept"]
    return {"random_best": target, "random_epochs_to_own_best": random_needed, "methods": runs}


# -- the start-up study (issue 14): TPE's and GP's random first trials at a job's trial budget ----


STARTUP_DEFAULT = 10  # Optuna's n_startup_trials for TPE and GP
# name -> (label, sampler, start-up). Every variant runs the service's default scheduler (ASHA), so only
# the sampler differs. "default": Optuna's 10 random start-up draws (the variant does not know the budget,
# so one run at the largest budget is cut at the smaller ones); "budget": startup_by_budget(trials) random
# draws; "budget_qmc": as many points of a scrambled Sobol sequence (Optuna's QMCSampler), then the model.
STARTUP_VARIANTS: dict[str, tuple[str, str, str]] = {
    "random": ("random search", "random", "default"),
    "tpe": ("TPE, 10 random start-up (Optuna's default)", "tpe", "default"),
    "tpe_budget": ("TPE, start-up by budget", "tpe", "budget"),
    "tpe_budget_qmc": ("TPE, start-up by budget, Sobol", "tpe", "budget_qmc"),
    "gp": ("GP, 10 random start-up (Optuna's default)", "gp", "default"),
    "gp_budget": ("GP, start-up by budget", "gp", "budget"),
    "gp_budget_qmc": ("GP, start-up by budget, Sobol", "gp", "budget_qmc"),
}
STARTUP_SYNTHETIC_VARIANTS = ("random", "tpe", "tpe_budget", "tpe_budget_qmc", "gp", "gp_budget")
STARTUP_MLP_VARIANTS = ("random", "tpe", "tpe_budget", "gp", "gp_budget")


def startup_by_budget(trials: int) -> int:
    """The candidate rule: a quarter of the budget, at least 2 and at most Optuna's 10."""
    return max(2, min(STARTUP_DEFAULT, trials // 4))


def startup_baseline(variant: str) -> str | None:
    """What a variant is compared with, seed by seed: the same sampler with Optuna's default start-up."""
    return variant.split("_")[0] if "_" in variant else None


def register_qmc_start() -> None:
    """Make ``tpe+qmc`` and ``gp+qmc`` known to the sampler registry, in this process only: the sampler's
    own proposals after ``n_startup_trials`` points of Optuna's QMCSampler (scrambled Sobol, the job seed).

    The start-up lasts while the trials the sampler itself counts are fewer than ``n_startup_trials``:
    COMPLETE and PRUNED ones for TPE, COMPLETE ones only for GP (as Optuna's samplers count them)."""
    from optuna.samplers import BaseSampler, QMCSampler
    from optuna.trial import TrialState

    from automl.engine.samplers import SAMPLERS, SamplerRequest

    class QmcStart(BaseSampler):
        def __init__(self, main: Any, n_startup: int, states: tuple[Any, ...], seed: int) -> None:
            self.main, self.n_startup, self.states = main, n_startup, states
            self.qmc = QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)

        def _which(self, study: Any) -> Any:
            return self.qmc if len(study.get_trials(deepcopy=False, states=self.states)) < self.n_startup else self.main

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self._which(study).infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            return self._which(study).sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
            return self._which(study).sample_independent(study, trial, name, distribution)

        def before_trial(self, study: Any, trial: Any) -> None:
            self.main.before_trial(study, trial)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.main.after_trial(study, trial, state, values)

    def factory(base: str, states: tuple[Any, ...]) -> Callable[[SamplerRequest], Any]:
        def build(req: SamplerRequest) -> Any:
            return QmcStart(SAMPLERS[base](req), int(req.options["n_startup_trials"]), states, req.seed)

        return build

    SAMPLERS["tpe+qmc"] = factory("tpe", (TrialState.COMPLETE, TrialState.PRUNED))
    SAMPLERS["gp+qmc"] = factory("gp", (TrialState.COMPLETE,))


def startup_sampler(variant: str, trials: int) -> tuple[str, dict[str, Any]]:
    """The registry name and options a variant runs with at a budget of ``trials`` (the count always explicit)."""
    _, sampler, startup = STARTUP_VARIANTS[variant]
    if sampler == "random":
        return "random", {}
    n = STARTUP_DEFAULT if startup == "default" else startup_by_budget(trials)
    return (f"{sampler}+qmc" if startup == "budget_qmc" else sampler), {"n_startup_trials": n}


def startup_runs(
    variant: str, budgets: list[int], run: Callable[[str, dict[str, Any], int], list[dict[str, Any]]]
) -> dict[int, list[dict[str, Any]]]:
    """A variant's trials at every budget: one run cut at each budget when it does not depend on it."""
    if STARTUP_VARIANTS[variant][2] == "default":
        sampler, options = startup_sampler(variant, max(budgets))
        trials = run(sampler, options, max(budgets))
        return {b: trials[:b] for b in budgets}
    return {b: run(*startup_sampler(variant, b), b) for b in budgets}


def startup_seed_synthetic(
    name: str, seed: int, budgets: list[int], variants: tuple[str, ...], max_steps: int, home: Path
) -> dict[str, Any]:
    """One seed of a synthetic function: each variant's regret after each budget of trials."""
    task = SYNTHETIC[name]
    final_opt = task["optimum"] + CURVE_C / max_steps

    def run(sampler: str, options: dict[str, Any], n: int) -> list[dict[str, Any]]:
        return run_service(
            OBJECTIVES[name],
            task["space"],
            sampler=sampler,
            scheduler="asha",
            n_trials=n,
            max_steps=max_steps,
            metric="loss",
            mode="min",
            seed=seed,
            home=home,
            sampler_options=options,
        )[1]

    out: dict[str, Any] = {}
    for variant in variants:
        for b, trials in startup_runs(variant, budgets, run).items():
            r = summarise(trials, 10**9, "min", 0.0, shift=final_opt)
            out.setdefault(str(b), {})[variant] = {
                "score": r["score"],
                "complete": r["complete_in_budget"],
                "trials": len(trials),
            }
    return out


def startup_seed_mlp(
    seed: int, budgets: list[int], variants: tuple[str, ...], max_steps: int, home: Path, workdir: Path, reeval_repeats: int
) -> dict[str, Any]:
    """One seed of the MLP: each variant's best val_accuracy after each budget of trials, and (``reeval_repeats``)
    its final pick's mean over that many fresh trainer seeds."""

    def run(sampler: str, options: dict[str, Any], n: int) -> list[dict[str, Any]]:
        return run_service_spec(sampler, "asha", n, max_steps, seed, home, options)[1]

    out: dict[str, Any] = {}
    picks: dict[str, dict[str, Any]] = {}
    for variant in variants:
        for b, trials in startup_runs(variant, budgets, run).items():
            r = summarise(trials, 10**9, "max", 0.0)
            out.setdefault(str(b), {})[variant] = {
                "score": r["score"],
                "complete": r["complete_in_budget"],
                "trials": len(trials),
            }
            if r["incumbents"]:
                picks[f"{b}/{variant}"] = r["incumbents"][-1]
    if reeval_repeats and picks:
        keys = list(picks)
        scores = retrain([picks[k] for k in keys], repeats=reeval_repeats, max_steps=max_steps, job_seed=seed, workdir=workdir)
        for key, values in zip(keys, scores, strict=True):
            b, variant = key.split("/")
            good = [v for v in values if v is not None]
            out[b][variant]["reeval_score"] = statistics.fmean(good) if good else None
    return out


def sign_test_p(wins: int, losses: int) -> float | None:
    """Two-sided sign test: the chance of a split at least this uneven if neither side were better (ties left out)."""
    n = wins + losses
    if n == 0:
        return None
    k = min(wins, losses)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def startup_summary(seeds: list[dict[str, Any]], mode: str, score: str = "score") -> dict[str, Any]:
    """Per budget and variant: the median score and quartiles over seeds, and seed by seed against its baseline
    (wins, losses, the sign test, and the median ratio of regrets (min) or difference of accuracies (max))."""
    out: dict[str, Any] = {}
    for b in seeds[0]["runs"]:
        rows: dict[str, Any] = {}
        for variant in seeds[0]["runs"][b]:
            values = [s["runs"][b][variant].get(score) for s in seeds]
            good = sorted(v for v in values if v is not None)
            row: dict[str, Any] = {
                "median": C.median(good) if good else None,
                "seeds": len(good),
                "q1": statistics.quantiles(good, n=4)[0] if len(good) > 1 else None,
                "q3": statistics.quantiles(good, n=4)[2] if len(good) > 1 else None,
                "median_complete": C.median([s["runs"][b][variant]["complete"] for s in seeds]),
            }
            base = startup_baseline(variant)
            if base in seeds[0]["runs"][b]:
                pairs = [(v, s["runs"][b][base].get(score)) for v, s in zip(values, seeds, strict=True)]
                pairs = [(v, w) for v, w in pairs if v is not None and w is not None]
                wins = sum(better(v, w, mode) and v != w for v, w in pairs)
                losses = sum(better(w, v, mode) and v != w for v, w in pairs)
                row.update(
                    {
                        "baseline": base,
                        "wins": wins,
                        "losses": losses,
                        "ties": len(pairs) - wins - losses,
                        "sign_test_p": sign_test_p(wins, losses),
                    }
                )
                if mode == "min":
                    ratios = [v / w for v, w in pairs if w > 0]
                    row["median_ratio_to_baseline"] = C.median(ratios) if ratios else None
                else:
                    row["median_difference_to_baseline"] = C.median([v - w for v, w in pairs]) if pairs else None
            rows[variant] = row
        out[b] = rows
    return out


def print_startup_report(out: Any, payload: dict[str, Any]) -> None:
    """One table per task: every budget and variant, the medians and the paired comparison with the baseline."""
    for name, task in payload["tasks"].items():
        views = [("score", task["summary"])] + (
            [("reeval_score", task["summary_reevaluated"])] if "summary_reevaluated" in task else []
        )
        for key, summary in views:
            rows = []
            for b, variants in summary.items():
                for variant, r in variants.items():
                    paired = r.get("median_ratio_to_baseline", r.get("median_difference_to_baseline"))
                    rows.append(
                        [
                            b if variant == next(iter(variants)) else "",
                            STARTUP_VARIANTS[variant][0],
                            task["startup_trials"][b].get(variant),
                            r["median"],
                            r["q1"],
                            r["q3"],
                            r["median_complete"],
                            r.get("baseline", ""),
                            f"{r['wins']}/{r['losses']}/{r['ties']}" if "wins" in r else "",
                            r.get("sign_test_p"),
                            paired,
                        ]
                    )
            out.print(
                C.table(
                    f"{name}: {task['score']}{' (re-evaluated)' if key == 'reeval_score' else ''} after B trials, "
                    f"{len(task['seeds'])} seeds",
                    [
                        "B",
                        "variant",
                        "start-up",
                        "median",
                        "q1",
                        "q3",
                        "complete",
                        "vs",
                        "better/worse/tie",
                        "sign p",
                        "median ratio" if task["score_mode"] == "min" else "median diff",
                    ],
                    rows,
                    caption="every variant with the service's default scheduler (ASHA) and 2 trials at once; start-up: "
                    "n_startup_trials given to the sampler; better/worse/tie: seeds where the variant beat / lost to its "
                    "baseline (the same sampler with 10 start-up trials); sign p: two-sided sign test; median ratio: of "
                    "regrets, variant / baseline (< 1 better); median diff: of accuracies, variant - baseline (> 0 better)",
                )
            )


def run_startup_study(args: Any, out: Any) -> int:
    """``--startup-budgets``: each variant's score after B trials, side by side, per task and seed."""
    budgets = sorted({int(b) for b in args.startup_budgets.split(",") if b.strip()})
    chosen = [t.strip() for t in args.tasks.split(",") if t.strip()]
    synth_variants = tuple(
        v.strip() for v in (args.startup_variants or ",".join(STARTUP_SYNTHETIC_VARIANTS)).split(",") if v.strip()
    )
    mlp_variants = tuple(v.strip() for v in (args.startup_mlp_variants or ",".join(STARTUP_MLP_VARIANTS)).split(",") if v.strip())
    unknown = sorted({*synth_variants, *mlp_variants} - set(STARTUP_VARIANTS))
    if unknown:
        raise SystemExit(f"--startup-variants: unknown {', '.join(unknown)}; known: {', '.join(STARTUP_VARIANTS)}")
    n_seeds = args.seeds or (1 if args.smoke else 20)
    mlp_seeds = args.mlp_seeds or (1 if args.smoke else 10)
    max_steps = 4 if args.smoke else args.max_steps
    mlp_steps = 2 if args.smoke else args.mlp_max_steps
    reeval_repeats = args.reeval_seeds if args.reeval_seeds is not None else (0 if args.smoke else 3)
    C.quiet_logging()
    info = C.machine()
    tasks: dict[str, Any] = {}
    started = time.perf_counter()
    # Not over the epoch comparison's JSON, the --out default.
    path = args.out if args.out != C.RESULTS_DIR / "sample_efficiency.json" else C.RESULTS_DIR / "sample_efficiency_startup.json"

    def payload(partial: dict[str, Any]) -> dict[str, Any]:
        for task in partial.values():
            task["startup_trials"] = {
                str(b): {v: startup_sampler(v, b)[1].get("n_startup_trials") for v in task["seeds"][0]["runs"][str(b)]}
                for b in budgets
            }
        return {
            "benchmark": "sample_efficiency_startup",
            "smoke": args.smoke,
            "machine": info,
            "settings": {
                "budgets_trials": budgets,
                "seeds_synthetic": n_seeds,
                "seeds_mlp": mlp_seeds,
                "max_steps_synthetic": max_steps,
                "max_steps_mlp": mlp_steps,
                "reeval_seeds": reeval_repeats,
                "variants": {v: STARTUP_VARIANTS[v][0] for v in STARTUP_VARIANTS},
                "rule": "startup_by_budget(trials) = max(2, min(10, trials // 4))",
                "runs": "automl.search (synthetic) / automl.run_spec (MLP), scheduler asha (rf 2, grace 1), max_concurrent 2, "
                "the task seed as job seed; a variant with Optuna's default start-up runs once at the largest budget and is "
                "cut at the smaller ones (its first B trials in trial-number order); the others run once per budget",
                "score": "synthetic: regret of the best COMPLETE trial among the B trials (best f(x) - f*); MLP: best COMPLETE "
                "val_accuracy, and its configuration's mean over reeval_seeds fresh trainer seeds (reeval_score)",
            },
            "tasks": partial,
            "total_wall_s": time.perf_counter() - started,
        }

    def summarised(kind: str, seeds: list[dict[str, Any]], steps: int) -> dict[str, Any]:
        mode = "min" if kind == "synthetic" else "max"
        task = {
            "kind": kind,
            "score": "regret" if kind == "synthetic" else "best val_accuracy",
            "score_mode": mode,
            "max_steps": steps,
            "seeds": seeds,
            "summary": startup_summary(seeds, mode),
        }
        if kind == "mlp" and reeval_repeats:
            task["summary_reevaluated"] = startup_summary(seeds, mode, "reeval_score")
        return task

    with tempfile.TemporaryDirectory(prefix="automl-bench-startup-") as tmp:
        home = Path(tmp) / "automl-home"
        C.init_ray()
        import automl
        import automl.plots

        # The job's plots are drawn after its search, outside what is measured: about 5 s a call, 500 calls.
        automl.plots.log_search_plots = lambda *args, **kwargs: []
        register_qmc_start()
        # --startup-resume: the seeds an earlier run of the same command wrote to the JSON stay; the rest run.
        earlier = json.loads(path.read_text())["tasks"] if args.startup_resume and path.exists() else {}
        for name in [n for n in SYNTHETIC if n in chosen]:
            seeds: list[dict[str, Any]] = earlier.get(name, {}).get("seeds", [])[:n_seeds]
            for seed in range(len(seeds), n_seeds):
                with out.status(f"start-up, {name}: seed {seed + 1}/{n_seeds}"):
                    seeds.append(
                        {"seed": seed, "runs": startup_seed_synthetic(name, seed, budgets, synth_variants, max_steps, home)}
                    )
                tasks[name] = summarised("synthetic", seeds, max_steps)
                C.write_json(path, payload(tasks))  # after every seed: a long run that stops keeps what it measured
        seeds = earlier.get(MLP_TASK, {}).get("seeds", [])[:mlp_seeds]
        for seed in range(len(seeds), mlp_seeds if MLP_TASK in chosen else 0):
            with out.status(f"start-up, mlp {MLP_DATASET}: seed {seed + 1}/{mlp_seeds}"):
                seeds.append(
                    {
                        "seed": seed,
                        "runs": startup_seed_mlp(
                            seed, budgets, mlp_variants, mlp_steps, home, Path(tmp) / "tune", reeval_repeats
                        ),
                    }
                )
            tasks[MLP_TASK] = summarised("mlp", seeds, mlp_steps)
            C.write_json(path, payload(tasks))
    result = payload(tasks)
    if earlier:
        result["settings"]["resumed"] = (
            "--startup-resume: seeds from an earlier run of the same command kept; total_wall_s is this run's"
        )
    C.write_json(path, result)
    print_startup_report(out, result)
    out.print(f"JSON: {path}  ({result['total_wall_s']:.0f} s)")
    return 0


# -- aggregation, plot and main ----------------------------------------------------------------


def median_curves(seeds: list[dict[str, Any]], budget: int, mode: str, curve: str) -> dict[str, list[float | None]]:
    """Each method's median over seeds of its ``curve`` (best so far), at every epoch count 1..budget."""
    return {m: median_curve([curve_at(s["methods"][m][curve], budget) for s in seeds], mode) for m in seeds[0]["methods"]}


def reaching(medians: dict[str, list[float | None]], mode: str) -> dict[str, Any]:
    """On median curves of equal length: random search's last value (the target), the epochs its curve needs
    to first reach it, and per method the epochs its curve needs and the ratio (not reached: 0)."""
    target = medians["random"][-1]
    random_needs = first_reach(medians["random"], target, mode)
    out: dict[str, Any] = {"target": target, "random_epochs_to_target": random_needs}
    for method, median in medians.items():
        needs = first_reach(median, target, mode)
        out[method] = {"epochs_to_target": needs, "ratio_vs_random": C.ratio(random_needs, needs) or 0.0}
    return out


def curve_figures(seeds: list[dict[str, Any]], budget: int, mode: str, curve: str, score: str) -> dict[str, Any]:
    """Median curves over seeds (each run's ``curve`` key), the epochs each method needs to reach random
    search's final value on them, and the ratios: what ``aggregate`` and ``aggregate_reevaluated`` share."""
    medians = median_curves(seeds, budget, mode, curve)
    reach = reaching(medians, mode)
    target = reach["target"]
    out: dict[str, Any] = {"target": target, "random_epochs_to_target": reach["random_epochs_to_target"], "budget_epochs": budget}
    for method in medians:
        runs = [s["methods"][method] for s in seeds]
        needs = reach[method]["epochs_to_target"]
        # Per seed: epochs random search needed for its own final value / epochs the method needed (never: 0).
        per_seed = []
        for s, run in zip(seeds, runs, strict=True):
            own = s["methods"]["random"][score]
            random_own = first_reach(curve_at(s["methods"]["random"][curve], budget), own, mode)
            per_seed.append(C.ratio(random_own, first_reach(curve_at(run[curve], budget), own, mode)) or 0.0)
        scores = [r[score] for r in runs if r[score] is not None]
        out[method] = {
            "median_score": C.median(scores) if scores else None,
            "epochs_to_target": needs,
            "ratio_vs_random": reach[method]["ratio_vs_random"],  # not reached within E: 0
            "ratio_vs_budget": C.ratio(budget, needs) or 0.0,
            "seeds_reaching_target": sum(first_reach(curve_at(r[curve], budget), target, mode) is not None for r in runs),
            "per_seed_median_ratio": C.median(per_seed),
            "seeds": len(runs),
            "median_curve": as_steps(medians[method]),
        }
    return out


def sweep_budgets(budget: int, max_steps: int) -> list[int]:
    """The budgets of the budget sweep: BUDGET_SWEEP_TRIALS full trainings that fit in ``budget``, and ``budget``."""
    return sorted({*(n * max_steps for n in BUDGET_SWEEP_TRIALS if n * max_steps < budget), budget})


def budget_sweep(seeds: list[dict[str, Any]], budgets: list[int], mode: str, curve: str) -> list[dict[str, Any]]:
    """The issue's ratio at smaller budgets B, from the same runs: a run's first B epochs are a run with budget B
    (random search draws the same configurations in the same order; TPE and ASHA do not know the budget; a
    trial counts once its last epoch fits, as ``within_budget`` keeps them). Per B: random search's median best
    at B (the target), the epochs each method's median curve needs to reach it, and the ratio."""
    # The median at an epoch count does not depend on the budget: the curves to the largest, cut at each B.
    medians = median_curves(seeds, max(budgets), mode, curve)
    rows = []
    for b in budgets:
        reach = reaching({m: median[:b] for m, median in medians.items()}, mode)
        for method, median in medians.items():
            reach[method] = {"best": median[b - 1], **reach[method]}
        rows.append({"budget_epochs": b, **reach})
    return rows


def aggregate(seeds: list[dict[str, Any]], budget: int, score_mode: str) -> dict[str, Any]:
    """Median curves over seeds, the epochs each needs to reach random search's final best, the ratios."""
    out = curve_figures(seeds, budget, score_mode, "curve", "score")
    for method in seeds[0]["methods"]:
        runs = [s["methods"][method] for s in seeds]
        reached = [r["epochs_to_random_best"] for r in runs if r["epochs_to_random_best"] is not None]
        out[method].update(
            {
                "per_seed_reached_random_best": len(reached),
                "per_seed_median_epochs_to_random_best": C.median(reached) if reached else None,
                "median_epochs_spent": C.median([r["epochs_spent"] for r in runs]),
                "median_trials_in_budget": C.median([r["trials_in_budget"] for r in runs]),
                "median_complete_in_budget": C.median([r["complete_in_budget"] for r in runs]),
                "wall_s": sum(r["wall_s"] for r in runs),
            }
        )
    return out


def aggregate_reevaluated(seeds: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    """The MLP's noise-aware figures: as ``aggregate``, on the curves of the incumbents' mean over trainer seeds.

    Target: random search's median re-evaluated curve at E (what its final pick scores without
    luck); epochs to target: where a method's median re-evaluated curve first reaches it.
    """
    out = curve_figures(seeds, budget, "max", "reeval_curve", "reeval_score")
    for method in seeds[0]["methods"]:
        out[method]["median_incumbents"] = C.median([len(s["methods"][method]["incumbents"]) for s in seeds])
    return out


def aggregate_matching(seeds: list[dict[str, Any]], budget: int, extended_budget: int, key: str) -> dict[str, Any]:
    """The other way round: how many epochs random search needs to match what the service reached in E.

    Target: the service's median curve at E (``key``: ``curve`` or ``reeval_curve``); random
    search's median curve over its extended budget. Not reached there: the ratio is at least
    ``extended_budget / service epochs`` (``ratio_at_least``).
    """
    service = median_curve([curve_at(s["methods"]["service"][key], budget) for s in seeds], "max")
    random = median_curve([curve_at(s["random_extended"][key], extended_budget) for s in seeds], "max")
    target = service[-1]
    service_needs = first_reach(service, target, "max")
    random_needs = first_reach(random, target, "max")
    return {
        "target": target,
        "service_epochs": service_needs,
        "random_epochs": random_needs,
        "random_budget_epochs": extended_budget,
        "ratio": C.ratio(random_needs, service_needs),
        "ratio_at_least": C.ratio(extended_budget, service_needs) if random_needs is None else None,
        "random_final": random[-1],
        "random_median_curve": as_steps(random),
    }


def matching_met(matching: dict[str, Any]) -> bool:
    """Random search needs at least RATIO_TARGET times the service's epochs to match it (or never does within its budget)."""
    ratio = matching["ratio"] if matching["ratio"] is not None else matching["ratio_at_least"]
    return ratio is not None and ratio >= RATIO_TARGET


def panels(tasks: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any], str, dict[str, Any] | None]]:
    """What to draw: (title, task, summary, curve key, matching) per task, plus the MLP's re-evaluated curves."""
    out = []
    for name, task in tasks.items():
        matching = task["summary"].get("matching", {})
        out.append((name, task, task["summary"], "curve", matching.get("one_training")))
        if "reevaluated" in task["summary"]:
            out.append(
                (
                    f"{name}, incumbents re-evaluated",
                    task,
                    task["summary"]["reevaluated"],
                    "reeval_curve",
                    matching.get("reevaluated"),
                )
            )
    return out


def plot(tasks: dict[str, Any], path: Path) -> Path | None:
    """Best-so-far against epochs per method (per seed thin, median bold), one panel per task, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    drawn = panels(tasks)
    fig, axes = plt.subplots(1, len(drawn), figsize=(5.2 * len(drawn), 4.2), squeeze=False)
    for ax, (name, task, s, key, matching) in zip(axes[0], drawn, strict=True):
        budget, mode = task["budget_epochs"], task["score_mode"]
        xs = list(range(1, budget + 1))
        methods = list(task["seeds"][0]["methods"])
        for method in methods:
            for seed in task["seeds"]:
                ax.step(
                    xs,
                    [math.nan if v is None else v for v in curve_at(seed["methods"][method][key], budget)],
                    where="post",
                    color=COLOURS[method],
                    alpha=0.18,
                    linewidth=0.8,
                )
            median = curve_at(s[method]["median_curve"], budget)
            ax.step(
                xs,
                [math.nan if v is None else v for v in median],
                where="post",
                color=COLOURS[method],
                linewidth=2.2,
                label=f"{LABELS[method]} (reaches target at {s[method]['epochs_to_target'] or '-'})",
            )
        if matching:
            extended = matching["random_budget_epochs"]
            ax.step(
                range(1, extended + 1),
                [math.nan if v is None else v for v in curve_at(matching["random_median_curve"], extended)],
                where="post",
                color=COLOURS["random"],
                linewidth=1.4,
                linestyle="--",
                label=f"{LABELS['random']} given {extended} epochs (reaches the service's best at "
                f"{matching['random_epochs'] or '-'})",
            )
            ax.axhline(
                matching["target"], color=COLOURS["service"], linestyle=":", linewidth=1, label="the service's best at E (median)"
            )
            ax.axvline(budget, color="black", linewidth=0.6)
        if s["target"] is not None:
            ax.axhline(
                s["target"], color="grey", linestyle="--", linewidth=1, label="target: random search's final best (median)"
            )
        if s["random_epochs_to_target"]:
            ax.axvline(
                s["random_epochs_to_target"] / RATIO_TARGET,
                color="grey",
                linestyle=":",
                linewidth=1,
                label=f"1/{RATIO_TARGET:g} of random search's epochs to it",
            )
        if mode == "min":
            ax.set_yscale("log", nonpositive="mask")
            ax.set_ylabel("regret of the best complete trial (lower is better)")
        else:
            # Zoom on where the question is decided: around the target, not the first poor trials.
            values = [v for m in methods for v in curve_at(s[m]["median_curve"], budget) if v is not None]
            values += [v for _, v in matching["random_median_curve"]] if matching else []
            if values and s["target"] is not None:
                top = max(values) + 0.004
                ax.set_ylim(max(0.0, s["target"] - max(0.03, 2 * (top - s["target"]))), min(1.0, top))
            metric = task.get("metric", "score")
            ax.set_ylabel(
                f"incumbent's {metric}, mean over seeds" if key == "reeval_curve" else f"best {metric} (higher is better)"
            )
        ax.set_xlabel("epochs trained (all trials, in trial order)")
        ax.set_title(f"{name}\n{len(task['seeds'])} seed(s), E = {budget} epochs", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right" if mode == "max" else "upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_rows(title: str, task: dict[str, Any], s: dict[str, Any], *, verdict: bool) -> list[list[Any]]:
    """One table row per method of a task's summary (or of its re-evaluated summary, which has no trial counts)."""
    rows = []
    for method in task["seeds"][0]["methods"]:
        m = s[method]
        rows.append(
            [
                title if method == "service" else "",
                LABELS[method],
                m["median_score"],
                s["target"] if method == "random" else "",
                m["epochs_to_target"],
                m["ratio_vs_random"],
                m["ratio_vs_budget"],
                C.verdict(m["ratio_vs_random"], RATIO_TARGET, at_most=False) if method == "service" and verdict else "",
                f"{m['seeds_reaching_target']}/{m['seeds']}",
                m["per_seed_median_ratio"],
                num(m.get("median_trials_in_budget")),
                num(m.get("median_complete_in_budget")),
                m.get("wall_s", ""),
            ]
        )
    return rows


def num(value: float | None) -> float | int | None:
    """A median of counts: shown as an integer when it is one."""
    return int(value) if value is not None and float(value).is_integer() else value


def add_budget_sweep(task: dict[str, Any]) -> bool:
    """Put the budget sweep (``budget_sweep``) into an MLP task's summary, and its re-evaluated twin's, where missing.

    Returns whether anything was added (a JSON from before the sweep existed gets it from its own curves)."""
    added = False
    budgets = sweep_budgets(task["budget_epochs"], task["max_steps"])
    for summary, curve in ((task["summary"], "curve"), (task["summary"].get("reevaluated"), "reeval_curve")):
        if summary is not None and "by_budget" not in summary:
            summary["by_budget"] = budget_sweep(task["seeds"], budgets, task["score_mode"], curve)
            added = True
    return added


def print_report(out: Any, payload: dict[str, Any], png: Path | None) -> None:
    """The tables of a run (or of an earlier run's JSON): the summary, the budget sweep, the other way round, the targets."""
    tasks, settings = payload["tasks"], payload["settings"]
    n_seeds, mlp_seeds = settings["seeds_synthetic"], settings["seeds_mlp"]
    max_steps, mlp_steps = settings["max_steps_synthetic"], settings["max_steps_mlp"]
    reeval_repeats, random_multiple = settings["reeval_seeds"], settings["random_budget_multiple"]
    targets, total_s = payload["targets"], payload["total_wall_s"]
    rows = []
    for name, task in tasks.items():
        s = task["summary"]
        rows += summary_rows(f"{name} (E={task['budget_epochs']})", task, s, verdict=task["kind"] == "mlp")
        if "reevaluated" in s:
            rows += summary_rows(f"{name}, re-evaluated ({reeval_repeats} seeds)", task, s["reevaluated"], verdict=True)
    out.print(
        C.table(
            f"Sample efficiency at equal epochs ({n_seeds} seed(s) synthetic, max_steps {max_steps}; {mlp_seeds} MLP, "
            f"{mlp_steps} epochs; 2 CPUs)",
            [
                "task",
                "method",
                "score",
                "target",
                "to target",
                "ratio",
                "E / to",
                "target ≥ 3",
                "seeds reach",
                "per seed",
                "trials",
                "complete",
                "wall s",
            ],
            rows,
            caption="score: median over seeds of the best COMPLETE final value within E (regret on the synthetic functions, "
            "val_accuracy on the MLP). target: random search's final best (its median curve at E). to target: epochs the "
            "method's median best-so-far curve needs to reach it. ratio = random search's epochs to target / the method's "
            "(0: never within E). E / to: the budget over the method's epochs. seeds reach: seeds whose own curve reaches it. "
            "per seed: median over seeds of (epochs random needed for its own best / epochs the method needed). trials, "
            "complete: median kept within E. Synthetic curves f(x) + c/step rank trials exactly at every step (idealised). "
            "re-evaluated: the same, each incumbent valued at its mean over fresh trainer seeds instead of its one training.",
        )
    )
    for name, task in tasks.items():
        s = task["summary"]
        if "by_budget" not in s:
            continue
        again = s.get("reevaluated", {}).get("by_budget", [None] * len(s["by_budget"]))
        out.print(
            C.table(
                f"{name}: the ratio at smaller budgets, read off the same runs (E = {task['budget_epochs']})",
                [
                    "budget (epochs)",
                    "full trainings",
                    "target",
                    "random to it",
                    "service to it",
                    "ratio",
                    "ratio ≥ 3",
                    "re-evaluated target",
                    "random to it",
                    "service to it",
                    "ratio",
                ],
                [
                    [
                        row["budget_epochs"],
                        row["budget_epochs"] // task["max_steps"],
                        row["target"],
                        row["random_epochs_to_target"],
                        row["service"]["epochs_to_target"],
                        row["service"]["ratio_vs_random"],
                        C.verdict(row["service"]["ratio_vs_random"], RATIO_TARGET, at_most=False),
                        *(
                            [
                                r["target"],
                                r["random_epochs_to_target"],
                                r["service"]["epochs_to_target"],
                                r["service"]["ratio_vs_random"],
                            ]
                            if r
                            else ["-"] * 4
                        ),
                    ]
                    for row, r in zip(s["by_budget"], again, strict=False)
                ],
                caption="a run's first B epochs are a run with budget B: random search draws the same configurations in "
                "the same order, TPE and ASHA do not know the budget. target: random search's median best at B; the "
                "service's epochs to reach it on its median curve; ratio = random's / the service's (0: not within B).",
            )
        )
    for name, task in tasks.items():
        matching = task["summary"].get("matching")
        if not matching:
            continue
        out.print(
            C.table(
                f"{name}: epochs random search needs to match the service's best at E = {task['budget_epochs']}",
                [
                    "scored by",
                    "service's best at E",
                    "service epochs to it",
                    "random search epochs to it",
                    "ratio",
                    f"random's best at {random_multiple} E",
                    "ratio ≥ 3",
                ],
                [
                    [
                        {"one_training": "one training", "reevaluated": "re-evaluated"}[key],
                        m["target"],
                        m["service_epochs"],
                        m["random_epochs"] if m["random_epochs"] is not None else f"never in {m['random_budget_epochs']}",
                        m["ratio"] if m["ratio"] is not None else f"> {m['ratio_at_least']:.2f}",
                        m["random_final"],
                        C.verdict(m["ratio"] if m["ratio"] is not None else m["ratio_at_least"], RATIO_TARGET, at_most=False),
                    ]
                    for key, m in matching.items()
                ],
                caption="the other way round from the table above: the service's median best-so-far curve at E is the "
                "target; random search, given more epochs, needs this many to reach it (medians over seeds). re-evaluated: "
                "each incumbent at its mean over fresh trainer seeds.",
            )
        )
    out.print(C.table("Targets", ["target", "met"], [[k, v] for k, v in targets.items()], caption=f"total {total_s:.0f} s"))
    if png:
        out.print(f"Plot: {png}")


def main() -> int:
    def extra(p: Any) -> None:
        p.add_argument("--seeds", type=int, help="seeds per synthetic function (default 5; smoke 1)")
        p.add_argument("--mlp-seeds", type=int, help="seeds of the MLP task (default 15; smoke 1)")
        p.add_argument("--max-steps", type=int, default=8, help="steps per trial of the synthetic functions (default 8)")
        p.add_argument("--mlp-max-steps", type=int, default=16, help="epochs per trial of the MLP (default 16)")
        p.add_argument(
            "--mlp-budget-trials",
            type=int,
            default=16,
            help="the MLP budget E in full trials: E = this x --mlp-max-steps epochs (default 16)",
        )
        p.add_argument("--tasks", default=",".join([*SYNTHETIC, MLP_TASK]), help="which tasks, comma-separated (default all)")
        p.add_argument(
            "--variants",
            nargs="?",
            const=",".join(VARIANTS),
            default="",
            help=f"also run other settings of the service's search on the MLP: some or all (no value) of {', '.join(VARIANTS)}",
        )
        p.add_argument(
            "--reeval-seeds",
            type=int,
            help="train every MLP incumbent again with this many trainer seeds and score it by their mean "
            "(the noise-aware figures; default 5, smoke 2; 0: off)",
        )
        p.add_argument(
            "--random-budget-multiple",
            type=int,
            help="MLP: random search also runs this many times E, to see how many epochs it needs to match "
            "the service's best at E (default 3, smoke 2; 1: off)",
        )
        p.add_argument(
            "--startup-budgets",
            metavar="B,B",
            help="run the start-up study instead: TPE's and GP's start-up trials at these budgets of trials "
            "(e.g. 8,16,32), every variant side by side (seeds: --seeds, default 20; --mlp-seeds, default 10; "
            "--reeval-seeds, default 3)",
        )
        p.add_argument(
            "--startup-resume",
            action="store_true",
            help="start-up study: keep the seeds already in the --out JSON (a run that was stopped) and run the rest",
        )
        p.add_argument(
            "--startup-variants",
            help=f"start-up study, synthetic tasks: which of {', '.join(STARTUP_VARIANTS)} "
            f"(default {','.join(STARTUP_SYNTHETIC_VARIANTS)})",
        )
        p.add_argument(
            "--startup-mlp-variants", help=f"start-up study, MLP: which variants (default {','.join(STARTUP_MLP_VARIANTS)})"
        )
        p.add_argument(
            "--report-only",
            type=Path,
            metavar="JSON",
            help="run nothing: print the tables and draw the PNG again from an earlier run's JSON (adding the "
            "budget sweep, computed from its own curves, if it has none)",
        )

    args = C.parse_args(
        "sample_efficiency", "Sample efficiency at equal epochs: TPE+ASHA vs random search vs Tune's default.", extra
    )
    if args.report_only is not None:
        payload = json.loads(args.report_only.read_text())
        if payload["benchmark"] == "sample_efficiency_startup":
            print_startup_report(C.console(), payload)
            return 0
        swept = [
            add_budget_sweep(task) for task in payload["tasks"].values() if task["kind"] == "mlp"
        ]  # every task, not the first
        if any(swept):
            payload["settings"]["by_budget"] = BY_BUDGET_NOTE + " (added afterwards by --report-only)"
            C.write_json(args.report_only, payload)
        print_report(C.console(), payload, plot(payload["tasks"], args.report_only.with_suffix(".png")))
        return 0
    if args.startup_budgets:
        return run_startup_study(args, C.console())
    n_seeds = args.seeds or (1 if args.smoke else 5)
    mlp_seeds = args.mlp_seeds or (1 if args.smoke else 15)
    max_steps = 4 if args.smoke else args.max_steps
    mlp_steps = 2 if args.smoke else args.mlp_max_steps
    reeval_repeats = args.reeval_seeds if args.reeval_seeds is not None else (2 if args.smoke else 5)
    random_multiple = args.random_budget_multiple or (2 if args.smoke else 3)
    # The budget E in epochs: FIFO methods run E / max_steps trials. The service is asked for
    # more trials than E can pay for, then cut at E: measured, its trials cost 4 to 6 epochs
    # each (asynchronous ASHA promotes more than the 1/2 per rung of synchronous halving, and
    # more as TPE's later trials improve), so E / 3 and E / 4 trials are plenty; the JSON's
    # epochs_spent says whether a run used its whole budget.
    synth_budget = max_steps * (4 if args.smoke else 24)
    mlp_budget = mlp_steps * (3 if args.smoke else args.mlp_budget_trials)
    synth_service_trials = max(6, synth_budget // 3)
    mlp_service_trials = max(4, mlp_budget // 4)
    chosen = [t.strip() for t in args.tasks.split(",") if t.strip()]
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if set(variants) - set(VARIANTS):
        raise SystemExit(f"--variants: unknown {', '.join(sorted(set(variants) - set(VARIANTS)))}; known: {', '.join(VARIANTS)}")
    unknown = sorted(set(chosen) - {*SYNTHETIC, MLP_TASK})
    if unknown:
        raise SystemExit(f"--tasks: unknown task(s) {', '.join(unknown)}; known: {', '.join([*SYNTHETIC, MLP_TASK])}")
    functions = [name for name in SYNTHETIC if name in chosen and (name == "branin" or not args.smoke)]
    # Every search call costs seconds to start: the smoke leaves out the synthetic Tune run (the
    # MLP task runs the same run_tune), to stay short.
    synth_methods = ("service", "random") if args.smoke else METHODS
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
                    seeds.append(
                        {
                            "seed": seed,
                            **run_synthetic(
                                name, seed, max_steps, synth_budget, synth_service_trials, home, workdir / "tune", synth_methods
                            ),
                        }
                    )
            tasks[name] = {
                "kind": "synthetic",
                "mode": "min",
                "metric": "loss",
                "score": "regret",
                "score_mode": "min",
                "optimum": SYNTHETIC[name]["optimum"],
                "max_steps": max_steps,
                "budget_epochs": synth_budget,
                "seeds": seeds,
                "summary": aggregate(seeds, synth_budget, "min"),
            }
        seeds = []
        for seed in range(mlp_seeds if MLP_TASK in chosen else 0):
            with out.status(f"mlp {MLP_DATASET}: seed {seed + 1}/{mlp_seeds}"):
                seeds.append(
                    {
                        "seed": seed,
                        **run_mlp(
                            seed,
                            mlp_steps,
                            mlp_budget,
                            mlp_service_trials,
                            home,
                            workdir / "tune",
                            (*METHODS, *variants),
                            reeval_repeats,
                            random_multiple,
                        ),
                    }
                )
        if seeds:
            tasks[MLP_TASK] = {
                "kind": "mlp",
                "mode": "max",
                "metric": "val_accuracy",
                "score": "best val_accuracy",
                "score_mode": "max",
                "max_steps": mlp_steps,
                "budget_epochs": mlp_budget,
                "seeds": seeds,
                "summary": aggregate(seeds, mlp_budget, "max"),
            }
            if reeval_repeats:
                tasks[MLP_TASK]["summary"]["reevaluated"] = aggregate_reevaluated(seeds, mlp_budget)
            add_budget_sweep(tasks[MLP_TASK])
            if random_multiple > 1:
                curves = {"one_training": "curve", **({"reevaluated": "reeval_curve"} if reeval_repeats else {})}
                tasks[MLP_TASK]["summary"]["matching"] = {
                    key: aggregate_matching(seeds, mlp_budget, mlp_budget * random_multiple, curve)
                    for key, curve in curves.items()
                }
    total_s = time.perf_counter() - started

    targets: dict[str, Any] = {}
    for name, task in tasks.items():
        s = task["summary"]
        if task["kind"] == "mlp":
            targets[f"{name}_ratio_at_least_3"] = s["service"]["ratio_vs_random"] >= RATIO_TARGET
            if "reevaluated" in s:
                targets[f"{name}_reevaluated_ratio_at_least_3"] = s["reevaluated"]["service"]["ratio_vs_random"] >= RATIO_TARGET
            for key, matching in s.get("matching", {}).items():
                targets[f"{name}_random_needs_3x_to_match_service_{key}"] = matching_met(matching)
        else:
            sr, rr = s["service"]["median_score"], s["random"]["median_score"]
            targets[f"{name}_lower_regret_than_random"] = sr is not None and rr is not None and sr < rr
    png = plot(tasks, Path(args.out).with_suffix(".png"))
    payload = {
        "benchmark": "sample_efficiency",
        "smoke": args.smoke,
        "machine": info,
        "settings": {
            "seeds_synthetic": n_seeds,
            "seeds_mlp": mlp_seeds,
            "max_steps_synthetic": max_steps,
            "max_steps_mlp": mlp_steps,
            "budget_epochs_synthetic": synth_budget,
            "budget_epochs_mlp": mlp_budget,
            "service_trials_requested": {"synthetic": synth_service_trials, "mlp": mlp_service_trials},
            "fifo_trials": {"synthetic": synth_budget // max_steps, "mlp": mlp_budget // mlp_steps},
            "mlp": {
                "dataset": MLP_DATASET,
                "space": MLP_SPACE,
                "val_fraction": MLP_VAL_FRACTION,
                "metric": "val_accuracy",
                "split_seed": "the seed (the same split for the three methods of a seed)",
            },
            "curve": f"synthetic: report at step s = f(x) + {CURVE_C}/s; regret = best final value - (f* + {CURVE_C}/max_steps)",
            "methods": {
                "service": "automl.search / run_spec, sampler tpe (multivariate, constant liar), scheduler asha (rf 2, grace 1), max_concurrent 2",
                "random": "automl.search / run_spec, sampler random, scheduler fifo, max_concurrent 2",
                "tune": "tune.Tuner, BasicVariantGenerator(random_state=seed), FIFO, max_concurrent_trials 2, reuse_actors, "
                "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1, verbose 0",
                **(
                    {
                        name: f"MLP only (--variants): run_spec, sampler {v[1]} {v[2] or ''}, scheduler {v[3]} {v[4] or ''}"
                        for name, v in VARIANTS.items()
                        if name in variants
                    }
                ),
            },
            "epochs": "service paths: len(intermediate_values) per Optuna trial; Tune: last training_iteration per trial; "
            "trials kept in trial-number order while cumulative epochs <= budget; best = best COMPLETE value among them",
            "curves": "per seed: [epochs, best so far] at each improvement; median_curve: median_low over seeds at every "
            "epoch count (a seed with no COMPLETE trial yet counts as worst)",
            "ratio": "summary: epochs random search's median curve needs to reach its final value (the target) / epochs the "
            "method's median curve needs (0: never within E); ratio_vs_budget: E / epochs the method needs. Per seed: epochs "
            "random search needed to reach its own final best / epochs the method needed (not reached within E -> 0)",
            "reevaluation": f"MLP, when reeval_seeds > 0: every incumbent (each trial that improved its search's best) "
            f"trained again reeval_seeds times, trainer seeds from trial numbers {REEVAL_NUMBER_BASE} + k (the same k for every "
            "configuration), not counted in any budget; reeval_curve: the best-so-far curve's steps valued at the incumbent's "
            "mean; summary.reevaluated: the same figures as summary on those curves",
            "reeval_seeds": reeval_repeats,
            "random_budget_multiple": random_multiple,
            "matching": "MLP, when random_budget_multiple > 1: random search runs random_budget_multiple x E epochs (its "
            "first E are the run every other figure uses); summary.matching: epochs its median curve needs to reach the "
            "service's median curve at E, over the epochs the service's needs (ratio; ratio_at_least when it never does); "
            "random search's wall_s then covers its whole extended run",
            "by_budget": BY_BUDGET_NOTE,
            "ray_init": "ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False), once",
        },
        "tasks": tasks,
        "targets": targets,
        "plot": str(png) if png else None,
        "total_wall_s": total_s,
    }
    C.write_json(args.out, payload)
    print_report(out, payload, png)
    out.print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
