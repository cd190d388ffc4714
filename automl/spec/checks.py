"""The second step of checking a job spec: what needs the outside world (:mod:`automl.spec` says both).

:func:`check_spec` resolves the space and checks it against the trainer, reads the data (or the
table's header and values) and its target column, imports the objective, and lets the sampler
and the scheduler try their options; :func:`resolve_metrics` and :func:`data_config` give what
a run derives from the spec and its folder. What must stay true: every check raises
:class:`~automl.errors.SpecError` naming the field, before anything is written; Optuna, Ray
Tune, the trainers (and with them torch) load only inside the checks that need them, never
when this module is imported.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from typing import Any

from automl.errors import SpecError
from automl.spaces import SearchSpace, load_space
from automl.spec.model import JobSpec, Mode, TrainerSpec

# The most grid points a grid search may enumerate up front.
MAX_GRID_POINTS = 1_000_000


def check_spec(
    spec: JobSpec,
    *,
    base_dir: Path | None = None,
    space: Any = None,
    import_objective_ref: bool = True,
    data_path: str | None = None,
) -> Any:
    """Check what the structure alone cannot: the space, the data, the metric, the objective.

    Args:
        spec: the job spec.
        base_dir: the folder relative paths are read from.
        space: a space given in code (an Optuna define-by-run function); ``spec.space`` is then not read.
        import_objective_ref: whether to import ``spec.objective`` (not when the function is given in code).
        data_path: where the trainer's data file is on this machine when it is not where the spec
            says (a bucket object's local copy, see :mod:`automl.shipping.data`).

    Returns:
        The resolved search space (``space`` itself when given).

    Raises:
        SpecError: naming the field that is wrong.
    """
    resolved = space if space is not None else load_space(spec.space, base_dir=base_dir)
    if spec.trainer is not None:
        _check_trainer(spec, spec.trainer, resolved if isinstance(resolved, SearchSpace) else None, base_dir, data_path)
    if spec.objective is not None and import_objective_ref:
        import_objective(spec.objective, base_dir=base_dir, missing_ok=spec.code.requirements is not None)
    if spec.sampler.name == "grid" and isinstance(resolved, SearchSpace):
        _check_grid_size(resolved)
    _check_sampler_options(spec, resolved)
    _check_scheduler(spec)
    return resolved


def _check_sampler_options(spec: JobSpec, space: Any) -> None:
    """With options given, let the sampler propose two points of the space: Optuna's samplers
    read most options only when they sample, so an option of the wrong type (``n_startup_trials:
    ten``) would otherwise fail in the middle of the job."""
    if not spec.sampler.options or not isinstance(space, SearchSpace):
        return
    import warnings

    import optuna

    from automl.engine.samplers import SamplerRequest, create_sampler

    n_objectives = len(spec.metric_names) or 1
    request = SamplerRequest(seed=spec.seed, options=spec.sampler.options, space=space, n_objectives=n_objectives)
    try:
        sampler = create_sampler(spec.sampler.name, request)
    except ValueError as exc:
        raise SpecError(f"sampler: {exc}") from None
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.create_study(sampler=sampler, directions=["minimize"] * n_objectives)
            for value in range(2):
                trial = study.ask(space.to_optuna())
                study.tell(trial, [float(value)] * n_objectives if n_objectives > 1 else float(value))
    except Exception as exc:  # noqa: BLE001 - whatever the sampler raises, the options caused it
        raise SpecError(
            f"sampler.options: sampler {spec.sampler.name!r} cannot sample with them: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        optuna.logging.set_verbosity(verbosity)


def _check_grid_size(space: SearchSpace) -> None:
    """A grid is enumerated up front: refuse one too large to list, before trying to."""
    from automl.spaces import CategoricalParam

    size = 1
    for param in space.params.values():
        if isinstance(param, CategoricalParam):
            size *= len(param.choices)
        elif param.step is not None:  # a float without a step: the grid sampler says what to do
            points = (param.high - param.low) / param.step + 1
            size = size * int(points) if math.isfinite(points) and points <= MAX_GRID_POINTS else MAX_GRID_POINTS + 1
        if size > MAX_GRID_POINTS:
            raise SpecError(
                f"space: the grid sampler would enumerate more than {MAX_GRID_POINTS:,} points; "
                "use larger steps, fewer choices, or another sampler"
            )


def _check_scheduler(spec: JobSpec) -> None:
    """Build the scheduler once, so options it refuses fail now rather than when the job runs.

    Only when options are given: without them it cannot fail, and building it imports Ray Tune.
    """
    if not spec.scheduler.options:
        return
    from automl.engine.schedulers import create_scheduler

    try:
        create_scheduler(
            spec.scheduler.name,
            metric=spec.metric_names[0] if spec.metric_names else "metric",
            mode=spec.mode[0] if isinstance(spec.mode, list) else spec.mode or "min",
            max_epochs=spec.budget.max_epochs,
            grace_period=spec.scheduler.grace_period,
            options=spec.scheduler.options,
        )
    except Exception as exc:  # noqa: BLE001 - Tune's schedulers assert, raise ValueError or TypeError
        raise SpecError(
            f"scheduler.options: scheduler {spec.scheduler.name!r} refuses them: {exc or type(exc).__name__}"
        ) from None


def resolve_metrics(
    spec: JobSpec, *, base_dir: Path | None = None, data_path: str | None = None
) -> tuple[tuple[str, ...], tuple[Mode, ...]]:
    """The metrics to optimise and their directions: the spec's, else the trainer's defaults.

    The first is the primary metric: the scheduler stops trials on it, and among the Pareto
    front of a multi-objective job the best trial is the best on it. ``base_dir`` is the spec's
    folder: the task (and so the default metric) depends on the data.
    """
    modes_given = spec.mode if isinstance(spec.mode, list) else [spec.mode] if spec.mode else []
    if spec.trainer is None:
        names = spec.metric_names
        return names, tuple(modes_given[i] if i < len(modes_given) else "min" for i in range(len(names)))
    from workers.datasets import DataError
    from workers.trainers import trainer_card

    trainer = trainer_card(spec.trainer.name)
    try:
        task = spec.trainer.task or trainer.check_data(data_config(spec, base_dir=base_dir, data_path=data_path))
    except DataError:
        task = "classification"
    names = spec.metric_names or (trainer.default_metric(task),)
    directions = trainer.metrics(task)
    modes = tuple(modes_given[i] if i < len(modes_given) else _direction(directions.get(name)) for i, name in enumerate(names))
    return names, modes


def _direction(direction: str | None) -> Mode:
    """A trainer's direction for a metric as a mode; ``min`` for a metric it does not declare."""
    return "max" if direction == "max" else "min"


def data_config(spec: JobSpec, *, base_dir: Path | None = None, data_path: str | None = None) -> Any:
    """The trainer's :class:`~workers.trainers.base.DataConfig` for this spec (paths made absolute;
    ``data_path``: the data file's local copy, when the spec names it in a bucket)."""
    from workers.trainers.base import DataConfig

    assert spec.trainer is not None
    dataset = spec.trainer.dataset
    if data_path is not None:
        dataset = data_path
    elif dataset.startswith("s3://"):  # read into this machine's data cache (once per process)
        from automl.shipping.data import fetch_object

        dataset = fetch_object("trainer.dataset", dataset).local_path
    elif _looks_like_path(dataset):
        path = Path(dataset).expanduser()
        if not path.is_absolute() and base_dir is not None and not path.exists():
            path = base_dir / path
        dataset = str(path.resolve())
    return DataConfig(
        dataset=dataset,
        target=spec.trainer.target,
        task=spec.trainer.task,
        val_fraction=spec.trainer.val_fraction,
        split_seed=spec.seed,
    )


def _check_trainer(
    spec: JobSpec, trainer_spec: TrainerSpec, space: SearchSpace | None, base_dir: Path | None, data_path: str | None = None
) -> None:
    from workers.datasets import DataError
    from workers.trainers import trainer_card

    trainer = trainer_card(trainer_spec.name)
    unknown = sorted(set(space.params if space else ()) - set(trainer.hyperparameters))
    if unknown:
        raise SpecError(
            f"space: {', '.join(map(repr, unknown))} not read by trainer {trainer_spec.name!r} "
            f"(it reads: {', '.join(trainer.hyperparameters)})"
        )
    _check_trainable_values(trainer, space)
    try:
        inferred = trainer.check_data(data_config(spec, base_dir=base_dir, data_path=data_path))
    except DataError as exc:
        raise SpecError(f"trainer.dataset: {exc}") from None
    except (OSError, ValueError, RuntimeError) as exc:  # the path itself: unreadable, a folder, '~nobody'
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise SpecError(f"trainer.dataset: cannot use {trainer_spec.dataset[:200]!r}: {reason}") from None
    task = trainer_spec.task or inferred
    metrics = trainer.metrics(task)
    for name in spec.metric_names:
        if name not in metrics:
            raise SpecError(f"metric: trainer {trainer_spec.name!r} reports {', '.join(metrics)} for {task}, not {name!r}")


def _check_trainable_values(trainer: Any, space: SearchSpace | None) -> None:
    """Every value the space can give the trainer must be one it trains with (batch size > 0,
    dropout in [0, 1), ...): the trainer's own rule, checked at the ends of each range and on
    every choice, so a bad value fails now rather than in a trial."""
    from automl.spaces import CategoricalParam
    from workers.trainers.hyperparameters import resolve_params

    for name, param in space.params.items() if space else ():
        values = param.choices if isinstance(param, CategoricalParam) else (param.low, param.high)
        for value in values:
            try:
                resolve_params({name: trainer.hyperparameters[name]}, {name: value})
            except (ValueError, TypeError, OverflowError) as exc:
                raise SpecError(f"space.params.{name}: the trainer cannot train with {value!r}: {exc}") from None


def import_objective(ref: str, *, base_dir: Path | None = None, missing_ok: bool = False) -> Any:
    """Import ``package.module:function``, looking in the spec's folder and the current one too.

    With ``missing_ok`` (a job whose ``code.requirements`` the nodes install), a module the
    objective imports that is not installed here is no error: ``None`` is returned, and the
    trials import the objective where its requirements are.

    Raises:
        SpecError: naming the module or attribute that could not be found.
    """
    module_name, _, attr_path = ref.partition(":")
    for folder in (base_dir, Path.cwd()):
        if folder is not None and str(folder.resolve()) not in sys.path:
            sys.path.insert(0, str(folder.resolve()))
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing_ok and missing and missing != module_name.partition(".")[0]:
            return None
        raise SpecError(f"objective: cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any import failure is the user's to see
        raise SpecError(f"objective: cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    for attr in attr_path.split("."):
        if not hasattr(target, attr):
            raise SpecError(f"objective: module {module_name!r} has no attribute {attr_path!r}")
        target = getattr(target, attr)
    if not callable(target):
        raise SpecError(f"objective: {ref!r} is not callable")
    return target


def _looks_like_path(dataset: str) -> bool:
    return dataset.endswith((".csv", ".parquet", ".npz")) or "/" in dataset
