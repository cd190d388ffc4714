"""The ranking helpers every view of a job shares (automl/results.py): top trials and the Pareto front."""

from __future__ import annotations

from automl.results import TrialSummary, dominates, pareto_front, top_trials


def trial(number: int, *values: float, state: str = "COMPLETE") -> TrialSummary:
    return TrialSummary(number=number, state=state, value=values[0] if values else None, params={}, values=values or None)


def test_top_trials_ranks_complete_trials_best_first_in_either_mode() -> None:
    trials = [trial(0, 3.0), trial(1, 1.0), trial(2, state="FAIL"), trial(3, 2.0), trial(4, 0.5, state="PRUNED"), trial(5, 1.0)]
    assert [t.number for t in top_trials(trials, "min", 3)] == [1, 5, 3]  # ties keep trial order
    assert [t.number for t in top_trials(trials, "max", 2)] == [0, 3]
    assert top_trials([trial(0, state="FAIL")], "min") == []


def test_dominates_needs_as_good_everywhere_and_better_somewhere() -> None:
    assert dominates(trial(0, 1.0, 1.0), trial(1, 2.0, 1.0), ["min", "min"])
    assert not dominates(trial(0, 1.0, 1.0), trial(1, 1.0, 1.0), ["min", "min"])  # equal: neither
    assert not dominates(trial(0, 1.0, 3.0), trial(1, 2.0, 1.0), ["min", "min"])  # a trade-off
    assert dominates(trial(0, 1.0, 3.0), trial(1, 2.0, 1.0), ["min", "max"])  # b's 1.0 is worse when maximised


def test_the_pareto_front_keeps_the_trade_offs_and_equal_trials() -> None:
    trials = [
        trial(0, 1.0, 5.0),
        trial(1, 2.0, 2.0),
        trial(2, 3.0, 3.0),
        trial(3, 5.0, 1.0),
        trial(4, 2.0, 2.0),
        trial(5, 0.1, 0.1, state="FAIL"),
    ]
    assert [t.number for t in pareto_front(trials, ["min", "min"])] == [0, 1, 3, 4]
    assert [t.number for t in pareto_front(trials, ["max", "max"])] == [0, 2, 3]
