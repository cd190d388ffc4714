"""The job spec's fields: :class:`JobSpec`, one frozen pydantic model of a search job, and its sections.

This is the first of the two validation steps (:mod:`automl.spec` says both): each field checks
what it can alone (types, ranges, names, the shape of a reference), and nothing here reads a
file, imports an objective or opens a database. What must stay true: every model is frozen and
refuses unknown keys and non-finite floats; a name that becomes a file, an experiment, a model
or a study name passes :func:`check_name`; ``sampler: auto`` and ``scheduler: auto`` take no options
(the plan resolves them, :mod:`automl.engine.auto_strategy`); importing this module loads neither torch, Ray nor
Optuna (the registries of samplers and schedulers are plain names).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from automl.engine.auto_strategy import AUTO, DEFAULT_SAMPLER, DEFAULT_SCHEDULER
from automl.engine.samplers import SAMPLERS
from automl.engine.schedulers import SCHEDULERS
from automl.spaces import MAX_INT, MAX_PATH_CHARS, RealNumber, WholeNumber
from automl.webhooks import check_webhook_url, shown_url

# Names become file names, MLflow experiment and model names and Optuna study names: no '/',
# no '..', nothing that could leave the folder it is written in. Matched with fullmatch.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'"
OBJECTIVE_PATTERN = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", re.ASCII)
# Metric names are MLflow metric keys and Tune result keys ('/' nests them in Tune).
METRIC_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,127}")
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


def _no_options_with_auto(kind: str, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    # Options belong to one class; with auto the class is not known until the job is planned.
    if options and info.data.get("name") == AUTO:
        raise ValueError(
            f"{kind} auto picks the {kind} itself, so it takes no options: name the {kind} to give it options "
            "(automl validate shows what auto picks)"
        )
    return options


class SamplerSpec(_Section):
    """Which Optuna sampler proposes hyperparameters, and its options (``auto``: the plan picks one)."""

    name: str = DEFAULT_SAMPLER
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name != AUTO and name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name[:100]!r} (known: {', '.join(SAMPLERS)}, {AUTO})")
        return name

    @field_validator("options")
    @classmethod
    def _options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _no_options_with_auto("sampler", options, info)


class SchedulerSpec(_Section):
    """Which Ray Tune scheduler stops poor trials early (``auto``: the plan picks one)."""

    name: str = DEFAULT_SCHEDULER
    grace_period: WholeNumber = Field(default=1, ge=1, description="epochs every trial runs before it may be stopped")
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name != AUTO and name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {name[:100]!r} (known: {', '.join(SCHEDULERS)}, {AUTO})")
        return name

    @field_validator("options")
    @classmethod
    def _options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _no_options_with_auto("scheduler", options, info)


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
    plots: bool = Field(default=True, description="draw the search plots on the job's run when it ends")
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


class CodeSpec(_Section):
    """The project folder a custom objective's job ships to the runners and nodes (docs/service.md)."""

    dir: str | None = Field(default=None, description="the folder to pack, relative to the spec file (default: its folder)")
    exclude: list[str] = Field(default_factory=list, description=".gitignore-style patterns left out of the package")
    requirements: str | None = Field(
        default=None, description="a pip requirements file inside the folder: installed on the nodes for this job only"
    )
    max_mb: RealNumber = Field(default=100.0, gt=0, le=500, description="refuse a package bigger than this (unpacked)")
    ship: bool = Field(default=True, description="false: runners import the objective from their own installed packages")

    @field_validator("dir", "requirements")
    @classmethod
    def _path_text(cls, path: str | None) -> str | None:
        if path is not None and not path.strip():
            raise ValueError("must name a path (or leave the field out)")
        return None if path is None else _check_text(path, limit=MAX_PATH_CHARS)

    @field_validator("exclude")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            _check_text(pattern, limit=1024)
        return patterns


def _webhook_url(url: str) -> str:
    from automl.settings import url_has_password  # the same reading of a URL as redact_url's

    check_webhook_url(url)
    if url_has_password(url):
        # The spec is stored with the job and logged to MLflow: a password in it would be too.
        raise ValueError(
            f"{shown_url(url)} holds a password; a job file is stored and logged, so give a hook that needs one "
            "in AUTOML_WEBHOOKS on the runners and server, and trust calls by their signature (AUTOML_WEBHOOK_SECRET)"
        )
    return url


class NotifySpec(_Section):
    """Who is told when the job ends (succeeded, failed, cancelled, stopped early): see docs/service.md, Webhooks."""

    webhooks: list[Annotated[str, AfterValidator(_webhook_url)]] = Field(
        default_factory=list, max_length=10, description="http(s) URLs, each POSTed the job's result when it ends"
    )


class JobSpec(_Section):
    """A whole search job. Frozen: nothing downstream changes it."""

    name: str = Field(description="the job's name: letters, digits, '.', '_' and '-'")
    description: str = ""
    trainer: TrainerSpec | None = None
    objective: str | None = Field(default=None, description="a custom objective as package.module:function")
    code: CodeSpec = Field(default_factory=CodeSpec, description="what of the objective's project travels with the job")
    data: str | None = Field(
        default=None, description="a data file the custom objective reads (a path or s3:// URI); it gets a local copy"
    )
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
    notify: NotifySpec = Field(default_factory=NotifySpec, description="webhooks called when the job ends")

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

    @field_validator("data")
    @classmethod
    def _data_text(cls, data: str | None) -> str | None:
        if data is not None and not data.strip():
            raise ValueError("must name a path or an s3:// URI (or leave the field out)")
        return None if data is None else _check_text(data, limit=MAX_PATH_CHARS)

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
        if self.trainer is not None and self.code != CodeSpec():
            raise ValueError("'code' is for a custom objective's project; a built-in trainer ships no code")
        if self.trainer is not None and self.data is not None:
            raise ValueError("'data' is for a custom objective; a built-in trainer reads trainer.dataset")
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
