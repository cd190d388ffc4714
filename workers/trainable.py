"""The function Ray Tune runs for every trial: it builds the trial context and trains.

Everything a trial needs besides its hyperparameters travels in one frozen
:class:`TrialPlan`, put in Ray's object store once per job by ``tune.with_parameters``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.context import SavedState, TrialContext, as_number, read_state
from workers.data_cache import DataRef, local_copy
from workers.trainers.base import DataConfig

# The searcher adds this key to each trial's config: the Optuna trial number.
TRIAL_NUMBER_KEY = "_trial_number"


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of one job shares.

    Attributes:
        max_epochs: the step budget of one trial.
        seed: the job seed; each trial derives its own from it and its trial number.
        cpus, gpus: what each trial asked Ray for (threads and device follow from them).
        metric: the job's primary metric (a custom objective's return value is reported under it).
        metrics: every metric the job optimises; an objective may return one value per metric.
        trainer: a built-in trainer name, with ``data``; or ``None`` for a custom objective.
        data: the trainer's data.
        objective: a custom objective: the function itself, or ``module:function`` to import.
        import_paths: folders to put on ``sys.path`` before importing the objective.
        checkpoint_interval: trials save their training state every this many steps (0: only
            the final model); set for the PBT scheduler, which clones trials from checkpoints.
        data_file: the job's data file as any node fetches it (uploaded at submit, or in a
            bucket); the trainer reads its local copy, a custom objective gets it as ``ctx.data_path``.
    """

    max_epochs: int
    seed: int
    cpus: float
    gpus: float
    metric: str
    metrics: tuple[str, ...] = ()
    trainer: str | None = None
    data: DataConfig | None = None
    objective: Callable[..., Any] | str | PickledObjective | None = None
    import_paths: tuple[str, ...] = ()
    checkpoint_interval: int = 0
    data_file: DataRef | None = None

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        # A function objective travels as its own pickle, opened by the trial only after it has
        # put ``import_paths`` on sys.path: unpickling it imports the modules it uses (a helper
        # module beside it), which would fail while Ray opens the plan, before the trial starts.
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if callable(self.objective):
            from ray import cloudpickle

            fields["objective"] = PickledObjective(cloudpickle.dumps(self.objective))
        return (_trial_plan, (fields,))


@dataclass(frozen=True)
class PickledObjective:
    """An objective function as pickled bytes, unpickled by :func:`resolve_objective`."""

    data: bytes


def _trial_plan(fields: dict[str, Any]) -> TrialPlan:
    return TrialPlan(**fields)


def restored_state() -> SavedState | None:
    """The training state of the checkpoint Tune started this trial from, if any.

    Tune hands a trial a checkpoint when it resumes a paused trial, retries a failed one, or,
    under PBT, clones another trial into it.
    """
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return read_state(folder)


class RayReporter:
    """Sends reports to Ray Tune; a checkpoint folder travels as a ``tune.Checkpoint``.

    ``stopped`` turns true when Tune ended the trial from inside ``tune.report`` (the scheduler
    stopped it, or the job ended): Tune does that with ``SystemExit(0)``, which must reach it as is.
    """

    def __init__(self) -> None:
        self.stopped = False

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        from ray import tune

        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        try:
            tune.report(metrics, checkpoint=checkpoint)
        except SystemExit:
            self.stopped = True
            raise


def trial_seed(job_seed: int, trial_number: int) -> int:
    """A trial's seed: distinct per trial, the same on every rerun of the same job."""
    return (job_seed * 1_000_003 + trial_number) % (2**31)


def run_trial(config: dict[str, Any], plan: TrialPlan) -> None:
    """Run one trial inside a Ray worker: train, reporting every step, then send the final report."""
    from workers.devices import limit_threads, trial_device

    config = dict(config)
    number = int(config.pop(TRIAL_NUMBER_KEY, 0))
    limit_threads(plan.cpus)
    reporter = RayReporter()
    ctx = TrialContext(
        config,
        reporter=reporter,
        trial_number=number,
        seed=trial_seed(plan.seed, number),
        max_epochs=plan.max_epochs,
        device=trial_device(plan.gpus),
        checkpoint_interval=plan.checkpoint_interval,
        restored=restored_state(),
        data_path=local_copy(plan.data_file) if plan.data_file is not None else None,
    )
    try:
        run_with_context(ctx, plan)
    except BaseException as exc:
        # Tune's thread takes StopIteration and SystemExit(0) for "stop quietly", and Ray a
        # KeyboardInterrupt for a cancelled task: raised by the trial's own code, the trial would
        # end PRUNED without a word, or be recorded as if someone had cancelled the job. Only
        # Tune's own stop (SystemExit from inside tune.report) goes through as it is.
        if reporter.stopped or (isinstance(exc, Exception) and not isinstance(exc, StopIteration)):
            raise
        # An ordinary error whose message is the exception's own name and message: the trial's fail reason.
        text = str(exc)
        raise RuntimeError(f"{type(exc).__name__}: {text}" if text else type(exc).__name__) from exc


def run_with_context(ctx: TrialContext, plan: TrialPlan) -> None:
    """Train a built-in trainer or call a custom objective with ``ctx``; Ray-free, so tests can call it."""
    if plan.trainer is not None:
        from workers.trainers import get_trainer

        assert plan.data is not None
        data = dataclasses.replace(plan.data, dataset=ctx.data_path) if ctx.data_path else plan.data
        get_trainer(plan.trainer)().fit(ctx, data)
        ctx.finish()
        return
    objective = resolve_objective(plan.objective, plan.import_paths)
    value = objective(dict(ctx.params), ctx) if _takes_context(objective) else objective(dict(ctx.params))
    if isinstance(value, (list, tuple)):  # one value per metric of a multi-objective job
        values = dict(zip(plan.metrics or (plan.metric,), value, strict=False))
    elif isinstance(value, dict):
        values = value
    elif value is None:  # it reported with ctx.report: its last report stands
        ctx.finish()
        return
    else:
        values = {plan.metric: value}
    for name, raw in values.items():
        if as_number(raw) is None:
            # Not retried (it did not raise): the same parameters give the same value again.
            ctx.fail(f"{name!r} is not a number: {raw!r}"[:500])
            return
    ctx.finish(values)


def resolve_objective(
    objective: Callable[..., Any] | str | PickledObjective | None, import_paths: tuple[str, ...] = ()
) -> Callable[..., Any]:
    """The objective function: given, or imported from ``module:function``.

    ``import_paths`` go on ``sys.path`` either way: a function shipped by value still imports its
    project's other modules when it runs.
    """
    for folder in import_paths:
        if folder not in sys.path:
            sys.path.insert(0, folder)
    if isinstance(objective, PickledObjective):
        from ray import cloudpickle

        objective = cloudpickle.loads(objective.data)
    if callable(objective):
        return objective
    if not isinstance(objective, str):
        raise TypeError("a trial needs a trainer or an objective")
    module_name, _, attr_path = objective.partition(":")
    target: Any = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        target = getattr(target, attr)
    return target


def _takes_context(objective: Callable[..., Any]) -> bool:
    try:
        parameters = [
            p
            for p in inspect.signature(objective).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        return True
    return len(parameters) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in parameters)
