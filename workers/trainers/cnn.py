"""The ``cnn`` trainer: a small convolutional network for image classification."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import nn

from workers.datasets import CLASSIFICATION, ImageData, load_images
from workers.models import build_cnn, column_stats
from workers.trainers._loop import (
    classification_metrics,
    make_loader,
    make_optimizer,
    run_epochs,
    seed_everything,
    train_epoch,
)
from workers.trainers.base import DataConfig, Trainer
from workers.trainers.cards import CNNCard
from workers.trainers.hyperparameters import resolve_params

if TYPE_CHECKING:
    from workers.context import TrialContext

__all__ = ["CNNTrainer"]


class CNNTrainer(CNNCard, Trainer):
    """Two convolution blocks and a dense head, trained with cross-entropy on ``load_images`` data."""

    @classmethod
    def build_model(cls, params: Mapping[str, Any], data: ImageData) -> nn.Sequential:
        """The untrained model for ``params`` (defaults filled in), standardised on ``data``'s training images."""
        params = resolve_params(cls.hyperparameters, params)
        pixel_mean, pixel_std = column_stats(data.x_train, axis=(0, 2, 3))
        return build_cnn(
            data.channels,
            data.height,
            data.width,
            data.n_classes,
            filters=params["filters"],
            dropout=params["dropout"],
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
        )

    def fit(self, ctx: TrialContext, data: DataConfig) -> None:
        params = resolve_params(self.hyperparameters, ctx.params)
        images = load_images(data)
        seed_everything(ctx.seed)
        model = self.build_model(params, images).to(ctx.device)
        loader = make_loader(images.x_train, images.y_train, params["batch_size"], ctx.seed)
        optimizer = make_optimizer(params["optimizer"], model.parameters(), params["learning_rate"])

        def train() -> float:
            loss_fn = nn.functional.cross_entropy
            return train_epoch(model, loader, optimizer, loss_fn, l1=params["l1"], l2=params["l2"], device=ctx.device)

        def evaluate() -> dict[str, float]:
            return classification_metrics(model, images.x_val, images.y_val, device=ctx.device)

        run_epochs(
            ctx,
            model,
            optimizer=optimizer,
            loader=loader,
            train=train,
            evaluate=evaluate,
            model_info={
                "task": CLASSIFICATION,
                "channels": images.channels,
                "height": images.height,
                "width": images.width,
                "class_names": list(images.class_names),
                "input_shape": [images.channels, images.height, images.width],
                "n_val": len(images.y_val),
            },
        )
