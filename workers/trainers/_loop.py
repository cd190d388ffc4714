"""What the built-in trainers share: hyperparameter defaults, seeding, optimizers, loaders and the epoch loop."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from workers.regularization import regularized_loss
from workers.trainers.hyperparameters import OPTIMIZERS

if TYPE_CHECKING:
    from workers.context import TrialContext

SGD_MOMENTUM = 0.9

# Validation runs in chunks of this many rows, so a large validation set fits on a GPU.
EVAL_BATCH_SIZE = 1024

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a trial repeats with the same seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(name: str, parameters: Any, learning_rate: float) -> torch.optim.Optimizer:
    """``adam``, ``sgd`` (momentum 0.9) or ``adamw``, with no weight decay.

    Weight decay stays at 0 for all three: L2 is an explicit term of the loss
    (:mod:`workers.regularization`), so no penalty hides in the optimizer.
    """
    params = [param for param in parameters if param.requires_grad]
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, momentum=SGD_MOMENTUM, weight_decay=0.0)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")


def make_loader(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> DataLoader:
    """A shuffling loader over ``(x, y)`` whose order depends only on ``seed``."""
    # torch.tensor copies: the cached arrays are read-only and shared between trials.
    dataset = TensorDataset(torch.tensor(x), torch.tensor(y))
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    *,
    l1: float,
    l2: float,
    device: str,
) -> float:
    """One pass over ``loader`` minimising ``loss_fn + l1 * L1 + l2 * L2``.

    Returns:
        The mean data loss over the epoch's rows, without the penalty, so trials with
        different ``l1``/``l2`` report comparable training losses.
    """
    model.train()
    total, rows = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        regularized_loss(loss, model, l1=l1, l2=l2).backward()
        optimizer.step()
        total += loss.item() * len(x)
        rows += len(x)
    return total / max(rows, 1)


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, *, device: str) -> torch.Tensor:
    """``model``'s outputs for ``x`` in eval mode (no dropout), on the CPU."""
    model.eval()
    inputs = torch.tensor(x)
    outputs = [model(inputs[i : i + EVAL_BATCH_SIZE].to(device)).cpu() for i in range(0, len(inputs), EVAL_BATCH_SIZE)]
    return torch.cat(outputs)


def classification_metrics(model: nn.Module, x: np.ndarray, y: np.ndarray, *, device: str) -> dict[str, float]:
    """Validation ``val_loss`` (mean cross-entropy) and ``val_accuracy``."""
    logits = predict(model, x, device=device)
    targets = torch.tensor(y)
    return {
        "val_loss": nn.functional.cross_entropy(logits, targets).item(),
        "val_accuracy": (logits.argmax(dim=1) == targets).float().mean().item(),
    }


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader) -> dict[str, Any]:
    """What a trial needs to go on training exactly where it stopped: weights, optimizer state,
    and the random streams of dropout and of the loader's shuffling."""
    generator = loader.generator
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "optimizer_class": type(optimizer).__name__,
        "torch_rng": torch.get_rng_state(),
        "loader_rng": generator.get_state() if generator is not None else None,
    }


def restore_training(state: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader) -> None:
    """Load :func:`training_state` into a freshly built model, optimizer and loader.

    The hyperparameters stay this trial's own: after a PBT exploit the weights and the
    optimizer's moments are the cloned trial's, but the learning rate is the new (perturbed)
    one, and the batch size, dropout and penalties are those the objects were built with.
    An optimizer of another kind starts afresh (its state would not fit).
    """
    model.load_state_dict(state["model"])
    if state.get("optimizer_class") == type(optimizer).__name__:
        learning_rates = [group["lr"] for group in optimizer.param_groups]
        optimizer.load_state_dict(state["optimizer"])
        for group, lr in zip(optimizer.param_groups, learning_rates, strict=True):
            group["lr"] = lr
    if state.get("torch_rng") is not None:
        torch.set_rng_state(state["torch_rng"])
    if state.get("loader_rng") is not None and loader.generator is not None:
        loader.generator.set_state(state["loader_rng"])


def run_epochs(
    ctx: TrialContext,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    train: Callable[[], float],
    evaluate: Callable[[], dict[str, float]],
    model_info: Mapping[str, Any],
) -> None:
    """Train up to ``ctx.max_epochs`` epochs and report after each.

    ``train`` runs one epoch and returns its loss; ``evaluate`` returns the validation
    metrics. Every report also carries the model's size (``n_params``, trainable parameters)
    and ``inference_ms`` (milliseconds per validation example), the usual second objectives
    of a multi-objective search. The model is attached (in eval mode) to the last report.

    A training loss that becomes NaN or infinite ends the trial as FAIL (:meth:`TrialContext.fail`)
    with the epoch and what to change; nothing later is reported.

    Every ``ctx.checkpoint_interval`` epochs the report also carries the training state
    (:func:`training_state`). A trial started from such a checkpoint (``ctx.load_state()``)
    loads it and goes on from the epoch after it, so its epoch counter continues.
    """
    state = ctx.load_state()
    first_epoch = 1
    if state is not None:
        restore_training(state, model, optimizer, loader)
        first_epoch = ctx.step + 1
    n_params = float(sum(p.numel() for p in model.parameters() if p.requires_grad))
    n_val = max(1, int(model_info.get("n_val", 1)))
    for epoch in range(first_epoch, ctx.max_epochs + 1):
        train_loss = train()
        if not math.isfinite(train_loss):
            # The weights are NaN now and every later epoch too: the validation metrics (an
            # accuracy of a constant guess) would look like a result. Fail the trial, not retried
            # (the same seed diverges again), and say what to change.
            ctx.fail(
                f"training loss became {train_loss} at epoch {epoch}; lower the learning rate "
                "(or the top of its range in the space), or look for extreme values in the data"
            )
            return
        started = time.perf_counter()
        metrics = evaluate()
        inference_ms = (time.perf_counter() - started) * 1000.0 / n_val
        if ctx.checkpoint_due(epoch):
            ctx.save_state(training_state(model, optimizer, loader))
        if epoch == ctx.max_epochs:
            model.eval()
            ctx.save_model(model, **{k: v for k, v in model_info.items() if k != "n_val"})
        ctx.report({"train_loss": train_loss, "n_params": n_params, "inference_ms": inference_ms, **metrics}, step=epoch)
    if state is not None and first_epoch > ctx.max_epochs:
        # Resumed with nothing left to train: the final report still carries the model.
        model.eval()
        ctx.save_model(model, **{k: v for k, v in model_info.items() if k != "n_val"})
