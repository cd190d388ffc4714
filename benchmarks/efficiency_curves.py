"""The sample-efficiency benchmark's arithmetic: epoch budgets, best-so-far curves, medians over seeds, ratios.

Pure functions on lists of trials (``{"state", "value", "epochs", "params"}`` in trial order) and
on the per-seed dicts built from them; no Ray, no Optuna, nothing run. From one search's trials:
``within_budget`` keeps the trials whose cumulative epochs fit in E, ``summarise`` gives that
run's best and its best-so-far curve (as steps ``[epochs, best]``), ``finish_seed`` the per-seed
ratios, and ``reevaluate_incumbents`` the same curve valued at each incumbent's mean over fresh
trainings (the trainings themselves are ``efficiency_runs.retrain``). Over seeds: ``aggregate``
(and ``aggregate_reevaluated``, on those re-evaluated curves) gives the median curves, the
target and the ratios; ``budget_sweep`` the same at smaller budgets; ``aggregate_matching`` the
other way round; ``targets`` the verdicts.

What must stay true (tests/benchmarks/test_sample_efficiency_curves.py checks it): a PRUNED
trial's epochs count but its value (from an earlier step) is never a best; a trial counts once
its last epoch fits in the budget; a seed with nothing COMPLETE yet counts as the worst value in
a median; "not reached" is ratio 0 in the summaries and ``None`` in ``C.ratio``. The JSON's
figures are these functions' output: a change here changes every result's meaning.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

RATIO_TARGET = 3.0  # the target: a third of random search's epochs
# The MLP's budget sweep: the ratio at these budgets (in full trainings) below E, read off the same runs.
BUDGET_SWEEP_TRIALS = (4, 8, 16, 24, 32, 48, 64, 80)


# -- one search's trials -----------------------------------------------------------------------


def within_budget(trials: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The trials, in order, whose cumulative epochs fit in ``budget``; each with ``cum_epochs``."""
    kept, cum = [], 0
    for t in trials:
        if cum + t["epochs"] > budget:
            break
        cum += t["epochs"]
        kept.append({**t, "cum_epochs": cum})
    return kept


def better(a: float, b: float, mode: str) -> bool:
    """``a`` at least as good as ``b``."""
    return a <= b if mode == "min" else a >= b


def best_complete(kept: list[dict[str, Any]], mode: str) -> float | None:
    values = [t["value"] for t in kept if t["state"] == "COMPLETE" and t["value"] is not None]
    if not values:
        return None
    return min(values) if mode == "min" else max(values)


def epochs_to_reach(kept: list[dict[str, Any]], threshold: float | None, mode: str) -> int | None:
    """Cumulative epochs when a COMPLETE trial first reached ``threshold`` (None: never, within the budget)."""
    if threshold is None:
        return None
    for t in kept:
        if t["state"] == "COMPLETE" and t["value"] is not None and better(t["value"], threshold, mode):
            return t["cum_epochs"]
    return None


