"""The job spec: one frozen, validated description of a search job, loaded from YAML.

Validation happens in two steps, both before anything is written: the structure (types,
ranges, names) in the pydantic model, then what needs the outside world (the dataset or
table exists and has its target column, the objective imports, the space fits the trainer)
in :func:`check_spec`. Either raises :class:`~automl.errors.SpecError` naming the field.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from automl.engine.samplers import SAMPLERS
from automl.engine.schedulers import SCHEDULERS
from automl.errors import SpecError
from automl.spaces import (
    MAX_INT,
    MAX_PATH_CHARS,
    RealNumber,
    SearchSpace,
    WholeNumber,
    check_structure,
    format_validation_error,
    load_space,
    read_yaml,
)

# Names become file names, MLflow experiment and model names and Optuna study names: no '/',
# no '..', nothing that could leave the folder it is written in. Matched with fullmatch.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'"
OBJECTIVE_PATTERN = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", re.ASCII)
# Metric names are MLflow metric keys and Tune result keys ('/' nests them in Tune).
METRIC_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,127}")
# The most grid points a grid search may enumerate up front.
MAX_GRID_POINTS = 1_000_000
Mode = Literal["min", "max"]


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is safe as a file, experiment or model name, else a ValueError saying the rule."""
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ValueError(f"{name[:100]!r} is not a valid {what}: {NAME_RULE}")
    return name


def _check_text(text: str, *, limit: int) -> str:
    if len(text) > limit:
        raise ValueError(f"must be at most {limit} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(f"{text[:100]!r} holds a control character (a NUL, a newline, ...)")
    return text


class _Section(BaseModel):
    # Floats must be finite everywhere in a spec: nan compares false with everything and inf
    # turns every budget or resource into "unlimited" by accident.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TrainerSpec(_Section):
    """A built-in trainer and the data it trains on."""

    name: str = Field(description="a built-in trainer: mlp (tables) or cnn (images)")
    dataset: str = Field(description="a bundled dataset name, or a path to .csv/.parquet/.npz")
    target: str | None = Field(default=None, description="the target column of a .csv/.parquet table")
    task: Literal["classification", "regression"] | None = None
    val_fraction: RealNumber = Field(default=0.2, gt=0, lt=1)

    @field_validator("name")
    @classmethod
    def _known_trainer(cls, name: str) -> str:
        from workers.trainers import TRAINER_NAMES

        if name not in TRAINER_NAMES:
            raise ValueError(f"unknown trainer {name[:100]!r} (known: {', '.join(TRAINER_NAMES)})")
        return name

    @field_validator("dataset")
    @classmethod
    def _dataset_text(cls, dataset: str) -> str:
        # A path may point anywhere the user can read: it is their data. Only what no path holds is refused.
        if not dataset.strip():
            raise ValueError("must name a bundled dataset or a path to a data file")
        return _check_text(dataset, limit=MAX_PATH_CHARS)

    @field_validator("target")
    @classmethod
    def _target_text(cls, target: str | None) -> str | None:
        return None if target is None else _check_text(target, limit=256)


class SamplerSpec(_Section):
    """Which Optuna sampler proposes hyperparameters, and its options."""

    name: str = "tpe"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name[:100]!r} (known: {', '.join(SAMPLERS)})")
        return name


class SchedulerSpec(_Section):
    """Which Ray Tune scheduler stops poor trials early."""

    name: str = "asha"
    grace_period: WholeNumber = Field(default=1, ge=1, description="epochs every trial runs before it may be stopped")
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {name[:100]!r} (known: {', '.join(SCHEDULERS)})")
        return name


