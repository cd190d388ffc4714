"""The job spec: one frozen, validated description of a search job, loaded from YAML.

Validation happens in two steps, both before anything is written: the structure (types,
ranges, names) in the pydantic model (:mod:`~automl.spec.model`), then what needs the outside
world (the dataset or table exists and has its target column, the objective imports, the space
fits the trainer) in :func:`~automl.spec.checks.check_spec`. Either raises
:class:`~automl.errors.SpecError` naming the field. The text forms (a file or mapping in, YAML
out) are :mod:`~automl.spec.text`.

The spec's names are imported from here (``from automl.spec import JobSpec, load_spec``).
What must stay true: checking a spec imports no torch, Ray or MLflow.
"""

from __future__ import annotations

from automl.errors import SpecError
from automl.spec.checks import MAX_GRID_POINTS, check_spec, data_config, import_objective, resolve_metrics
from automl.spec.model import (
    METRIC_PATTERN,
    NAME_PATTERN,
    NAME_RULE,
    OBJECTIVE_PATTERN,
    BudgetSpec,
    JobSpec,
    Mode,
    NotifySpec,
    ResourcesSpec,
    SamplerSpec,
    SchedulerSpec,
    TrackingSpec,
    TrainerSpec,
    WarmStartSpec,
    check_name,
)
from automl.spec.text import load_spec, parse_spec, spec_to_yaml

__all__ = [
    "MAX_GRID_POINTS",
    "METRIC_PATTERN",
    "NAME_PATTERN",
    "NAME_RULE",
    "OBJECTIVE_PATTERN",
    "BudgetSpec",
    "JobSpec",
    "Mode",
    "NotifySpec",
    "ResourcesSpec",
    "SamplerSpec",
    "SchedulerSpec",
    "SpecError",
    "TrackingSpec",
    "TrainerSpec",
    "WarmStartSpec",
    "check_name",
    "check_spec",
    "data_config",
    "import_objective",
    "load_spec",
    "parse_spec",
    "resolve_metrics",
    "spec_to_yaml",
]