def improving_trials(kept: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """The incumbents: each COMPLETE trial that improved on the best before it, in order."""
    out: list[dict[str, Any]] = []
    for t in kept:
        if t["state"] != "COMPLETE" or t["value"] is None:
            continue
        if not out or (t["value"] != out[-1]["value"] and better(t["value"], out[-1]["value"], mode)):
            out.append(t)
    return out


def improvements(kept: list[dict[str, Any]], mode: str, shift: float = 0.0) -> list[list[float]]:
    """The best-so-far curve as its steps: ``[epochs, best - shift]`` each time a COMPLETE trial improved the best."""
    return [[t["cum_epochs"], t["value"] - shift] for t in improving_trials(kept, mode)]


def summarise(trials: list[dict[str, Any]], budget: int, mode: str, wall_s: float, shift: float = 0.0) -> dict[str, Any]:
    """One method's run in one seed, cut at ``budget`` epochs; ``shift`` turns values into regret."""
    kept = within_budget(trials, budget)
    best = best_complete(kept, mode)
    return {
        "trials_run": len(trials),
        "trials_in_budget": len(kept),
        "epochs_spent": kept[-1]["cum_epochs"] if kept else 0,
        "complete_in_budget": sum(t["state"] == "COMPLETE" for t in kept),
        "pruned_in_budget": sum(t["state"] == "PRUNED" for t in kept),
        "best": best,
        "score": None if best is None else best - shift,
        "curve": improvements(kept, mode, shift),
        "incumbents": [t.get("params") for t in improving_trials(kept, mode)],  # the configuration behind each step
        "wall_s": wall_s,
        "_kept": kept,
    }


def finish_seed(runs: dict[str, dict[str, Any]], mode: str) -> dict[str, Any]:
    """Per seed: epochs each method needed to first reach random search's final best, and the ratios."""
    target = runs["random"]["best"]
    random_needed = epochs_to_reach(runs["random"]["_kept"], target, mode)
    for run in runs.values():
        run["epochs_to_random_best"] = epochs_to_reach(run["_kept"], target, mode)
        run["ratio_vs_random"] = C.ratio(random_needed, run["epochs_to_random_best"])
    for run in runs.values():
        del run["_kept"]
    return {"random_best": target, "random_epochs_to_own_best": random_needed, "methods": runs}


def config_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def reevaluate_incumbents(
    runs: dict[str, dict[str, Any]], scores_of: Callable[[list[dict[str, Any]]], list[list[float | None]]]
) -> None:
    """Score every method's incumbents without the luck of their one training: the mean over trainer seeds.

    ``scores_of`` trains the distinct incumbents of all methods (one call, so they share seeds).
    Adds per method ``incumbent_scores``, ``reeval_curve`` (the best-so-far curve's steps, each
    valued at its incumbent's mean: it can go down when a luckier trial takes over) and
    ``reeval_score`` (the final incumbent's mean).
    """
    distinct: dict[str, dict[str, Any]] = {}
    for run in runs.values():
        for params in run["incumbents"]:
            distinct.setdefault(config_key(params), params)
    keys = list(distinct)
    scores = dict(zip(keys, scores_of([distinct[k] for k in keys]), strict=True)) if keys else {}
    for run in runs.values():
        run["incumbent_scores"] = [scores[config_key(p)] for p in run["incumbents"]]
        means = [
            statistics.fmean(v for v in s if v is not None) if any(v is not None for v in s) else None
            for s in run["incumbent_scores"]
        ]
        run["reeval_curve"] = [[step[0], m] for step, m in zip(run["curve"], means, strict=False) if m is not None]
        run["reeval_score"] = run["reeval_curve"][-1][1] if run["reeval_curve"] else None


# -- curves ------------------------------------------------------------------------------------


def curve_at(steps: list[list[float]], budget: int) -> list[float | None]:
    """The best-so-far value at every epoch count 1..budget (``None`` before the first COMPLETE trial)."""
    out: list[float | None] = []
    i, current = 0, None
    for e in range(1, budget + 1):
        while i < len(steps) and steps[i][0] <= e:
            current = steps[i][1]
            i += 1
        out.append(current)
    return out


def median_curve(curves: list[list[float | None]], mode: str) -> list[float | None]:
    """The median over seeds at every epoch count; a seed with nothing yet counts as the worst value."""
    worst = math.inf if mode == "min" else -math.inf
    out: list[float | None] = []
    for values in zip(*curves, strict=False):
        m = statistics.median_low([worst if v is None else v for v in values])
        out.append(None if math.isinf(m) else m)
    return out


def first_reach(curve: list[float | None], threshold: float | None, mode: str) -> int | None:
    """The first epoch count (1-based) where ``curve`` is at least as good as ``threshold``."""
    if threshold is None:
        return None
    for e, v in enumerate(curve, start=1):
        if v is not None and better(v, threshold, mode):
            return e
    return None


def as_steps(curve: list[float | None]) -> list[list[float]]:
    """A per-epoch curve back to its steps (what the JSON keeps: short, and exact)."""
    steps: list[list[float]] = []
    for e, v in enumerate(curve, start=1):
        if v is not None and (not steps or v != steps[-1][1]):
            steps.append([e, v])
    return steps


# -- over seeds --------------------------------------------------------------------------------


def median_curves(seeds: list[dict[str, Any]], budget: int, mode: str, curve: str) -> dict[str, list[float | None]]:
    """Each method's median over seeds of its ``curve`` (best so far), at every epoch count 1..budget."""
    return {m: median_curve([curve_at(s["methods"][m][curve], budget) for s in seeds], mode) for m in seeds[0]["methods"]}


def reaching(medians: dict[str, list[float | None]], mode: str) -> dict[str, Any]:
    """On median curves of equal length: random search's last value (the target), the epochs its curve needs
    to first reach it, and per method the epochs its curve needs and the ratio (not reached: 0)."""
    target = medians["random"][-1]
    random_needs = first_reach(medians["random"], target, mode)
    out: dict[str, Any] = {"target": target, "random_epochs_to_target": random_needs}
    for method, median in medians.items():
        needs = first_reach(median, target, mode)
        out[method] = {"epochs_to_target": needs, "ratio_vs_random": C.ratio(random_needs, needs) or 0.0}
    return out


def curve_figures(seeds: list[dict[str, Any]], budget: int, mode: str, curve: str, score: str) -> dict[str, Any]:
    """Median curves over seeds (each run's ``curve`` key), the epochs each method needs to reach random
    search's final value on them, and the ratios: what ``aggregate`` and ``aggregate_reevaluated`` share."""
    medians = median_curves(seeds, budget, mode, curve)
    reach = reaching(medians, mode)
    target = reach["target"]
    out: dict[str, Any] = {"target": target, "random_epochs_to_target": reach["random_epochs_to_target"], "budget_epochs": budget}
    for method in medians:
        runs = [s["methods"][method] for s in seeds]
        needs = reach[method]["epochs_to_target"]
        # Per seed: epochs random search needed for its own final value / epochs the method needed (never: 0).
        per_seed = []
        for s, run in zip(seeds, runs, strict=True):
            own = s["methods"]["random"][score]
            random_own = first_reach(curve_at(s["methods"]["random"][curve], budget), own, mode)
            per_seed.append(C.ratio(random_own, first_reach(curve_at(run[curve], budget), own, mode)) or 0.0)
        scores = [r[score] for r in runs if r[score] is not None]
        out[method] = {
            "median_score": C.median(scores) if scores else None,
            "epochs_to_target": needs,
            "ratio_vs_random": reach[method]["ratio_vs_random"],  # not reached within E: 0
            "ratio_vs_budget": C.ratio(budget, needs) or 0.0,
            "seeds_reaching_target": sum(first_reach(curve_at(r[curve], budget), target, mode) is not None for r in runs),
            "per_seed_median_ratio": C.median(per_seed),
            "seeds": len(runs),
            "median_curve": as_steps(medians[method]),
        }
    return out


def aggregate(seeds: list[dict[str, Any]], budget: int, score_mode: str) -> dict[str, Any]:
    """Median curves over seeds, the epochs each needs to reach random search's final best, the ratios."""
    out = curve_figures(seeds, budget, score_mode, "curve", "score")
    for method in seeds[0]["methods"]:
        runs = [s["methods"][method] for s in seeds]
        reached = [r["epochs_to_random_best"] for r in runs if r["epochs_to_random_best"] is not None]
        out[method].update(
            {
                "per_seed_reached_random_best": len(reached),
                "per_seed_median_epochs_to_random_best": C.median(reached) if reached else None,
                "median_epochs_spent": C.median([r["epochs_spent"] for r in runs]),
                "median_trials_in_budget": C.median([r["trials_in_budget"] for r in runs]),
                "median_complete_in_budget": C.median([r["complete_in_budget"] for r in runs]),
                "wall_s": sum(r["wall_s"] for r in runs),
            }
        )
    return out


def aggregate_reevaluated(seeds: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    """The MLP's noise-aware figures: as ``aggregate``, on the curves of the incumbents' mean over trainer seeds.

    Target: random search's median re-evaluated curve at E (what its final pick scores without
    luck); epochs to target: where a method's median re-evaluated curve first reaches it.
    """
    out = curve_figures(seeds, budget, "max", "reeval_curve", "reeval_score")
    for method in seeds[0]["methods"]:
        out[method]["median_incumbents"] = C.median([len(s["methods"][method]["incumbents"]) for s in seeds])
    return out


def aggregate_matching(seeds: list[dict[str, Any]], budget: int, extended_budget: int, key: str) -> dict[str, Any]:
    """The other way round: how many epochs random search needs to match what the service reached in E.

    Target: the service's median curve at E (``key``: ``curve`` or ``reeval_curve``); random
    search's median curve over its extended budget. Not reached there: the ratio is at least
    ``extended_budget / service epochs`` (``ratio_at_least``).
    """
    service = median_curve([curve_at(s["methods"]["service"][key], budget) for s in seeds], "max")
    random = median_curve([curve_at(s["random_extended"][key], extended_budget) for s in seeds], "max")
    target = service[-1]
    service_needs = first_reach(service, target, "max")
    random_needs = first_reach(random, target, "max")
    return {
        "target": target,
        "service_epochs": service_needs,
        "random_epochs": random_needs,
        "random_budget_epochs": extended_budget,
        "ratio": C.ratio(random_needs, service_needs),
        "ratio_at_least": C.ratio(extended_budget, service_needs) if random_needs is None else None,
        "random_final": random[-1],
        "random_median_curve": as_steps(random),
    }


def matching_met(matching: dict[str, Any]) -> bool:
    """Random search needs at least RATIO_TARGET times the service's epochs to match it (or never does within its budget)."""
    ratio = matching["ratio"] if matching["ratio"] is not None else matching["ratio_at_least"]
    return ratio is not None and ratio >= RATIO_TARGET


def sweep_budgets(budget: int, max_steps: int) -> list[int]:
    """The budgets of the budget sweep: BUDGET_SWEEP_TRIALS full trainings that fit in ``budget``, and ``budget``."""
    return sorted({*(n * max_steps for n in BUDGET_SWEEP_TRIALS if n * max_steps < budget), budget})


def budget_sweep(seeds: list[dict[str, Any]], budgets: list[int], mode: str, curve: str) -> list[dict[str, Any]]:
    """The issue's ratio at smaller budgets B, from the same runs: a run's first B epochs are a run with budget B
    (random search draws the same configurations in the same order; TPE and ASHA do not know the budget; a
    trial counts once its last epoch fits, as ``within_budget`` keeps them). Per B: random search's median best
    at B (the target), the epochs each method's median curve needs to reach it, and the ratio."""
    # The median at an epoch count does not depend on the budget: the curves to the largest, cut at each B.
    medians = median_curves(seeds, max(budgets), mode, curve)
    rows = []
    for b in budgets:
        reach = reaching({m: median[:b] for m, median in medians.items()}, mode)
        for method, median in medians.items():
            reach[method] = {"best": median[b - 1], **reach[method]}
        rows.append({"budget_epochs": b, **reach})
    return rows


def add_budget_sweep(task: dict[str, Any]) -> bool:
    """Put the budget sweep (``budget_sweep``) into an MLP task's summary, and its re-evaluated twin's, where missing.

    Returns whether anything was added (a JSON from before the sweep existed gets it from its own curves)."""
    added = False
    budgets = sweep_budgets(task["budget_epochs"], task["max_steps"])
    for summary, curve in ((task["summary"], "curve"), (task["summary"].get("reevaluated"), "reeval_curve")):
        if summary is not None and "by_budget" not in summary:
            summary["by_budget"] = budget_sweep(task["seeds"], budgets, task["score_mode"], curve)
            added = True
    return added


def targets(tasks: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets, met or not: on the MLP a ratio of at least RATIO_TARGET (and random search needing
    that many times the service's epochs to match it); on the synthetic functions a lower median regret."""
    met: dict[str, bool] = {}
    for name, task in tasks.items():
        s = task["summary"]
        if task["kind"] == "mlp":
            met[f"{name}_ratio_at_least_3"] = s["service"]["ratio_vs_random"] >= RATIO_TARGET
            if "reevaluated" in s:
                met[f"{name}_reevaluated_ratio_at_least_3"] = s["reevaluated"]["service"]["ratio_vs_random"] >= RATIO_TARGET
            for key, matching in s.get("matching", {}).items():
                met[f"{name}_random_needs_3x_to_match_service_{key}"] = matching_met(matching)
        else:
            sr, rr = s["service"]["median_score"], s["random"]["median_score"]
            met[f"{name}_lower_regret_than_random"] = sr is not None and rr is not None and sr < rr
    return met
