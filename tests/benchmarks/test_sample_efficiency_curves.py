"""The sample-efficiency benchmark's own arithmetic: epoch budgets, best-so-far curves, medians, ratios.

Pure functions on hand-made trial lists (no Ray, no Optuna): the figures the benchmark reports
depend on them, so they are checked where a mistake would show.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sample_efficiency.py"


@pytest.fixture(scope="module")
def se() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sample_efficiency_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trial(state: str, value: float | None, epochs: int) -> dict[str, object]:
    return {"number": 0, "state": state, "value": value, "epochs": epochs}


def test_budget_cut_and_curve_count_pruned_epochs_but_not_their_values(se: ModuleType) -> None:
    trials = [
        trial("COMPLETE", 0.5, 4),
        trial("PRUNED", 0.99, 1),  # a pruned trial's value is from an early step: never the best
        trial("COMPLETE", 0.7, 4),
        trial("COMPLETE", 0.6, 4),
        trial("COMPLETE", 0.9, 4),  # would end at epoch 17 > budget 16: cut
    ]
    run = se.summarise(trials, budget=16, mode="max", wall_s=1.0)
    assert run["trials_in_budget"] == 4 and run["epochs_spent"] == 13 and run["pruned_in_budget"] == 1
    assert run["best"] == 0.7 and run["curve"] == [[4, 0.5], [9, 0.7]]
    assert se.curve_at(run["curve"], 10) == [None, None, None, 0.5, 0.5, 0.5, 0.5, 0.5, 0.7, 0.7]


def test_regret_curve_is_shifted_and_improves_downwards(se: ModuleType) -> None:
    run = se.summarise([trial("COMPLETE", 3.0, 2), trial("COMPLETE", 5.0, 2), trial("COMPLETE", 1.5, 2)],
                       budget=6, mode="min", wall_s=1.0, shift=1.0)
    assert run["score"] == 0.5 and run["curve"] == [[2, 2.0], [6, 0.5]]


def test_median_curve_counts_a_seed_with_nothing_yet_as_worst(se: ModuleType) -> None:
    curves = [[None, 0.2, 0.2, 0.9], [0.1, 0.1, 0.5, 0.5], [None, None, 0.3, 0.3]]
    assert se.median_curve(curves, "max") == [None, 0.1, 0.3, 0.5]
    assert se.median_curve([[None, 3.0], [2.0, 2.0], [None, 1.0]], "min") == [None, 2.0]


def test_first_reach_and_the_summary_ratio(se: ModuleType) -> None:
    assert se.first_reach([None, 0.4, 0.6, 0.8], 0.6, "max") == 3
    assert se.first_reach([None, 0.4], 0.6, "max") is None
    assert se.first_reach([5.0, 2.0, 1.0], 2.0, "min") == 2

    def seed(random_curve: list[list[float]], service_curve: list[list[float]]) -> dict[str, object]:
        run = {"curve": None, "score": 0.0, "epochs_to_random_best": None, "ratio_vs_random": None,
               "epochs_spent": 12, "trials_in_budget": 3, "complete_in_budget": 3, "wall_s": 1.0}
        return {"methods": {"service": {**run, "curve": service_curve}, "random": {**run, "curve": random_curve},
                            "tune": {**run, "curve": random_curve}}}

    # random search reaches its final 0.8 at epoch 12 in every seed; the service at 4, 4 and never
    seeds = [seed([[4, 0.5], [12, 0.8]], [[4, 0.8]]), seed([[8, 0.6], [12, 0.8]], [[2, 0.5], [4, 0.9]]),
             seed([[12, 0.8]], [[4, 0.7]])]
    summary = se.aggregate(seeds, budget=12, score_mode="max")
    assert summary["target"] == 0.8 and summary["random_epochs_to_target"] == 12
    assert summary["service"]["epochs_to_target"] == 4 and summary["service"]["ratio_vs_random"] == 3.0
    assert summary["service"]["ratio_vs_budget"] == 3.0 and summary["service"]["seeds_reaching_target"] == 2
    assert summary["random"]["ratio_vs_random"] == 1.0
