"""The sample-efficiency benchmark's own arithmetic: epoch budgets, best-so-far curves, medians, ratios.

Pure functions on hand-made trial lists (no Ray, no Optuna), in ``benchmarks/efficiency_curves.py``:
the figures the benchmark reports depend on them, so they are checked where a mistake would show.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

MODULE = Path(__file__).resolve().parents[2] / "benchmarks" / "efficiency_curves.py"


@pytest.fixture(scope="module")
def se() -> ModuleType:
    spec = importlib.util.spec_from_file_location("efficiency_curves_under_test", MODULE)
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
    run = se.summarise(
        [trial("COMPLETE", 3.0, 2), trial("COMPLETE", 5.0, 2), trial("COMPLETE", 1.5, 2)],
        budget=6,
        mode="min",
        wall_s=1.0,
        shift=1.0,
    )
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
        run = {
            "curve": None,
            "score": 0.0,
            "epochs_to_random_best": None,
            "ratio_vs_random": None,
            "epochs_spent": 12,
            "trials_in_budget": 3,
            "complete_in_budget": 3,
            "wall_s": 1.0,
        }
        return {
            "methods": {
                "service": {**run, "curve": service_curve},
                "random": {**run, "curve": random_curve},
                "tune": {**run, "curve": random_curve},
            }
        }

    # random search reaches its final 0.8 at epoch 12 in every seed; the service at 4, 4 and never
    seeds = [
        seed([[4, 0.5], [12, 0.8]], [[4, 0.8]]),
        seed([[8, 0.6], [12, 0.8]], [[2, 0.5], [4, 0.9]]),
        seed([[12, 0.8]], [[4, 0.7]]),
    ]
    summary = se.aggregate(seeds, budget=12, score_mode="max")
    assert summary["target"] == 0.8 and summary["random_epochs_to_target"] == 12
    assert summary["service"]["epochs_to_target"] == 4 and summary["service"]["ratio_vs_random"] == 3.0
    assert summary["service"]["ratio_vs_budget"] == 3.0 and summary["service"]["seeds_reaching_target"] == 2
    assert summary["random"]["ratio_vs_random"] == 1.0


def test_reevaluation_values_each_incumbent_at_its_mean_over_common_seeds(se: ModuleType) -> None:
    a, b, c = {"lr": 0.1}, {"lr": 0.01}, {"lr": 0.001}
    service = se.summarise(
        [
            {**trial("COMPLETE", 0.90, 4), "params": a},
            {**trial("PRUNED", 0.99, 1), "params": c},
            {**trial("COMPLETE", 0.95, 4), "params": b},
        ],
        budget=12,
        mode="max",
        wall_s=1.0,
    )
    random = se.summarise(
        [{**trial("COMPLETE", 0.93, 4), "params": b}, {**trial("COMPLETE", 0.92, 4), "params": a}],
        budget=12,
        mode="max",
        wall_s=1.0,
    )
    assert service["incumbents"] == [a, b] and random["incumbents"] == [b]  # a pruned trial is never an incumbent
    calls: list[list[dict[str, float]]] = []
    true_scores = {0.1: [0.92, 0.94], 0.01: [0.90, None]}  # b: its one lucky run scored 0.95; a failed training is left out

    def scores_of(configs: list[dict[str, float]]) -> list[list[float | None]]:
        calls.append(configs)
        return [true_scores[cfg["lr"]] for cfg in configs]

    runs = {"service": service, "random": random}
    se.reevaluate_incumbents(runs, scores_of)
    assert calls == [[a, b]]  # each distinct incumbent trained once, for every method together
    assert service["reeval_curve"] == [[4, pytest.approx(0.93)], [9, pytest.approx(0.90)]]  # the luckier pick is worse
    assert service["reeval_score"] == pytest.approx(0.90) and random["reeval_score"] == pytest.approx(0.90)


def test_reevaluated_summary_uses_the_reevaluated_curves(se: ModuleType) -> None:
    def seed(random_curve: list[list[float]], service_curve: list[list[float]]) -> dict[str, object]:
        return {
            "methods": {
                "random": {
                    "reeval_curve": random_curve,
                    "reeval_score": random_curve[-1][1],
                    "incumbents": [{}] * len(random_curve),
                },
                "service": {
                    "reeval_curve": service_curve,
                    "reeval_score": service_curve[-1][1],
                    "incumbents": [{}] * len(service_curve),
                },
            }
        }

    seeds = [
        seed([[3, 0.5], [12, 0.8]], [[2, 0.9], [4, 0.85]]),
        seed([[12, 0.8]], [[4, 0.8]]),
        seed([[6, 0.7], [12, 0.9]], [[8, 0.6]]),
    ]
    summary = se.aggregate_reevaluated(seeds, budget=12)
    assert summary["target"] == 0.8 and summary["random_epochs_to_target"] == 12
    assert summary["service"]["epochs_to_target"] == 4 and summary["service"]["ratio_vs_random"] == 3.0
    assert summary["service"]["seeds_reaching_target"] == 2 and summary["random"]["ratio_vs_random"] == 1.0
    assert summary["service"]["per_seed_median_ratio"] == 3.0  # per seed: 12/2, 12/4, never (0)


def test_matching_asks_how_long_random_search_needs_for_the_services_best(se: ModuleType) -> None:
    def seed(service_curve: list[list[float]], random_curve: list[list[float]]) -> dict[str, object]:
        return {"methods": {"service": {"curve": service_curve}}, "random_extended": {"curve": random_curve}}

    # the service's median best at E = 12 is 0.9, first reached at 8; random search's median reaches it at 30 of 36
    seeds = [seed([[4, 0.8], [8, 0.9]], [[12, 0.8], [30, 0.9]]), seed([[6, 0.9]], [[20, 0.95]]), seed([[12, 0.85]], [[36, 0.85]])]
    matching = se.aggregate_matching(seeds, budget=12, extended_budget=36, key="curve")
    assert matching["target"] == 0.9 and matching["service_epochs"] == 8 and matching["random_epochs"] == 30
    assert matching["ratio"] == 3.75 and matching["ratio_at_least"] is None and se.matching_met(matching)
    # never reached within the extended budget: a lower bound, 36 / 8
    never = se.aggregate_matching([seed([[8, 0.9]], [[12, 0.8]])], budget=12, extended_budget=36, key="curve")
    assert never["random_epochs"] is None and never["ratio"] is None and never["ratio_at_least"] == 4.5
    assert se.matching_met(never)
    short = se.aggregate_matching([seed([[8, 0.9]], [[20, 0.9]])], budget=12, extended_budget=36, key="curve")
    assert short["ratio"] == 2.5 and not se.matching_met(short)


def test_budget_sweep_reads_smaller_budgets_off_the_same_curves(se: ModuleType) -> None:
    def seed(random_curve: list[list[float]], service_curve: list[list[float]]) -> dict[str, object]:
        return {
            "methods": {
                "random": {"curve": random_curve, "score": random_curve[-1][1]},
                "service": {"curve": service_curve, "score": service_curve[-1][1]},
            }
        }

    # Random search: median 0.6 by epoch 8, 0.9 by epoch 24. The service: median 0.6 by 4, 0.9 by 6.
    seeds = [
        seed([[4, 0.5], [8, 0.6], [24, 0.9]], [[4, 0.6], [6, 0.9]]),
        seed([[8, 0.6], [20, 0.9]], [[2, 0.6], [6, 0.95]]),
        seed([[8, 0.7], [24, 0.9]], [[4, 0.6], [10, 0.9]]),
    ]
    assert se.sweep_budgets(24, 4) == [16, 24]  # 4 and 8 trainings of 4 epochs (below E), and E
    rows = se.budget_sweep(seeds, [8, 24], "max", "curve")
    small, whole = rows
    # At B = 8 the target is random search's median best at 8 (0.6), reached by the service at 4.
    assert small["budget_epochs"] == 8 and small["target"] == 0.6 and small["random_epochs_to_target"] == 8
    assert small["service"]["epochs_to_target"] == 4 and small["service"]["ratio_vs_random"] == 2.0
    assert small["service"]["best"] == 0.9  # what the service's median curve has by epoch 8
    # At B = E it is the full run's figure, as aggregate reports it.
    assert whole["target"] == 0.9 and whole["random_epochs_to_target"] == 24 and whole["service"]["ratio_vs_random"] == 4.0
    full = se.curve_figures(seeds, 24, "max", "curve", "score")
    assert full["service"]["ratio_vs_random"] == whole["service"]["ratio_vs_random"]
    # A trial that ends after B does not count at B: at B = 5 random search's median is still 0.5 -> None.
    assert se.budget_sweep(seeds, [5], "max", "curve")[0]["target"] is None
