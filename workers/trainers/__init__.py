"""The built-in trainers, by the name a job spec gives them."""

from __future__ import annotations

from workers.trainers.base import DataConfig, Trainer
from workers.trainers.cnn import CNNTrainer
from workers.trainers.mlp import MLPTrainer

__all__ = ["TRAINERS", "CNNTrainer", "DataConfig", "MLPTrainer", "Trainer", "get_trainer"]

TRAINERS: dict[str, type[Trainer]] = {trainer.name: trainer for trainer in (MLPTrainer, CNNTrainer)}


def get_trainer(name: str) -> type[Trainer]:
    """The trainer class called ``name``.

    Raises:
        ValueError: ``name`` is not a built-in trainer; the message lists those that are.
    """
    try:
        return TRAINERS[name]
    except KeyError:
        raise ValueError(f"unknown trainer {name!r}; known trainers: {', '.join(sorted(TRAINERS))}") from None
