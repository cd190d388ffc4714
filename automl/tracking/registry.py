"""What a registered model version says about where it came from, and which version is the champion.

Each job registers its best trial's model as a new version of the model named after the job
(``tracking.model_name``). The version carries a description (the job, the trial, its metric
value, its hyperparameters) and tags (``automl.metric``, ``automl.mode``, ``automl.metric_value``,
``automl.job_name``, ``automl.job_id``, ``automl.job_run_id``, ``automl.study_name``,
``automl.trial_number``). The
alias ``champion`` names the best version so far: it moves to a new version only when that
version's metric beats the champion's in the job's direction (``mode``).

What must stay true: a version is compared with the champion only on the same metric and mode;
a champion whose tags cannot be compared (another metric, another mode, a version from before
these tags) gives way to the new version, whose job defines what the model optimises now. Only
the registry client is used (no fluent state). No MLflow import at module level.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from automl.tracking.runs import TAG_PREFIX, job_short_id

logger = logging.getLogger(__name__)

CHAMPION = "champion"
METRIC_TAG = f"{TAG_PREFIX}metric"
MODE_TAG = f"{TAG_PREFIX}mode"
VALUE_TAG = f"{TAG_PREFIX}metric_value"


@dataclass(frozen=True)
class ModelOrigin:
    """The trial a registered model comes from, and how its job measured it."""

    job_name: str
    study_name: str
    job_run_id: str | None  # the job's MLflow run
    trial_number: int
    trial_run_name: str
    metric: str
    mode: str
    value: float
    params: Mapping[str, Any] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        """The version's tags (also the logged model's)."""
        tags = {
            METRIC_TAG: self.metric,
            MODE_TAG: self.mode,
            VALUE_TAG: repr(float(self.value)),
            f"{TAG_PREFIX}job_name": self.job_name,
            # The job store's id for a queued job (what `automl status` takes); a random one for automl.search.
            f"{TAG_PREFIX}job_id": job_short_id(self.study_name, self.job_run_id or ""),
            f"{TAG_PREFIX}study_name": self.study_name,
            f"{TAG_PREFIX}trial_number": str(self.trial_number),
        }
        if self.job_run_id:
            tags[f"{TAG_PREFIX}job_run_id"] = self.job_run_id
        return tags

    def description(self) -> str:
        """The version's description in Markdown (the Model Registry shows it on the version's page)."""
        head = (
            f"Best trial of job `{self.job_name}` (id `{self.tags()[f'{TAG_PREFIX}job_id']}`, study `{self.study_name}`): "
            f"trial {self.trial_number} "
            f"(run `{self.trial_run_name}`), `{self.metric}` = **{self.value:.6g}** ({self.mode})."
        )
        lines = [head]
        if self.params:
            lines += ["", "Hyperparameters: " + ", ".join(f"`{k}` = {_short(v)}" for k, v in sorted(self.params.items())) + "."]
        if self.job_run_id:
            lines += ["", f"Job run: `{self.job_run_id}`."]
        return "\n".join(lines)


def beats(origin: ModelOrigin, champion_tags: Mapping[str, str]) -> bool:
    """Whether ``origin``'s model should take the champion alias from the version with ``champion_tags``.

    On the same metric and mode, only a strictly better value wins (a tie keeps the champion);
    a champion measured otherwise, or not at all, cannot be compared and gives way.
    """
    if champion_tags.get(METRIC_TAG) != origin.metric or champion_tags.get(MODE_TAG) != origin.mode:
        return True
    try:
        held = float(champion_tags[VALUE_TAG])
    except (KeyError, ValueError):
        return True
    if not math.isfinite(held):
        return True
    return origin.value > held if origin.mode == "max" else origin.value < held


def crown_if_better(client: Any, name: str, version: str, origin: ModelOrigin) -> bool:
    """Point the alias ``champion`` of model ``name`` at ``version`` when it beats the current champion.

    Returns:
        Whether the alias moved (or was set: the first version of a model is its champion).
    """
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise
        current = None
    if current is not None and (str(current.version) == str(version) or not beats(origin, current.tags or {})):
        return False
    client.set_registered_model_alias(name, CHAMPION, str(version))
    return True


def describe_version(client: Any, name: str, version: str, origin: ModelOrigin) -> None:
    """Write ``origin``'s description on the version, and a description on the registered model if it has none."""
    client.update_model_version(name, str(version), description=origin.description())
    registered = client.get_registered_model(name)
    if not registered.description:
        client.update_registered_model(
            name,
            description=(
                f"The best models of the automl job `{origin.job_name}`: each job adds a version (its best trial). "
                f"`models:/{name}@{CHAMPION}` is the best so far by `{origin.metric}` ({origin.mode})."
            ),
        )


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


__all__ = ["CHAMPION", "ModelOrigin", "beats", "crown_if_better", "describe_version"]
