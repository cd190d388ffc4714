"""The built-in trainers, by the name a job spec gives them: one registry entry per trainer,
its torch-free card (:func:`trainer_card`, what the driver checks a spec against) and where
its class is (:func:`get_trainer`, what a trial trains with).

The trainer classes import torch and the datasets' libraries (seconds of CPU in every new Ray
worker), so they load on first use: a custom objective's trials, and the driver's spec
checks, never pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from workers.trainers.base import DataConfig, Trainer, TrainerCard

if TYPE_CHECKING:
    from workers.trainers.cnn import CNNTrainer
    from workers.trainers.mlp import MLPTrainer

__all__ = [
    "TRAINERS",
    "TRAINER_NAMES",
    "CNNTrainer",
    "DataConfig",
    "MLPTrainer",
    "Trainer",
    "TrainerCard",
    "get_trainer",
    "trainer_card",
]

# name in the spec -> (card in workers.trainers.cards, module, class); one entry per trainer.
# Names, not objects: importing this package (every trial does) must not load the cards' data
# libraries (scikit-learn: over a second in each new Ray worker), let alone torch.
_CARDS = "workers.trainers.cards"
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "mlp": ("MLPCard", "workers.trainers.mlp", "MLPTrainer"),
    "cnn": ("CNNCard", "workers.trainers.cnn", "CNNTrainer"),
}
TRAINER_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def trainer_card(name: str) -> type[TrainerCard]:
    """The card of the trainer called ``name``: its hyperparameters, metrics and data check (no torch).

    Raises:
        ValueError: ``name`` is not a built-in trainer; the message lists those that are.
    """
    card: type[TrainerCard] = getattr(importlib.import_module(_CARDS), _entry(name)[0])
    return card


def get_trainer(name: str) -> type[Trainer]:
    """The trainer class called ``name`` (imported now if it was not yet).

    Raises:
        ValueError: ``name`` is not a built-in trainer; the message lists those that are.
    """
    _card, module, attribute = _entry(name)
    trainer: type[Trainer] = getattr(importlib.import_module(module), attribute)
    return trainer


def _entry(name: str) -> tuple[str, str, str]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown trainer {name!r}; known trainers: {', '.join(sorted(_REGISTRY))}") from None


def __getattr__(name: str) -> Any:
    # PEP 562: ``TRAINERS`` and the classes are built on first access, not at import.
    if name == "TRAINERS":
        return {key: get_trainer(key) for key in _REGISTRY}
    for key, (_card, _module, attribute) in _REGISTRY.items():
        if name == attribute:
            return get_trainer(key)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
