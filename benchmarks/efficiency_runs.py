"""Running the sample-efficiency benchmark's searches: the service, random search, bare Tune, retraining.

``TaskRun`` is one task (``efficiency_tasks``) at one seed: ``search`` runs it through the service
(``automl.search`` for a synthetic function, ``automl.run_spec`` for the MLP) with a sampler and
scheduler and returns the study's trials; ``tune`` runs plain ``tune.Tuner`` with Tune's default
search. ``run_seed`` runs the methods (``METHODS`` and the ``VARIANTS`` of the service's search)
at one seed and cuts each at the epoch budget (``efficiency_curves.summarise``); ``retrain``
trains given MLP configurations again with common trainer seeds (the re-evaluation).

What must stay true: a search's trials come back in trial-number order (Tune's in creation
order), each with the epochs it reported, since the budget cut reads them in that order; every
service call runs on its own state folder with a clean environment (``C.service_env``); the
trial code shipped to Ray's workers (the trainables here, the objectives in ``efficiency_tasks``)
is pickled by value (``ship_by_value``), since the workers cannot import this folder by name.
The JSON's ``settings.methods`` describes these calls: keep the two in step.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import efficiency_tasks as T
from efficiency_curves import finish_seed, reevaluate_incumbents, summarise
from efficiency_tasks import learning_curve

METHODS = ("service", "random", "tune")
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
REEVAL_NUMBER_BASE = 1_000_000  # trial numbers (so trainer seeds) of re-evaluation trainings

Trials = list[dict[str, Any]]


def ship_by_value() -> None:
    """Ray's workers cannot import this folder's modules by name: pickle their trial code by value.

    (The trial code refers to functions, not to modules such as ``T`` or ``C``: a module pickled by
    value goes whole, and ``_common`` not at all.)"""
    from ray import cloudpickle

    for module in (T, sys.modules[__name__]):
        cloudpickle.register_pickle_by_value(module)


def study_trials(result: Any, home: Path) -> Trials:
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


@dataclass(frozen=True)
class TaskRun:
    """One task at one seed (the job seed, and for the MLP also the train/validation split's)."""

    task: str
    seed: int
    max_steps: int
    home: Path  # the service's state folder (AUTOML_HOME)
    workdir: Path  # bare Tune's and the retrainings' storage
    plots: bool = True  # the service's end-of-job plots (spec tracking.plots)

    @property
    def kind(self) -> str:
        return T.kind(self.task)

    @property
    def mode(self) -> str:
        return T.KINDS[self.kind]["mode"]

    @property
    def metric(self) -> str:
        return T.KINDS[self.kind]["metric"]

    @property
    def shift(self) -> float:
        """What turns a final value into the score: the best possible final value (regret) or nothing (accuracy)."""
        return T.final_optimum(self.task, self.max_steps) if self.kind == "synthetic" else 0.0

    def search(
        self,
        sampler: str,
        scheduler: str,
        n_trials: int,
        sampler_options: dict[str, Any] | None = None,
        scheduler_options: dict[str, Any] | None = None,
    ) -> tuple[float, Trials]:
        """One search through the service: its wall time and its study's trials."""
        import automl

        if self.kind == "mlp":
            fields = T.mlp_spec(sampler, scheduler, n_trials, self.max_steps, self.seed, sampler_options, scheduler_options)
            fields["tracking"] = {**fields.get("tracking", {}), "plots": self.plots}
            spec = automl.JobSpec.model_validate(fields)

            def call() -> Any:
                return automl.run_spec(spec)

        else:
            if scheduler_options:
                raise ValueError(f"{self.task}: the synthetic tasks run the schedulers' defaults")

            def call() -> Any:
                return automl.search(
                    T.OBJECTIVES[self.task],
                    T.SYNTHETIC[self.task]["space"],
                    n_trials=n_trials,
                    metric="loss",
                    mode="min",
                    max_steps=self.max_steps,
                    sampler=sampler,
                    sampler_options=sampler_options,
                    scheduler=scheduler,
                    max_concurrent=2,
                    seed=self.seed,
                    name="sample-efficiency",
                    register_model=False,
                    plots=self.plots,
                )

        with C.service_env(self.home):
            wall, result = C.timed(call)
            trials = study_trials(result, self.home)
        return wall, trials

    def tune(self, n_trials: int) -> tuple[float, Trials]:
        """Plain Tune with its default search and scheduler, on the same task."""
        if self.kind == "mlp":
            trainable, space = make_mlp_trainable(self.max_steps, self.seed), T.mlp_space()
        else:
            trainable = make_synthetic_trainable(T.SYNTHETIC[self.task]["fn"], self.max_steps)
            space = T.SYNTHETIC[self.task]["space"]
        return run_tune(
            trainable, T.tune_space(space), n_trials=n_trials, metric=self.metric, workdir=self.workdir, seed=self.seed
        )


def run_tune(
    trainable: Callable[..., Any], param_space: dict[str, Any], *, n_trials: int, metric: str, workdir: Path, seed: int
) -> tuple[float, Trials]:
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    ship_by_value()
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
    with C.bare_tune_env():
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

        for loss in learning_curve(fn(config), max_steps):
            tune.report({"loss": loss})

    return trainable


def make_mlp_trainable(max_steps: int, seed: int) -> Callable[[dict[str, Any]], None]:
    """The service's own trial code (same trainer, same train/validation split, a seed per trial)."""
    import automl
    from automl.spec import data_config
    from workers.trainable import TrialPlan

    spec = automl.JobSpec.model_validate(T.mlp_spec("random", "fifo", 1, max_steps, seed))
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

    ship_by_value()
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
    with C.bare_tune_env():
        for r in tuner.fit():
            index, k = divmod(int(r.config["_retrain"]), repeats)
            if r.error is None and r.metrics and "val_accuracy" in r.metrics:
                scores[index][k] = float(r.metrics["val_accuracy"])
    return scores


def method_search(method: str, service_trials: int, fifo_trials: int) -> tuple[str, Any, str, Any, int]:
    """What the service runs for a method: sampler, its options, scheduler, its options, trials asked for."""
    if method in VARIANTS:
        _, sampler, sampler_options, scheduler, scheduler_options = VARIANTS[method]
        return sampler, sampler_options, scheduler, scheduler_options, service_trials
    if method == "service":
        return "tpe", None, "asha", None, service_trials
    return "random", None, "fifo", None, fifo_trials


def run_seed(
    run: TaskRun,
    budget: int,
    service_trials: int,
    methods: tuple[str, ...] = METHODS,
    reeval_repeats: int = 0,
    random_multiple: int = 1,
) -> dict[str, Any]:
    """One seed of a task: every method cut at ``budget`` epochs, and the per-seed ratios (``finish_seed``).

    FIFO methods run ``budget / max_steps`` trials; the service and its variants ``service_trials``
    (more than the budget pays for). Random search runs ``random_multiple`` x E epochs, its first E
    as every other method's (``random_extended``). MLP only: ``reeval_repeats`` re-evaluates every
    incumbent; the synthetic tasks' runs also give their score as ``regret``.
    """
    if reeval_repeats and run.kind != "mlp":
        raise ValueError("only the MLP's incumbents can be trained again")
    n_fifo = budget // run.max_steps
    runs: dict[str, dict[str, Any]] = {}
    extended: dict[str, Any] = {}
    for method in methods:
        if method == "tune":
            wall, trials = run.tune(n_fifo)
        else:
            sampler, sampler_options, scheduler, scheduler_options, n = method_search(
                method, service_trials, n_fifo * random_multiple
            )
            wall, trials = run.search(sampler, scheduler, n, sampler_options, scheduler_options)
            if method == "random" and random_multiple > 1:
                # Seeded random search samples the same configurations in the same order however many
                # trials it is given: its first E epochs are exactly a run of E.
                extended = summarise(trials, budget * random_multiple, run.mode, wall, shift=run.shift)
        runs[method] = summarise(trials, budget, run.mode, wall, shift=run.shift)
        if run.kind == "synthetic":
            runs[method]["regret"] = runs[method]["score"]
    with_extended = {**runs, "random_extended": extended} if extended else runs
    reeval_wall = None
    if reeval_repeats:
        reeval_wall, _ = C.timed(
            lambda: reevaluate_incumbents(
                with_extended,
                lambda configs: retrain(
                    configs, repeats=reeval_repeats, max_steps=run.max_steps, job_seed=run.seed, workdir=run.workdir
                ),
            )
        )
    extended.pop("_kept", None)
    out = finish_seed(runs, run.mode)
    if run.kind == "mlp":
        out["reeval_wall_s"] = reeval_wall
    if extended:
        out["random_extended"] = extended
    return out
