"""Unit tests of workers.models: frozen standardisation layers, shapes and the penalised weights."""

from __future__ import annotations

import io
import pickle
import types

import numpy as np
import pytest
import torch
from torch import nn

from workers.context import ListReporter, TrialContext
from workers.models import build_cnn, build_mlp, column_stats, trainable_weights
from workers.trainers import CNNTrainer, DataConfig, MLPTrainer


def _is_plain_torch(model: nn.Module) -> bool:
    return all(type(module).__module__.startswith("torch.nn.") for module in model.modules())


def test_mlp_standardises_inside_the_model() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(loc=[5.0, -3.0, 100.0], scale=[2.0, 0.5, 30.0], size=(200, 3)).astype(np.float32)
    mean, std = column_stats(x)
    model = build_mlp(3, 2, hidden_size=8, num_layers=2, dropout=0.0, feature_mean=mean, feature_std=std)

    standardised = model[0](torch.tensor(x))

    assert not any(param.requires_grad for param in model[0].parameters())
    np.testing.assert_allclose(standardised.mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(standardised.std(0, unbiased=False).numpy(), 1.0, atol=1e-4)
    assert model(torch.tensor(x)).shape == (200, 2)
    assert _is_plain_torch(model)


def test_constant_feature_is_not_blown_up() -> None:
    x = np.array([[1.0, 7.0], [2.0, 7.0], [3.0, 7.0]], dtype=np.float32)
    mean, std = column_stats(x)
    model = build_mlp(2, 1, hidden_size=4, num_layers=1, dropout=0.0, feature_mean=mean, feature_std=std)
    out = model[0](torch.tensor(x))
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out[:, 1].numpy(), 0.0)


def test_mlp_layers_and_dropout() -> None:
    model = build_mlp(4, 3, hidden_size=16, num_layers=3, dropout=0.25, feature_mean=[0.0] * 4, feature_std=[1.0] * 4)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    dropouts = [m for m in model if isinstance(m, nn.Dropout)]

    assert len(linears) == 1 + 3 + 1  # standardiser, hidden layers, output
    assert [m.p for m in dropouts] == [0.25, 0.25, 0.25]
    # Each Dropout follows a hidden ReLU.
    for index, module in enumerate(model):
        if isinstance(module, nn.Dropout):
            assert isinstance(model[index - 1], nn.ReLU)


def test_regression_output_layer_maps_back_to_target_units() -> None:
    model = build_mlp(
        2,
        1,
        hidden_size=4,
        num_layers=1,
        dropout=0.0,
        feature_mean=[0.0, 0.0],
        feature_std=[1.0, 1.0],
        target_mean=150.0,
        target_std=40.0,
    )
    last = model[-1]
    assert isinstance(last, nn.Linear) and (last.in_features, last.out_features) == (1, 1)
    assert not any(param.requires_grad for param in last.parameters())

    x = torch.randn(5, 2)
    torch.testing.assert_close(model(x), model[:-1](x) * 40.0 + 150.0)


def test_regression_output_needs_one_output() -> None:
    with pytest.raises(ValueError):
        build_mlp(
            2,
            3,
            hidden_size=4,
            num_layers=1,
            dropout=0.0,
            feature_mean=[0, 0],
            feature_std=[1, 1],
            target_mean=0.0,
            target_std=1.0,
        )


@pytest.mark.parametrize(("channels", "height", "width"), [(1, 8, 8), (3, 28, 28), (1, 1, 5), (3, 7, 9)])
def test_cnn_shapes(channels: int, height: int, width: int) -> None:
    model = build_cnn(channels, height, width, 4, filters=6, dropout=0.3, pixel_mean=[0.5] * channels, pixel_std=[2.0] * channels)
    model.eval()
    assert model(torch.zeros(2, channels, height, width)).shape == (2, 4)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert _is_plain_torch(model)


def test_cnn_standardises_each_channel() -> None:
    images = torch.stack([torch.full((4, 4), 10.0), torch.full((4, 4), -2.0), torch.full((4, 4), 0.0)])[None]
    model = build_cnn(3, 4, 4, 2, filters=4, dropout=0.0, pixel_mean=[8.0, -4.0, 1.0], pixel_std=[2.0, 4.0, 0.5])
    out = model[0](images)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([1.0, 0.5, -2.0]))
    assert not any(param.requires_grad for param in model[0].parameters())


def test_trainable_weights_skip_biases_and_frozen_layers() -> None:
    model = build_mlp(3, 2, hidden_size=5, num_layers=2, dropout=0.0, feature_mean=[0.0] * 3, feature_std=[1.0] * 3)
    weights = trainable_weights(model)

    assert [tuple(w.shape) for w in weights] == [(5, 3), (5, 5), (2, 5)]
    assert all(w.requires_grad for w in weights)
    assert all(w is not model[0].weight for w in weights)

    cnn = build_cnn(1, 8, 8, 10, filters=4, dropout=0.0, pixel_mean=[0.0], pixel_std=[1.0])
    assert [w.dim() for w in trainable_weights(cnn)] == [4, 4, 2, 2]


def test_saved_model_round_trips_through_torch_save() -> None:
    model = build_mlp(
        3,
        1,
        hidden_size=4,
        num_layers=1,
        dropout=0.1,
        feature_mean=[1.0, 2.0, 3.0],
        feature_std=[1.0, 2.0, 3.0],
        target_mean=5.0,
        target_std=2.0,
    ).eval()
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(4, 3)
    torch.testing.assert_close(loaded(x), model(x))


def _modules_needed_to_load(model: nn.Module) -> set[str]:
    """The modules whose classes unpickling ``model`` imports."""
    seen: set[str] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            seen.add(module)
            return super().find_class(module, name)

    recording_pickle = types.SimpleNamespace(Unpickler=Recorder, load=pickle.load, __name__="pickle")
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=False, pickle_module=recording_pickle)
    return seen


@pytest.mark.parametrize(("trainer", "dataset"), [(MLPTrainer, "diabetes"), (MLPTrainer, "iris"), (CNNTrainer, "digits")])
def test_saved_model_needs_only_torch_to_load(trainer, dataset: str) -> None:
    reporter = ListReporter()
    trainer().fit(TrialContext({"filters": 4, "hidden_size": 8}, reporter=reporter, max_epochs=1), DataConfig(dataset))

    needed = _modules_needed_to_load(reporter.models[-1])

    assert needed, "the recorder saw nothing: the check itself is broken"
    assert all(name.split(".")[0] in {"torch", "collections", "__builtin__", "builtins"} for name in needed), needed
