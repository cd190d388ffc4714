"""Search spaces: presets, inline spaces, and the errors for wrong ones."""

from __future__ import annotations

import optuna
import pytest

from automl.errors import SpecError
from automl.spaces import list_presets, load_space, space_from_distributions

REGULARISATION = {"learning_rate", "batch_size", "dropout", "l1", "l2"}


@pytest.mark.parametrize("preset", ["mlp", "mlp-small", "cnn"])
def test_presets_cover_lr_batch_dropout_l1_l2(preset: str) -> None:
    space = load_space(preset)
    assert set(space.params) >= REGULARISATION
    dists = space.to_optuna()
    assert dists["learning_rate"].log and isinstance(dists["learning_rate"], optuna.distributions.FloatDistribution)
    assert dists["l1"].log and dists["l2"].log
    assert isinstance(dists["batch_size"], optuna.distributions.CategoricalDistribution)
    assert space.description


def test_list_presets_names_every_file() -> None:
    assert {"mlp", "mlp-small", "cnn"} <= set(list_presets())


def test_inline_space_maps_to_optuna_distributions() -> None:
    space = load_space(
        {
            "x": {"type": "float", "low": -1, "high": 1},
            "n": {"type": "int", "low": 1, "high": 8, "log": True},
            "act": {"type": "categorical", "choices": ["relu", "tanh"]},
        }
    )
    dists = space.to_optuna()
    assert dists["x"] == optuna.distributions.FloatDistribution(-1, 1)
    assert dists["n"] == optuna.distributions.IntDistribution(1, 8, log=True)
    assert dists["act"] == optuna.distributions.CategoricalDistribution(["relu", "tanh"])


def test_space_round_trips_through_optuna_distributions() -> None:
    space = load_space("mlp")
    assert space_from_distributions(space.to_optuna()).to_optuna() == space.to_optuna()


def test_space_file_by_path(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("params:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n")
    assert set(load_space(str(path)).params) == {"lr"}


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ({"lr": {"type": "float", "low": 0.1, "high": 0.01}}, "space.params.lr: low (0.1) must be less than high"),
        ({"lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "space.params.lr: a log-scale range needs low > 0"),
        ({"bs": {"type": "categorical", "choices": []}}, "space.params.bs.choices: choices must not be empty"),
        ({"bs": {"type": "categorial", "choices": [1]}}, "space.params.bs: type must be one of"),
        ({"bs": {"choices": [1]}}, "space.params.bs: needs a 'type'"),
        ({"lr": {"type": "float", "low": 0.1, "high": 1, "lgo": True}}, "space.params.lr.lgo: unknown field"),
        ({"1lr": {"type": "float", "low": 0.1, "high": 1}}, "parameter name '1lr'"),
        ({}, "at least one parameter"),
    ],
)
def test_wrong_space_names_the_field(space: dict, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        load_space(space)
    assert expected in str(info.value)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(SpecError, match=r"unknown preset 'mpl' \(known presets: .*mlp"):
        load_space("mpl")
