"""The cnn trainer on the bundled digits: hyperparameters reach the model, reports, the saved model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from workers.context import FINAL_KEY, STEP_KEY, ListReporter, TrialContext
from workers.datasets import load_images
from workers.trainers import CNNTrainer, DataConfig, cnn
from workers.trainers._loop import make_loader


def test_declared_hyperparameters_and_metrics() -> None:
    assert dict(CNNTrainer.hyperparameters) == {
        "learning_rate": 1e-3,
        "batch_size": 32,
        "dropout": 0.0,
        "l1": 0.0,
        "l2": 0.0,
        "filters": 16,
        "optimizer": "adam",
    }
    assert dict(CNNTrainer.metrics("classification")) == {
        "train_loss": "min",
        "val_loss": "min",
        "val_accuracy": "max",
        "n_params": "min",
        "inference_ms": "min",
    }
    assert CNNTrainer.default_metric("classification") == "val_accuracy"
    assert CNNTrainer.check_data(DataConfig("digits")) == "classification"
    with pytest.raises(ValueError):
        CNNTrainer.default_metric("regression")


def test_filters_and_dropout_reach_the_model() -> None:
    data = load_images(DataConfig("digits"))
    model = CNNTrainer.build_model({"filters": 5, "dropout": 0.15}, data)

    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1:]  # after the frozen standardiser
    assert [m.out_channels for m in convs] == [5, 10]
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.15, 0.15]


def test_reports_every_epoch_and_saves_a_useful_model(monkeypatch) -> None:
    loaders = []

    def spy(x, y, batch_size, seed):
        loaders.append(make_loader(x, y, batch_size, seed))
        return loaders[-1]

    monkeypatch.setattr(cnn, "make_loader", spy)
    reporter = ListReporter()
    epochs = 3
    ctx = TrialContext({"filters": 8, "batch_size": 64, "learning_rate": 3e-3}, reporter=reporter, max_epochs=epochs)
    CNNTrainer().fit(ctx, DataConfig("digits"))

    assert loaders[0].batch_size == 64 and len(next(iter(loaders[0]))[0]) == 64
    assert [report[STEP_KEY] for report in reporter.reports] == [1, 2, 3]
    assert [report[FINAL_KEY] for report in reporter.reports] == [False, False, True]
    assert all(set(CNNTrainer.metrics("classification")) <= set(report) for report in reporter.reports)
    assert len(reporter.models) == 1

    data = load_images(DataConfig("digits"))
    model = reporter.models[0].eval()
    with torch.no_grad():
        predictions = model(torch.tensor(data.x_val)).argmax(dim=1).numpy()
    accuracy = float(np.mean(predictions == data.y_val))
    assert accuracy > 0.6  # chance is 1/10
    assert accuracy == pytest.approx(reporter.reports[-1]["val_accuracy"])
