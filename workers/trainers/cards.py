"""What the driver knows of each built-in trainer, without torch: its hyperparameters and their
defaults, the metrics it reports per task, and the cheap check of its data.

A spec is checked against these cards (``automl validate``, ``automl submit``, the plan), so
checking a job imports neither torch nor a trainer's model code. Each trainer class inherits its
card (``class MLPTrainer(MLPCard, Trainer)``), so the two cannot disagree.

What must stay true: this module imports no torch (tests/workers/test_trainer_cards.py runs it in
a fresh interpreter); a card's facts are class attributes and class methods only.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from workers.datasets import CLASSIFICATION, REGRESSION, check_images, check_tabular
from workers.trainers.base import DataConfig, TrainerCard
from workers.trainers.hyperparameters import COST_METRICS, TRAINING_DEFAULTS

_MLP_METRICS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        CLASSIFICATION: MappingProxyType({"train_loss": "min", "val_loss": "min", "val_accuracy": "max", **COST_METRICS}),
        REGRESSION: MappingProxyType(
            {"train_loss": "min", "val_loss": "min", "val_rmse": "min", "val_r2": "max", **COST_METRICS}
        ),
    }
)
_MLP_DEFAULT_METRIC = MappingProxyType({CLASSIFICATION: "val_accuracy", REGRESSION: "val_loss"})
_CNN_METRICS: Mapping[str, str] = MappingProxyType(
    {"train_loss": "min", "val_loss": "min", "val_accuracy": "max", **COST_METRICS}
)


class MLPCard(TrainerCard):
    """The ``mlp`` trainer's card: a table, classification or regression."""

    name: ClassVar[str] = "mlp"
    description: ClassVar[str] = "Multilayer perceptron for tabular classification and regression."
    hyperparameters: ClassVar[Mapping[str, Any]] = MappingProxyType({**TRAINING_DEFAULTS, "hidden_size": 64, "num_layers": 2})

    @classmethod
    def metrics(cls, task: str) -> Mapping[str, str]:
        return _MLP_METRICS[cls.known_task(task)]

    @classmethod
    def default_metric(cls, task: str) -> str:
        return _MLP_DEFAULT_METRIC[cls.known_task(task)]

    @classmethod
    def check_data(cls, data: DataConfig) -> str:
        return check_tabular(data)

    @classmethod
    def known_task(cls, task: str) -> str:
        """``task``, when the trainer supports it.

        Raises:
            ValueError: it does not; the message lists the tasks it does.
        """
        if task not in _MLP_METRICS:
            raise ValueError(f"unknown task {task!r}; the mlp trainer supports {', '.join(_MLP_METRICS)}")
        return task


class CNNCard(TrainerCard):
    """The ``cnn`` trainer's card: images, classification only."""

    name: ClassVar[str] = "cnn"
    description: ClassVar[str] = "Small convolutional network for image classification."
    hyperparameters: ClassVar[Mapping[str, Any]] = MappingProxyType({**TRAINING_DEFAULTS, "filters": 16})

    @classmethod
    def metrics(cls, task: str) -> Mapping[str, str]:
        cls.known_task(task)
        return _CNN_METRICS

    @classmethod
    def default_metric(cls, task: str) -> str:
        cls.known_task(task)
        return "val_accuracy"

    @classmethod
    def check_data(cls, data: DataConfig) -> str:
        return check_images(data)

    @classmethod
    def known_task(cls, task: str) -> str:
        """``task``, when it is classification.

        Raises:
            ValueError: it is not.
        """
        if task != CLASSIFICATION:
            raise ValueError(f"unknown task {task!r}; the cnn trainer supports {CLASSIFICATION} only")
        return task
