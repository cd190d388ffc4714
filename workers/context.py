"""The trial context: hyperparameters in; metrics, steps and the trained model out.

A trial never opens the job database, the Optuna storage or the MLflow store. It reports to
a :class:`Reporter` (Ray Tune inside a search, a list in tests) and the driver persists.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

# Keys the context adds to every report; the driver strips them before tracking.
STEP_KEY = "step"
FINAL_KEY = "automl_final"
MODEL_FILE = "model.pt"
MODEL_INFO_FILE = "model_info.json"


class Reporter(Protocol):
    """Where a trial's reports go: one call per step, with an optional checkpoint folder."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None: ...


class ListReporter:
    """Keeps reports in memory: for running a trainer or objective outside Ray (tests, notebooks)."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.models: list[Any] = []

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir is not None:
            import torch

            self.models.append(torch.load(os.path.join(checkpoint_dir, MODEL_FILE), weights_only=False))


class TrialContext:
    """What one trial sees and says.

    Args:
        params: the hyperparameters Optuna chose for this trial (read-only).
        trial_number: the Optuna trial number, unique within the job.
        seed: the trial's own seed (the job seed combined with the trial number).
        max_epochs: the job's per-trial step budget; the report at this step is the last.
        device: where tensors should go: ``cuda`` when Ray granted the trial a GPU, else ``cpu``.
        reporter: where reports go.
    """

    def __init__(
        self,
        params: Mapping[str, Any],
        *,
        reporter: Reporter,
        trial_number: int = 0,
        seed: int = 0,
        max_epochs: int = 10,
        device: str = "cpu",
    ) -> None:
        self.params: Mapping[str, Any] = MappingProxyType(dict(params))
        self.trial_number = trial_number
        self.seed = seed
        self.max_epochs = max_epochs
        self.device = device
        self._reporter = reporter
        self._step = 0
        self._last_metrics: dict[str, float] = {}
        self._final_sent = False
        self._pending_model: tuple[Any, dict[str, Any]] | None = None

    @property
    def step(self) -> int:
        """The step of the last report (0 before the first)."""
        return self._step

    @property
    def last_metrics(self) -> dict[str, float]:
        """The metrics of the last report."""
        return dict(self._last_metrics)

    @property
    def finished(self) -> bool:
        """Whether the final report (the one at ``max_epochs``, or after the objective returned) was sent."""
        return self._final_sent

    def save_model(self, model: torch.nn.Module, **info: Any) -> None:
        """Attach ``model`` to the next report, so the best trial's model can be logged to MLflow.

        The model is pickled whole with ``torch.save``: build it from ``torch.nn`` modules (or
        classes importable where the driver runs) so it can be loaded again. ``info`` is kept
        beside it as JSON (task, class names, the input shape of one example...).
        """
        self._pending_model = (model, info)

    def report(self, metrics: Mapping[str, float] | None = None, *, step: int | None = None, **more: float) -> None:
        """Report this step's metrics (one call per epoch). ``step`` defaults to the next step.

        Raises:
            ValueError: if a metric is not a number, or ``step`` is lower than the last one.
        """
        values = {**(metrics or {}), **more}
        clean: dict[str, float] = {}
        for key, value in values.items():
            try:
                clean[key] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"metric {key!r} must be a number, got {value!r}") from None
        new_step = self._step + 1 if step is None else int(step)
        if new_step < self._step:
            raise ValueError(f"step must not go backwards: got {new_step} after {self._step}")
        final = new_step >= self.max_epochs
        self._send(clean, new_step, final)

    def finish(self, value: float | Mapping[str, float] | None = None, *, metric: str | None = None) -> None:
        """Send the final report if the trial has not reached ``max_epochs`` (called after the objective returns).

        ``value`` is the objective's return value: a number reported under ``metric``, or a
        mapping of metric names to numbers.
        """
        if self._final_sent:
            return
        metrics = dict(self._last_metrics)
        if isinstance(value, Mapping):
            metrics.update({key: float(v) for key, v in value.items()})
        elif value is not None and metric is not None:
            metrics[metric] = float(value)
        self._send(metrics, max(self._step, 1), True)

    def _send(self, metrics: dict[str, float], step: int, final: bool) -> None:
        payload: dict[str, Any] = {**metrics, STEP_KEY: step, FINAL_KEY: final}
        self._step = step
        self._last_metrics = metrics
        self._final_sent = self._final_sent or final
        if self._pending_model is None:
            self._reporter.report(payload)
            return
        model, info = self._pending_model
        self._pending_model = None
        with tempfile.TemporaryDirectory(prefix="automl-model-") as folder:
            _write_model(folder, model, info)
            self._reporter.report(payload, checkpoint_dir=folder)


def _write_model(folder: str, model: Any, info: dict[str, Any]) -> None:
    import copy
    import json

    import torch

    # A copy, so that saving mid-training never moves the live model off its GPU.
    cpu_model = copy.deepcopy(model).to("cpu") if hasattr(model, "to") else model
    torch.save(cpu_model, os.path.join(folder, MODEL_FILE))
    with open(os.path.join(folder, MODEL_INFO_FILE), "w", encoding="utf-8") as handle:
        json.dump(_finite(info), handle, default=_jsonable, allow_nan=False)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by ``None``: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    return str(value)