class BudgetSpec(_Section):
    """How much the job may spend, and when it may stop early."""

    trials: WholeNumber = Field(default=20, ge=1, le=100_000)
    max_epochs: WholeNumber = Field(default=10, ge=1, le=100_000, description="steps (epochs) per trial at most")
    time_limit_s: RealNumber | None = Field(default=None, gt=0, description="wall-clock limit for the whole job")
    trial_timeout_s: RealNumber | None = Field(
        default=None,
        gt=0,
        le=7 * 24 * 3600,
        description="wall-clock limit for one attempt of one trial: a trial still running then is stopped and fails",
    )
    target: RealNumber | None = Field(default=None, description="stop the job once a trial reaches this value")
    patience: WholeNumber | None = Field(
        default=None, ge=1, description="stop after this many finished trials without a new best"
    )


class WarmStartSpec(_Section):
    """Configurations to evaluate first: given ones, and/or the best trials of an earlier job."""

    configs: list[dict[str, Any]] = Field(default_factory=list)
    from_job: str | None = Field(default=None, description="an earlier job's id: its best trials are tried first")
    from_study: str | None = Field(default=None, description="an earlier Optuna study's name, in the same storage")
    top: WholeNumber = Field(default=5, ge=1, le=1000, description="how many of the earlier job's best trials")

    @field_validator("configs")
    @classmethod
    def _scalar_values(cls, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, config in enumerate(configs):
            for name, value in config.items():
                where = f"configs[{index}].{name[:64]}"
                if not (value is None or isinstance(value, (bool, int, float, str))):
                    raise ValueError(f"{where}: expected a number, a string, a boolean or null, got {type(value).__name__}")
                if isinstance(value, float) and not math.isfinite(value):
                    raise ValueError(f"{where}: must be a finite number")
                if isinstance(value, int) and abs(value) > MAX_INT:
                    raise ValueError(f"{where}: must lie within -2**53..2**53")
        return configs


class ResourcesSpec(_Section):
    """What each trial asks Ray for, and how many trials run at once."""

    cpus_per_trial: RealNumber = Field(default=1.0, gt=0, le=4096)
    gpus_per_trial: RealNumber = Field(default=0.0, ge=0, le=1024)
    max_concurrent: WholeNumber | None = Field(default=None, ge=1, le=100_000)

    @field_validator("gpus_per_trial")
    @classmethod
    def _whole_above_one(cls, gpus: float) -> float:
        if gpus > 1 and not float(gpus).is_integer():
            raise ValueError("a trial may ask for a fraction of one GPU, or a whole number of GPUs")
        return gpus


class TrackingSpec(_Section):
    """Where MLflow records the job, and whether the best model is registered."""

    experiment: str | None = Field(default=None, description="the MLflow experiment (default: the job's name)")
    tracking_uri: str | None = None
    register_model: bool = True
    model_name: str | None = Field(default=None, description="the Model Registry name (default: the job's name)")

    @field_validator("experiment", "model_name")
    @classmethod
    def _safe_names(cls, name: str | None) -> str | None:
        # The experiment's name becomes its artifact folder: the same rule as a job's name.
        return None if name is None else check_name(name)

    @field_validator("tracking_uri")
    @classmethod
    def _uri_text(cls, uri: str | None) -> str | None:
        return None if uri is None else _check_text(uri, limit=MAX_PATH_CHARS)


class JobSpec(_Section):
    """A whole search job. Frozen: nothing downstream changes it."""

    name: str = Field(description="the job's name: letters, digits, '.', '_' and '-'")
    description: str = ""
    trainer: TrainerSpec | None = None
    objective: str | None = Field(default=None, description="a custom objective as package.module:function")
    space: str | dict[str, Any] = Field(description="a preset name, a path to a YAML space, or the space inline")
    metric: str | list[str] | None = Field(default=None, description="the metric to optimise, or several (a Pareto front)")
    mode: Mode | list[Mode] | None = Field(default=None, description="min or max, one per metric")
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    seed: WholeNumber = Field(default=0, ge=0, lt=2**31)
    max_retries: WholeNumber = Field(default=0, ge=0, le=100, description="times Tune retries a trial that raised")
    warm_start: WarmStartSpec = Field(default_factory=WarmStartSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        return check_name(name)

    @field_validator("objective")
    @classmethod
    def _objective_ref(cls, ref: str | None) -> str | None:
        if ref is not None and (len(ref) > 256 or not OBJECTIVE_PATTERN.fullmatch(ref)):
            raise ValueError(f"{ref[:100]!r} must look like package.module:function")
        return ref

    @field_validator("space")
    @classmethod
    def _space_shape(cls, space: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(space, str):
            if not space.strip():
                raise ValueError("must name a preset, a path, or hold the parameters inline")
            _check_text(space, limit=MAX_PATH_CHARS)
        return space

    @field_validator("metric")
    @classmethod
    def _metric_names(cls, metric: str | list[str] | None) -> str | list[str] | None:
        for name in [metric] if isinstance(metric, str) else metric or []:
            if not METRIC_PATTERN.fullmatch(name):
                raise ValueError(
                    f"{name[:100]!r} is not a usable metric name: letters, digits and _ . : / -, starting with a letter or '_'"
                )
        return metric

    @model_validator(mode="after")
    def _one_thing_to_train(self) -> JobSpec:
        if (self.trainer is None) == (self.objective is None):
            raise ValueError("give exactly one of 'trainer' (a built-in trainer) or 'objective' (module:function)")
        if self.objective is not None and self.metric is None:
            raise ValueError("'metric' is required with a custom objective: name the metric it reports")
        metrics = self.metric if isinstance(self.metric, list) else None
        if metrics is not None and (not metrics or len(set(metrics)) != len(metrics)):
            raise ValueError("'metric': give one name, or a list of distinct names")
        if isinstance(self.mode, list) and len(self.mode) != (len(metrics) if metrics else 1):
            raise ValueError("'mode': give one direction per metric")
        return self

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics as a tuple (empty when the trainer's default applies)."""
        if self.metric is None:
            return ()
        return tuple(self.metric) if isinstance(self.metric, list) else (self.metric,)

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment: the spec's, else the job name."""
        return self.tracking.experiment or self.name

    @property
    def registered_model_name(self) -> str:
        """The Model Registry name the best model is registered under."""
        return self.tracking.model_name or self.name


def parse_spec(raw: Any, *, source: str | None = None) -> JobSpec:
    """Validate a mapping (parsed YAML) into a :class:`JobSpec`.

    Raises:
        SpecError: listing every field that is wrong.
    """
    if not isinstance(raw, Mapping):
        raise SpecError(f"expected a mapping of fields at the top level, got {type(raw).__name__}", source=source)
    try:
        check_structure(raw, "(the spec)")
    except SpecError as exc:
        raise SpecError(exc.problems, source=source) from None
    try:
        return JobSpec.model_validate(dict(raw))
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc), source=source) from None


def load_spec(path: str | Path) -> JobSpec:
    """Read, parse and fully check the job spec at ``path`` (see :func:`check_spec`).

    Raises:
        SpecError: the file is missing or unreadable, or a field is wrong.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpecError(f"cannot read {str(path)!r}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        raw = read_yaml(text, field="")
    except SpecError as exc:
        raise SpecError(exc.problems, source=str(path)) from None
    spec = parse_spec(raw, source=str(path))
    if spec.tracking.tracking_uri and _has_password(spec.tracking.tracking_uri):
        # The spec is stored with the job and logged to MLflow: a password in it would be too.
        raise SpecError(
            "tracking.tracking_uri: holds a password; a job file is stored and logged, so give the URI "
            "with its password in MLFLOW_TRACKING_URI (or --tracking-uri) instead",
            source=str(path),
        )
    try:
        check_spec(spec, base_dir=path.parent)
    except SpecError as exc:
        raise SpecError(exc.problems, source=exc.source or str(path)) from None
    return spec


def _has_password(uri: str) -> bool:
    from automl.settings import url_has_password  # the same reading of a URL as redact_url's

    return url_has_password(uri)


def check_spec(
    spec: JobSpec,
    *,
    base_dir: Path | None = None,
    space: Any = None,
    import_objective_ref: bool = True,
) -> Any:
    """Check what the structure alone cannot: the space, the data, the metric, the objective.

    Args:
        spec: the job spec.
        base_dir: the folder relative paths are read from.
        space: a space given in code (an Optuna define-by-run function); ``spec.space`` is then not read.
        import_objective_ref: whether to import ``spec.objective`` (not when the function is given in code).

    Returns:
        The resolved search space (``space`` itself when given).

    Raises:
        SpecError: naming the field that is wrong.
    """
    resolved = space if space is not None else load_space(spec.space, base_dir=base_dir)
    if spec.trainer is not None:
        _check_trainer(spec, spec.trainer, resolved if isinstance(resolved, SearchSpace) else None, base_dir)
    if spec.objective is not None and import_objective_ref:
        import_objective(spec.objective, base_dir=base_dir)
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


def resolve_metrics(spec: JobSpec, *, base_dir: Path | None = None) -> tuple[tuple[str, ...], tuple[Mode, ...]]:
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
    from workers.trainers import TRAINERS

    trainer = TRAINERS[spec.trainer.name]
    try:
        task = spec.trainer.task or trainer.check_data(data_config(spec, base_dir=base_dir))
    except DataError:
        task = "classification"
    names = spec.metric_names or (trainer.default_metric(task),)
    directions = trainer.metrics(task)
    modes = tuple(modes_given[i] if i < len(modes_given) else directions.get(name, "min") for i, name in enumerate(names))
    return names, modes


def data_config(spec: JobSpec, *, base_dir: Path | None = None) -> Any:
    """The trainer's :class:`~workers.trainers.base.DataConfig` for this spec (paths made absolute)."""
    from workers.trainers.base import DataConfig

    assert spec.trainer is not None
    dataset = spec.trainer.dataset
    if _looks_like_path(dataset):
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


def _check_trainer(spec: JobSpec, trainer_spec: TrainerSpec, space: SearchSpace | None, base_dir: Path | None) -> None:
    from workers.datasets import DataError
    from workers.trainers import TRAINERS

    trainer = TRAINERS[trainer_spec.name]
    unknown = sorted(set(space.params if space else ()) - set(trainer.hyperparameters))
    if unknown:
        raise SpecError(
            f"space: {', '.join(map(repr, unknown))} not read by trainer {trainer_spec.name!r} "
            f"(it reads: {', '.join(trainer.hyperparameters)})"
        )
    _check_trainable_values(trainer, space)
    try:
        inferred = trainer.check_data(data_config(spec, base_dir=base_dir))
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


def import_objective(ref: str, *, base_dir: Path | None = None) -> Any:
    """Import ``package.module:function``, looking in the spec's folder and the current one too.

    Raises:
        SpecError: naming the module or attribute that could not be found.
    """
    module_name, _, attr_path = ref.partition(":")
    for folder in (base_dir, Path.cwd()):
        if folder is not None and str(folder.resolve()) not in sys.path:
            sys.path.insert(0, str(folder.resolve()))
    try:
        target: Any = importlib.import_module(module_name)
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


def spec_to_yaml(spec: JobSpec) -> str:
    """The spec as YAML, every default filled in: what the job actually ran with.

    A password in ``tracking.tracking_uri`` (given to :func:`automl.search` in code) is hidden:
    this text is stored with the job and logged to MLflow.
    """
    from automl.settings import redact_url

    data = spec.model_dump(mode="json")
    if spec.tracking.tracking_uri:
        data["tracking"]["tracking_uri"] = redact_url(spec.tracking.tracking_uri)
    return yaml.safe_dump(data, sort_keys=False)
