"""The contract every built-in trainer meets: its card (which hyperparameters it reads, what it
reports; no torch) and its ``fit``, which trains inside a trial."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from workers.context import TrialContext


@dataclass(frozen=True)
class DataConfig:
    """Which data a built-in trainer trains on, as the job spec gives it.

    Attributes:
        dataset: a bundled dataset name (``iris``, ``wine``, ``breast_cancer``, ``digits``,
            ``diabetes``) or a path to a ``.csv``/``.parquet`` table or an ``.npz`` of images.
        target: the target column of a table (required for ``.csv``/``.parquet``).
        task: ``classification`` or ``regression``; ``None`` infers it from the data.
        val_fraction: the share of rows held out for validation.
        split_seed: the seed of the train/validation split, the same for every trial of a job
            so that trials are compared on the same rows.
    """

    dataset: str
    target: str | None = None
    task: str | None = None
    val_fraction: float = 0.2
    split_seed: int = 0


class TrainerCard(ABC):
    """What the driver knows of a built-in trainer without importing torch (``workers.trainers.cards``).

    A card declares ``name``, the ``hyperparameters`` the trainer reads (with the default used
    when the search space leaves one out), which of them a trial may change mid-training
    (``mutable_hyperparameters``: what the PBT scheduler perturbs) and the metrics it reports.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    hyperparameters: ClassVar[Mapping[str, Any]]
    # Knobs that shape the updates, not the model: a trial can take another trial's weights
    # and go on with new values of these. Kept here (no torch import) for the driver's checks.
    mutable_hyperparameters: ClassVar[frozenset[str]] = frozenset({"learning_rate", "batch_size", "dropout", "l1", "l2"})

    @classmethod
    @abstractmethod
    def metrics(cls, task: str) -> Mapping[str, str]:
        """The metrics reported every epoch for ``task``, each with its direction (``min``/``max``)."""

    @classmethod
    @abstractmethod
    def default_metric(cls, task: str) -> str:
        """The metric a job optimises when its spec names none."""

    @classmethod
    @abstractmethod
    def check_data(cls, data: DataConfig) -> str:
        """Check, cheaply, that ``data`` can be used; return the task it implies.

        Called by the driver while validating a spec, before anything is written.

        Raises:
            workers.datasets.DataError: naming the dataset, the file or the column that is wrong.
        """


class Trainer(TrainerCard):
    """A built-in trainer: trains one model for one trial and reports a metric every epoch.

    A trainer class inherits its :class:`TrainerCard` (the facts the driver checks a spec
    against) and adds :meth:`fit`, which runs inside a trial.
    """

    @abstractmethod
    def fit(self, ctx: TrialContext, data: DataConfig) -> None:
        """Train with ``ctx.params`` for ``ctx.max_epochs`` epochs, calling ``ctx.report`` each
        epoch and ``ctx.save_model`` before the last report.

        Every ``ctx.checkpoint_interval`` epochs, attach the training state with
        ``ctx.save_state``; when ``ctx.load_state()`` returns one, load it and continue from
        epoch ``ctx.step + 1`` (``_loop.run_epochs`` does both)."""
