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

The champion is a function of the versions, not of the order jobs finish in. Two jobs of one
name may finish at once, in two runners: each reading the champion, then moving it, lets the
slower one move it to a worse version. So after registering, a job computes the champion from
every version's tags, in version order, by the rule above (the version that would hold it had the
jobs registered one at a time), points the alias there, and reads again until what it reads is
what it computes. The last job to write sees every version there is, so all of them leave the
alias on the same, right, version, whatever the interleaving, on any store (no lock needed, none
offered by an MLflow server). A hand-set alias lasts until the next job of that name registers.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from automl.tracking.runs import TAG_PREFIX, job_short_id

logger = logging.getLogger(__name__)

CHAMPION = "champion"
METRIC_TAG = f"{TAG_PREFIX}metric"
MODE_TAG = f"{TAG_PREFIX}mode"
VALUE_TAG = f"{TAG_PREFIX}metric_value"
# Rounds of settle_champion: one without a race, two or three in one.
SETTLE_ROUNDS = 8


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
    return _tags_beat(origin.tags(), champion_tags)


def _tags_beat(challenger: Mapping[str, str], champion: Mapping[str, str]) -> bool:
    """:func:`beats`, on the challenger's version tags."""
    if champion.get(METRIC_TAG) != challenger.get(METRIC_TAG) or champion.get(MODE_TAG) != challenger.get(MODE_TAG):
        return True
    try:
        held = float(champion[VALUE_TAG])
    except (KeyError, ValueError):
        return True
    if not math.isfinite(held):
        return True
    try:
        value = float(challenger[VALUE_TAG])
    except (KeyError, ValueError):
        return False
    return value > held if challenger.get(MODE_TAG) == "max" else value < held


def champion_of(versions: Iterable[Any]) -> str | None:
    """The version that holds ``champion`` when ``versions`` registered one at a time, in version order.

    Each version with this module's tags (a job's best model) takes the alias from the one holding
    it when it :func:`beats` it; versions without them (logged otherwise) never take it.

    Args:
        versions: model versions (``ModelVersion``), with their tags.

    Returns:
        The champion's version number, or ``None`` when no version has the tags.
    """
    champion: Any = None
    for version in sorted(versions, key=lambda v: int(v.version)):
        tags = version.tags or {}
        if METRIC_TAG not in tags or MODE_TAG not in tags:
            continue
        if champion is None or _tags_beat(tags, champion.tags or {}):
            champion = version
    return None if champion is None else str(champion.version)


def settle_champion(client: Any, name: str, *, rounds: int = SETTLE_ROUNDS) -> str | None:
    """Point the alias ``champion`` of model ``name`` at :func:`champion_of` its versions, until it stays there.

    Each round lists the versions, then reads the alias: the same version ends it; another is
    overwritten, and the next round reads both again, so a job that moved the alias on a list
    missing a newer version is corrected by whichever job reads last.

    Args:
        client: an ``MlflowClient`` on the registry.
        name: the registered model.
        rounds: how many times to compare before giving up (a warning; the next job settles it).

    Returns:
        The champion's version, or ``None`` when no version has this module's tags.
    """
    target = None
    for round_ in range(rounds):
        target = champion_of(_versions(client, name))
        if target is None:
            return None
        if _alias_version(client, name) == target:
            return target
        client.set_registered_model_alias(name, CHAMPION, target)
        if round_:
            # Another job is writing too: let it finish its round before reading again.
            time.sleep(random.uniform(0.05, 0.2) * round_)
    logger.warning(
        "model %s: the champion alias was still moving after %d rounds; the next job of this name settles it", name, rounds
    )
    return target


def _versions(client: Any, name: str) -> list[Any]:
    """Every version of model ``name``, with their tags (page by page)."""
    quote = '"' if "'" in name else "'"
    versions: list[Any] = []
    token = None
    while True:
        page = client.search_model_versions(f"name = {quote}{name}{quote}", page_token=token)
        versions += list(page)
        token = getattr(page, "token", None)
        if not token:
            return versions


def _alias_version(client: Any, name: str) -> str | None:
    """The version the alias ``champion`` names now, ``None`` when none does."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise
        return None


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


__all__ = ["CHAMPION", "ModelOrigin", "beats", "champion_of", "describe_version", "settle_champion"]
