"""L1 and L2 weight penalties, added explicitly to the training loss (never hidden in an optimizer)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from workers.models import trainable_weights


def l1_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of absolute values of all ``params`` (0 when there are none)."""
    terms = [param.abs().sum() for param in params]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def l2_penalty(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of squares of all ``params`` (0 when there are none)."""
    terms = [param.pow(2).sum() for param in params]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def regularized_loss(loss: torch.Tensor, model: nn.Module, *, l1: float, l2: float) -> torch.Tensor:
    """``loss + l1 * sum|w| + l2 * sum w^2`` over :func:`~workers.models.trainable_weights` of ``model``.

    A zero strength adds nothing (and costs nothing).
    """
    if not (l1 or l2):
        return loss
    weights = trainable_weights(model)
    if l1:
        loss = loss + l1 * l1_penalty(weights)
    if l2:
        loss = loss + l2 * l2_penalty(weights)
    return loss
