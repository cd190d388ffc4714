"""The trial context: hyperparameters in; metrics, steps, training state and the trained model out.

A trial never opens the job database, the Optuna storage or the MLflow store. It reports to
a :class:`Reporter` (Ray Tune inside a search, a list in tests) and the driver persists.
Training state (weights, optimizer, anything picklable) travels in the report's checkpoint,
so a trial paused or exploited by population based training resumes where a checkpoint left off.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

# Keys the context adds to every report; the driver strips them before tracking.
STEP_KEY = "step"
FINAL_KEY = "automl_final"
MODEL_FILE = "model.pt"
MODEL_INFO_FILE = "model_info.json"
# The training state a trial saved with ``save_state``, with the step and trial that saved it.
STATE_FILE = "trial_state.pt"
# Added to the first report after a trial resumed from a checkpoint: {"trial": N, "step": S},
# the trial number and step that wrote the checkpoint, read from the checkpoint itself.
RESUMED_KEY = "automl_resumed_from"
# In a final report, why the trial failed (see :meth:`TrialContext.fail`): the driver records the
# trial as FAIL with this reason whatever its metrics say.
FAIL_REASON_KEY = "automl_fail_reason"


def as_number(value: Any) -> float | None:
    """``value`` as a float when it is a real number, else ``None``.

    Python ints and floats, and NumPy or torch scalars (one-element arrays and tensors) are
    numbers. Strings, booleans and ``None`` are not, though ``float()`` takes most of them: an
    objective returning ``"0.5"`` or ``True`` has a bug, and its trial must fail, not count.
    """
    if isinstance(value, (str, bytes, bool)) or value is None:
        return None
    if not isinstance(value, numbers.Real) and hasattr(value, "item"):
        try:
            value = value.item()  # a NumPy or torch scalar, or a one-element array or tensor
        except (TypeError, ValueError, RuntimeError):
            return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


@dataclass(frozen=True)
class SavedState:
    """A checkpoint's training state: what ``save_state`` was given, and where it was saved.

    Attributes:
        step: the step of the report the state was attached to.
        trial_number: the trial that saved it (another trial's, after a PBT exploit).
        metrics: that report's metrics, so a resumed trial can repeat them if it has nothing left to train.
        state: the mapping passed to :meth:`TrialContext.save_state`.
    """

    step: int
    trial_number: int
    metrics: dict[str, float] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


def read_state(folder: str) -> SavedState | None:
    """The training state in a checkpoint folder, or ``None`` if it holds none (a model-only checkpoint)."""
    path = os.path.join(folder, STATE_FILE)
    if not os.path.exists(path):
        return None
    import torch

    # Our own trials wrote this file; the state may hold any picklable object (not only tensors).
    raw = torch.load(path, weights_only=False, map_location="cpu")
    return SavedState(
        step=int(raw["step"]),
        trial_number=int(raw["trial_number"]),
        metrics=dict(raw.get("metrics") or {}),
        state=dict(raw["state"]),
    )


class Reporter(Protocol):
    """Where a trial's reports go: one call per step, with an optional checkpoint folder."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None: ...


class ListReporter:
    """Keeps reports in memory: for running a trainer or objective outside Ray (tests, notebooks).

    ``models`` holds each checkpointed model; ``states`` each saved training state, in order.
    """

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.models: list[Any] = []
        self.states: list[SavedState] = []

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir is None:
            return
        model_path = os.path.join(checkpoint_dir, MODEL_FILE)
        if os.path.exists(model_path):
            import torch

            self.models.append(torch.load(model_path, weights_only=False))
        saved = read_state(checkpoint_dir)
        if saved is not None:
            self.states.append(saved)


class TrialContext:
    """What one trial sees and says.

    Args:
        params: the hyperparameters Optuna chose for this trial (read-only).
        trial_number: the Optuna trial number, unique within the job.
        seed: the trial's own seed (the job seed combined with the trial number).
        max_epochs: the job's per-trial step budget; the report at this step is the last.
        device: where tensors should go: ``cuda`` when Ray granted the trial a GPU, else ``cpu``.
        reporter: where reports go.
        checkpoint_interval: save training state every this many steps (0: never); the PBT
            scheduler sets it so that every step it may exploit a trial at has a checkpoint.
        restored: the training state the trial resumes from (a checkpoint of its own, or of
            the trial PBT cloned); the context's step starts at that state's step.
        data_path: the local copy of the job's data file (its spec's ``data``), on whatever node
            the trial runs; ``None`` when the job names none.
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
        checkpoint_interval: int = 0,
        restored: SavedState | None = None,
        data_path: str | None = None,
    ) -> None:
        self.params: Mapping[str, Any] = MappingProxyType(dict(params))
        self.trial_number = trial_number
        self.seed = seed
        self.max_epochs = max_epochs
        self.device = device
        self.checkpoint_interval = max(0, int(checkpoint_interval))
        self.data_path = data_path
        self._reporter = reporter
        self._restored = restored
        self._step = restored.step if restored else 0
        self._last_metrics: dict[str, float] = dict(restored.metrics) if restored else {}
        self._final_sent = False
        self._pending_model: tuple[Any, dict[str, Any]] | None = None
        self._pending_state: dict[str, Any] | None = None
        self._announce_resume = restored is not None
        self._failed = False

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

    @property
    def resumed_from(self) -> tuple[int, int] | None:
        """``(trial_number, step)`` of the checkpoint this trial resumed from, or ``None`` on a fresh start."""
        return (self._restored.trial_number, self._restored.step) if self._restored else None

    def checkpoint_due(self, step: int) -> bool:
        """Whether the report at ``step`` should carry the training state (every ``checkpoint_interval`` steps)."""
        return self.checkpoint_interval > 0 and step % self.checkpoint_interval == 0

    def save_state(self, state: Mapping[str, Any]) -> None:
        """Attach training state (weights, optimizer state, counters...) to the next report.

        It is written with ``torch.save`` into the report's checkpoint, so anything picklable
        goes (tensors are best moved with ``state_dict()``). A trial that later resumes from
        that checkpoint, its own or, under PBT, another trial's, gets it from :meth:`load_state`.
        """
        self._pending_state = dict(state)

    def load_state(self) -> dict[str, Any] | None:
        """The state saved with :meth:`save_state` in the checkpoint this trial resumes from.

        ``None`` on a fresh start. When it is not ``None``, :attr:`step` is the step it was saved
        at: continue with the step after it. After a PBT exploit it is the cloned trial's state,
        while :attr:`params` are this trial's new (perturbed) hyperparameters.
        """
        return dict(self._restored.state) if self._restored else None

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
        clean = _numbers({**(metrics or {}), **more})
        new_step = self._step + 1 if step is None else int(step)
        if new_step < self._step:
            raise ValueError(f"step must not go backwards: got {new_step} after {self._step}")
        final = new_step >= self.max_epochs
        self._send(clean, new_step, final)

    def finish(self, value: float | Mapping[str, float] | None = None, *, metric: str | None = None) -> None:
        """Send the final report if the trial has not reached ``max_epochs`` (called after the objective returns).

        ``value`` is the objective's return value: a number reported under ``metric``, or a
        mapping of metric names to numbers.

        Raises:
            ValueError: if a value is not a number (see :func:`as_number`).
        """
        if self._final_sent:
            return
        metrics = dict(self._last_metrics)
        if isinstance(value, Mapping):
            metrics.update(_numbers(value))
        elif value is not None and metric is not None:
            metrics.update(_numbers({metric: value}))
        self._send(metrics, max(self._step, 1), True)

    def fail(self, reason: str) -> None:
        """End the trial as FAIL with ``reason``, without raising, so it is not retried; then return.

        For a failure that trying again cannot mend (training diverged, the objective returned
        a non-number): the final report carries the reason, and the trial is recorded FAIL with
        it in the Optuna study, its MLflow run and the result. Later reports are ignored.
        """
        if self._final_sent:
            return
        self._pending_model = self._pending_state = None  # a failed trial leaves no model behind
        self._send({}, max(self._step, 1), True, fail_reason=reason)

    def _send(self, metrics: dict[str, float], step: int, final: bool, *, fail_reason: str | None = None) -> None:
        if self._failed:
            return  # the trial already ended as FAIL: nothing after that counts
        payload: dict[str, Any] = {**metrics, STEP_KEY: step, FINAL_KEY: final}
        if fail_reason is not None:
            payload[FAIL_REASON_KEY] = fail_reason
            self._failed = True
        if self._announce_resume and self._restored is not None:
            payload[RESUMED_KEY] = {"trial": self._restored.trial_number, "step": self._restored.step}
            self._announce_resume = False
        self._step = step
        self._last_metrics = metrics
        self._final_sent = self._final_sent or final
        if self._pending_model is None and self._pending_state is None:
            self._reporter.report(payload)
            return
        model, state = self._pending_model, self._pending_state
        self._pending_model = self._pending_state = None
        with tempfile.TemporaryDirectory(prefix="automl-checkpoint-") as folder:
            if model is not None:
                _write_model(folder, model[0], model[1])
            if state is not None:
                _write_state(folder, SavedState(step, self.trial_number, metrics, state))
            self._reporter.report(payload, checkpoint_dir=folder)


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    clean: dict[str, float] = {}
    for key, value in values.items():
        number = as_number(value)
        if number is None:
            raise ValueError(f"metric {key!r} must be a number, got {value!r}")
        clean[key] = number
    return clean


def _write_model(folder: str, model: Any, info: dict[str, Any]) -> None:
    import copy
    import json

    import torch

    # A copy, so that saving mid-training never moves the live model off its GPU.
    cpu_model = copy.deepcopy(model).to("cpu") if hasattr(model, "to") else model
    torch.save(cpu_model, os.path.join(folder, MODEL_FILE))
    with open(os.path.join(folder, MODEL_INFO_FILE), "w", encoding="utf-8") as handle:
        json.dump(_finite(info), handle, default=_jsonable, allow_nan=False)


def _write_state(folder: str, saved: SavedState) -> None:
    import torch

    payload = {"step": saved.step, "trial_number": saved.trial_number, "metrics": saved.metrics, "state": saved.state}
    torch.save(payload, os.path.join(folder, STATE_FILE))


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
