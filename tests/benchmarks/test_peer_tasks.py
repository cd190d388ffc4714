"""The peer benchmark's tasks (benchmarks/peer_tasks.py): optima where the literature puts them, a biased cheap fidelity, curves of the right length."""

from __future__ import annotations

import math
import pickle
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import peer_tasks as T

H3_ARGMIN = {"x0": 0.114614, "x1": 0.555649, "x2": 0.852547}
H6_ARGMIN = dict(zip([f"x{i}" for i in range(6)], [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573], strict=True))


def test_the_registry() -> None:
    assert len(T.TASKS) >= 6 and T.get("mf_branin") is T.TASKS["mf_branin"]
    assert not set(T.TASKS) & {"branin", "rosenbrock4", "mlp_digits"}  # none of the sample-efficiency tasks
    assert {n for n, t in T.TASKS.items() if t.held_out} == {"mf_hartmann6", "mlp_diabetes"}
    assert {t.kind for t in T.TASKS.values() if t.held_out} == {"synthetic", "training"}
    with pytest.raises(KeyError, match="known: mf_branin"):
        T.get("nope")


def test_known_optima_at_full_fidelity() -> None:
    assert T.get("mf_branin").exact({"x1": math.pi, "x2": 2.275}) == pytest.approx(0.397887, abs=1e-6)
    assert T.get("mf_hartmann3").exact(H3_ARGMIN) == pytest.approx(-3.86278, abs=1e-5)
    assert T.get("mf_hartmann6").exact(H6_ARGMIN) == pytest.approx(-3.32237, abs=1e-5)
    ones = {**{f"c{i}": 1 for i in range(8)}, **{f"x{i}": 1.0 for i in range(8)}}
    assert T.get("counting_ones").exact(ones) == -16.0 == T.get("counting_ones").optimum
    # and no uniform draw beats them
    for name in ("mf_branin", "mf_hartmann3", "mf_hartmann6", "counting_ones"):
        task, rng = T.get(name), random.Random(1)
        assert min(task.exact(T.sample_config(task.space, rng)) for _ in range(500)) > task.optimum - 1e-9, name


def test_the_cheap_fidelity_is_biased() -> None:
    # at z < 1 the function differs at the optimum, so early epochs mislead a little (BOCA's construction)
    branin, h3 = T.get("mf_branin"), T.get("mf_hartmann3")
    at_opt = list(branin.curve({"x1": math.pi, "x2": 2.275}, seed=0))
    assert len(at_opt) == branin.max_epochs == 27 and at_opt[-1] == pytest.approx(0.397887, abs=1e-6)
    assert at_opt[0] != pytest.approx(at_opt[-1], abs=1e-3)
    h3_curve = list(h3.curve(H3_ARGMIN, seed=0))
    assert h3_curve[0] > h3_curve[-1]  # alpha - 0.1 (1 - z): shallower at low fidelity
    assert T.mf_hartmann3(H3_ARGMIN, 0.0) == pytest.approx(
        T.mf_hartmann3(H3_ARGMIN, 1.0)
        + 0.1
        * sum(
            math.exp(-sum(a * (H3_ARGMIN[f"x{j}"] - p) ** 2 for j, (a, p) in enumerate(zip(ra, rp, strict=True))))
            for ra, rp in zip(T._H3_A, T._H3_P, strict=True)
        )
    )


def test_counting_ones_is_noisy_at_low_fidelity_and_seeded() -> None:
    task = T.get("counting_ones")
    config = {**{f"c{i}": i % 2 for i in range(8)}, **{f"x{i}": 0.5 for i in range(8)}}
    a, b = list(task.curve(config, seed=3)), list(task.curve(config, seed=3))
    assert a == b and len(a) == 27 and list(task.curve(config, seed=4)) != a
    assert task.exact(config) == -8.0
    # 729 draws per bit at the end: the sum's spread is sqrt(8 * 0.25 / 729) = 0.05 (0.27 after the first 27)
    assert abs(a[-1] - -8.0) < 0.25


def test_scales_are_median_random_regrets() -> None:
    for name in ("mf_branin", "mf_hartmann3", "mf_hartmann6", "counting_ones"):
        assert T.get(name).scale > 0
    assert T.get("counting_ones").scale == pytest.approx(8.0, abs=0.3)  # E[sum] = 8 of 16 under uniform draws


def test_a_training_curve_and_its_pickle() -> None:
    task = T.get("mlp_breast_cancer")
    config = T.sample_config(task.space, random.Random(0))
    losses = list(zip(range(3), task.curve(config, seed=0), strict=False))
    assert len(losses) == 3 and all(0 < loss < T.LOSS_CAP for _, loss in losses)
    assert "data" in task._cache and len(pickle.dumps(task)) < 5000  # the loaded data does not travel
    assert pickle.loads(pickle.dumps(task))._cache == {}
