"""Training state in checkpoints: trainers save it every ``checkpoint_interval`` epochs and resume from it."""

from __future__ import annotations

import pytest
import torch

from workers.context import RESUMED_KEY, STEP_KEY, ListReporter, SavedState, TrialContext
from workers.datasets import load_tabular
from workers.trainers import DataConfig, MLPTrainer
from workers.trainers._loop import make_loader, make_optimizer, restore_training, training_state

PARAMS = {"learning_rate": 0.01, "batch_size": 16, "dropout": 0.2, "hidden_size": 16, "num_layers": 1}


def _fit(params: dict, *, epochs: int, interval: int, restored: SavedState | None = None, number: int = 3) -> ListReporter:
    reporter = ListReporter()
    ctx = TrialContext(
        params,
        reporter=reporter,
        trial_number=number,
        seed=11,
        max_epochs=epochs,
        checkpoint_interval=interval,
        restored=restored,
    )
    MLPTrainer().fit(ctx, DataConfig("iris"))
    ctx.finish()
    return reporter


def test_state_is_saved_every_interval_and_a_resumed_trial_repeats_the_uninterrupted_run() -> None:
    whole = _fit(PARAMS, epochs=4, interval=2)
    assert [s.step for s in whole.states] == [2, 4]
    assert all(s.trial_number == 3 for s in whole.states)
    assert len(whole.models) == 1, "the model is attached to the last report only"

    resumed = _fit(PARAMS, epochs=4, interval=2, restored=whole.states[0], number=5)
    assert [r[STEP_KEY] for r in resumed.reports] == [3, 4], "the epoch counter continues from the checkpoint"
    assert resumed.reports[0][RESUMED_KEY] == {"trial": 3, "step": 2}
    assert RESUMED_KEY not in resumed.reports[1]
    # Same weights, optimizer moments, dropout and shuffling streams: the same epochs 3 and 4.
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert [r[key] for r in resumed.reports] == pytest.approx([r[key] for r in whole.reports[2:]], rel=1e-6)


def test_a_resumed_trial_keeps_its_own_learning_rate_and_takes_the_weights() -> None:
    data = load_tabular(DataConfig("iris"))
    donor_model = MLPTrainer.build_model(PARAMS, data)
    donor_loader = make_loader(data.x_train, data.y_train, 16, seed=1)
    donor_opt = make_optimizer("adam", donor_model.parameters(), 0.01)
    x, y = next(iter(donor_loader))
    torch.nn.functional.cross_entropy(donor_model(x), y).backward()
    donor_opt.step()
    state = training_state(donor_model, donor_opt, donor_loader)

    model = MLPTrainer.build_model({**PARAMS, "dropout": 0.4}, data)
    loader = make_loader(data.x_train, data.y_train, 32, seed=2)
    optimizer = make_optimizer("adam", model.parameters(), 0.05)
    restore_training(state, model, optimizer, loader)
    for name, tensor in donor_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert [g["lr"] for g in optimizer.param_groups] == [0.05]
    assert optimizer.state_dict()["state"], "the optimizer's moments came along"
    sgd = make_optimizer("sgd", model.parameters(), 0.05)
    restore_training(state, model, sgd, loader)  # another kind of optimizer starts afresh
    assert not sgd.state_dict()["state"]


def test_a_custom_objective_saves_and_loads_its_own_state() -> None:
    def objective(params: dict, ctx: TrialContext) -> None:
        state = ctx.load_state() or {"total": 0.0}
        for step in range(ctx.step + 1, ctx.max_epochs + 1):
            state["total"] += params["x"]
            if ctx.checkpoint_due(step):
                ctx.save_state(state)
            ctx.report(loss=state["total"], step=step)

    first = ListReporter()
    objective({"x": 1.0}, TrialContext({"x": 1.0}, reporter=first, trial_number=0, max_epochs=4, checkpoint_interval=2))
    assert [(s.step, s.state) for s in first.states] == [(2, {"total": 2.0}), (4, {"total": 4.0})]
    assert not first.models

    second = ListReporter()
    ctx = TrialContext(
        {"x": 10.0}, reporter=second, trial_number=1, max_epochs=4, checkpoint_interval=2, restored=first.states[0]
    )
    assert ctx.resumed_from == (0, 2) and ctx.step == 2
    objective(dict(ctx.params), ctx)
    assert [(r[STEP_KEY], r["loss"]) for r in second.reports] == [(3, 12.0), (4, 22.0)]
    assert second.states[-1].trial_number == 1


def test_no_interval_means_no_state() -> None:
    reporter = _fit(PARAMS, epochs=2, interval=0)
    assert reporter.states == [] and len(reporter.models) == 1
