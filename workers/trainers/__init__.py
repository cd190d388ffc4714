"""The built-in trainers, by the name a job spec gives them.

The trainer classes import torch and the datasets' libraries (seconds of CPU in every new Ray
worker), so they load on first use: a custom objective's trials, and the driver's spec
checks of names, never pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from workers.trainers.base import DataConfig, Trainer

if TYPE_CHECKING:
    from workers.trainers.cnn import CNNTrainer
    from workers.trainers.mlp import MLPTrainer

__all__ = ["TRAINERS", "TRAINER_NAMES", "CNNTrainer", "DataConfig", "MLPTrainer", "Trainer", "get_trainer"]

# name in the spec -> (module, class); one entry per trainer.
_REGISTRY: dict[str, tuple[str, str]] = {
    "mlp": ("workers.trainers.mlp", "MLPTrainer"),
    "cnn": ("workers.trainers.cnn", "CNNTrainer"),
}
TRAINER_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get_trainer(name: str) -> type[Trainer]:
    """The trainer class called ``name`` (imported now if it was not yet).

    Raises:
        ValueError: ``name`` is not a built-in trainer; the message lists those that are.
    """
    try:
        module, attribute = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown trainer {name!r}; known trainers: {', '.join(sorted(_REGISTRY))}") from None
    trainer: type[Trainer] = getattr(importlib.import_module(module), attribute)
    return trainer


def __getattr__(name: str) -> Any:
    # PEP 562: ``TRAINERS`` and the classes are built on first access, not at import.
    if name == "TRAINERS":
        return {key: get_trainer(key) for key in _REGISTRY}
    for key, (_module, attribute) in _REGISTRY.items():
        if name == attribute:
            return get_trainer(key)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
