"""The hyperparameters every built-in trainer reads, their defaults, and the rule a value must
meet to train: plain Python, no torch, so the driver checks a spec's space without importing it."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

OPTIMIZERS = ("adam", "sgd", "adamw")

# The knobs every built-in trainer reads, with the value used when a space leaves one out.
TRAINING_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"learning_rate": 1e-3, "batch_size": 32, "dropout": 0.0, "l1": 0.0, "l2": 0.0, "optimizer": "adam"}
)
# What every trainer reports beside its task's metrics: the cost of the model, and its direction.
COST_METRICS: Mapping[str, str] = MappingProxyType({"n_params": "min", "inference_ms": "min"})


def resolve_params(defaults: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The trainer's hyperparameters: ``params`` where given, ``defaults`` elsewhere.

    Keys the trainer does not read are ignored (the driver validates the search space);
    values are coerced to the type of their default, so ``batch_size=32.0`` works.

    Raises:
        ValueError: a value that cannot train (negative penalty, dropout outside [0, 1),
            non-positive learning rate, batch size or width, unknown optimizer).
    """
    resolved: dict[str, Any] = {}
    for key, default in defaults.items():
        value = params.get(key, default)
        if isinstance(default, bool):
            resolved[key] = bool(value)
        elif isinstance(default, int):
            resolved[key] = int(value)
        elif isinstance(default, float):
            resolved[key] = float(value)
        else:
            resolved[key] = str(value).lower()
    check_params(resolved)
    return resolved


def check_params(params: Mapping[str, Any]) -> None:
    """Raise ValueError for a value that cannot train (see :func:`resolve_params`)."""
    for key in ("l1", "l2"):
        if params.get(key, 0.0) < 0:
            raise ValueError(f"{key} must be >= 0, got {params[key]}")
    if not 0.0 <= params.get("dropout", 0.0) < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {params['dropout']}")
    for key in ("learning_rate", "batch_size", "hidden_size", "filters"):
        if key in params and params[key] <= 0:
            raise ValueError(f"{key} must be > 0, got {params[key]}")
    if params.get("num_layers", 0) < 0:
        raise ValueError(f"num_layers must be >= 0, got {params['num_layers']}")
    if "optimizer" in params and params["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {params['optimizer']!r}; use one of {', '.join(OPTIMIZERS)}")


__all__ = ["COST_METRICS", "OPTIMIZERS", "TRAINING_DEFAULTS", "check_params", "resolve_params"]
