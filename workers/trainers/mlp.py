"""The ``mlp`` trainer: a multilayer perceptron on a table, for classification or regression."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.metrics import r2_score
from torch import nn

from workers.datasets import CLASSIFICATION, REGRESSION, TabularData, load_tabular
from workers.models import build_mlp, column_stats
from workers.trainers._loop import (
    LossFn,
    classification_metrics,
    make_loader,
    make_optimizer,
    predict,
    run_epochs,
    seed_everything,
    train_epoch,
)
from workers.trainers.base import DataConfig, Trainer
from workers.trainers.cards import MLPCard
from workers.trainers.hyperparameters import resolve_params

if TYPE_CHECKING:
    from workers.context import TrialContext

__all__ = ["MLPTrainer", "make_loader", "regression_metrics"]


class MLPTrainer(MLPCard, Trainer):
    """Multilayer perceptron for tabular data.

    Classification minimises cross-entropy. Regression minimises the mean squared error on
    the standardised target (``train_loss``/``val_loss`` are in those units) and also
    reports ``val_rmse`` in target units and ``val_r2``. ``train_loss`` leaves out the L1/L2
    penalty, so trials with different penalties can be compared on it.
    """

    @classmethod
    def build_model(cls, params: Mapping[str, Any], data: TabularData) -> nn.Sequential:
        """The untrained model for ``params`` (defaults filled in), standardised on ``data``'s training rows."""
        params = resolve_params(cls.hyperparameters, params)
        feature_mean, feature_std = column_stats(data.x_train)
        target_mean = target_std = None
        if data.task == REGRESSION:
            mean, std = column_stats(data.y_train)
            target_mean, target_std = float(mean), float(std)
        return build_mlp(
            data.n_features,
            data.n_classes if data.task == CLASSIFICATION else 1,
            hidden_size=params["hidden_size"],
            num_layers=params["num_layers"],
            dropout=params["dropout"],
            feature_mean=feature_mean,
            feature_std=feature_std,
            target_mean=target_mean,
            target_std=target_std,
        )

    def fit(self, ctx: TrialContext, data: DataConfig) -> None:
        params = resolve_params(self.hyperparameters, ctx.params)
        table = load_tabular(data)
        seed_everything(ctx.seed)
        model = self.build_model(params, table).to(ctx.device)

        network: nn.Module
        loss_fn: LossFn
        if table.task == CLASSIFICATION:
            network, y_train, loss_fn = model, table.y_train, nn.functional.cross_entropy

            def evaluate() -> dict[str, float]:
                return classification_metrics(model, table.x_val, table.y_val, device=ctx.device)

        else:
            # The network before the frozen output layer is trained on the standardised target.
            network, loss_fn = model[:-1], _mse
            target_mean, target_std = column_stats(table.y_train)
            y_train = (table.y_train - target_mean) / target_std

            def evaluate() -> dict[str, float]:
                return regression_metrics(model, table, target_std=float(target_std), device=ctx.device)

        loader = make_loader(table.x_train, y_train, params["batch_size"], ctx.seed)
        optimizer = make_optimizer(params["optimizer"], network.parameters(), params["learning_rate"])

        def train() -> float:
            return train_epoch(network, loader, optimizer, loss_fn, l1=params["l1"], l2=params["l2"], device=ctx.device)

        run_epochs(
            ctx,
            model,
            optimizer=optimizer,
            loader=loader,
            train=train,
            evaluate=evaluate,
            model_info={
                "task": table.task,
                "n_features": table.n_features,
                "feature_names": list(table.feature_names),
                "class_names": list(table.class_names),
                "input_shape": [table.n_features],
                # Two real rows, raw: the MLflow model's input example (it shows what a request looks like).
                "input_example": table.x_val[:2].astype(float).tolist(),
                "n_val": len(table.y_val),
            },
        )


def regression_metrics(model: nn.Module, data: TabularData, *, target_std: float, device: str) -> dict[str, float]:
    """``val_loss`` (MSE on the standardised target), ``val_rmse`` (target units) and ``val_r2``."""
    predictions = predict(model, data.x_val, device=device).reshape(-1).double().numpy()
    targets = data.y_val.astype(np.float64)
    error = predictions - targets
    return {
        "val_loss": float(np.mean((error / target_std) ** 2)),
        "val_rmse": float(np.sqrt(np.mean(error**2))),
        "val_r2": float(r2_score(targets, predictions)),
    }


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(outputs.reshape(-1), targets)
