"""The peer benchmark's scoring arithmetic (benchmarks/peer_score.py), against values worked out by hand."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import peer_score as S


def row(trial: str, epoch: int, loss: float, seconds: float, spent: int) -> list:
    return [trial, epoch, loss, seconds, spent, {"x": trial}]


# A run with max_epochs 2, budget 6: full-fidelity rows at spent 2 (loss 5), 4 (loss 7: no new incumbent),
# 5 (loss 3), and one at spent 7 beyond the budget (loss 0: cut).
RUN = [
    row("a", 1, 9.0, 0.1, 1),
    row("a", 2, 5.0, 0.2, 2),
    row("b", 1, 8.0, 0.3, 3),
    row("b", 2, 7.0, 0.4, 4),
    row("c", 2, 3.0, 0.9, 5),
    row("d", 1, 1.0, 1.0, 6),
    row("d", 2, 0.0, 1.1, 7),
]


def test_incumbent_steps_keep_full_fidelity_rows_within_budget_that_improve() -> None:
    assert S.incumbent_steps(RUN, max_epochs=2, budget=6) == [(2, 0.2, 5.0), (5, 0.9, 3.0)]
    # a low-fidelity loss is never an incumbent, however low (the 1.0 at epoch 1); a budget of 4 stops before c
    assert S.incumbent_steps(RUN, max_epochs=2, budget=4) == [(2, 0.2, 5.0)]
    # the exact value replaces the loss as the incumbent's value; the choice is still by loss
    exact = [None, 4.5, None, 0.0, 2.5, None, None]
    assert S.incumbent_steps(RUN, max_epochs=2, budget=6, exact=exact) == [(2, 0.2, 4.5), (5, 0.9, 2.5)]


def test_value_at_on_both_axes() -> None:
    steps = S.incumbent_steps(RUN, max_epochs=2, budget=6)
    assert S.value_at(steps, 1) == math.inf  # nothing at full fidelity yet
    assert S.value_at(steps, 2) == 5.0 and S.value_at(steps, 4) == 5.0 and S.value_at(steps, 5) == 3.0
    assert S.value_at(steps, 0.5, "seconds") == 5.0 and S.value_at(steps, 0.89, "seconds") == 5.0
    assert S.value_at(steps, 0.9, "seconds") == 3.0 and S.value_at(steps, 0.1, "seconds") == math.inf
    assert S.end_seconds(RUN, 6) == 1.0


def test_quantiles_and_medians_with_inf() -> None:
    assert S.median([3.0, 1.0, 2.0]) == 2.0
    assert S.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert S.quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.25) == 2.0
    assert S.quantile([1.0, 2.0, 3.0, 4.0], 0.75) == pytest.approx(3.25)
    assert S.median([1.0, math.inf, math.inf]) == math.inf
    assert S.median([1.0, 2.0, math.inf]) == 2.0
    assert S.median([1.0, 3.0, math.inf, math.inf]) == math.inf  # halfway between 3 and inf


def test_ranks_share_ties() -> None:
    assert S.ranks([0.3, 0.1, 0.3, 0.2]) == [3.5, 1.0, 3.5, 2.0]
    assert S.ranks([math.inf, 1.0]) == [2.0, 1.0]


def test_mann_whitney_by_hand() -> None:
    # a = [1, 2, 3], b = [4, 5, 6]: U(a) = 0 (a never larger); var = 3*3*7/12 = 5.25; z = (4.5 - 0.5)/sqrt(5.25)
    u, p = S.mann_whitney([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert u == 0.0
    assert p == pytest.approx(math.erfc(4.0 / math.sqrt(5.25) / math.sqrt(2)))  # 0.0809
    assert p == pytest.approx(0.0809, abs=1e-4)
    # with a tie across samples: a = [1, 2], b = [2, 3]: ranks 1, 2.5 | 2.5, 4; U(a) = 3.5 - 3 = 0.5
    # var = 2*2/12 * (5 - (2**3 - 2)/(4*3)) = 1/3 * 4.5 = 1.5; z = (|0.5 - 2| - 0.5)/sqrt(1.5)
    u, p = S.mann_whitney([1.0, 2.0], [2.0, 3.0])
    assert u == 0.5 and p == pytest.approx(math.erfc(1.0 / math.sqrt(1.5) / math.sqrt(2)))
    assert S.mann_whitney([1.0, 1.0], [1.0, 1.0])[1] == 1.0  # all tied: nothing to call
    # ten against ten, fully separated: p ~ 0.00018, a difference is called
    cmp = S.compare([float(i) for i in range(10)], [float(i) for i in range(10, 20)])
    assert cmp["verdict"] == "better" and cmp["p"] < 0.001 and cmp["median"] == 4.5 and cmp["other_median"] == 14.5
    assert S.compare([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])["verdict"] == "within the spread"  # p 0.08: not called


def test_bootstrap_interval_brackets_the_median_and_is_seeded() -> None:
    values = [float(v) for v in range(11)]
    low, high = S.bootstrap_median_ci(values)
    assert low <= 5.0 <= high and low >= 2.0 and high <= 8.0
    assert S.bootstrap_median_ci(values) == (low, high)
    assert S.bootstrap_median_ci([7.0] * 5) == (7.0, 7.0)


def test_reference_and_scale_for_training_tasks() -> None:
    task = {"max_epochs": 2, "budget_epochs": 6, "optimum": None, "scale": None}
    runs = [
        {"method": "random", "rows": RUN},  # full fidelity within budget: 5, 7, 3 (the 0 at spent 7 is cut)
        {"method": "other", "rows": [row("z", 2, 2.0, 0.1, 2)]},
    ]
    best, scale = S.reference_and_scale(task, runs)
    assert best == 2.0 and scale == 5.0 - 2.0  # median of random's 5, 7, 3 is 5
    synthetic = {"max_epochs": 2, "budget_epochs": 6, "optimum": -1.0, "scale": 4.0}
    assert S.reference_and_scale(synthetic, runs) == (-1.0, 4.0)


def test_reference_seconds_is_the_slowest_methods_median() -> None:
    fast = [{"method": "a", "rows": [row("x", 2, 1.0, s, 1)]} for s in (0.1, 0.2, 0.9)]  # median 0.2
    slow = [{"method": "b", "rows": [row("x", 2, 1.0, s, 1), row("y", 2, 1.0, s + 1, 2)]} for s in (3.0, 5.0)]  # ends 4, 6
    assert S.reference_seconds(fast + slow, budget=2) == 5.0
    assert S.reference_seconds(fast + slow, budget=1) == 4.0  # b's runs spent 1 epoch at 3 and 5 s
    assert S.reference_seconds([], budget=2) is None


def run(method: str, seed: int, final_losses: list[tuple[int, float]], budget: int = 8) -> dict:
    """A run of max_epochs 2 whose only full-fidelity rows are ``(spent, loss)``; other epochs are filler at epoch 1."""
    full = dict(final_losses)
    rows = [
        row(f"t{spent}", 2 if spent in full else 1, full.get(spent, 99.0), spent / 10, spent) for spent in range(1, budget + 1)
    ]
    return {"method": method, "seed": seed, "status": "ok", "rows": rows, "wall_s": 1.0}


def test_score_task_by_hand() -> None:
    # synthetic: optimum 0, scale 2; budget 8 epochs, so the epoch budgets are 1, 2, 4, 8
    task = {"max_epochs": 2, "budget_epochs": 8, "optimum": 0.0, "scale": 2.0, "held_out": False}
    runs = [
        run("service:default", 0, [(2, 4.0), (6, 1.0)]),
        run("service:default", 1, [(2, 2.0)]),
        run("service:default", 2, [(4, 6.0), (8, 0.0)]),
        run("random", 0, [(2, 8.0), (4, 2.0)]),
        run("random", 1, [(4, 4.0)]),
        run("random", 2, [(8, 2.0)]),
        {"method": "random", "seed": 3, "status": "not run: nothing", "rows": []},  # not counted
    ]
    out = S.score_task(task, runs, ["service:default", "random", "dehb"])
    assert out["epoch_budgets"] == [1, 2, 4, 8]
    d, r = out["methods"]["service:default"], out["methods"]["random"]
    assert "dehb" not in out["methods"]
    # service at 2 epochs: regrets 4/2, 2/2, inf -> median 2; at 4: 2, 1, 6/2 -> 2; at 8: 1/2, 2/2, 0 -> 0.5, IQR 0.25..0.75
    assert [b["median"] for b in d["by_epochs"]] == [None, 2.0, 2.0, 0.5]
    assert d["by_epochs"][3]["q25"] == 0.25 and d["by_epochs"][3]["q75"] == 0.75
    assert d["by_epochs"][1]["with_incumbent"] == 2 and d["final_regrets"] == [0.5, 1.0, 0.0]
    # random: at 4: 2/2, 4/2, inf -> 2; at 8: 1, 2, 1 -> 1
    assert [b["median"] for b in r["by_epochs"]] == [None, None, 2.0, 1.0]
    # target: random's final median 1.0; random's median curve first reaches it at epoch 8; the service's at 6
    # (regrets 1/2, 1, 3 from epoch 6 on)
    assert out["best_peer"] == "random" and out["target"] == 1.0
    assert r["epochs_to_target"] == 8 and d["epochs_to_target"] == 6 and d["speedup_vs_best_peer"] == pytest.approx(8 / 6)
    assert r["speedup_vs_best_peer"] == 1.0
    assert d["rank"] == 1.0 and r["rank"] == 2.0
    # seconds: rows at spent/10 s, every run ends at 0.8 s -> budgets 0.1, 0.2, 0.4, 0.8 s; same numbers as epochs
    assert out["reference_seconds"] == pytest.approx(0.8)
    assert [b["median"] for b in d["by_seconds"]] == [None, 2.0, 2.0, 0.5]
    # the spread: 3 seeds against 3 cannot call a difference
    assert {c["verdict"] for c in out["spread"]["vs_reference"]["random"]} == {"within the spread"}
    goal = out["spread"]["default_vs_best_peer"]
    assert [g["axis"] for g in goal] == ["epochs"] * 4 + ["seconds"] * 4 and all(g["best_peer"] == "random" for g in goal)


def test_score_and_mean_ranks() -> None:
    payload = {
        "settings": {
            "tasks": {
                "a": {"max_epochs": 2, "budget_epochs": 8, "optimum": 0.0, "scale": 1.0, "held_out": False},
                "b": {"max_epochs": 2, "budget_epochs": 8, "optimum": 0.0, "scale": 1.0, "held_out": True},
            }
        },
        "methods": {"service:default": None, "random": None},
        "runs": [
            {**run("service:default", 0, [(2, 1.0)]), "task": "a"},
            {**run("random", 0, [(2, 2.0)]), "task": "a"},
            {**run("service:default", 0, [(2, 3.0)]), "task": "b"},
            {**run("random", 0, [(2, 2.0)]), "task": "b"},
        ],
    }
    out = S.score(payload)
    assert out["ranks"]["tuning"] == {
        "random": {"mean_rank": 2.0, "mean_rank_among_peers": 1.0, "tasks": 1},  # the only peer
        "service:default": {"mean_rank": 1.0, "mean_rank_among_peers": 1.0, "tasks": 1},
    }
    assert out["ranks"]["held_out"]["service:default"]["mean_rank"] == 2.0
    assert out["ranks"]["all"]["random"]["mean_rank"] == 1.5
