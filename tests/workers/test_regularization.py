"""L1/L2: the penalty terms against a hand computation, and their effect on trained weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workers.context import ListReporter, TrialContext
from workers.models import build_mlp, trainable_weights
from workers.regularization import l1_penalty, l2_penalty, regularized_loss
from workers.trainers import DataConfig, MLPTrainer
from workers.trainers._loop import make_optimizer


def _tiny_model() -> nn.Sequential:
    model = build_mlp(2, 1, hidden_size=2, num_layers=1, dropout=0.0, feature_mean=[0.0, 0.0], feature_std=[1.0, 1.0])
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0]]))
        model[1].bias.fill_(100.0)  # biases are not penalised
        model[4].weight.copy_(torch.tensor([[-3.0, 1.0]]))
        model[4].bias.fill_(-100.0)
    return model


def test_penalties_by_hand() -> None:
    params = [torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5], [-0.5]])]
    assert l1_penalty(params).item() == pytest.approx(1 + 2 + 0.5 + 0.5)
    assert l2_penalty(params).item() == pytest.approx(1 + 4 + 0.25 + 0.25)
    assert l1_penalty([]).item() == 0.0 and l2_penalty([]).item() == 0.0


def test_regularized_loss_by_hand() -> None:
    model = _tiny_model()
    loss = torch.tensor(0.7)
    # Trainable weights: [1, -2, 0.5, 0] and [-3, 1]; the frozen standardiser (identity) and biases are left out.
    l1_by_hand = 1 + 2 + 0.5 + 0 + 3 + 1
    l2_by_hand = 1 + 4 + 0.25 + 0 + 9 + 1

    total = regularized_loss(loss, model, l1=0.1, l2=0.01)

    assert total.item() == pytest.approx(0.7 + 0.1 * l1_by_hand + 0.01 * l2_by_hand)
    assert regularized_loss(loss, model, l1=0.0, l2=0.0).item() == pytest.approx(0.7)
    assert regularized_loss(loss, model, l1=0.2, l2=0.0).item() == pytest.approx(0.7 + 0.2 * l1_by_hand)


def test_penalty_gradient_reaches_only_trainable_weights() -> None:
    model = _tiny_model()
    regularized_loss(torch.tensor(0.0), model, l1=1.0, l2=0.0).backward()
    torch.testing.assert_close(model[1].weight.grad, torch.tensor([[1.0, -1.0], [1.0, 0.0]]))
    assert model[1].bias.grad is None and model[0].weight.grad is None


@pytest.mark.parametrize("name", ["adam", "sgd", "adamw"])
def test_optimizers_carry_no_weight_decay(name: str) -> None:
    optimizer = make_optimizer(name, _tiny_model().parameters(), 0.01)
    assert all(group["weight_decay"] == 0.0 for group in optimizer.param_groups)
    assert all(group["lr"] == 0.01 for group in optimizer.param_groups)
    # The frozen standardiser is not handed to the optimizer.
    assert sum(len(group["params"]) for group in optimizer.param_groups) == 4


def _trained_weights(**params: float) -> torch.Tensor:
    reporter = ListReporter()
    ctx = TrialContext({"learning_rate": 1e-2, **params}, reporter=reporter, max_epochs=5, seed=0)
    MLPTrainer().fit(ctx, DataConfig("breast_cancer"))
    model = reporter.models[-1]
    return torch.cat([weight.detach().reshape(-1) for weight in trainable_weights(model)])


@pytest.fixture(scope="module")
def unregularized() -> torch.Tensor:
    return _trained_weights()


def test_l1_drives_weights_to_zero(unregularized: torch.Tensor) -> None:
    with_l1 = _trained_weights(l1=1e-2)

    assert with_l1.abs().sum() < 0.2 * unregularized.abs().sum()
    near_zero = 1e-2
    assert (with_l1.abs() < near_zero).float().mean() > 0.8
    assert (unregularized.abs() < near_zero).float().mean() < 0.3


def test_l2_shrinks_weights(unregularized: torch.Tensor) -> None:
    with_l2 = _trained_weights(l2=1e-1)

    assert with_l2.pow(2).sum() < 0.2 * unregularized.pow(2).sum()
